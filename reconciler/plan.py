"""The Plan: an immutable value with a versioned JSON form, rendered for people and executed by apply.

A Plan lists one `Change` per managed endpoint (no-ops included), the unmanaged endpoints it saw,
the errors that stop it from being applied, and warnings. A change carries everything apply does:
its `action`, the HTTP `requests` to send in order (method, path, query, body), whether to wait for
a deployment and which, and the state record's inputs (`before`/`after`, `lifecycle`). Fields that
explain a change (`reason`, `reasons`, `diff`, `replace_paths`, `references`) are for display only:
the applier never reads them. `desired` is the endpoint's body as the manifest wrote it; in it and
in the request bodies each secret is its `${...}` reference, and `secrets` holds, per secret path,
that reference and the salted digest planned, so that applying a saved plan can tell whether the
secret still is the one reviewed. No form of a plan holds a secret value.

A saved plan may be signed: with a key (`RECONCILER_PLAN_KEY`, read by the callers), `dumps` adds
a top-level `signature`, an HMAC-SHA256 of the canonical JSON of the rest (sorted keys, no
spaces), and `loads` refuses a plan whose signature is missing or does not match; without a key it
refuses a signed plan, whose signature it cannot check.

Drift `Finding`s are values of the same kind: what `drift` reports, rendered like a plan.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from reconciler import __version__

FORMAT_VERSION = 2  # 2: changes carry their requests and desired body; adopt and forget
# The environment variable holding the key that signs saved plans (read by the callers of dumps/loads).
PLAN_KEY_VARIABLE = "RECONCILER_PLAN_KEY"


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"
    NO_OP = "no-op"
    READ = "read"
    ADOPT = "adopt"
    FORGET = "forget"

    @property
    def symbol(self) -> str:
        return _SYMBOLS[self.value]


_SYMBOLS = {
    "create": "+",
    "update": "~",
    "replace": "-/+",
    "delete": "-",
    "no-op": " ",
    "read": "<=",
    "adopt": "=",
    "forget": "-=",
}


# The primary reason is the first of these that applies (DESIGN.md §8).
REASONS = (
    "forced",
    "tainted",
    "missing-from-cluster",
    "removed-from-manifests",
    "destroy",
    "new",
    "manifest-changed",
    "drift",
    "secret-rotated",
    "secret-unknown",
    # Why a change `_update` makes elsewhere is a replace on this version (after the cause): on 8.16
    # to 9.3 an `_update` resets chunking_settings (C5).
    "update-resets-chunking",
    # Reasons of state-only actions (adopt, forget): nothing is sent to the cluster.
    "not-in-state",
    "healed",
    "lifecycle-changed",
)


def primary_reason(reasons: Sequence[str]) -> str | None:
    ordered = [r for r in REASONS if r in reasons]
    return ordered[0] if ordered else None


@dataclass(frozen=True)
class DiffEntry:
    path: str
    before: Any
    after: Any


@dataclass(frozen=True)
class Request:
    """One HTTP request apply sends; secrets in `body` are their `${...}` references until sent."""

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    body: Mapping[str, Any] | None = None

    def line(self) -> str:
        """`METHOD /path?query`, as the plan shows it."""
        query = "&".join(f"{k}={v}" for k, v in self.query.items())
        return f"{self.method} {self.path}" + (f"?{query}" if query else "")

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "query": dict(self.query), "body": self.body}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Request:
        return cls(str(data["method"]), str(data["path"]), dict(data.get("query") or {}), data.get("body"))


@dataclass(frozen=True)
class PlannedSecret:
    """A secret as a plan may hold it: where it comes from and the digest it had when planned."""

    reference: str
    digest: str


@dataclass(frozen=True)
class Change:
    inference_id: str
    task_type: str
    service: str
    action: Action
    reasons: tuple[str, ...] = ()
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None
    diff: tuple[DiffEntry, ...] = ()
    replace_paths: tuple[str, ...] = ()
    references: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: {"pipelines": (), "indexes": ()}
    )
    requests: tuple[Request, ...] = ()
    wait: bool = False
    deployment_id: str | None = None
    wait_timeout: float | None = None
    fingerprint: str | None = None
    desired: Mapping[str, Any] | None = None
    secrets: Mapping[str, PlannedSecret] = field(default_factory=dict)
    lifecycle: Mapping[str, Any] = field(default_factory=dict)

    @property
    def reason(self) -> str | None:
        return primary_reason(self.reasons)

    @property
    def live_task_type(self) -> str:
        """The task type the endpoint has in the cluster (a replace may change it): where the
        DELETE and its reference dry run must go."""
        return str((self.before or {}).get("task_type") or self.task_type)

    @property
    def referenced(self) -> bool:
        return any(self.references.get(kind) for kind in ("pipelines", "indexes"))


@dataclass(frozen=True)
class Unmanaged:
    inference_id: str
    task_type: str
    service: str
    preconfigured: bool


@dataclass(frozen=True)
class Plan:
    cluster: Mapping[str, Any]
    state: Mapping[str, Any]
    changes: tuple[Change, ...]
    unmanaged: tuple[Unmanaged, ...] = ()
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    tool_version: str = __version__
    format_version: int = FORMAT_VERSION
    # The project environment (`--env`) planned for; apply refuses the plan in another. Optional in
    # format 2: a plan without it was made without --env.
    environment: str | None = None
    # `--allow-takeover` was given: apply may act on endpoints another workspace's state on the
    # same cluster manages. Optional in format 2: absent means not allowed.
    allow_takeover: bool = False

    def summary(self) -> dict[str, int]:
        counts = {a.value.replace("-", "_"): 0 for a in Action}
        for change in self.changes:
            counts[change.action.value.replace("-", "_")] += 1
        return counts

    @property
    def has_changes(self) -> bool:
        return any(c.action is not Action.NO_OP for c in self.changes)

    def by_id(self, inference_id: str) -> Change | None:
        return next((c for c in self.changes if c.inference_id == inference_id), None)

    # -- the JSON form -------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "tool_version": self.tool_version,
            **({"environment": self.environment} if self.environment is not None else {}),
            **({"allow_takeover": True} if self.allow_takeover else {}),
            "cluster": dict(self.cluster),
            "state": dict(self.state),
            "changes": [_change_to_json(c) for c in self.changes],
            "summary": self.summary(),
            "unmanaged": [dict(u.__dict__) for u in self.unmanaged],
            "errors": list(self.errors),
            "warnings": list(self.warnings),
        }

    def dumps(self, key: str | None = None) -> str:
        """The JSON form as a plan file holds it; with a key, signed (see `signature`)."""
        data = self.to_json()
        if key:
            data = json.loads(json.dumps(data))  # what a reader will see: tuples as lists
            data["signature"] = signature(data, key)
        return json.dumps(data, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise PlanFormatError(
                f"plan format_version {version!r} is not supported (this tool reads {FORMAT_VERSION})"
            )
        try:
            return cls(
                cluster=dict(data["cluster"]),
                state=dict(data["state"]),
                changes=tuple(_change_from_json(c) for c in data["changes"]),
                unmanaged=tuple(Unmanaged(**u) for u in data.get("unmanaged", [])),
                errors=tuple(data.get("errors", [])),
                warnings=tuple(data.get("warnings", [])),
                tool_version=str(data.get("tool_version", "")),
                format_version=version,
                environment=_environment(data.get("environment")),
                allow_takeover=_flag(data.get("allow_takeover", False), "allow_takeover"),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise PlanFormatError(f"not a plan file: {error}") from None

    @classmethod
    def loads(cls, text: str, key: str | None = None) -> Plan:
        """A plan file; with a key it must carry a matching signature, without one no signature."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise PlanFormatError(f"not a plan file: {error}") from None
        if not isinstance(data, dict):
            raise PlanFormatError("not a plan file: expected a JSON object")
        _verify(data, key)
        return cls.from_json(data)


