"""A canary secret goes through every command; it never shows in output, logs, plan files or state."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e import CLAUDE, MakeTool

CANARY = "sk-canary-0f3c9d2b"


@pytest.mark.parametrize("state", ["file", "cluster"])
def test_a_canary_secret_never_leaks(make_tool: MakeTool, tmp_path: Path, state: str) -> None:
    tool = make_tool(state="cluster" if state == "cluster" else "")
    tool.env["ANTHROPIC_API_KEY"] = CANARY
    tool.write("claude.yaml", CLAUDE.replace("inference_id: claude", f"inference_id: claude-{state}"))
    tool.write(
        "secret-file.yaml",
        CLAUDE.replace("inference_id: claude", f"inference_id: filed-{state}").replace(
            "${ANTHROPIC_API_KEY}", f"${{file:{tmp_path / 'key'}}}"
        ),
    )
    (tmp_path / "key").write_text(CANARY + "\n")
    plan_file = tool.root / "plan.json"
    runs = [
        tool("validate"),
        tool("plan", "--out", str(plan_file)),
        tool("plan", "--json"),
        tool("plan", "--markdown"),
        tool("show", str(plan_file)),
        tool("show", str(plan_file), "--json"),
        tool("apply", str(plan_file), "--log-format", "json"),
        tool("plan", "--json", env={"ANTHROPIC_API_KEY": CANARY + "-rotated"}),
        tool("apply", "--auto-approve", env={"ANTHROPIC_API_KEY": CANARY + "-rotated"}),
        tool("drift", "--json"),
        tool("status", "--json"),
        tool("state", "list"),
        tool("state", "show", f"claude-{state}"),
        tool("import", "--all", "--out", str(tool.root / "imported")),
        tool.process("plan", "--log-format", "json"),
        # A password in the URL: sent as basic auth, never printed with the URL.
        tool("plan", "--json", "--url", tool.url.replace("://", f"://elastic:{CANARY}@")),
    ]
    # A literal secret and a misspelt secret key: the errors must not print the value either.
    tool.write(
        "bad.yaml",
        CLAUDE.replace("${ANTHROPIC_API_KEY}", CANARY).replace("inference_id: claude", "inference_id: bad"),
    )
    tool.write(
        "typo.yaml",
        CLAUDE.replace("api_key:", "apikey:").replace("inference_id: claude", "inference_id: typo"),
    )
    runs += [tool("validate"), tool("plan"), tool("apply", "--auto-approve")]
    assert runs[6].code == 0, runs[6]
    for run in runs:
        assert CANARY not in run.stdout + run.stderr, run
    for path in tool.root.rglob("*"):
        if path.is_file() and path.name != "bad.yaml":  # the user's own mistake, as written
            assert CANARY not in path.read_text(), path
    if state == "cluster":
        assert CANARY not in tool.es("GET", "/reconciler-state/_doc/state-default").text
    assert CANARY not in tool.es("GET", "/_inference").text
