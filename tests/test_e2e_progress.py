"""Progress off a terminal, over a real socket: readable lines while apply works, and on a stop."""

from __future__ import annotations

import json
import re
import signal

from tests.conftest import wait_until
from tests.e2e import E5, MakeTool, anthropic

FAST = {"RECONCILER_PROGRESS_INTERVAL": "0.3"}


def test_a_slow_deployment_is_told_in_lines_while_it_is_waited_for(make_tool: MakeTool) -> None:
    # One processor for two allocations: e5 stays at 1/2 until apply's wait times out.
    tool = make_tool("--ml-capacity", "1", "--max-put-wait", "0.5", "--latency-ms", "30")
    tool.write("a.yaml", anthropic("a"))
    tool.write("e5.yaml", E5)
    result = tool("apply", "--auto-approve", "--wait-timeout", "2s", env=FAST)
    assert result.code == 1, result
    lines = result.stderr.splitlines()
    assert lines.index("e5: creating...") < lines.index(
        "e5: created, waiting for its deployment (timeout 2s)"
    )
    assert any(re.fullmatch(r"a: created \[\d+s\] \(\d of 2 finished\)", line) for line in lines), lines
    still = [line for line in lines if line.startswith("e5: still waiting, 1/2 allocated [")]
    assert still, lines  # told again while nothing moved
    assert re.fullmatch(r"e5: still waiting, 1/2 allocated \[\d+s elapsed, \d+s left\]", still[0])
    errors = [line for line in lines if line.startswith("Error: e5: failed: timed out")]
    assert len(errors) == 1, lines
    assert "Failed: e5 (wait): deployment e5 did not finish within" in result.stderr
    assert "timestamp" not in result.stderr  # lines for people, not structured dumps
    assert "[info" not in result.stderr


def test_json_logs_stay_events_with_a_message(make_tool: MakeTool) -> None:
    tool = make_tool()
    tool.write("a.yaml", anthropic("a"))
    result = tool("apply", "--auto-approve", "--log-format", "json", env=FAST)
    assert result.code == 0, result
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert [e["message"] for e in events if e["event"] in ("started", "action")] == [
        "a: creating...",
        "a: created [0s] (1 of 1 finished)",
    ]


def test_sigterm_says_what_was_done_in_flight_and_not_started(make_tool: MakeTool) -> None:
    tool = make_tool("--ml-capacity", "0", "--max-put-wait", "0.1")
    tool.write("a.yaml", anthropic("a"))
    tool.write("e5.yaml", E5)
    process = tool.popen("apply", "--auto-approve", env=FAST)

    def both_recorded() -> bool:
        path = tool.root / "state.json"
        return path.exists() and set(json.loads(path.read_text())["endpoints"]) == {"a", "e5"}

    wait_until(both_recorded, what="both created, e5 waited for")
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    stopped = [line for line in err.splitlines() if line.startswith("Error: apply stopped by SIGTERM with ")]
    assert len(stopped) == 1, err
    assert re.fullmatch(
        r"Error: apply stopped by SIGTERM with 1 of 2 finished; done: a; "
        r"in flight: e5 \(waiting(, 0/2 allocated| for its deployment) \[\d+s elapsed, \d+s left\]\)",
        stopped[0],
    ), stopped


def test_the_wait_command_tells_its_deployments_in_lines_too(make_tool: MakeTool) -> None:
    tool = make_tool("--deploy-seconds", "1.5", "--max-put-wait", "0.05")
    tool.write("e5.yaml", E5)
    assert tool("apply", "--auto-approve", "--no-wait").code == 0
    waited = tool("wait", "e5", env=FAST)
    assert waited.code == 0, waited
    lines = waited.stderr.splitlines()
    assert re.fullmatch(r"e5: waiting, [01]/2 allocated \[\d+s elapsed, \d+s left\]", lines[0]), lines
    assert any(line.startswith("e5: still waiting, ") for line in lines), lines
    assert re.fullmatch(r"e5: done, 2/2 allocated \[\d+s\] \(1 of 1 finished\)", lines[-1]), lines
