"""ML capacity end to end (C8, C9): the CLI against an emulator on a socket.

Without a way to scale, a deployment that cannot be placed is a 429 on every version up to 9.5.0
and the endpoint stays stored; with autoscaling the PUT answers at once with 0 allocations and the
deployment is placed later; a deployment that disappears while its endpoint stays is a failure.
"""

from __future__ import annotations

import json
import time

from tests.conftest import wait_until
from tests.e2e import E5, MakeTool, Tool, actions, plan_json


def deployment_ids(tool: Tool) -> set[str]:
    stats = tool.es("GET", "/_ml/trained_models/_stats").json()["trained_model_stats"]
    return {m["deployment_stats"]["deployment_id"] for m in stats if "deployment_stats" in m}


def test_a_capacity_429_fails_the_create_clearly_and_the_stored_endpoint_is_replaced(
    make_tool: MakeTool,
) -> None:
    tool = make_tool("--ml-capacity", "0", "--no-ml-autoscaling", version="9.5.0")
    tool.write("e5.yaml", E5)
    failed = tool("apply", "--auto-approve")
    assert failed.code == 1, failed
    assert "Failed: e5 (create)" in failed.stderr
    assert "429" in failed.stderr
    assert "no ML nodes with sufficient capacity were found" in failed.stderr
    # Elasticsearch stored the endpoint before the start and left no deployment (C8).
    assert tool.live_ids() == {"e5"}
    assert "e5" not in deployment_ids(tool)
    assert actions(plan_json(tool))["e5"] == ("replace", "tainted")
    tool.es("PUT", "/_emulator/ml", json={"capacity": None}).raise_for_status()
    assert tool("apply", "--auto-approve").code == 0
    assert "e5" in deployment_ids(tool)
    assert not actions(plan_json(tool))


def test_under_autoscaling_the_wait_goes_through_zero_allocations(make_tool: MakeTool) -> None:
    tool = make_tool("--ml-capacity", "0", "--ml-scale-up-seconds", "1")
    tool.write("e5.yaml", E5)
    result = tool("apply", "--auto-approve", "--log-format", "json")
    assert result.code == 0, result
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    waits = [e for e in events if e["event"] == "wait"]
    # The PUT answered at once with nothing placed; the wait saw 0/2 until the scale-up placed both.
    assert (waits[0]["allocation"], waits[0]["outcome"]) == ("0/2", "waiting")
    assert (waits[-1]["allocation"], waits[-1]["outcome"]) == ("2/2", "done")
    assert waits[-1]["elapsed"] >= 1.0
    assert not actions(plan_json(tool))


def test_a_deployment_that_vanishes_fails_the_wait_and_taints_the_endpoint(make_tool: MakeTool) -> None:
    # No capacity, but the cluster could scale: the PUT answers at once and the apply waits.
    tool = make_tool("--ml-capacity", "0")
    tool.write("e5.yaml", E5)
    process = tool.popen("apply", "--auto-approve")
    wait_until(lambda: "e5" in deployment_ids(tool), what="the deployment of e5")
    tool.es("POST", "/_emulator/deployments/e5/_remove").raise_for_status()
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1, err
    assert "Failed: e5 (wait): deployment e5 failed" in err
    assert "does not exist" in err
    assert actions(plan_json(tool))["e5"] == ("replace", "tainted")
    # `wait` reports it at once, rather than waiting for a deployment that will not come.
    started = time.monotonic()
    waited = tool("wait", "e5", "--timeout", "60s")
    assert waited.code == 1, waited
    assert "Failed: e5: deployment e5 failed" in waited.stderr
    assert time.monotonic() - started < 30
