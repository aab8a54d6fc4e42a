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
        # The plan's header names the cluster by host and port only.
        tool("plan", "--markdown", "--url", tool.url.replace("://", f"://elastic:{CANARY}@")),
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
    assert [r.code for r in runs] == [0] * 17 + [1, 1, 1], [str(r) for r in runs]
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


def _reviewing(tool: Any, plan_file: Path) -> list[Any]:
    """What a review runs: validate, plan in each form, a plan saved to `plan_file` and shown."""
    return [
        tool("validate"),
        tool("plan"),
        tool("plan", "--json"),
        tool("plan", "--markdown"),
        tool("plan", "--out", str(plan_file)),
        tool("show", str(plan_file)),
        tool("show", str(plan_file), "--json"),
    ]


def test_a_canary_in_a_non_secret_field_never_leaks_from_a_plan(make_tool: MakeTool) -> None:
    tool = _field_tool(make_tool)
    plan_file = tool.root / "plan.json"
    runs = [*_reviewing(tool, plan_file), tool.process("plan", "--log-format", "json")]
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


# Items 2 and 5 of the trust boundaries (DESIGN §9): server text that echoes a value the run sent.
# A model id that came from a reference: the emulator's 400 for an unknown model echoes it, and the
# deployment of a known one fails with a reason that names it.
ECHOED_CANARY = "canary-echoed-5e17b2"
FAILING_CANARY = "canary-failing-9c04d7"


def _deploying(inference_id: str, variable: str) -> str:
    return (
        f"inference_id: {inference_id}\ntask_type: text_embedding\nservice: elasticsearch\n"
        f"service_settings: {{model_id: '${{{variable}}}', num_threads: 1, num_allocations: 1}}\n"
    )


def _runs_over_every_command(tool: Any, plan_file: Path, ids: list[str]) -> list[Any]:
    """Every command, in both log formats where it logs (console in-process, JSON as a process)."""
    runs = [
        *_reviewing(tool, plan_file),
        tool.process("apply", str(plan_file), "--log-format", "json"),
        tool("apply", "--auto-approve"),
        tool.process("apply", "--auto-approve", "--log-format", "json"),
        tool("drift", "--json"),
        tool("status"),
        tool("status", "--json"),
        tool("state", "list"),
        *(tool("state", "show", i) for i in ids),
        tool("wait", *ids, "--timeout", "5s"),
        tool.process("wait", *ids, "--timeout", "5s", "--log-format", "json"),
        tool("import", "--all", "--out", str(tool.root / "imported")),
    ]
    return runs


def test_a_canary_echoed_in_server_errors_and_wait_failures_never_leaks(make_tool: MakeTool) -> None:
    # The PUT answers 408 at once and the deployment fails a second later: during the wait.
    failing = ("--trained-model", FAILING_CANARY, "--fail-model", FAILING_CANARY, "--deploy-seconds", "2")
    tool = make_tool(*failing, "--max-put-wait", "0.05", state="cluster")
    # Signed: a saved plan with references in non-secret fields is applied only so (plancheck).
    tool.env |= {"ECHOED": ECHOED_CANARY, "FAILING": FAILING_CANARY, "RECONCILER_PLAN_KEY": "k"}
    tool.write("echoes.yaml", _deploying("echoes", "ECHOED"))
    tool.write("fails.yaml", _deploying("fails", "FAILING"))
    runs = _runs_over_every_command(tool, tool.root / "plan.json", ["fails"])
    assert all(r.code in (0, 1) for r in runs), [str(r) for r in runs]  # each ran, none misused
    assert [r.code for r in runs[:7]] == [0] * 7, [str(r) for r in runs[:7]]
    applied = runs[7:10]
    assert [r.code for r in applied] == [1, 1, 1], [str(r) for r in applied]
    # The errors are shown (redacted), not lost: the unknown model's 400 and the failed deployment.
    assert "model id does not match any models" in applied[0].stderr + applied[0].stdout, applied[0]
    assert "Failed to load model [(sensitive)]" in applied[0].stderr + applied[0].stdout, applied[0]
    assert "deployment fails failed" in applied[0].stderr + applied[0].stdout, applied[0]  # in the wait
    for run in runs:
        for canary in (ECHOED_CANARY, FAILING_CANARY):
            assert canary not in run.stdout + run.stderr, run
    for path in tool.root.rglob("*"):
        for canary in (ECHOED_CANARY, FAILING_CANARY) if path.is_file() else ():
            assert canary not in path.read_text(), path
    assert FAILING_CANARY not in tool.es("GET", "/reconciler-state/_doc/state-default").text


def test_a_tampered_plan_naming_a_canary_is_refused_without_showing_it(make_tool: MakeTool) -> None:
    """Item 3: an edited plan file whose `secrets` point a non-secret field at a CI variable."""
    import json

    tool = make_tool()
    tool.env["CI_TOKEN"] = FIELD_CANARY
    tool.write("claude.yaml", CLAUDE)
    plan_file = tool.root / "plan.json"
    assert tool("plan", "--out", str(plan_file)).code == 0
    data = json.loads(plan_file.read_text())
    (change,) = data["changes"]
    change["secrets"]["model_id"] = {"reference": "${CI_TOKEN}", "digest": "hmac-sha256:00"}
    change["desired"]["service_settings"]["model_id"] = "${CI_TOKEN}"
    change["requests"][0]["body"]["service_settings"]["model_id"] = "${CI_TOKEN}"
    plan_file.write_text(json.dumps(data))
    runs = [
        tool("show", str(plan_file)),
        tool("show", str(plan_file), "--json"),
        tool("apply", str(plan_file)),
        tool.process("apply", str(plan_file), "--log-format", "json"),
    ]
    assert [r.code for r in runs[2:]] == [1, 1], [str(r) for r in runs]
    assert "model_id is not a secret field" in runs[2].stderr, runs[2]
    _assert_no_field_canary(tool, runs)
    assert FIELD_CANARY not in tool.es("GET", "/_inference").text
    assert not tool.live_ids()
