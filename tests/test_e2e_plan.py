"""End to end, over a real socket, for 8.19 and 9.x: plan, show, drift, apply for every reason and action."""

from __future__ import annotations

import hashlib
import json

import pytest

from tests.e2e import CLAUDE, E5, MakeTool, Tool, actions, anthropic, plan_json, saved_plan

VERSIONS = ("8.19.3", "9.5.0")


@pytest.mark.parametrize("version", VERSIONS)
def test_plan_apply_plan_is_empty_for_the_examples(make_tool: MakeTool, version: str) -> None:
    tool = make_tool(version=version)
    tool.use_examples()
    assert tool("validate", "--es-version", ".".join(version.split(".")[:2])).code == 0
    planned = tool("plan", "--detailed-exitcode")
    assert planned.code == 2, planned
    assert planned.stdout.splitlines()[-1] == "Plan: 5 to create, 0 to update, 0 to replace, 0 to delete."
    applied = tool("apply", "--auto-approve")
    assert applied.code == 0, applied
    assert "Apply finished: 5 done, 0 failed, 0 skipped." in applied.stdout
    assert "The cluster matches the manifests." in applied.stdout
    again = tool("plan", "--detailed-exitcode")
    assert again.code == 0, again
    assert again.stdout.splitlines()[-1] == "No changes. The cluster matches the manifests."
    assert tool("drift").code == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_the_anthropic_example_creates_with_the_seeds_body(make_tool: MakeTool, version: str) -> None:
    tool = make_tool(version=version)
    tool.write("claude.yaml", CLAUDE)
    (change,) = plan_json(tool)["changes"]
    assert change["desired"] == {
        "service": "anthropic",
        "service_settings": {
            "api_key": "${ANTHROPIC_API_KEY}",
            "model_id": "claude-3-5-sonnet-20240620",
            "rate_limit": {"requests_per_minute": 50},
        },
        "task_settings": {"max_tokens": 1024, "temperature": 0.7},
    }
    assert tool("apply", "--auto-approve").code == 0
    live = tool.es("GET", "/_inference/completion/claude").json()["endpoints"][0]
    assert live["task_settings"] == {"max_tokens": 1024, "temperature": 0.7}
    sent = json.dumps(tool.env["ANTHROPIC_API_KEY"], sort_keys=True)
    assert tool.es("GET", "/_emulator/endpoints/claude/secrets").json() == {
        "api_key": hashlib.sha256(sent.encode()).hexdigest()
    }


@pytest.mark.parametrize("version", VERSIONS)
def test_every_reason_and_action(make_tool: MakeTool, version: str) -> None:
    tool = make_tool(version=version)
    tool.write("a.yaml", anthropic("a"))
    tool.write("b.yaml", anthropic("b"))
    tool.write("e5.yaml", E5)
    assert actions(plan_json(tool)) == {
        "a": ("create", "new"),
        "b": ("create", "new"),
        "e5": ("create", "new"),
    }
    assert tool("apply", "--auto-approve").code == 0

    def step(expected: dict[str, tuple[str, str | None]], *args: str) -> None:
        assert actions(plan_json(tool, *args)) == expected
        result = tool("apply", "--auto-approve", *args)
        assert result.code == 0, result
        assert not actions(plan_json(tool)), "the apply should converge"

    tool.write("a.yaml", anthropic("a", max_tokens=128))
    step({"a": ("update", "manifest-changed")})
    tool.write("e5.yaml", E5.replace("num_allocations: 2", "num_allocations: 3"))
    # On 8.19 an `_update` would reset e5's chunking (C5): a replace converges in one apply.
    step({"e5": ("replace" if version.startswith("8.") else "update", "manifest-changed")})
    tool.write(
        "a.yaml", anthropic("a", max_tokens=128).replace("claude-3-5-sonnet-20240620", "claude-3-7-sonnet")
    )
    step({"a": ("replace", "manifest-changed")})
    _drift_is_reported_new_then_known(tool)
    step({"b": ("update", "drift")})
    rotated = {"ANTHROPIC_API_KEY": "sk-ant-rotated"}
    assert actions(plan_json(tool, env=rotated)) == {
        "a": ("update", "secret-rotated"),
        "b": ("update", "secret-rotated"),
    }
    assert tool("apply", "--auto-approve", env=rotated).code == 0
    assert not actions(plan_json(tool, env=rotated))
    tool.env.update(rotated)
    tool.es("DELETE", "/_inference/b")
    step({"b": ("create", "missing-from-cluster")})
    step({"e5": ("replace", "forced")}, "--replace", "e5")
    tool.remove("b.yaml")
    step({"b": ("delete", "removed-from-manifests")})
    assert "b" not in tool.live_ids()
    tool.es(
        "PUT",
        "/_inference/completion/a/_update",
        json={"service_settings": {"api_key": "x"}, "task_settings": {"max_tokens": 9}},
    )
    assert actions(plan_json(tool, "--refresh-only")) == {"a": ("read", "drift")}
    assert tool("apply", "--auto-approve", "--refresh-only").code == 0
    assert tool("drift").code == 0
    assert actions(plan_json(tool, "--destroy")) == {"a": ("delete", "destroy"), "e5": ("delete", "destroy")}
    assert tool("apply", "--auto-approve", "--destroy").code == 0
    assert tool.live_ids() == set()


