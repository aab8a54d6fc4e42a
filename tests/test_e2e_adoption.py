"""Adoption end to end, over a real socket: `import` writes manifests only, the next plan adopts them."""

from __future__ import annotations

import json

from tests.e2e import MakeTool, Tool, actions, plan_json

E5_LIVE = {
    "service": "elasticsearch",
    "service_settings": {"model_id": ".multilingual-e5-small", "num_threads": 1, "num_allocations": 1},
}
CLAUDE_LIVE = {
    "service": "anthropic",
    "service_settings": {"api_key": "k", "model_id": "claude-3-5-sonnet-20240620"},
    "task_settings": {"max_tokens": 8},
}


def recorded(tool: Tool, name: str = "state.json") -> set[str]:
    path = tool.root / name
    return set(json.loads(path.read_text())["endpoints"]) if path.exists() else set()


def test_import_writes_manifests_only_and_the_next_plan_adopts_them(make_tool: MakeTool) -> None:
    tool = make_tool()
    assert tool.es("PUT", "/_inference/text_embedding/e5", json=E5_LIVE).status_code == 200
    assert tool.es("PUT", "/_inference/completion/claude", json=CLAUDE_LIVE).status_code == 200
    # Another run holds the lock: import takes none, so it goes on.
    lock = tool.root / "state.json.lock"
    held = {"id": "other", "who": "ci@elsewhere", "pid": 1, "operation": "apply"}
    lock.write_text(json.dumps({**held, "created": "2026-01-01T00:00:00+00:00", "expires": 1e12}))
    tool.reset_requests()
    imported = tool("import", "e5", "claude")
    assert imported.code == 0, imported
    assert f"wrote {tool.manifests / 'e5.yaml'}\n" in imported.stdout
    assert "(set CLAUDE_API_KEY)" in imported.stdout
    assert "the state is unchanged" in imported.stdout
    assert tool.writes() == 0, tool.requests()  # nothing sent but reads
    assert not (tool.root / "state.json").exists()
    lock.unlink()

    env = {"CLAUDE_API_KEY": "k"}
    assert actions(plan_json(tool, env=env)) == {
        "e5": ("adopt", "not-in-state"),
        "claude": ("update", "secret-unknown"),  # the state cannot know the secret: it is sent
    }
    shown = tool("plan", env=env)
    assert "  # e5 will be recorded in the state (nothing is sent) (not-in-state)" in shown.stdout
    assert "\n  = e5  [text_embedding, elasticsearch]\n" in shown.stdout
    assert recorded(tool) == set()  # plan writes nothing either
    applied = tool("apply", "--auto-approve", env=env)
    assert applied.code == 0, applied
    assert recorded(tool) == {"e5", "claude"}
    assert not actions(plan_json(tool, env=env))


def test_import_never_overwrites_a_manifest_and_then_writes_none(make_tool: MakeTool) -> None:
    tool = make_tool()
    assert tool.es("PUT", "/_inference/text_embedding/e5", json=E5_LIVE).status_code == 200
    assert tool.es("PUT", "/_inference/completion/claude", json=CLAUDE_LIVE).status_code == 200
    tool.write("claude.yaml", "# mine\n")
    refused = tool("import", "--all")
    assert refused.code == 1, refused
    assert (
        f"{tool.manifests / 'claude.yaml'} already exists (import never overwrites a manifest)"
        in refused.stderr
    )
    assert (tool.manifests / "claude.yaml").read_text() == "# mine\n"
    assert not (tool.manifests / "e5.yaml").exists()  # nothing of the refused import stays
    assert not (tool.root / "state.json").exists()
