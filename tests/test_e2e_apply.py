"""End to end, over a real socket: apply under faults, lost responses, SIGKILL, concurrent applies, waits."""

from __future__ import annotations

import asyncio
import json
import signal

import pytest

from reconciler.state import State
from tests.conftest import wait_until
from tests.e2e import E5, MakeTool, Tool, actions, anthropic, plan_json


def many(tool: Tool, n: int, prefix: str = "e") -> None:
    for i in range(n):
        tool.write(f"{prefix}{i}.yaml", anthropic(f"{prefix}{i}"))


@pytest.mark.parametrize("state", ["file", "cluster"])
def test_apply_converges_under_429_and_503(make_tool: MakeTool, state: str) -> None:
    tool = make_tool(
        "--fault-rate", "0.3", "--fault-seed", "11", state="cluster" if state == "cluster" else ""
    )
    many(tool, 20)
    result = tool("apply", "--auto-approve")
    assert result.code == 0, result
    assert "The cluster matches the manifests." in result.stdout
    tool.es("PUT", "/_emulator/faults", json={"fault_rate": 0})
    assert tool.live_ids() == {f"e{i}" for i in range(20)}
    assert not actions(plan_json(tool))
    assert "retry" in result.stderr  # faults were met, and retried


@pytest.mark.parametrize("state", ["file", "cluster"])
def test_apply_converges_when_write_responses_are_lost(make_tool: MakeTool, state: str) -> None:
    tool = make_tool(
        "--lost-response-rate", "0.3", "--fault-seed", "3", state="cluster" if state == "cluster" else ""
    )
    many(tool, 20)
    tool.write("e5.yaml", E5)
    result = tool("apply", "--auto-approve")
    assert result.code == 0, result
    assert "settled" in result.stderr  # at least one lost create was settled by reading it back
    tool.write("e0.yaml", anthropic("e0", max_tokens=7))
    assert tool("apply", "--auto-approve").code == 0
    tool.es("PUT", "/_emulator/faults", json={"lost_response_rate": 0})
    assert not actions(plan_json(tool))
    assert tool.live_ids() == {f"e{i}" for i in range(20)} | {"e5"}


def stall(tool: Tool) -> None:
    """From now on every request is answered 429 or 503 and changes nothing: a running apply can
    make no more progress, only retry (each try costs the emulator's latency, so with tens of
    actions left it cannot give up and exit for seconds)."""
    tool.es("PUT", "/_emulator/faults", json={"fault_rate": 1}).raise_for_status()


def unstall(tool: Tool) -> None:
    """Answer again, once every request that arrived before this call has been answered.

    A request sent before now may still be in the emulator's latency sleep; one more request has
    the same latency and wakes after all of them: when it is answered (a fault, as the others),
    none is left to be applied after the faults stop."""
    assert tool.es("GET", "/").status_code in (429, 503)
    tool.es("PUT", "/_emulator/faults", json={"fault_rate": 0, "latency_ms": 0}).raise_for_status()


def test_an_apply_killed_midway_converges_when_run_again(make_tool: MakeTool) -> None:
    tool = make_tool("--latency-ms", "60")
    many(tool, 30)
    process = tool.popen("apply", "--auto-approve", "--parallelism", "2")
    wait_until(lambda: len(tool.live_ids()) >= 8, what="8 endpoints created by the apply")
    stall(tool)  # the kill lands mid-apply: the apply can no longer finish before it
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL  # killed, not exited
    unstall(tool)
    created = tool.live_ids()
    assert 8 <= len(created) < 30
    state = State.from_json(json.loads((tool.root / "state.json").read_text()))
    assert set(state.endpoints) <= created  # nothing recorded that did not happen
    lock = tool.root / "state.json.lock"
    assert lock.exists()  # the killed holder left its lock ...
    held = tool("apply", "--auto-approve")
    assert held.code == 1
    assert "the state is locked" in held.stderr
    lock_id = json.loads(lock.read_text())["id"]
    assert tool("state", "unlock", lock_id).code == 0  # ... which `state unlock` removes
    again = tool("apply", "--auto-approve")
    assert again.code == 0, again
    assert tool.live_ids() == {f"e{i}" for i in range(30)}
    assert not actions(plan_json(tool))
    final = State.from_json(json.loads((tool.root / "state.json").read_text()))
    assert set(final.endpoints) == created | set(tool.live_ids())


LOCK = "/reconciler-state/_doc/lock-default"


def lock_attempts(tool: Tool) -> int:
    """Requests that tried to create the cluster state's lock document."""
    return sum(
        r["count"]
        for r in tool.requests()["requests"]
        if r["method"] in ("PUT", "POST") and r["path"].endswith("/lock-default")
    )


