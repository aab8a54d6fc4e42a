"""What Elasticsearch's REST layer checks before any handler runs.

REST compatibility (the `compatible-with` media types of Accept and Content-Type), the content
types it refuses, API-key authentication, and the query parameters a handler does not know (with
Lucene's "did you mean" suggestions). Failures that are not in the error envelope (406, routing
errors) are raised as `FlatResponse`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request

from reconciler.emulator.errors import EsError, bad_request

Json = Any
GLOBAL_PARAMS = frozenset({"pretty", "human", "error_trace", "filter_path", "format"})
_COMPAT = re.compile(
    r"application/vnd\.elasticsearch\+[a-z-]+\s*;\s*compatible-with\s*=\s*(\d+)", re.IGNORECASE
)


class FlatResponse(Exception):  # noqa: N818 (a response to send, not an error)
    """A response whose body is not the error envelope (routing errors, 406)."""

    def __init__(self, status: int, body: Json, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


def negotiate(current: int, request: Request, body: bytes) -> int | None:
    """REST compatibility (RestCompatibleVersionHelper): the major a request asked for."""
    accept = request.headers.get("accept")
    content_type = request.headers.get("content-type")
    accept_version = _compat_version(accept)
    content_version = _compat_version(content_type)
    has_content = bool(body)
    try:
        asked = accept_version or current
        if asked > current or asked < current - 1:
            raise _compat_error(
                f"Accept version must be either version {current} or {current - 1}, but found {asked}. Accept={accept}"
            )
        if has_content:
            given = content_version or current
            if given > current or given < current - 1:
                raise _compat_error(
                    f"Content-Type version must be either version {current} or {current - 1}, but found {given}. "
                    f"Content-Type={content_type}"
                )
            if given != asked:
                raise _compat_error(
                    "A compatible version is required on both Content-Type and Accept headers if either one has "
                    "requested a compatible version and the compatible versions must match. "
                    f"Accept={accept}, Content-Type={content_type}"
                )
            if (accept_version is None) != (content_version is None):
                raise _compat_error(
                    "A compatible version is required on both Content-Type and Accept headers if either one has "
                    f"requested a compatible version. Accept={accept}, Content-Type={content_type}"
                )
    except _CompatError as failure:
        raise EsError(
            400,
            "media_type_header_exception",
            "Invalid media-type value on headers [Accept, Content-Type]",
            caused_by=("status_exception", failure.reason),
        ) from None
    if has_content and content_type is not None:
        media = content_type.split(";")[0].strip().lower()
        if media in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
            raise FlatResponse(
                406, {"error": f"Content-Type header [{content_type}] is not supported", "status": 406}
            )
    return accept_version


def authenticate(expected: str | None, request: Request) -> None:
    if expected is None:
        return
    given = request.headers.get("authorization")
    challenge = {"WWW-Authenticate": 'ApiKey, Basic realm="security", charset="UTF-8"'}
    if given is None:
        raise EsError(
            401,
            "security_exception",
            f"missing authentication credentials for REST request [{request.url.path}]",
            metadata={"header": {"WWW-Authenticate": ["ApiKey", 'Basic realm="security", charset="UTF-8"']}},
            headers=challenge,
        )
    if given != f"ApiKey {expected}":
        raise EsError(
            401,
            "security_exception",
            "unable to authenticate with provided credentials and anonymous access is not allowed for this request",
            metadata={"header": {"WWW-Authenticate": ["ApiKey", 'Basic realm="security", charset="UTF-8"']}},
            headers=challenge,
        )


class _CompatError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _compat_error(reason: str) -> _CompatError:
    return _CompatError(reason)


def _compat_version(header: str | None) -> int | None:
    if header is None:
        return None
    match = _COMPAT.search(header)
    return int(match[1]) if match else None


def check_params(path: str, params: Mapping[str, str], accepted: frozenset[str]) -> None:
    """Elasticsearch refuses query parameters a handler does not know (BaseRestHandler)."""
    unknown = sorted(p for p in params if p not in accepted and p not in GLOBAL_PARAMS)
    if not unknown:
        return
    known = sorted(accepted | {"error_trace"})
    parts = []
    for name in unknown:
        candidates = [c for c in known if _similarity(name, c) > 0.5]
        candidates.sort(key=lambda c: (-_similarity(name, c), c))
        hint = ""
        if candidates:
            listed = "[" + ", ".join(candidates) + "]"
            hint = f" -> did you mean {'any of ' if len(candidates) > 1 else ''}{listed}?"
        parts.append(f"[{name}]{hint}")
    noun = "parameters" if len(unknown) > 1 else "parameter"
    raise bad_request(
        "illegal_argument_exception", f"request [{path}] contains unrecognized {noun}: {', '.join(parts)}"
    )


def _similarity(a: str, b: str) -> float:
    """Lucene's LevenshteinDistance: 1 - edit distance / longest length."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    longest = max(len(a), len(b)) or 1
    return 1.0 - previous[-1] / longest
