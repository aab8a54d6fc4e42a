"""State storage: what was last applied, per workspace, and the lock that serialises writers.

`State` is a value: lineage, serial, a salt for secret digests, and per managed endpoint the
configuration last applied (as the server echoes it, secrets removed), the salted digests of its
secrets, its lifecycle options and whether its deployment failed (`tainted`).

Two backends behind one interface (`Backend`), both held to one conformance test:
- `ClusterBackend` (default): documents `state-<workspace>` and `lock-<workspace>` in the index
  `reconciler-state` of the managed cluster; writes use `if_seq_no`/`if_primary_term`, the lock is
  created with `op_type=create` and taken over only once expired.
- `FileBackend`: a JSON file written atomically (temp file + rename) and a lock file beside it.
Reading takes no lock: `plan`, `drift` and `status` need only read access.
"""

from __future__ import annotations

import asyncio
import functools
import getpass
import json
import os
import secrets as random_tokens
import socket
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from reconciler.client import Elasticsearch, RawJson, TransportError

STATE_FORMAT = 1
STATE_INDEX = "reconciler-state"
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


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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

    @classmethod
    def new(cls, operation: str, lease: float = DEFAULT_LEASE) -> LockInfo:
        who = f"{getpass.getuser()}@{socket.gethostname()}"
        return cls(uuid.uuid4().hex, who, os.getpid(), operation, now_iso(), time.time() + lease, lease)

    def expired(self, now: float | None = None) -> bool:
        return (now if now is not None else time.time()) >= self.expires

    def renewed(self) -> LockInfo:
        return replace(self, expires=time.time() + self.lease)

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


@dataclass(frozen=True)
class Snapshot:
    """A state as read, with the token that a conditional write must present."""

    state: State | None
    token: Any


class Backend(Protocol):
    """The state storage interface; see tests/test_state.py for the contract both backends meet."""

    name: str

    async def read(self) -> Snapshot: ...

    async def write(self, state: State, token: Any) -> Any:
        """Write if the stored state is still the one `token` came from; returns the new token."""

    async def lock(self, info: LockInfo) -> LockInfo:
        """Take the lock, or raise LockHeldError naming the holder; an expired lock is taken over."""

    async def renew(self, info: LockInfo) -> LockInfo: ...

    async def unlock(self, lock_id: str) -> None:
        """Remove the lock with that id; StateError when the current lock has another id."""

    async def current_lock(self) -> LockInfo | None: ...


# -- the file backend --------------------------------------------------------------------------


