"""One conformance test that both state backends pass: file:PATH and cluster (against the emulator)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.applier import StateWriter
from reconciler.client import Connection, Elasticsearch
from reconciler.emulator import Emulator, EmulatorConfig
from reconciler.state import (
    DONE,
    DROPPED,
    FORGOTTEN,
    INTENT,
    EndpointRecord,
    Entry,
    LockHeldError,
    State,
    StateConflictError,
    StateError,
    replay,
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


async def test_others_are_the_other_workspaces_on_this_cluster(
    make_backend: Callable[[str], Backend],
) -> None:
    """The takeover guard's input: the cluster backend lists every other workspace's state (its
    journal replayed); a state file records no cluster, so it lists none."""
    mine, theirs = make_backend("default"), make_backend("staging")
    assert await mine.others() == {}  # no state index yet
    await theirs.write(State.new("staging").with_endpoint("claude", RECORD).bumped(), None)
    await mine.write(State.new("default").bumped(), None)
    others = await mine.others()
    if isinstance(mine, ClusterBackend):
        assert set(others) == {"staging"}
        assert set(others["staging"].endpoints) == {"claude"}
    else:
        assert others == {}


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


# -- the journal: intents, done, forgotten, dropped ---------------------------------------------


def _entries() -> list[Entry]:
    return [
        Entry(INTENT, "a", "put", dataclasses.replace(RECORD, applied={})),
        Entry(DONE, "a", record=RECORD),
        Entry(INTENT, "b", "put", RECORD),
        Entry(INTENT, "gone", "delete"),
        Entry(FORGOTTEN, "gone"),
    ]


async def test_appended_entries_are_replayed_and_a_stale_append_is_refused(
    make_backend: Callable[[str], Backend],
) -> None:
    backend = make_backend("default")
    base = State.new("default").with_endpoint("gone", RECORD).bumped()
    token = await backend.write(base, None)
    after = replay(base, _entries(), base.serial + 1)
    moved = await backend.append(_entries(), after, token)
    read = await backend.read()
    assert read.state == after
    assert read.state is not None
    assert set(read.state.endpoints) == {"a"}
    assert set(read.state.intents) == {"b"}  # pending: neither done nor dropped
    assert read.token == moved
    dropped = replay(after, [Entry(DROPPED, "b")], after.serial + 1)
    await backend.append([Entry(DROPPED, "b")], dropped, read.token)
    with pytest.raises(StateConflictError):  # appended by someone else since `token`
        await backend.append([Entry(DONE, "c", record=RECORD)], dropped, read.token)
    again = await backend.read()
    assert again.state == dropped
    # A whole write (a snapshot) folds the journal in; reading it back gives the same state.
    folded = dataclasses.replace(dropped, serial=dropped.serial + 1)
    await backend.write(folded, again.token)
    assert (await backend.read()).state == folded


async def test_a_snapshot_deletes_the_journal_it_replaces() -> None:
    emulator = Emulator(EmulatorConfig())
    async with Elasticsearch(
        Connection(urls=("http://es",)), transport=httpx.ASGITransport(app=emulator)
    ) as es:
        backend = ClusterBackend(es, "default")
        state = State.new("default").bumped()
        token = await backend.write(state, None)
        for n in range(3):
            state = replay(state, [Entry(DONE, f"e{n}", record=RECORD)], state.serial + 1)
            token = await backend.append([Entry(DONE, f"e{n}", record=RECORD)], state, token)
        docs = emulator.cluster.indices[STATE_INDEX].docs
        assert len([d for d in docs if d.startswith("journal-default-")]) == 3
        read = await backend.read()
        assert read.state == state
        await backend.write(dataclasses.replace(state, serial=state.serial + 1), read.token)
        assert not [d for d in docs if d.startswith("journal-")]
        assert (await backend.read()).state == dataclasses.replace(state, serial=state.serial + 1)


# A state as this tool wrote it before journals and intents existed (format_version 1).
OLD_STATE = {
    "format_version": 1,
    "lineage": "5b0b1f0e-2a1c-4d3e-9f00-0123456789ab",
    "serial": 7,
    "workspace": "default",
    "salt": "00112233445566778899aabbccddeeff",
    "endpoints": {"claude": RECORD.to_json()},
}


async def test_a_state_written_before_journals_still_loads_and_takes_appends(
    make_backend: Callable[[str], Backend], tmp_path: Path
) -> None:
    backend = make_backend("default")
    if isinstance(backend, ClusterBackend):
        await backend.es.ensure_index(STATE_INDEX, {})
        await backend.es.put_document(
            STATE_INDEX, "state-default", {"kind": "state", "body": OLD_STATE}, expect=None, create=True
        )
    else:
        (tmp_path / "state.json").write_text(json.dumps(OLD_STATE))
    read = await backend.read()
    assert read.state is not None
    assert (read.state.serial, dict(read.state.endpoints), dict(read.state.intents)) == (
        7,
        {"claude": RECORD},
        {},
    )
    after = replay(read.state, [Entry(FORGOTTEN, "claude")], 8)
    await backend.append([Entry(FORGOTTEN, "claude")], after, read.token)
    assert (await backend.read()).state == after


class _CountingTransport(httpx.AsyncBaseTransport):
    """The in-process emulator, counting the bytes of each request body sent to the state index."""

    def __init__(self, emulator: Emulator) -> None:
        self.inner = httpx.ASGITransport(app=emulator)
        self.sent: list[int] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith(f"/{STATE_INDEX}/") and request.method in ("PUT", "POST"):
            self.sent.append(len(request.content))
        return await self.inner.handle_async_request(request)


@pytest.mark.parametrize("size", [10, 1000])
async def test_recording_an_action_costs_the_same_bytes_however_big_the_state(size: int) -> None:
    emulator = Emulator(EmulatorConfig())
    transport = _CountingTransport(emulator)
    async with Elasticsearch(Connection(urls=("http://es",)), transport=transport) as es:
        backend = ClusterBackend(es, "default")
        big = State.new("default")
        big = dataclasses.replace(big, endpoints={f"e{i}": RECORD for i in range(size)})
        token = await backend.write(big, None)
        writer = StateWriter(backend, big, token)
        transport.sent.clear()
        await writer.intend("new", "put", dataclasses.replace(RECORD, applied={}))
        await writer.put("new", RECORD)
        assert len(transport.sent) == 2
        assert max(transport.sent) < 2 * len(RECORD.json_text) + 400  # one entry each, not the state
        await writer.close()  # folded into a snapshot once, at the end
        assert (await backend.read()).state == writer.state(writer.base.serial)