def _drift_is_reported_new_then_known(tool: Tool) -> None:
    """Drift on b is found and new; on a second run it is known, and new drift on a is new."""
    tool.es(
        "PUT",
        "/_inference/completion/b/_update",
        json={"service_settings": {"api_key": "x"}, "task_settings": {"max_tokens": 5}},
    )
    drift = tool("drift", "--json")
    assert drift.code == 2
    (finding,) = drift.json()["findings"]
    assert (
        finding["inference_id"],
        finding["path"],
        finding["kind"],
        finding["applied"],
        finding["live"],
    ) == (
        "b",
        "task_settings.max_tokens",
        "changed",
        64,
        5,
    )
    assert finding["new"]
    assert drift.json()["summary"]["new_findings"] == 1
    known = tool.root / "drift.json"
    known.write_text(drift.stdout)
    tool.es("PUT", "/_inference/completion/a/_update", json={"task_settings": {"max_tokens": 7}})
    again = tool("drift", "--json", "--known", str(known))
    assert again.code == 2
    assert {(f["inference_id"], f["new"]) for f in again.json()["findings"]} == {("b", False), ("a", True)}
    assert again.json()["summary"]["new_findings"] == 1
    human = tool("drift", "--known", str(known)).stdout
    assert "live 5 (known)" in human
    assert "live 7\n" in human
    assert "1 new" in human
    first_run = tool("drift", "--known", str(tool.root / "none-yet.json"))
    assert first_run.code == 2
    assert "every finding counts as new" in first_run.stderr
    (tool.root / "bad.json").write_text("{}")
    bad = tool("drift", "--known", str(tool.root / "bad.json"))
    assert bad.code == 1
    assert "not a drift --json output" in bad.stderr
    tool.es("PUT", "/_inference/completion/a/_update", json={"task_settings": {"max_tokens": 128}})


def test_state_only_actions_write_the_state_and_send_nothing(make_tool: MakeTool) -> None:
    tool = make_tool()
    tool.write("a.yaml", anthropic("a"))
    tool.write("b.yaml", anthropic("b"))
    assert tool("apply", "--auto-approve").code == 0
    state_file = tool.root / "state.json"
    written = state_file.read_text()
    assert "Apply finished: 0 done" in tool("apply", "--auto-approve").stdout
    assert state_file.read_text() == written, "a plan with no changes wrote the state"

    tool.write("a.yaml", anthropic("a") + "lifecycle: {prevent_destroy: true}\n")
    tool.es("DELETE", "/_inference/b")
    tool.remove("b.yaml")
    assert actions(plan_json(tool)) == {
        "a": ("adopt", "lifecycle-changed"),
        "b": ("forget", "missing-from-cluster"),
    }
    human = tool("plan", "--detailed-exitcode")
    assert human.code == 2, human
    assert "  = a  [completion, anthropic]" in human.stdout
    assert " -= b  [completion, anthropic]" in human.stdout
    assert human.stdout.splitlines()[-1] == (
        "Plan: 0 to create, 0 to update, 0 to replace, 0 to delete, 1 to adopt, 1 to forget."
    )
    tool.reset_requests()
    assert tool("apply", "--auto-approve").code == 0
    assert not [r for r in tool.requests()["requests"] if r["path"].startswith("/_inference/completion")]
    state = json.loads(state_file.read_text())
    assert set(state["endpoints"]) == {"a"}
    assert state["endpoints"]["a"]["lifecycle"]["prevent_destroy"] is True
    assert tool("plan", "--detailed-exitcode").code == 0