def test_two_applies_at_once(make_tool: MakeTool) -> None:
    # No ML capacity: the first apply creates `embed` and then waits for its deployment, holding
    # the lock, until the test gives the cluster capacity.
    tool = make_tool("--ml-capacity", "0", "--max-put-wait", "0.1", state="cluster")
    many(tool, 20)
    tool.write("embed.yaml", E5.replace("inference_id: e5", "inference_id: embed"))
    first = tool.popen("apply", "--auto-approve", "--parallelism", "1")
    wait_until(lambda: tool.es("GET", LOCK).status_code == 200, what="the first apply's lock")
    second = tool("apply", "--auto-approve")
    assert second.code == 1
    assert "the state is locked: lock" in second.stderr
    assert "for apply since" in second.stderr
    tried = lock_attempts(tool)
    waiting = tool.popen("apply", "--auto-approve", "--lock-timeout", "2m")
    wait_until(lambda: lock_attempts(tool) > tried, what="the waiting apply to find the lock held")
    assert first.poll() is None  # the first still holds it
    tool.es("PUT", "/_emulator/ml", json={"capacity": None}).raise_for_status()
    first_out, first_err = first.communicate(timeout=120)
    assert first.returncode == 0, (first_out, first_err)
    waiting_out, waiting_err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, (waiting_out, waiting_err)  # it waited, then took the lock
    assert lock_attempts(tool) > tried + 1  # a second try: the first had it at the waiting's first
    assert tool.live_ids() == {f"e{i}" for i in range(20)} | {"embed"}
    assert not actions(plan_json(tool))
    assert tool.es("GET", LOCK).json()["found"] is False  # released


