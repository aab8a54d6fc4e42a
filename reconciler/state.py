"""State records: what was last applied, per workspace, and who holds the lock (values only, no I/O).

`State` is a value: lineage, serial, a salt for secret digests, and per managed endpoint the
configuration last applied (as the server echoes it, secrets removed), the salted digests of its
secrets, its lifecycle options and whether its deployment failed (`tainted`). `LockInfo` is the
lock record. Where they are stored, and the lease that keeps a lock alive, is `reconciler.storage`.
"""

from __future__ import annotations

import functools
import json
import secrets as random_tokens
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

STATE_FORMAT = 1
DEFAULT_LEASE = 120.0


@dataclass(frozen=True)
class EndpointRecord:
    """What the state remembers of one managed endpoint."""

    task_type: str
    service: str
    # What the manifest asked for, and what the server echoed, at the last apply (both without
    # secrets, in the server's form): a manifest change and drift are told apart against them.
    requested: Mapping[str, Any]
    applied: Mapping[str, Any]
    secret_digests: Mapping[str, str] = field(default_factory=dict)
    lifecycle: Mapping[str, Any] = field(default_factory=dict)
    applied_at: str = ""
    tainted: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "task_type": self.task_type,
            "service": self.service,
            "requested": self.requested,
            "applied": self.applied,
            "secret_digests": dict(self.secret_digests),
            "lifecycle": dict(self.lifecycle),
            "applied_at": self.applied_at,
            "tainted": self.tainted,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EndpointRecord:
        return cls(**data)

    @functools.cached_property
    def json_text(self) -> str:
        """The record as compact JSON, encoded once: a state write joins these, it does not re-encode."""
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class State:
    lineage: str
    serial: int
    workspace: str
    salt: str
    endpoints: Mapping[str, EndpointRecord] = field(default_factory=dict)

    @classmethod
    def new(cls, workspace: str) -> State:
        return cls(str(uuid.uuid4()), 0, workspace, random_tokens.token_hex(16))

    def with_endpoint(self, inference_id: str, record: EndpointRecord) -> State:
        return replace(self, endpoints={**self.endpoints, inference_id: record})

    def without(self, inference_id: str) -> State:
        return replace(self, endpoints={k: v for k, v in self.endpoints.items() if k != inference_id})

    def bumped(self) -> State:
        return replace(self, serial=self.serial + 1)

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": STATE_FORMAT,
            "lineage": self.lineage,
            "serial": self.serial,
            "workspace": self.workspace,
            "salt": self.salt,
            "endpoints": {k: v.to_json() for k, v in sorted(self.endpoints.items())},
        }

    def dumps(self) -> str:
        """Compact JSON equal to to_json(), built from each record's cached encoding."""
        head = {
            "format_version": STATE_FORMAT,
            "lineage": self.lineage,
            "serial": self.serial,
            "workspace": self.workspace,
            "salt": self.salt,
        }
        records = ",".join(f"{_json_key(k)}:{r.json_text}" for k, r in sorted(self.endpoints.items()))
        return json.dumps(head, separators=(",", ":"))[:-1] + ',"endpoints":{' + records + "}}"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> State:
        if data.get("format_version") != STATE_FORMAT:
            raise StateError(f"state format_version {data.get('format_version')!r} is not supported")
        return cls(
            data["lineage"],
            int(data["serial"]),
            data["workspace"],
            data["salt"],
            {k: EndpointRecord.from_json(v) for k, v in data["endpoints"].items()},
        )


def _json_key(key: str) -> str:
    # Inference ids need no escaping; anything else goes through the encoder.
    return (
        f'"{key}"'
        if key.isascii() and key.isprintable() and '"' not in key and "\\" not in key
        else json.dumps(key)
    )


# -- locks -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockInfo:
    """Who holds the lock, doing what, since when, and until when unless renewed."""

    id: str
    who: str
    pid: int
    operation: str
    created: str
    expires: float
    lease: float = DEFAULT_LEASE

    def expired(self, now: float) -> bool:
        return now >= self.expires

    def renewed(self, now: float) -> LockInfo:
        return replace(self, expires=now + self.lease)

    def describe(self) -> str:
        return f"lock {self.id} held by {self.who} (pid {self.pid}) for {self.operation} since {self.created}"


class StateError(Exception):
    """The state cannot be read or written as asked."""


class StateConflictError(StateError):
    """Someone else wrote the state since it was read."""


class LockHeldError(StateError):
    def __init__(self, holder: LockInfo) -> None:
        super().__init__(f"the state is locked: {holder.describe()}")
        self.holder = holder
