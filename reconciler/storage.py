"""State storage: where the state and its lock live.

Two backends behind one interface (`Backend`), both held to one conformance test:
- `ClusterBackend` (default): documents in the index `reconciler-state` of the managed cluster
  (below); the lock is created with `op_type=create` and taken over only once expired.
- `FileBackend`: a JSON file written atomically (temp file + rename) and a lock file beside it.

A state is written two ways: `write` stores it whole (a snapshot); `append` adds journal entries
(`reconciler.state.Entry`: intent / done / forgotten / dropped) after the state last read or
written, so that recording an action costs that action's bytes, not the whole state's. A reader
gets the snapshot with the journal replayed. The file backend rewrites its file either way.

The cluster's documents (ids; each `{"kind": K, "body": ...}`, `body` stored but not indexed):
- `state-<workspace>`, kind `state`: the snapshot, `body` = `State.to_json()` (format_version 1;
  `intents` present only when some are pending; documents written before journals existed are
  read as they are: a snapshot with an empty journal);
- `journal-<workspace>-<lineage>-<serial>-<k>`, kind `journal`, k = 0, 1, 2 ...: the journal after
  the snapshot of that lineage and serial, `body` = `{"serial": S, "entries": [entry, ...]}` where
  S is the state's serial once the document is replayed. A reader replays k = 0, 1 ... up to the
  first missing one. A new snapshot starts a new journal (its serial is higher), and the documents
  of the old one are deleted after it;
- `lock-<workspace>`, kind `lock`: the lock record (`LockInfo`).
Concurrent writers are kept apart by the lock; `if_seq_no` on the snapshot and `op_type=create`
on each journal document refuse a writer that read an older state.

Reading takes no lock: `plan`, `drift` and `status` need only read access. Holding the lock for
a block of work (its lease renewed, signals releasing it) is `reconciler.lease`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from reconciler.client import Elasticsearch, ElasticsearchError, RawJson, TransportError
from reconciler.state import (
    DEFAULT_LEASE,
    Entry,
    LockHeldError,
    LockInfo,
    State,
    StateConflictError,
    StateError,
    replay,
)

STATE_INDEX = "reconciler-state"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_lock(operation: str, lease: float = DEFAULT_LEASE) -> LockInfo:
    """A lock record for this process: who (user@host, pid), doing what, since when."""
    who = f"{getpass.getuser()}@{socket.gethostname()}"
    return LockInfo(uuid.uuid4().hex, who, os.getpid(), operation, now_iso(), time.time() + lease, lease)


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

    async def append(self, entries: Sequence[Entry], after: State, token: Any) -> Any:
        """Add `entries` after the stored state `token` (not None) came from, if it is still the
        stored one; `after` is that state with them replayed (and perhaps later ones: a backend
        that rewrites whole files writes it). Returns the new token."""

    def journal(self, token: Any) -> tuple[int, int]:
        """(bytes of journal after the snapshot, bytes of the snapshot) at `token`: when the first
        outgrows the second, a new snapshot is due."""

    async def lock(self, info: LockInfo) -> LockInfo:
        """Take the lock, or raise LockHeldError naming the holder; an expired lock is taken over."""

    async def renew(self, info: LockInfo) -> LockInfo: ...

    async def unlock(self, lock_id: str) -> None:
        """Remove the lock with that id; StateError when the current lock has another id."""

    async def current_lock(self) -> LockInfo | None: ...

    async def others(self) -> dict[str, State]:
        """The states of the other workspaces beside this one that manage the same cluster."""


# -- the file backend --------------------------------------------------------------------------


class FileBackend:
    """State in a JSON file, replaced atomically; the lock is a file created exclusively beside it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.name = f"file:{path}"

    async def others(self) -> dict[str, State]:
        # A state file records no cluster: files beside it may be other clusters' (staging, prod).
        return {}

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
        writing = asyncio.ensure_future(asyncio.to_thread(_write_atomically, self.path, state.dumps()))
        try:
            await asyncio.shield(writing)
        except asyncio.CancelledError:  # a signal: the thread cannot stop, so the lock waits for it
            await writing
            raise
        return _stat_token(self.path)

    async def append(self, entries: Sequence[Entry], after: State, token: Any) -> Any:
        # A local file is rewritten whole: cheap here, and never half-written (temp file + rename).
        return await self.write(after, token)

    def journal(self, token: Any) -> tuple[int, int]:
        return 0, token[2] if token is not None else 0

    async def lock(self, info: LockInfo) -> LockInfo:
        while True:
            try:
                fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = await self.current_lock()
                if holder is None:  # released between our attempt and the read: try again
                    continue
                if not holder.expired(time.time()):
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
        renewed = info.renewed(time.time())
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


