"""The takeover guard over a real socket: two workspaces' states on one cluster, one endpoint."""

from __future__ import annotations

import json

from tests.e2e import MakeTool, Tool, anthropic, plan_json

BLUE = {"RECONCILER_WORKSPACE": "blue"}
WARNING = (
    "takeover: a (update) is managed by workspace blue on this cluster: "
    "apply refuses it without --allow-takeover"
)


def state_doc(tool: Tool, workspace: str) -> dict[str, object] | None:
    found = tool.es("GET", f"/reconciler-state/_doc/state-{workspace}").json()
    return found["_source"]["body"] if found.get("found") else None


def blue_manages_a(make_tool: MakeTool) -> Tool:
    tool = make_tool(state="cluster")
    tool.write("a.yaml", anthropic("a"))
    assert tool("apply", "--auto-approve", env=BLUE).code == 0
    return tool


def test_a_plan_warns_and_apply_refuses_to_take_over_another_workspaces_endpoint(
    make_tool: MakeTool,
) -> None:
    tool = blue_manages_a(make_tool)
    planned = plan_json(tool)
    assert WARNING in planned["warnings"]
    assert "allow_takeover" not in planned
    shown = tool("plan", "--markdown")
    assert shown.code == 0, shown
    assert f"> ⚠️ {WARNING}" in shown.stdout
    assert "Plan for workspace default, cluster 127.0.0.1:" in shown.stdout
    tool.reset_requests()
    refused = tool("apply", "--auto-approve")
    assert refused.code == 1, refused
    assert "a (update) is managed by workspace blue on this cluster: apply refuses" in refused.stdout
    sent = tool.requests()["requests"]
    assert not [r for r in sent if r["path"].startswith("/_inference") and r["method"] != "GET"], sent
    assert state_doc(tool, "default") is None
    # Blue itself plans as before: its own state manages a.
    assert not plan_json(tool, env=BLUE)["warnings"]


def test_a_saved_plan_carries_the_flag_and_apply_checks_it_again(make_tool: MakeTool) -> None:
    tool = blue_manages_a(make_tool)
    without = tool.root / "without.json"
    assert tool("plan", "--out", str(without)).code == 0
    refused = tool("apply", str(without))
    assert refused.code == 1, refused
    assert (
        "apply refuses to take over another workspace's endpoints without --allow-takeover" in refused.stderr
    )
    assert state_doc(tool, "default") is None
    allowed = tool.root / "allowed.json"
    assert tool("plan", "--allow-takeover", "--out", str(allowed)).code == 0
    saved = json.loads(allowed.read_text())
    assert saved["allow_takeover"] is True
    assert (
        WARNING.replace("apply refuses it without --allow-takeover", "allowed by --allow-takeover")
        in (saved["warnings"])
    )
    applied = tool("apply", str(allowed))
    assert applied.code == 0, applied
    body = state_doc(tool, "default")
    assert body is not None
    assert "a" in body["endpoints"]  # type: ignore[operator]


def test_a_file_state_is_not_guarded(make_tool: MakeTool) -> None:
    """A file records no cluster: another workspace's file beside it may be for another cluster."""
    tool = make_tool()
    tool.write("a.yaml", anthropic("a"))
    assert tool("apply", "--auto-approve", env=BLUE).code == 0
    assert (tool.root / "state.blue.json").exists()
    assert not any(w.startswith("takeover:") for w in plan_json(tool)["warnings"])
