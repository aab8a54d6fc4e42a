"""End to end, over a real socket: runs stopped at any moment (DESIGN §9) — SIGKILL mid-apply
leaves intents the next run settles; SIGTERM during a state write or a lock wait exits cleanly."""

from __future__ import annotations

import asyncio
import dataclasses
import signal

from reconciler.client import Connection, Elasticsearch
from reconciler.state import INTENT, Entry
from reconciler.storage import INDEX_BODY, STATE_INDEX, ClusterBackend
from tests.conftest import wait_until
from tests.e2e import MakeTool, Tool, actions, plan_json
from tests.test_e2e_apply import lock_attempts, lock_exists, many, recorded, stored


def drain(tool: Tool) -> None:
    """Wait until every request that reached the emulator before now has been carried out: one
    more request has the same latency and is answered after all of them."""
    assert tool.es("GET", "/").status_code == 200


def test_a_sigkill_amid_creates_leaves_nothing_that_reached_the_cluster_unrecorded(
    make_tool: MakeTool,
) -> None:
    tool = make_tool("--latency-ms", "250", state="cluster")
    many(tool, 30)
    process = tool.popen("apply", "--auto-approve")
    wait_until(lambda: len(tool.live_ids()) >= 10, timeout=90, what="10 endpoints created by the apply")
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    drain(tool)
    reached = tool.live_ids()
    assert 10 <= len(reached) < 30
    # As stored, before any run settles it: each endpoint that reached the cluster is recorded, or
    # intended (recorded before its request was sent); nothing is recorded that did not happen.
    state = stored(tool)
    assert state is not None
    intended = {i for i, e in state.intents.items() if e.op == "put"}
    assert reached <= set(state.endpoints) | intended, sorted(reached - set(state.endpoints) - intended)
    assert set(state.endpoints) <= reached
    # Every reading command settles them by reading back: no surprise in the plan.
    plan = plan_json(tool)
    assert {i for i, (action, _) in actions(plan).items()} == {f"e{i}" for i in range(30)} - reached, plan
    assert not plan["warnings"], plan["warnings"]
    status = tool("status", "--json")
    assert status.code == 0, status
    rows = {row["inference_id"]: row for row in status.json()["endpoints"]}
    assert all(rows[i]["managed"] for i in reached), rows
    # The next apply (once the dead run's lock is removed) stores the settling and converges.
    lock = tool.es("GET", "/reconciler-state/_doc/lock-default").json()["_source"]["body"]
    assert tool("state", "unlock", lock["id"]).code == 0
    again = tool("apply", "--auto-approve")
    assert again.code == 0, again
    final = stored(tool)
    assert final is not None
    assert set(final.endpoints) == tool.live_ids() == {f"e{i}" for i in range(30)}
    assert not final.intents
    assert not actions(plan_json(tool))
    # Folded into one snapshot at the end of the run: no journal left to replay.
    snapshot = tool.es("GET", "/reconciler-state/_doc/state-default").json()["_source"]["body"]
    journal = f"/reconciler-state/_doc/journal-default-{snapshot['lineage']}-{snapshot['serial']}-0"
    assert not tool.es("GET", journal).json().get("found")


def leave_intents(tool: Tool, intents: dict[str, str]) -> None:
    """Store the state a killed run leaves: each id in `intents` has an intent (op `put`: its
    record taken out, as before its create; `delete`: its record kept), nothing settled."""

    async def write() -> None:
        async with Elasticsearch(Connection(urls=(tool.url,))) as es:
            backend = ClusterBackend(es, "default")
            snapshot = await backend.read()
            state = snapshot.state
            assert state is not None
            endpoints = dict(state.endpoints)
            pending = {}
            for inference_id, op in intents.items():
                record = endpoints[inference_id]
                if op == "put":
                    del endpoints[inference_id]
                    record = dataclasses.replace(record, applied={})
                pending[inference_id] = Entry(INTENT, inference_id, op, record if op == "put" else None)
            left = dataclasses.replace(state, serial=state.serial + 1, endpoints=endpoints, intents=pending)
            await backend.write(left, snapshot.token)

    asyncio.run(write())


