"""State storage: where the state and its lock live, and the lease that keeps a lock held.

Two backends behind one interface (`Backend`), both held to one conformance test:
- `ClusterBackend` (default): documents `state-<workspace>` and `lock-<workspace>` in the index
  `reconciler-state` of the managed cluster; writes use `if_seq_no`/`if_primary_term`, the lock is
  created with `op_type=create` and taken over only once expired.
- `FileBackend`: a JSON file written atomically (temp file + rename) and a lock file beside it.
Reading takes no lock: `plan`, `drift` and `status` need only read access. `locked()` holds the
lock for a block of work, renewing its lease meanwhile; SIGTERM or SIGINT meanwhile cancels the
work, releases the lock and raises `StoppedBySignalError` (exit 128 + the signal's number: 143, 130).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import signal
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from reconciler.client import Elasticsearch, ElasticsearchError, RawJson, TransportError
from reconciler.state import (
    DEFAULT_LEASE,
    LockHeldError,
    LockInfo,
    State,
    StateConflictError,
    StateError,
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


# -- holding the lock --------------------------------------------------------------------------


async def take_lock(backend: Backend, operation: str, lock_timeout: float) -> LockInfo:
    """The state lock, waiting up to lock_timeout for a holder to finish (0: fail at once)."""
    deadline = time.monotonic() + lock_timeout
    while True:
        try:
            return await backend.lock(new_lock(operation))
        except LockHeldError:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(min(1.0, max(deadline - time.monotonic(), 0.05)))


async def _keep_alive(
    backend: Backend, lock: LockInfo, on_failure: Callable[[LockInfo, Exception], None]
) -> None:
    """Renew the lease while the holder works; a failed renewal is tried again next time."""
    while True:
        await asyncio.sleep(lock.lease / 3)
        try:
            lock = await backend.renew(lock)
        except (ElasticsearchError, StateError) as error:
            on_failure(lock, error)


class StoppedBySignalError(Exception):
    """SIGTERM or SIGINT stopped the work that held the lock; the lock was released."""

    def __init__(self, operation: str, signum: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum  # the shell's convention: 143 for SIGTERM, 130 for SIGINT
        name = signal.Signals(signum).name
        super().__init__(
            f"{operation} stopped by {name}: the lock was released and the state records every action"
            " that finished; run it again to converge"
        )


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _Stopper:
    """Cancels a task at the first SIGTERM or SIGINT while armed; remembers which signal came."""

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.loop = task.get_loop()
        self.signum: int | None = None
        self.armed = True

    def handle(self, signum: int, _frame: object) -> None:
        # A Python signal handler runs in the main thread between bytecodes: hand over to the loop.
        if self.armed and self.signum is None:
            self.signum = signum
            self.loop.call_soon_threadsafe(self._cancel)

    def _cancel(self) -> None:
        if self.armed:  # not once the work is over: the release must not be cancelled
            self.task.cancel()


@contextlib.contextmanager
def _stop_signals(task: asyncio.Task[Any]) -> Iterator[_Stopper]:
    """While in the block, SIGTERM and SIGINT cancel `task` (main thread only); the handlers before
    are put back after. A second signal is ignored: the release of the lock is under way."""
    stopper = _Stopper(task)
    if threading.current_thread() is not threading.main_thread():
        yield stopper
        return
    previous = {signum: signal.signal(signum, stopper.handle) for signum in STOP_SIGNALS}
    try:
        yield stopper
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


@contextlib.asynccontextmanager
async def locked(
    backend: Backend,
    operation: str,
    lock_timeout: float,
    on_renewal_failure: Callable[[LockInfo, Exception], None] = lambda lock, error: None,
) -> AsyncIterator[LockInfo]:
    """Hold the state lock, its lease renewed, for the block; released on any exit. SIGTERM or
    SIGINT meanwhile cancels the block (what it wrote to the state stays) and raises StoppedBySignalError
    once the lock is released."""
    lock = await take_lock(backend, operation, lock_timeout)
    keeper = asyncio.create_task(_keep_alive(backend, lock, on_renewal_failure))
    task = asyncio.current_task()
    assert task is not None
    with _stop_signals(task) as stopper:
        try:
            yield lock
        except asyncio.CancelledError:
            if stopper.signum is None:
                raise
            task.uncancel()
            raise StoppedBySignalError(operation, stopper.signum) from None
        finally:
            stopper.armed = False
            keeper.cancel()
            with contextlib.suppress(Exception):  # an unreleased lock expires with its lease
                await backend.unlock(lock.id)