class FileBackend:
    """State in a JSON file, replaced atomically; the lock is a file created exclusively beside it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.name = f"file:{path}"

    async def read(self) -> Snapshot:
        try:
            text = self.path.read_text()
            token = _stat_token(self.path)
        except FileNotFoundError:
            return Snapshot(None, None)
        try:
            state = State.from_json(json.loads(text))
        except (ValueError, KeyError, TypeError) as error:
            raise StateError(f"cannot read the state in {self.path}: {error}") from None
        return Snapshot(state, token)

    async def write(self, state: State, token: Any) -> Any:
        try:
            current = _stat_token(self.path)
        except FileNotFoundError:
            current = None
        if current != token:
            raise StateConflictError(f"the state in {self.path} changed since it was read")
        # Serialise and write off the event loop: other actions go on meanwhile (and batch up).
        await asyncio.to_thread(_write_atomically, self.path, state.dumps())
        return _stat_token(self.path)

    async def lock(self, info: LockInfo) -> LockInfo:
        while True:
            try:
                fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = await self.current_lock()
                if holder is None:  # released between our attempt and the read: try again
                    continue
                if not holder.expired():
                    raise LockHeldError(holder) from None
                # Take over an expired lock: only one taker's rename succeeds.
                stale = self.lock_path.with_name(f"{self.lock_path.name}.{info.id}.stale")
                try:
                    os.rename(self.lock_path, stale)
                    stale.unlink()
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(info.__dict__, handle)
            return info

    async def renew(self, info: LockInfo) -> LockInfo:
        holder = await self.current_lock()
        if holder is None or holder.id != info.id:
            raise StateError(f"lock {info.id} is no longer held")
        renewed = info.renewed()
        _write_atomically(self.lock_path, json.dumps(renewed.__dict__))
        return renewed

    async def unlock(self, lock_id: str) -> None:
        holder = await self.current_lock()
        if holder is None:
            raise StateError("the state is not locked")
        if holder.id != lock_id:
            raise StateError(f"{lock_id} is not the current lock ({holder.describe()})")
        self.lock_path.unlink(missing_ok=True)

    async def current_lock(self) -> LockInfo | None:
        try:
            text = self.lock_path.read_text()
            modified = self.lock_path.stat().st_mtime
        except FileNotFoundError:
            return None
        try:
            return LockInfo(**json.loads(text))
        except (ValueError, TypeError):
            # A holder killed while writing it: held until a lease past its last change, and
            # `state unlock damaged` removes it at once.
            created = datetime.fromtimestamp(modified, UTC).isoformat(timespec="seconds")
            return LockInfo(
                "damaged", "(unreadable lock file)", 0, "unknown", created, modified + DEFAULT_LEASE
            )


def _stat_token(path: Path) -> tuple[int, int, int]:
    """Identifies a version of the file without reading it (replaced files get a new inode)."""
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- the cluster backend -----------------------------------------------------------------------

# The state body is stored, not indexed: nothing in it needs searching.
INDEX_BODY = {
    "settings": {"index": {"number_of_shards": 1, "auto_expand_replicas": "0-1", "hidden": True}},
    "mappings": {
        "dynamic": False,
        "properties": {"kind": {"type": "keyword"}, "body": {"type": "object", "enabled": False}},
    },
}


class ClusterBackend:
    """State and lock as documents in the managed cluster, so every CI runner sees the same state."""

    def __init__(self, es: Elasticsearch, workspace: str, index: str = STATE_INDEX) -> None:
        self.es = es
        self.index = index
        self.state_id = f"state-{workspace}"
        self.lock_id = f"lock-{workspace}"
        self.name = f"cluster:{index}/{self.state_id}"
        self._index_ready = False

    async def _ensure_index(self) -> None:
        if not self._index_ready:
            await self.es.ensure_index(self.index, INDEX_BODY)
            self._index_ready = True

    async def read(self) -> Snapshot:
        found = await self.es.get_document(self.index, self.state_id)
        if found is None:
            return Snapshot(None, None)
        source, seq_no, term = found
        try:
            return Snapshot(State.from_json(source["body"]), (seq_no, term))
        except (KeyError, TypeError, ValueError) as error:
            raise StateError(f"cannot read the state document {self.state_id}: {error}") from None

    async def write(self, state: State, token: Any) -> Any:
        await self._ensure_index()
        # The cached encoding of each record: a write costs a join, not re-encoding the whole state.
        source = RawJson('{"kind":"state","body":' + state.dumps() + "}")
        try:
            written = await self.es.put_document(
                self.index, self.state_id, source, expect=token, create=token is None
            )
        except TransportError as error:
            if not error.maybe_applied:
                raise
            written = await self._written_anyway(state, error)
        if written is None:
            raise StateConflictError(f"the state document {self.state_id} changed since it was read")
        return written

    async def _written_anyway(self, state: State, cause: TransportError) -> Any:
        """The answer to a state write was lost: it happened if the stored state is the one sent."""
        found = await self.es.get_document(self.index, self.state_id)
        if found is not None and found[0].get("body") == state.to_json():
            return found[1], found[2]
        raise cause

    async def lock(self, info: LockInfo) -> LockInfo:
        await self._ensure_index()
        while True:
            try:
                created = await self.es.put_document(
                    self.index,
                    self.lock_id,
                    {"kind": "lock", "body": info.__dict__},
                    expect=None,
                    create=True,
                )
            except TransportError as error:
                if not error.maybe_applied:
                    raise
                created = None  # read back below: if the lock stored is ours, we hold it
            if created is not None:
                return info
            found = await self.es.get_document(self.index, self.lock_id)
            if found is None:
                continue
            holder = LockInfo(**found[0]["body"])
            if holder.id == info.id:
                return info
            if not holder.expired():
                raise LockHeldError(holder)
            # Take over an expired lock with a compare-and-set on the stale document.
            taken = await self.es.put_document(
                self.index, self.lock_id, {"kind": "lock", "body": info.__dict__}, expect=(found[1], found[2])
            )
            if taken is not None:
                return info

    async def renew(self, info: LockInfo) -> LockInfo:
        found = await self.es.get_document(self.index, self.lock_id)
        if found is None or found[0]["body"].get("id") != info.id:
            raise StateError(f"lock {info.id} is no longer held")
        renewed = info.renewed()
        written = await self.es.put_document(
            self.index, self.lock_id, {"kind": "lock", "body": renewed.__dict__}, expect=(found[1], found[2])
        )
        if written is None:
            raise StateError(f"lock {info.id} is no longer held")
        return renewed

    async def unlock(self, lock_id: str) -> None:
        found = await self.es.get_document(self.index, self.lock_id)
        if found is None:
            raise StateError("the state is not locked")
        holder = LockInfo(**found[0]["body"])
        if holder.id != lock_id:
            raise StateError(f"{lock_id} is not the current lock ({holder.describe()})")
        await self.es.delete_document(self.index, self.lock_id, expect=(found[1], found[2]))

    async def current_lock(self) -> LockInfo | None:
        found = await self.es.get_document(self.index, self.lock_id)
        return LockInfo(**found[0]["body"]) if found is not None else None


def backend_for(spec: str, es: Elasticsearch, workspace: str) -> Backend:
    """`cluster` or `file:PATH` (DESIGN.md §4)."""
    if spec == "cluster":
        return ClusterBackend(es, workspace)
    if spec.startswith("file:") and len(spec) > 5:
        path = Path(spec[5:])
        if workspace != "default":
            path = path.with_name(f"{path.stem}.{workspace}{path.suffix}")
        return FileBackend(path)
    raise StateError(f"--state must be cluster or file:PATH, not {spec!r}")
