"""Elasticsearch's error responses: one exception type that knows its status, type and reason.

The HTTP layer turns an `EsError` into the envelope every Elasticsearch error has:
`{"error": {"root_cause": [...], "type", "reason", ...}, "status": N}`.
"""

from __future__ import annotations

from typing import Any


class EsError(Exception):
    """An error answered the way Elasticsearch answers it."""

    def __init__(
        self,
        status: int,
        es_type: str,
        reason: str,
        *,
        caused_by: tuple[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.es_type = es_type
        self.reason = reason
        self.caused_by = caused_by
        self.metadata = metadata or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        cause = {"type": self.es_type, "reason": self.reason, **self.metadata}
        error: dict[str, Any] = {"root_cause": [cause], **cause}
        if self.caused_by is not None:
            error["caused_by"] = {"type": self.caused_by[0], "reason": self.caused_by[1]}
        return {"error": error, "status": self.status}


def bad_request(es_type: str, reason: str) -> EsError:
    return EsError(400, es_type, reason)


def validation_failed(*reasons: str, es_type: str = "validation_exception") -> EsError:
    """Several reasons joined as Elasticsearch's ValidationException prints them."""
    joined = "".join(f"{i}: {reason};" for i, reason in enumerate(reasons, start=1))
    return EsError(400, es_type, f"Validation Failed: {joined}")


def not_found(reason: str, es_type: str = "resource_not_found_exception") -> EsError:
    return EsError(404, es_type, reason)
