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
from collections.abc import Iterable, Mapping
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
    # Actions recorded as intended and not settled yet, by endpoint id (entries of kind `intent`).
    intents: Mapping[str, Entry] = field(default_factory=dict)

    @classmethod
    def new(cls, workspace: str) -> State:
        return cls(str(uuid.uuid4()), 0, workspace, random_tokens.token_hex(16))

    def with_endpoint(self, inference_id: str, record: EndpointRecord) -> State:
        return replace(self, endpoints={**self.endpoints, inference_id: record})

    def without(self, inference_id: str) -> State:
        """The state no longer managing the endpoint: its record and any intent for it go."""
        return replace(
            self,
            endpoints={k: v for k, v in self.endpoints.items() if k != inference_id},
            intents={k: v for k, v in self.intents.items() if k != inference_id},
        )

    def bumped(self) -> State:
        return replace(self, serial=self.serial + 1)

    def to_json(self) -> dict[str, Any]:
        out = {
            "format_version": STATE_FORMAT,
            "lineage": self.lineage,
            "serial": self.serial,
            "workspace": self.workspace,
            "salt": self.salt,
            "endpoints": {k: v.to_json() for k, v in sorted(self.endpoints.items())},
        }
        if self.intents:  # absent when none: the form written before intents existed
            out["intents"] = [e.to_json() for _, e in sorted(self.intents.items())]
        return out

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
        intents = ",".join(e.json_text for _, e in sorted(self.intents.items()))
        tail = f',"intents":[{intents}]' if self.intents else ""
        return json.dumps(head, separators=(",", ":"))[:-1] + ',"endpoints":{' + records + "}" + tail + "}"

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
            {e.inference_id: e for e in map(Entry.from_json, data.get("intents") or ())},
        )


INTENT, DONE, FORGOTTEN, DROPPED = "intent", "done", "forgotten", "dropped"
ENTRY_KINDS = (INTENT, DONE, FORGOTTEN, DROPPED)


@dataclass(frozen=True)
class Entry:
    """One step of a run, as the journal keeps it: an intent before a request, then how it ended.

    `intent` carries `op` (`put`: `record` is what the state records once the endpoint reads back
    as asked, its `applied` still empty; `delete`); `done` carries the record now held."""

    kind: str
    inference_id: str
    op: str = ""
    record: EndpointRecord | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "id": self.inference_id}
        if self.op:
            out["op"] = self.op
        if self.record is not None:
            out["record"] = self.record.to_json()
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Entry:
        kind, op = data["kind"], data.get("op", "")
        if kind not in ENTRY_KINDS or (kind == INTENT and op not in ("put", "delete")):
            raise ValueError(f"unknown journal entry {kind!r} {op!r}")
        record = data.get("record")
        return cls(kind, str(data["id"]), op, EndpointRecord.from_json(record) if record else None)

    @functools.cached_property
    def json_text(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True)


def replay(state: State, entries: Iterable[Entry], serial: int | None = None) -> State:
    """The state once `entries` are applied in order (a later entry for an id wins); `serial`, when
    given, is the serial of the journal document that carried them."""
    endpoints = dict(state.endpoints)
    intents = dict(state.intents)
    for entry in entries:
        if entry.kind == INTENT:
            intents[entry.inference_id] = entry
            continue
        intents.pop(entry.inference_id, None)
        if entry.kind == DONE and entry.record is not None:
            endpoints[entry.inference_id] = entry.record
        elif entry.kind == FORGOTTEN:
            endpoints.pop(entry.inference_id, None)
    return replace(
        state, serial=state.serial if serial is None else serial, endpoints=endpoints, intents=intents
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