def test_targets_limit_the_plan(make_tool: MakeTool) -> None:
    tool = make_tool()
    tool.write("a.yaml", anthropic("a"))
    tool.write("b.yaml", anthropic("b"))
    assert actions(plan_json(tool, "--target", "a")) == {"a": ("create", "new")}
    assert tool("apply", "--auto-approve", "--target", "a").code == 0
    assert tool.live_ids() == {"a"}


@pytest.mark.parametrize("version", VERSIONS)
def test_a_tainted_endpoint_is_replaced(make_tool: MakeTool, version: str) -> None:
    tool = make_tool("--fail-model", ".multilingual-e5-small", version=version)
    tool.write("e5.yaml", E5)
    failed = tool("apply", "--auto-approve")
    assert failed.code == 1, failed
    assert "Failed: e5" in failed.stderr
    assert "emulated failure" in failed.stderr
    assert actions(plan_json(tool)) == {"e5": ("replace", "tainted")}


@pytest.mark.parametrize("version", VERSIONS)
def test_secret_unknown_after_import(make_tool: MakeTool, version: str) -> None:
    tool = make_tool(version=version)
    body = {
        "service": "anthropic",
        "service_settings": {"api_key": "x", "model_id": "m"},
        "task_settings": {"max_tokens": 10},
    }
    tool.es("PUT", "/_inference/completion/legacy", json=body)
    imported = tool("import", "legacy")
    assert imported.code == 0, imported
    assert "set LEGACY_API_KEY" in imported.stdout
    text = (tool.manifests / "legacy.yaml").read_text()
    assert "api_key: ${LEGACY_API_KEY}" in text
    assert "rate_limit" not in text  # the server's default is left out
    assert actions(plan_json(tool, env={"LEGACY_API_KEY": "k"})) == {"legacy": ("update", "secret-unknown")}


@pytest.mark.parametrize("version", VERSIONS)
def test_a_referenced_replace_is_blocked_unless_allowed(make_tool: MakeTool, version: str) -> None:
    tool = make_tool(version=version)
    tool.write("e5.yaml", E5)
    assert tool("apply", "--auto-approve").code == 0
    tool.es("PUT", "/_ingest/pipeline/embed", json={"processors": [{"inference": {"model_id": "e5"}}]})
    tool.es(
        "PUT",
        "/docs",
        json={"mappings": {"properties": {"body": {"type": "semantic_text", "inference_id": "e5"}}}},
    )
    tool.write("e5.yaml", E5.replace(".multilingual-e5-small", ".multilingual-e5-small_linux-x86_64"))
    blocked = tool("plan", "--json")
    assert blocked.code == 1
    (change,) = [c for c in blocked.json()["changes"] if c["inference_id"] == "e5"]
    assert change["references"] == {"pipelines": ["embed"], "indexes": ["docs"]}
    assert "needs --allow-referenced" in blocked.json()["errors"][0]
    human = tool("plan")
    assert human.code == 1
    assert "! used by pipelines: embed" in human.stdout
    assert tool("apply", "--auto-approve").code == 1
    assert (
        tool.es("GET", "/_inference/e5").json()["endpoints"][0]["service_settings"]["model_id"]
        == ".multilingual-e5-small"
    )
    allowed = tool("apply", "--auto-approve", "--allow-referenced")
    assert allowed.code == 0, allowed
    assert (
        tool.es("GET", "/_inference/e5").json()["endpoints"][0]["service_settings"]["model_id"]
        == ".multilingual-e5-small_linux-x86_64"
    )


def test_prevent_destroy_stops_the_plan(make_tool: MakeTool) -> None:
    tool = make_tool()
    tool.write("a.yaml", anthropic("a") + "lifecycle: {prevent_destroy: true}\n")
    assert tool("apply", "--auto-approve").code == 0
    tool.remove("a.yaml")
    planned = tool("plan")
    assert planned.code == 1
    assert "a: lifecycle.prevent_destroy forbids this delete" in planned.stdout
    assert tool("apply", "--auto-approve").code == 1
    assert tool.live_ids() == {"a"}


