"""One conformance test that both state backends pass: file:PATH and cluster (against the emulator)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.client import Connection, Elasticsearch
from reconciler.emulator import Emulator, EmulatorConfig
from reconciler.state import (
    EndpointRecord,
    LockHeldError,
    State,
    StateConflictError,
    StateError,
)
from reconciler.storage import STATE_INDEX, Backend, ClusterBackend, FileBackend, backend_for, new_lock

RECORD = EndpointRecord(
    task_type="completion",
    service="anthropic",
    requested={"task_type": "completion", "service": "anthropic", "service_settings": {"model_id": "m"}},
    applied={
        "task_type": "completion",
        "service": "anthropic",
        "service_settings": {"model_id": "m", "rate_limit": {"requests_per_minute": 50}},
    },
    secret_digests={"api_key": "hmac-sha256:00"},
    lifecycle={"prevent_destroy": True, "ignore_changes": []},
    applied_at="2026-11-25T00:00:00+00:00",
)


@pytest.fixture(params=["file", "cluster"])
async def make_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[[str], Backend]]:
    emulator = Emulator(EmulatorConfig())
    es = Elasticsearch(Connection(urls=("http://es",)), transport=httpx.ASGITransport(app=emulator))

    def build(workspace: str) -> Backend:
        if request.param == "file":
            return backend_for(f"file:{tmp_path / 'state.json'}", es, workspace)
        return ClusterBackend(es, workspace)

    yield build
    await es.close()


async def test_read_write_serial_and_lineage(make_backend: Callable[[str], Backend]) -> None:
    backend = make_backend("default")
    empty = await backend.read()
    assert empty.state is None
    state = State.new("default").with_endpoint("claude", RECORD).bumped()
    token = await backend.write(state, empty.token)
    read = await backend.read()
    assert read.state == state
    assert read.token == token
    second = read.state.without("claude").bumped() if read.state else state
    await backend.write(second, read.token)
    again = await backend.read()
    assert again.state is not None
    assert (again.state.serial, again.state.lineage) == (2, state.lineage)
    assert again.state.endpoints == {}


async def test_a_stale_write_is_refused(make_backend: Callable[[str], Backend]) -> None:
    backend = make_backend("default")
    first = await backend.read()
    await backend.write(State.new("default").bumped(), first.token)
    with pytest.raises(StateConflictError):
        await backend.write(State.new("default").bumped(), first.token)  # written by someone else meanwhile


async def test_workspaces_are_separate(make_backend: Callable[[str], Backend]) -> None:
    prod, staging = make_backend("default"), make_backend("staging")
    await prod.write(State.new("default").bumped(), None)
    assert (await staging.read()).state is None


async def test_lock_held_by_other_expiry_and_unlock(make_backend: Callable[[str], Backend]) -> None:
    backend = make_backend("default")
    assert await backend.current_lock() is None
    mine = await backend.lock(new_lock("apply"))
    assert await backend.current_lock() == mine
    with pytest.raises(LockHeldError) as held:
        await backend.lock(new_lock("apply"))
    assert held.value.holder.id == mine.id
    assert mine.who in str(held.value)
    assert "apply" in str(held.value)
    renewed = await backend.renew(mine)
    assert renewed.expires >= mine.expires
    with pytest.raises(StateError, match="is not the current lock"):
        await backend.unlock("someone-elses-id")
    await backend.unlock(mine.id)
    assert await backend.current_lock() is None
    with pytest.raises(StateError, match="not locked"):
        await backend.unlock(mine.id)


async def test_an_expired_lock_is_taken_over(make_backend: Callable[[str], Backend]) -> None:
    backend = make_backend("default")
    dead = dataclasses.replace(new_lock("apply", lease=60), expires=time.time() - 1)
    await backend.lock(dead)
    fresh = await backend.lock(new_lock("apply"))
    assert (await backend.current_lock()) == fresh
    with pytest.raises(StateError):
        await backend.renew(dead)


async def test_the_cluster_backend_keeps_its_documents_in_the_state_index() -> None:
    emulator = Emulator(EmulatorConfig())
    async with Elasticsearch(
        Connection(urls=("http://es",)), transport=httpx.ASGITransport(app=emulator)
    ) as es:
        backend = ClusterBackend(es, "default")
        await backend.write(State.new("default").bumped(), None)
        await backend.lock(new_lock("apply"))
    index = emulator.cluster.indices[STATE_INDEX]
    assert set(index.docs) == {"state-default", "lock-default"}
    assert index.mappings["properties"]["body"] == {"type": "object", "enabled": False}


async def test_the_file_backend_writes_atomically(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state.json"
    backend = FileBackend(path)
    await backend.write(State.new("default").bumped(), None)
    assert path.exists()
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temporary file left behind
    path.write_text("{not json")
    with pytest.raises(StateError, match="cannot read the state"):
        await backend.read()


async def test_a_damaged_file_lock_is_held_for_a_lease_and_can_be_removed(tmp_path: Path) -> None:
    """A holder killed while writing its lock leaves an unreadable file: not a hang, not a free lock."""
    backend = FileBackend(tmp_path / "state.json")
    backend.lock_path.write_text("")
    with pytest.raises(LockHeldError, match="lock damaged"):
        await backend.lock(new_lock("apply"))
    await backend.unlock("damaged")
    taken = await backend.lock(new_lock("apply"))
    await backend.unlock(taken.id)
    backend.lock_path.write_text('{"id": ')
    past = time.time() - 3600
    os.utime(backend.lock_path, (past, past))
    assert (await backend.lock(new_lock("apply"))).operation == "apply"  # expired: taken over


def test_state_specs() -> None:
    es: Any = object()
    assert isinstance(backend_for("cluster", es, "default"), ClusterBackend)
    file_backend = backend_for("file:/tmp/s.json", es, "staging")
    assert isinstance(file_backend, FileBackend)
    assert file_backend.path == Path("/tmp/s.staging.json")
    with pytest.raises(StateError, match="cluster or file:PATH"):
        backend_for("s3://bucket", es, "default")


def test_the_compact_form_is_the_json_form() -> None:
    import json

    for state in (
        State.new("default"),
        State.new("default").with_endpoint("b", RECORD).with_endpoint("a", RECORD),
    ):
        assert json.loads(state.dumps()) == state.to_json()
        assert State.from_json(json.loads(state.dumps())) == state


class _LosingTransport(httpx.AsyncBaseTransport):
    """The in-process emulator as a socket shows its lost responses: the connection breaks."""

    def __init__(self, emulator: Emulator) -> None:
        self.inner = httpx.ASGITransport(app=emulator)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self.inner.handle_async_request(request)
        except ConnectionResetError as error:
            raise httpx.ReadError(str(error), request=request) from None


async def test_a_renewal_whose_answer_is_lost_is_settled_by_reading_the_lock_back() -> None:
    emulator = Emulator(EmulatorConfig())
    async with Elasticsearch(Connection(urls=("http://es",)), transport=_LosingTransport(emulator)) as es:
        backend = ClusterBackend(es, "default")
        mine = await backend.lock(new_lock("apply"))
        emulator.faults.configure({"lost_response_rate": 1})  # every write applied, its answer lost
        renewed = await backend.renew(mine)
        assert renewed.expires >= mine.expires
        assert await backend.current_lock() == renewed  # what is stored is the renewal
        emulator.faults.configure({"lost_response_rate": 0})
        # Another run took the lock meanwhile: a lost answer is not a renewal then.
        await backend.unlock(mine.id)
        other = await backend.lock(new_lock("apply"))
        emulator.faults.configure({"lost_response_rate": 1})
        with pytest.raises(StateError, match="is no longer held"):
            await backend.renew(renewed)
        assert await backend.current_lock() == other
