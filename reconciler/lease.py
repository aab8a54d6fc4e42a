"""Holding the state lock for a block of work: taking it (waiting up to `--lock-timeout`),
renewing its lease meanwhile, and SIGTERM or SIGINT cancelling the work, releasing the lock and
raising `StoppedBySignalError` (exit 128 + the signal's number: 143, 130). The lock itself is the
backends' (`reconciler.storage`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import Any

from reconciler.client import ElasticsearchError
from reconciler.state import LockHeldError, LockInfo, StateError
from reconciler.storage import Backend, new_lock


async def take_lock(
    backend: Backend, operation: str, lock_timeout: float, info: LockInfo | None = None
) -> LockInfo:
    """The state lock, waiting up to lock_timeout for a holder to finish (0: fail at once). Every
    attempt asks under the same id (`info`'s, when given), so that the lock can be released by it
    even when the answer to an attempt never came."""
    info = info or new_lock(operation)
    deadline = time.monotonic() + lock_timeout
    while True:
        try:
            return await backend.lock(replace(info, expires=time.time() + info.lease))
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
    """SIGTERM or SIGINT stopped the work that held (or waited for) the lock; the lock was released."""

    def __init__(self, operation: str, signum: int, *, held: bool = True) -> None:
        self.signum = signum
        self.exit_code = 128 + signum  # the shell's convention: 143 for SIGTERM, 130 for SIGINT
        name = signal.Signals(signum).name
        if held:
            what = "the lock was released and the state records every action that finished"
        else:
            what = "it was waiting for the lock, which it never held; nothing was changed"
        super().__init__(f"{operation} stopped by {name}: {what}; run it again to converge")


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
    SIGINT meanwhile — while waiting for the lock too — cancels the work (what it wrote to the
    state stays) and raises StoppedBySignalError once the lock is released."""
    task = asyncio.current_task()
    assert task is not None
    lock = new_lock(operation)
    held = False
    with _stop_signals(task) as stopper:
        try:
            lock = await take_lock(backend, operation, lock_timeout, lock)
            held = True
            keeper = asyncio.create_task(_keep_alive(backend, lock, on_renewal_failure))
            try:
                yield lock
            finally:
                keeper.cancel()
        except asyncio.CancelledError:
            if stopper.signum is None:
                raise
            task.uncancel()
            raise StoppedBySignalError(operation, stopper.signum, held=held) from None
        finally:
            stopper.armed = False
            # Not held: an attempt whose answer the signal cut off may still have taken it.
            with contextlib.suppress(Exception):  # an unreleased lock expires with its lease
                await backend.unlock(lock.id)