def test_show_and_markdown_and_exit_codes(make_tool: MakeTool) -> None:
    tool = make_tool()
    tool.write("a.yaml", anthropic("a"))
    out = tool.root / "plan.json"
    assert tool("plan", "--out", str(out)).code == 0
    assert tool("show", str(out)).stdout == tool("plan").stdout
    assert json.loads(tool("show", str(out), "--json").stdout) == json.loads(out.read_text())
    markdown = tool("plan", "--markdown").stdout
    assert markdown.startswith("### reconciler plan\n\n**Plan: 1 to create")
    assert "<details>" in markdown
    out.write_text(json.dumps({"format_version": 99}))
    shown = tool("show", str(out))
    assert shown.code == 1
    assert "format_version 99 is not supported" in shown.stderr


def test_plan_cost_does_not_grow_with_endpoints_and_writes_nothing(make_tool: MakeTool) -> None:
    counts = []
    for n in (3, 40):
        tool = make_tool(state="cluster")
        for i in range(n):
            tool.write(f"e{i}.yaml", anthropic(f"e{i}"))
        tool.reset_requests()
        assert tool("plan").code == 0
        counted = tool.requests()
        counts.append(counted["total"])
        assert tool.writes() == 0, counted
        assert set(counted["by_method"]) == {"GET"}
        assert tool.es("GET", "/reconciler-state").status_code == 404  # not even the state index
    # GET /, the endpoints, the state, and the search for other workspaces' states (takeover guard)
    assert counts[0] == counts[1] == 4


def test_a_stale_saved_plan_is_refused_before_any_change(make_tool: MakeTool) -> None:
    tool = make_tool()
    saved = saved_plan(tool)
    tool.es(
        "PUT",
        "/_inference/completion/a/_update",
        json={"service_settings": {"api_key": "x"}, "task_settings": {"max_tokens": 7}},
    )
    tool.reset_requests()
    refused = tool("apply", str(saved))
    assert refused.code == 1
    assert "stale" in refused.stderr
    assert "a changed in the cluster since the plan" in refused.stderr
    counted = tool.requests()["by_method"]
    # The lock lives in the file state: nothing at all reached the cluster.
    assert counted.get("PUT", 0) == 0, counted
    assert counted.get("DELETE", 0) == counted.get("POST", 0) == 0


def test_a_saved_plan_is_applied_exactly(make_tool: MakeTool) -> None:
    tool = make_tool()
    saved = saved_plan(tool, applied_first=False)
    tool.write("a.yaml", anthropic("a", max_tokens=999))  # changed after review: not applied
    applied = tool("apply", str(saved))
    assert applied.code == 0, applied
    assert tool.es("GET", "/_inference/a").json()["endpoints"][0]["task_settings"]["max_tokens"] == 100
    again = tool("apply", str(saved))
    assert again.code == 1
    assert "stale" in again.stderr


def test_a_saved_plan_refuses_a_secret_that_moved(make_tool: MakeTool) -> None:
    tool = make_tool()
    saved = saved_plan(tool)
    refused = tool("apply", str(saved), env={"ANTHROPIC_API_KEY": "another"})
    assert refused.code == 1
    assert "is not the secret that was planned" in refused.stderr


def test_apply_unattended_without_auto_approve_refuses(make_tool: MakeTool) -> None:
    tool = make_tool()
    tool.write("a.yaml", anthropic("a"))
    refused = tool("apply")
    assert refused.code == 1
    assert "needs --auto-approve" in refused.stderr
    assert tool.live_ids() == set()