def signature(data: Mapping[str, Any], key: str) -> str:
    """HMAC-SHA256 of the plan's canonical JSON (sorted keys, compact), its `signature` left out."""
    rest = {k: v for k, v in data.items() if k != "signature"}
    canonical = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "hmac-sha256:" + hmac.new(key.encode(), canonical.encode(), hashlib.sha256).hexdigest()


def _verify(data: Mapping[str, Any], key: str | None) -> None:
    """Refuse a plan whose signature is missing or wrong (with a key), or that cannot be checked."""
    found = data.get("signature")
    if not key:
        if found is not None:
            raise PlanFormatError(
                f"the plan is signed: set {PLAN_KEY_VARIABLE} to check its signature before it is used"
            )
        return
    if found is None:
        raise PlanFormatError(f"the plan is not signed, and {PLAN_KEY_VARIABLE} requires signed plans")
    if not isinstance(found, str) or not hmac.compare_digest(found.encode(), signature(data, key).encode()):
        raise PlanFormatError(
            "the plan's signature does not match: it was changed after it was signed, or signed with another key"
        )


def flatten(view: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted leaf paths of an endpoint view; lists and empty mappings are leaves."""
    flat: dict[str, Any] = {}
    for key, value in view.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


@dataclass(frozen=True)
class Finding:
    """One way the cluster moved away from what was last applied."""

    id: str
    inference_id: str
    path: str
    applied: Any
    live: Any
    kind: str  # changed | removed | added

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class PlanFormatError(ValueError):
    """A plan file this tool cannot read."""


def _environment(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError("environment must be a string")
    return value


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false")
    return value


def _change_to_json(change: Change) -> dict[str, Any]:
    return {
        "inference_id": change.inference_id,
        "task_type": change.task_type,
        "service": change.service,
        "action": change.action.value,
        "reason": change.reason,
        "reasons": list(change.reasons),
        "before": change.before,
        "after": change.after,
        "diff": [{"path": d.path, "before": d.before, "after": d.after} for d in change.diff],
        "replace_paths": list(change.replace_paths),
        "references": {k: list(v) for k, v in change.references.items()},
        "requests": [r.to_json() for r in change.requests],
        "wait": change.wait,
        "deployment_id": change.deployment_id,
        "wait_timeout": change.wait_timeout,
        "fingerprint": change.fingerprint,
        "desired": change.desired,
        "secrets": {k: {"reference": s.reference, "digest": s.digest} for k, s in change.secrets.items()},
        "lifecycle": dict(change.lifecycle),
    }


def _change_from_json(data: Mapping[str, Any]) -> Change:
    return Change(
        inference_id=data["inference_id"],
        task_type=data["task_type"],
        service=data["service"],
        action=Action(data["action"]),
        reasons=tuple(data.get("reasons", [])),
        before=data.get("before"),
        after=data.get("after"),
        diff=tuple(DiffEntry(d["path"], d["before"], d["after"]) for d in data.get("diff", [])),
        replace_paths=tuple(data.get("replace_paths", [])),
        references={k: tuple(v) for k, v in data.get("references", {"pipelines": [], "indexes": []}).items()},
        requests=tuple(Request.from_json(r) for r in data.get("requests", [])),
        wait=bool(data.get("wait", False)),
        deployment_id=data.get("deployment_id"),
        wait_timeout=data.get("wait_timeout"),
        fingerprint=data.get("fingerprint"),
        desired=data.get("desired"),
        secrets={k: PlannedSecret(v["reference"], v["digest"]) for k, v in data.get("secrets", {}).items()},
        lifecycle=dict(data.get("lifecycle", {})),
    )
