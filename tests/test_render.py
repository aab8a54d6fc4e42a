"""The human and Markdown forms of a plan, and of drift."""

from __future__ import annotations

from reconciler import render
from reconciler.plan import Action, Change, DiffEntry, Finding, Plan, PlannedSecret


def change(i: int, action: Action = Action.REPLACE) -> Change:
    return Change(
        inference_id=f"endpoint-{i:05}",
        task_type="text_embedding",
        service="openai",
        action=action,
        reasons=("manifest-changed",),
        diff=(
            DiffEntry("service_settings.model_id", "text-embedding-3-small", "text-embedding-3-large"),
            DiffEntry("service_settings.api_key", "(sensitive)", "(sensitive, changed)"),
            DiffEntry("task_settings.user", "alice", None),
        ),
        replace_paths=("service_settings.model_id",),
        references={"pipelines": ("ingest",), "indexes": ()},
        secrets={"api_key": PlannedSecret("${OPENAI_API_KEY}", "hmac-sha256:00")},
    )


def plan_of(*changes: Change, errors: tuple[str, ...] = ()) -> Plan:
    return Plan(
        cluster={"url": "http://es:9200", "version": "9.5.0"},
        state={"lineage": "l", "serial": 3},
        changes=changes,
        errors=errors,
    )


def test_human_form() -> None:
    text = render.human(plan_of(change(1), change(2, Action.DELETE), errors=("boom",)))
    assert "  # endpoint-00001 must be replaced (manifest-changed)" in text
    assert (
        '      ~ service_settings.model_id: "text-embedding-3-small" -> "text-embedding-3-large"  # forces replacement'
        in text
    )
    assert "      ~ service_settings.api_key: (sensitive) -> (sensitive, changed)" in text
    assert '      - task_settings.user = "alice"' in text
    assert "      ! used by pipelines: ingest" in text
    assert "  - endpoint-00002" in text
    assert "Error: boom" in text
    assert text.endswith("Plan: 0 to create, 0 to update, 1 to replace, 1 to delete.\n")
    assert "\x1b[" not in text
    assert "\x1b[35m" in render.human(plan_of(change(1)), color=True)


def test_no_changes() -> None:
    assert render.human(plan_of(change(1, Action.NO_OP))).endswith(
        "No changes. The cluster matches the manifests.\n"
    )


def test_markdown_stays_under_the_comment_limit_however_large_the_plan() -> None:
    plan = plan_of(*(change(i) for i in range(10_000)))
    text = render.markdown(plan)
    assert len(text) < 60_000
    assert text.startswith(
        "### reconciler plan\n\n**Plan: 0 to create, 0 to update, 10000 to replace, 0 to delete.**"
    )
    assert "more change(s): see the plan file" in text
    assert text.count("<details>") == text.count("</details>") > 100
    small = render.markdown(plan_of(change(1)))
    assert "more change(s)" not in small


def test_drift_forms() -> None:
    finding = Finding("drift-1", "e5", "service_settings.num_threads", 1, 2, "changed")
    assert "drift: e5: service_settings.num_threads changed: applied 1, live 2" in render.drift_human(
        [finding], 3
    )
    assert (
        "| `e5` | `service_settings.num_threads` | changed | `1` | `2` | **new** |"
        in render.drift_markdown([finding], 3)
    )
    assert "| `2` | known |" in render.drift_markdown([finding], 3, frozenset({"drift-1"}))
    assert "applied 1, live 2 (known)\n1 finding(s) on 1 of 3 endpoint(s), 0 new." in render.drift_human(
        [finding], 3, frozenset({"drift-1"})
    )
    assert render.drift_human([], 3).startswith("No drift")


def test_only_the_redaction_markers_print_unquoted() -> None:
    assert render._value("(sensitive)") == "(sensitive)"
    assert render._value("(sensitive, changed)") == "(sensitive, changed)"
    assert render._value("(sensitive) is what I typed") == '"(sensitive) is what I typed"'