def test_status_wait_and_state_commands(make_tool: MakeTool) -> None:
    tool = make_tool()
    tool.write("e5.yaml", E5)
    tool.write("a.yaml", anthropic("a"))
    assert tool("apply", "--auto-approve").code == 0
    status = tool("status", "--json").json()["endpoints"]
    e5 = next(e for e in status if e["inference_id"] == "e5")
    assert e5 == {
        "inference_id": "e5",
        "task_type": "text_embedding",
        "service": "elasticsearch",
        "model_id": ".multilingual-e5-small",
        "managed": True,
        "preconfigured": False,
        "allocation": {"count": 2, "target": 2, "state": "fully_allocated"},
        "deployment_state": "started",
        "drifted": False,
    }
    assert next(e for e in status if e["inference_id"] == ".elser-2-elasticsearch")["preconfigured"]
    assert "e5: 2/2 fully allocated" in tool("wait", "e5").stdout
    listed = tool("state", "list").stdout
    assert "a  [completion, anthropic]" in listed
    shown = json.loads(tool("state", "show", "a").stdout)
    assert shown["secret_digests"]["api_key"].startswith("hmac-sha256:")
    assert tool("state", "rm", "a").code == 0
    assert "a" in tool.live_ids()
    assert tool("state", "show", "a").code == 1


def test_json_logs_put_every_stderr_line_in_json(make_tool: MakeTool) -> None:
    """A log pipeline gets events, errors and warnings included, never a bare line."""
    tool = make_tool()
    tool.write("bad.yaml", CLAUDE.replace("max_tokens: 1024", "max_tokens: lots"))
    tool.write(
        "old.yaml",
        "inference_id: old\ntask_type: sparse_embedding\nservice: elser\n"
        "service_settings: {model_id: .elser_model_2, num_allocations: 1, num_threads: 1}\n",
    )
    for run in (
        tool("plan", "--log-format", "json"),
        tool("drift", "--log-format", "json", "--known", str(tool.root / "missing.json")),
        tool("wait", "nope", "--log-format", "json"),
    ):
        events = [json.loads(line) for line in run.stderr.splitlines()]
        assert events, run
        assert all(e["level"] in ("info", "warning", "error") and e["timestamp"] for e in events)
    messages = [
        json.loads(line)["message"] for line in tool("plan", "--log-format", "json").stderr.splitlines()
    ]
    assert any("bad.yaml:" in m and "task_settings.max_tokens" in m for m in messages)
    assert any("old.yaml:" in m and "deprecated" in m for m in messages)


def test_a_bad_state_option_is_an_error_not_a_traceback(make_tool: MakeTool) -> None:
    tool = make_tool()
    result = tool("plan", "--state", "s3://bucket")
    assert result.code == 1
    assert result.stderr == "Error: --state 's3://bucket': give cluster or file:PATH\n"


@pytest.mark.parametrize("version", VERSIONS)
def test_an_elser_service_manifest_applies_and_stays_without_changes(
    make_tool: MakeTool, version: str
) -> None:
    """`service: elser` is stored as `elasticsearch`: no perpetual replace after the apply."""
    tool = make_tool(version=version)
    tool.write(
        "sparse.yaml",
        "inference_id: sparse\ntask_type: sparse_embedding\nservice: elser\n"
        "service_settings: {num_allocations: 1, num_threads: 1}\n",
    )
    applied = tool("apply", "--auto-approve")
    assert applied.code == 0, applied
    assert tool.es("GET", "/_inference/sparse").json()["endpoints"][0]["service"] == "elasticsearch"
    assert not actions(plan_json(tool))


def test_a_task_type_change_is_planned_and_applied_as_a_replace(make_tool: MakeTool) -> None:
    """The reference check (DELETE ?dry_run=true) and the delete itself go to the endpoint's live
    task type: Elasticsearch refuses a path that names another one."""
    tool = make_tool()
    tool.write("e.yaml", E5.replace("inference_id: e5", "inference_id: e"))
    assert tool("apply", "--auto-approve").code == 0
    retyped = "inference_id: e\ntask_type: sparse_embedding\nservice: elasticsearch\n"
    tool.write(
        "e.yaml",
        retyped + "service_settings: {model_id: .elser_model_2, num_threads: 1, num_allocations: 1}\n",
    )
    assert actions(plan_json(tool)) == {"e": ("replace", "manifest-changed")}
    applied = tool("apply", "--auto-approve")
    assert applied.code == 0, applied
    (live,) = tool.es("GET", "/_inference/e").json()["endpoints"]
    assert live["task_type"] == "sparse_embedding"
    assert tool("plan", "--detailed-exitcode").code == 0