def test_a_lock_taken_over_during_the_prompt_stops_the_apply(
    make_tool: MakeTool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prompt blocks the event loop and the lease renewals: a slow 'yes' must not apply unlocked."""
    tool = make_tool()
    tool.write("a.yaml", anthropic("a"))
    lock_file = tool.root / "state.json.lock"

    def slow_human(auto_approve: bool) -> bool:
        # Meanwhile the lease ran out and another run took the lock.
        held = json.loads(lock_file.read_text())
        lock_file.write_text(json.dumps({**held, "id": "another-run", "pid": held["pid"] + 1}))
        return True  # "yes"

    monkeypatch.setattr("reconciler.cli._confirm", slow_human)
    tool.reset_requests()
    result = tool("apply")
    assert result.code == 1
    assert "is no longer held" in result.stderr
    assert tool.writes() == 0
    assert "another-run" in lock_file.read_text()  # the other run's lock is left alone


def test_an_expired_lock_is_taken_over(make_tool: MakeTool) -> None:
    tool = make_tool()
    tool.write("a.yaml", anthropic("a"))
    lock = {
        "id": "dead",
        "who": "ci@gone",
        "pid": 1,
        "operation": "apply",
        "created": "2026-01-01T00:00:00+00:00",
        "expires": 0,
        "lease": 120,
    }
    (tool.root / "state.json.lock").write_text(json.dumps(lock))
    assert tool("apply", "--auto-approve").code == 0


def test_waits_succeed_fail_and_time_out(make_tool: MakeTool) -> None:
    ok = make_tool()
    ok.write("e5.yaml", E5)
    assert ok("apply", "--auto-approve").code == 0
    failing = make_tool("--fail-model", ".multilingual-e5-small")
    failing.write("e5.yaml", E5)
    failed = failing("apply", "--auto-approve")
    assert failed.code == 1
    assert "Failed: e5 (create)" in failed.stderr or "Failed: e5 (wait)" in failed.stderr
    assert "emulated failure" in failed.stderr
    short = make_tool("--ml-capacity", "1", "--max-put-wait", "0.1")
    short.write("e5.yaml", E5)
    timed_out = short("apply", "--auto-approve", "--wait-timeout", "300ms")
    assert timed_out.code == 1, timed_out
    assert "Failed: e5 (wait): deployment e5 did not finish within" in timed_out.stderr
    assert "(allocation 1/2, state started)" in timed_out.stderr
    assert "insufficient allocated processors" in timed_out.stderr
    manifest_timeout = make_tool("--ml-capacity", "0", "--max-put-wait", "0.1")
    manifest_timeout.write("e5.yaml", E5 + "wait:\n  timeout: 300ms\n")
    result = manifest_timeout("apply", "--auto-approve")
    assert result.code == 1
    assert "(allocation 0/2, state starting)" in result.stderr
    waited = manifest_timeout("wait", "e5", "--timeout", "300ms")
    assert waited.code == 1
    assert "Failed: e5: deployment e5 did not finish" in waited.stderr


def test_no_wait_skips_waiting(make_tool: MakeTool) -> None:
    tool = make_tool("--ml-capacity", "0", "--max-put-wait", "0.1")
    tool.write("e5.yaml", E5)
    result = tool("apply", "--auto-approve", "--no-wait")
    assert result.code == 0, result


def test_a_referenced_endpoint_is_deleted_only_with_the_override(make_tool: MakeTool) -> None:
    tool = make_tool()
    tool.write("a.yaml", anthropic("a"))
    assert tool("apply", "--auto-approve").code == 0
    tool.es("PUT", "/_ingest/pipeline/p", json={"processors": [{"inference": {"model_id": "a"}}]})
    tool.remove("a.yaml")
    assert tool("apply", "--auto-approve").code == 1
    assert tool.live_ids() == {"a"}
    assert tool("apply", "--auto-approve", "--allow-referenced").code == 0
    assert tool.live_ids() == set()


def test_json_logs_have_one_event_per_action_and_poll(make_tool: MakeTool) -> None:
    tool = make_tool()
    tool.write("a.yaml", anthropic("a"))
    tool.write("e5.yaml", E5)
    result = tool("apply", "--auto-approve", "--log-format", "json")
    assert result.code == 0
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    done = {(e["inference_id"], e["action"], e["outcome"]) for e in events if e["event"] == "action"}
    assert {("a", "create", "done"), ("e5", "create", "done")} <= done
    polls = [e for e in events if e["event"] == "wait"]
    assert polls
    assert polls[-1]["inference_id"] == "e5"
    assert polls[-1]["allocation"] == "2/2"


STATE_DOC = "/reconciler-state/_doc/state-default"


def stored(tool: Tool) -> State | None:
    """The state as its backend reads it now (snapshot and journal replayed, intents unsettled)."""
    from reconciler.client import Connection, Elasticsearch
    from reconciler.storage import backend_for

    async def read() -> State | None:
        async with Elasticsearch(Connection(urls=(tool.url,))) as es:
            return (await backend_for(tool.state, es, "default").read()).state

    return asyncio.run(read())


def recorded(tool: Tool) -> dict[str, object]:
    """The endpoints the state records now ({} before the first write), as JSON records."""
    state = stored(tool)
    return {i: r.to_json() for i, r in state.endpoints.items()} if state is not None else {}


def lock_exists(tool: Tool) -> bool:
    if tool.state == "cluster":
        return bool(tool.es("GET", LOCK).json().get("found"))
    return (tool.root / "state.json.lock").exists()


def test_invalid_manifests_stop_apply_and_import_before_any_write(make_tool: MakeTool) -> None:
    tool = make_tool(state="cluster")
    tool.write("a.yaml", anthropic("a"))
    tool.write(
        "b.yaml",
        "inference_id: b\ntask_type: completion\nservice: anthropic\nservice_settings:\n  model_id: m\n",
    )
    tool.reset_requests()
    result = tool("apply", "--auto-approve")
    assert result.code == 1, result
    assert f"{tool.manifests / 'b.yaml'}:4: service_settings.api_key: " in result.stderr  # located
    assert tool.writes() == 0, tool.requests()  # no state index, no lock document, no endpoint
    # import refuses to overwrite a manifest, before it locks or writes anything
    live = {"service": "anthropic", "service_settings": {"api_key": "k", "model_id": "m"}}
    tool.es("PUT", "/_inference/completion/b", json={**live, "task_settings": {"max_tokens": 8}})
    assert tool.live_ids() == {"b"}
    before = (tool.manifests / "b.yaml").read_text()
    tool.reset_requests()
    refused = tool("import", "b")
    assert refused.code == 1, refused
    assert f"{tool.manifests / 'b.yaml'} already exists" in refused.stderr
    assert (tool.manifests / "b.yaml").read_text() == before
    assert tool.writes() == 0, tool.requests()


@pytest.mark.parametrize(
    ("stop", "state", "code"), [(signal.SIGTERM, "cluster", 143), (signal.SIGINT, "", 130)]
)
def test_sigterm_and_sigint_release_the_lock_and_keep_the_state(
    make_tool: MakeTool, stop: signal.Signals, state: str, code: int
) -> None:
    # No ML capacity: the apply creates both and then waits for e5's deployment, holding the lock.
    tool = make_tool("--ml-capacity", "0", "--max-put-wait", "0.1", state=state)
    tool.write("a.yaml", anthropic("a"))
    tool.write("e5.yaml", E5)
    process = tool.popen("apply", "--auto-approve")
    wait_until(lambda: lock_exists(tool) and set(recorded(tool)) == {"a", "e5"}, what="both recorded")
    process.send_signal(stop)
    _, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert f"apply stopped by {stop.name}: the lock was released" in err
    assert not lock_exists(tool)
    assert set(recorded(tool)) == tool.live_ids() == {"a", "e5"}
    assert tool("apply", "--auto-approve", "--no-wait").code == 0  # not locked: runs at once


SLOW = """\
inference_id: slow
task_type: sparse_embedding
service: elasticsearch
service_settings: {model_id: .elser_model_2, num_threads: 1, num_allocations: 2}
"""


def test_a_failed_deployment_is_tainted_while_the_others_are_still_waited_for(make_tool: MakeTool) -> None:
    # e5's deployment fails after a second; slow's can never reach its target (1 allocation of 2).
    failing = ("--fail-model", ".multilingual-e5-small", "--deploy-seconds", "2")
    tool = make_tool(*failing, "--ml-capacity", "1", "--max-put-wait", "0.05")
    tool.write("e5.yaml", E5)
    tool.write("slow.yaml", SLOW)
    process = tool.popen("apply", "--auto-approve")

    def e5_tainted() -> bool:
        record = recorded(tool).get("e5")
        return isinstance(record, dict) and record["tainted"] is True

    wait_until(e5_tainted, what="the failed deployment tainted in the state")
    assert process.poll() is None  # still waiting for slow
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert actions(plan_json(tool))["e5"] == ("replace", "tainted")