def test_every_reading_command_settles_intents_by_reading_back(make_tool: MakeTool) -> None:
    tool = make_tool(state="cluster")
    many(tool, 5)
    assert tool("apply", "--auto-approve").code == 0
    leave_intents(tool, {"e0": "put", "e1": "put", "e2": "put", "e3": "delete", "e4": "delete"})
    tool.es("DELETE", "/_inference/completion/e1")  # its PUT never arrived
    body = tool.es("GET", "/_inference/completion/e2").json()["endpoints"][0]
    tool.es("DELETE", "/_inference/completion/e2")  # it arrived, then someone changed it
    changed = {"service": "anthropic", "task_settings": {"max_tokens": 3}}
    changed["service_settings"] = {**body["service_settings"], "api_key": "someone-elses"}
    assert tool.es("PUT", "/_inference/completion/e2", json=changed).status_code == 200
    tool.es("DELETE", "/_inference/completion/e3")  # its DELETE arrived; e4's did not
    tool.remove("e3.yaml")
    before = stored(tool)
    assert before is not None
    assert set(before.intents) == {"e0", "e1", "e2", "e3", "e4"}
    plan = plan_json(tool)
    # e0 reads back as asked: no change; e1 never arrived: created; e3 is gone: nothing to forget;
    # e2 holds another configuration: recorded as found and brought back, the plan says why.
    assert actions(plan) == {
        "e1": ("create", "new"),
        "e2": ("update", "manifest-changed"),
    }, actions(plan)
    assert any("e2" in w and "another configuration" in w for w in plan["warnings"]), plan["warnings"]
    drift = tool("drift", "--json")
    assert drift.code in (0, 2), drift
    assert {f["inference_id"] for f in drift.json()["findings"]} <= {"e2"}, drift.stdout
    rows = {row["inference_id"]: row for row in tool("status", "--json").json()["endpoints"]}
    assert all(rows[i]["managed"] for i in ("e0", "e2", "e4"))
    assert stored(tool) == before  # reading settles in memory only: no lock, nothing written
    applied = tool("apply", "--auto-approve")
    assert applied.code == 0, applied
    after = stored(tool)
    assert after is not None
    assert not after.intents
    assert set(after.endpoints) == tool.live_ids() == {"e0", "e1", "e2", "e4"}
    assert not actions(plan_json(tool))


def test_sigterm_during_a_state_write_exits_cleanly_and_keeps_the_state_readable(
    make_tool: MakeTool,
) -> None:
    tool = make_tool(state="cluster")
    many(tool, 2)
    assert tool("apply", "--auto-approve").code == 0
    tool.es("PUT", "/_emulator/faults", json={"latency_ms": 400}).raise_for_status()
    tool.reset_requests()
    process = tool.popen("state", "rm", "e0")

    def writing() -> bool:
        return any(
            r["method"] in ("PUT", "POST") and "/state-default" in r["path"]
            for r in tool.requests()["requests"]
        )

    wait_until(writing, what="the state write sent")
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert "state rm stopped by SIGTERM" in err
    assert "Traceback" not in err
    drain(tool)
    assert not lock_exists(tool)
    assert set(recorded(tool)) in ({"e1"}, {"e0", "e1"})  # written whole or not at all
    tool.es("PUT", "/_emulator/faults", json={"latency_ms": 0}).raise_for_status()
    assert tool("plan").code == 0


def test_a_signal_during_the_lock_wait_exits_cleanly_and_takes_no_lock(make_tool: MakeTool) -> None:
    tool = make_tool(state="cluster")
    many(tool, 1)
    held = {"id": "other", "who": "ci@elsewhere", "pid": 1, "operation": "apply", "lease": 120.0}
    held |= {"created": "2026-01-01T00:00:00+00:00", "expires": 1e12}
    tool.es("PUT", f"/{STATE_INDEX}", json=INDEX_BODY).raise_for_status()
    tool.es(
        "PUT", f"/{STATE_INDEX}/_doc/lock-default", json={"kind": "lock", "body": held}
    ).raise_for_status()
    for stop, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        tool.reset_requests()
        process = tool.popen("apply", "--auto-approve", "--lock-timeout", "60s")
        wait_until(lambda: lock_attempts(tool) >= 2, what="the apply waiting for the lock")
        process.send_signal(stop)
        _, err = process.communicate(timeout=60)
        assert process.returncode == code, err
        assert f"apply stopped by {stop.name}: it was waiting for the lock" in err
        assert "Traceback" not in err
        lock = tool.es("GET", f"/{STATE_INDEX}/_doc/lock-default").json()
        assert lock["_source"]["body"]["id"] == "other"  # the holder's lock, untouched
        assert not tool.live_ids()