@dataclass(frozen=True)
class Position:
    """The cluster backend's token: the snapshot document's version, and the journal after it."""

    seq_no: int
    term: int
    lineage: str
    serial: int  # the snapshot's: its journal's documents are named after it
    length: int = 0  # journal documents after the snapshot
    journal_bytes: int = 0
    snapshot_bytes: int = 0


JOURNAL_READ_WINDOW = 16  # journal documents read at once
MOST_WORKSPACES = 1000  # states listed by `others` (a search returns at most this many hits)


class ClusterBackend:
    """State and lock as documents in the managed cluster, so every CI runner sees the same state."""

    def __init__(self, es: Elasticsearch, workspace: str, index: str = STATE_INDEX) -> None:
        self.es = es
        self.index = index
        self.workspace = workspace
        self.state_id = f"state-{workspace}"
        self.lock_id = f"lock-{workspace}"
        self.name = f"cluster:{index}/{self.state_id}"
        self._index_ready = False

    async def _ensure_index(self) -> None:
        if not self._index_ready:
            await self.es.ensure_index(self.index, INDEX_BODY)
            self._index_ready = True

    def journal_id(self, lineage: str, serial: int, k: int) -> str:
        return f"journal-{self.workspace}-{lineage}-{serial}-{k}"

    async def others(self) -> dict[str, State]:
        """Every other workspace's state in the index: one search for the snapshots (a URI search,
        a GET, so that a plan still only reads), then each read as its backend reads it."""
        response = await self.es.request(
            "GET",
            f"/{self.index}/_search",
            params={"q": "kind:state", "_source": "false", "size": str(MOST_WORKSPACES)},
            ok=(404,),  # no state index yet: no workspace at all
        )
        if response.status == 404:
            return {}
        ids = [str(hit["_id"]) for hit in response.body["hits"]["hits"]]
        names = sorted(i.removeprefix("state-") for i in ids if i.startswith("state-") and i != self.state_id)
        snapshots = await asyncio.gather(*(ClusterBackend(self.es, n, self.index).read() for n in names))
        return {n: snap.state for n, snap in zip(names, snapshots, strict=True) if snap.state is not None}

    async def read(self) -> Snapshot:
        while True:
            found = await self.es.get_document(self.index, self.state_id)
            if found is None:
                return Snapshot(None, None)
            source, seq_no, term = found
            try:
                state = State.from_json(source["body"])
            except (KeyError, TypeError, ValueError) as error:
                raise StateError(f"cannot read the state document {self.state_id}: {error}") from None
            position = Position(seq_no, term, state.lineage, state.serial, snapshot_bytes=len(state.dumps()))
            state, position = await self._replayed(state, position)
            # A new snapshot deletes the journal before it: read again if one came meanwhile.
            if await self._snapshot_version() == (seq_no, term):
                return Snapshot(state, position)

    async def _replayed(self, state: State, position: Position) -> tuple[State, Position]:
        """The snapshot with its journal replayed, read a window of documents at a time."""
        length, size = 0, 0
        while True:
            window = min(JOURNAL_READ_WINDOW, max(1, length))
            ids = [self.journal_id(position.lineage, position.serial, length + i) for i in range(window)]
            documents = await asyncio.gather(*(self.es.get_document(self.index, i) for i in ids))
            for doc_id, document in zip(ids, documents, strict=True):
                if document is None:
                    return state, replace(position, length=length, journal_bytes=size)
                try:
                    body = document[0]["body"]
                    state = replay(state, [Entry.from_json(e) for e in body["entries"]], int(body["serial"]))
                except (KeyError, TypeError, ValueError) as error:
                    raise StateError(f"cannot read the state journal document {doc_id}: {error}") from None
                length += 1
                size += len(json.dumps(document[0], separators=(",", ":")))

    async def _snapshot_version(self) -> tuple[int, int] | None:
        response = await self.es.request(
            "GET", f"/{self.index}/_doc/{self.state_id}", params={"_source": "false"}, ok=(404,)
        )
        if response.status == 404 or not response.body.get("found"):
            return None
        return response.body["_seq_no"], response.body["_primary_term"]

    async def write(self, state: State, token: Any) -> Any:
        await self._ensure_index()
        # The cached encoding of each record: a write costs a join, not re-encoding the whole state.
        text = state.dumps()
        source = RawJson('{"kind":"state","body":' + text + "}")
        expect = (token.seq_no, token.term) if token is not None else None
        try:
            written = await self.es.put_document(
                self.index, self.state_id, source, expect=expect, create=token is None
            )
        except TransportError as error:
            if not error.maybe_applied:
                raise
            written = await self._written_anyway(state, error)
        if written is None:
            raise StateConflictError(f"the state document {self.state_id} changed since it was read")
        if token is not None and token.length:
            await self._delete_journal(token)
        return Position(written[0], written[1], state.lineage, state.serial, snapshot_bytes=len(text))

    async def _written_anyway(self, state: State, cause: TransportError) -> Any:
        """The answer to a state write was lost: it happened if the stored state is the one sent."""
        found = await self.es.get_document(self.index, self.state_id)
        if found is not None and found[0].get("body") == state.to_json():
            return found[1], found[2]
        raise cause

    async def _delete_journal(self, old: Position) -> None:
        """The journal a new snapshot replaces; one left behind (a run stopped here) is never read."""
        limit = asyncio.Semaphore(8)

        async def one(k: int) -> None:
            async with limit:
                with contextlib.suppress(ElasticsearchError):
                    await self.es.delete_document(self.index, self.journal_id(old.lineage, old.serial, k))

        await asyncio.gather(*(one(k) for k in range(old.length)))

    async def append(self, entries: Sequence[Entry], after: State, token: Any) -> Any:
        if not isinstance(token, Position):
            raise StateError("the journal needs a stored snapshot to follow")
        doc_id = self.journal_id(token.lineage, token.serial, token.length)
        records = ",".join(e.json_text for e in entries)
        text = '{"kind":"journal","body":{"serial":' + str(after.serial) + ',"entries":[' + records + "]}}"
        try:
            created = await self.es.put_document(self.index, doc_id, RawJson(text), expect=None, create=True)
        except TransportError as error:
            if not error.maybe_applied:
                raise
            created = None
        # Refused as existing: ours if its answer was lost and it was sent again; else another's.
        if created is None and not await self._stored(doc_id, text):
            raise StateConflictError(f"the state journal {doc_id} was written by another run")
        return replace(token, length=token.length + 1, journal_bytes=token.journal_bytes + len(text))

    async def _stored(self, doc_id: str, text: str) -> bool:
        found = await self.es.get_document(self.index, doc_id)
        return found is not None and found[0] == json.loads(text)

    def journal(self, token: Any) -> tuple[int, int]:
        if not isinstance(token, Position):
            return 0, 0
        return token.journal_bytes, token.snapshot_bytes

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
            if not holder.expired(time.time()):
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
        renewed = info.renewed(time.time())
        try:
            written = await self.es.put_document(
                self.index,
                self.lock_id,
                {"kind": "lock", "body": renewed.__dict__},
                expect=(found[1], found[2]),
            )
        except TransportError as error:
            if not error.maybe_applied:
                raise
            return await self._renewed_anyway(renewed, error)
        if written is None:
            raise StateError(f"lock {info.id} is no longer held")
        return renewed

    async def _renewed_anyway(self, renewed: LockInfo, cause: TransportError) -> LockInfo:
        """The answer to a renewal was lost: it happened if the stored lock is ours with the new expiry."""
        found = await self.es.get_document(self.index, self.lock_id)
        if found is not None and found[0].get("body") == renewed.__dict__:
            return renewed
        raise cause

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


def state_file(spec: str, workspace: str) -> Path | None:
    """The file a `file:PATH` state lives in for this workspace (`state.json` is `state.NAME.json`
    in workspace NAME); None for any other spec."""
    if not spec.startswith("file:") or len(spec) == len("file:"):
        return None
    path = Path(spec.removeprefix("file:"))
    if workspace != "default" and path.name:
        path = path.with_name(f"{path.stem}.{workspace}{path.suffix}")
    return path


def backend_for(spec: str, es: Elasticsearch, workspace: str) -> Backend:
    """`cluster` or `file:PATH` (DESIGN.md §4)."""
    if spec == "cluster":
        return ClusterBackend(es, workspace)
    path = state_file(spec, workspace)
    if path is not None:
        return FileBackend(path)
    raise StateError(f"--state must be cluster or file:PATH, not {spec!r}")
