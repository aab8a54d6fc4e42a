"""A canary secret goes through every command; it never shows in output, logs, plan files or state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    assert [r.code for r in runs] == [0] * 16 + [1, 1, 1], [str(r) for r in runs]
    for run in runs:
        assert CANARY not in run.stdout + run.stderr, run
    for path in tool.root.rglob("*"):
        if path.is_file() and path.name != "bad.yaml":  # the user's own mistake, as written
            assert CANARY not in path.read_text(), path
    if state == "cluster":
        assert CANARY not in tool.es("GET", "/reconciler-state/_doc/state-default").text
    assert CANARY not in tool.es("GET", "/_inference").text


# DESIGN.md §9: a value that came from ${...} is sensitive in any field, not only the catalog's
# secret ones. `model_id: ${SOME_SECRET}` is sent (the cluster holds it, as asked), never shown.
FIELD_CANARY = "sk-field-canary-7a41e5c0"


def _field_tool(make_tool: MakeTool) -> Any:
    tool = make_tool()
    tool.env["SOME_SECRET"] = FIELD_CANARY
    tool.write(
        "field.yaml",
        CLAUDE.replace("inference_id: claude", "inference_id: field").replace(
            "claude-3-5-sonnet-20240620", "${SOME_SECRET}"
        ),
    )
    return tool


def _assert_no_field_canary(tool: Any, runs: list[Any]) -> None:
    for run in runs:
        assert FIELD_CANARY not in run.stdout + run.stderr, run
    for path in tool.root.rglob("*"):
        if path.is_file():
            assert FIELD_CANARY not in path.read_text(), path


def test_a_canary_in_a_non_secret_field_never_leaks_from_a_plan(make_tool: MakeTool) -> None:
    tool = _field_tool(make_tool)
    plan_file = tool.root / "plan.json"
    runs = [
        tool("validate"),
        tool("plan"),
        tool("plan", "--json"),
        tool("plan", "--markdown"),
        tool("plan", "--out", str(plan_file)),
        tool("show", str(plan_file)),
        tool("show", str(plan_file), "--json"),
        tool.process("plan", "--log-format", "json"),
    ]
    assert all(run.code == 0 for run in runs), runs
    assert "(sensitive)" in runs[1].stdout
    put = runs[2].json()["changes"][0]["requests"][0]
    assert put["body"]["service_settings"]["model_id"] == "${SOME_SECRET}"  # substituted at send time
    _assert_no_field_canary(tool, runs)


def test_a_canary_in_a_non_secret_field_never_leaks_after_apply(make_tool: MakeTool) -> None:
    tool = _field_tool(make_tool)
    runs = [tool("apply", "--auto-approve")]
    assert runs[0].code == 0, runs[0]
    # Sent, as asked: the cluster holds it and echoes it; the tool masks what it echoes.
    assert FIELD_CANARY in tool.es("GET", "/_inference/completion/field").text
    runs += [
        tool("plan"),
        tool("plan", "--json"),
        tool("plan", "--json", env={"SOME_SECRET": FIELD_CANARY + "-rotated"}),
        tool("status", "--json"),
        tool("drift", "--json"),
        tool("state", "show", "field"),
    ]
    _assert_no_field_canary(tool, runs)
    # Compared by digest: nothing to do once applied, a rotation replaces (model_id is not updatable).
    assert [c["action"] for c in runs[2].json()["changes"]] == ["no-op"], runs[2]
    (rotated,) = runs[3].json()["changes"]
    assert rotated["action"] == "replace", runs[3]
    assert "secret-rotated" in rotated["reasons"], runs[3]
    # Rotating the api_key updates in place: the _update body carries no referenced model_id.
    rotation = tool("apply", "--auto-approve", env={"ANTHROPIC_API_KEY": "sk-ant-rotated"})
    assert rotation.code == 0, rotation
    (update,) = [line for line in rotation.stdout.splitlines() if "/_update" in line]
    assert '"model_id"' not in update, rotation
    imported = tool("import", "--all", "--out", str(tool.root / "imported"))
    _assert_no_field_canary(tool, [rotation, imported])
