"""The human and Markdown forms of a plan, and of drift."""

from __future__ import annotations

import dataclasses

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
    plan = plan_of(*(change(i, Action.UPDATE) for i in range(10_000)))
    text = render.markdown(plan)
    assert len(text) < 60_000
    assert text.startswith(
        "### reconciler plan\n\n**Plan: 0 to create, 10000 to update, 0 to replace, 0 to delete.**"
    )
    assert "more change(s): see the plan file" in text
    assert text.count("<details>") == text.count("</details>") > 100
    small = render.markdown(plan_of(change(1)))
    assert "more change(s)" not in small


def create(i: int) -> Change:
    return Change(
        inference_id=f"new-{i:05}",
        task_type="sparse_embedding",
        service="elasticsearch",
        action=Action.CREATE,
        reasons=("new",),
        after={
            "task_type": "sparse_embedding",
            "service": "elasticsearch",
            "service_settings": {"model_id": ".elser_model_2", "num_allocations": 1, "num_threads": 1},
            "chunking_settings": {"strategy": "sentence", "max_chunk_size": 250, "sentence_overlap": 1},
        },
        desired={
            "service": "elasticsearch",
            "service_settings": {"model_id": ".elser_model_2", "num_allocations": 1, "num_threads": 1},
        },
    )


def test_deletes_and_replaces_come_first_and_are_never_cut_behind_creates() -> None:
    plan = plan_of(*(create(i) for i in range(1500)), change(1), change(2, Action.DELETE))
    text = render.markdown(plan)
    assert len(text) < 60_000
    deleted, replaced = (
        text.index("<b>endpoint-00002</b> will be deleted"),
        text.index("<b>endpoint-00001</b>"),
    )
    assert deleted < replaced < text.index("<b>new-00000</b>")
    assert "#### Deletes and replaces (2)" in text
    assert "#### Other changes (1500)" in text
    assert "more change(s): see the plan file" in text
    # Both are folded with their diff, not only named.
    assert text.count("must be replaced (manifest-changed)</summary>") == 1
    human = render.human(plan)
    assert (
        human.index("# endpoint-00002 will be deleted")
        < human.index("# endpoint-00001")
        < human.index("# new-00000")
    )


def test_destructive_changes_too_many_to_fold_are_each_named() -> None:
    plan = plan_of(*(change(i) for i in range(900)), *(create(i) for i in range(50)))
    text = render.markdown(plan)
    assert len(text) < 60_000
    assert all(f"endpoint-{i:05}" in text for i in range(900))
    assert "**Also to replace** (" in text
    assert "<b>new-00000</b>" not in text
    assert "…and 50 more change(s)" in text
    # Past what even names fit, the comment says how many it could not name.
    huge = render.markdown(plan_of(*(change(i) for i in range(10_000))))
    assert len(huge) < 60_000
    assert "more delete(s) and replace(s) than one comment can name: see the plan file." in huge


def test_header_names_workspace_and_cluster_without_credentials_and_a_table_per_action() -> None:
    plan = Plan(
        cluster={
            "url": "https://elastic:hunter2@es.example.com:9243/",
            "version": "9.1.3",
            "cluster_uuid": "Xb9",
            "cluster_name": "search-prod",
        },
        state={"lineage": "l", "serial": 7, "workspace": "staging"},
        changes=(create(1), create(2), change(3, Action.DELETE), change(4, Action.ADOPT)),
    )
    text = render.markdown(plan)
    assert (
        "Plan for workspace staging, cluster es.example.com:9243 (search-prod / Xb9), "
        "Elasticsearch 9.1.3, state serial 7." in text
    )
    assert "hunter2" not in text
    assert "elastic:" not in text
    assert (
        "| action | count |\n|---|---:|\n| `-` delete | 1 |\n| `+` create | 2 |\n| `=` adopt | 1 |\n" in text
    )
    human = render.human(plan)
    assert human.startswith("Plan for workspace staging, cluster es.example.com:9243 (search-prod / Xb9)")
    assert "- delete: 1  + create: 2  = adopt: 1\n" in human
    # A plan made with --env names its environment first: `show` of a plan file says where it goes.
    staged = render.human(dataclasses.replace(plan, environment="staging"))
    assert staged.startswith("Plan for environment staging, workspace staging, cluster es.example.com:9243")


def test_create_marks_the_values_the_server_fills() -> None:
    lines = render.change_lines(create(1))
    assert '+ service_settings.model_id = ".elser_model_2"' in lines
    assert "+ service_settings.num_threads = 1" in lines
    assert '+ chunking_settings.strategy = "sentence"  (default)' in lines
    assert "+ chunking_settings.max_chunk_size = 250  (default)" in lines
    markdown = render.markdown(plan_of(create(1)))
    assert "+ chunking_settings.sentence_overlap = 1  (default)" in markdown
    # A secret (a reference in the desired body, redacted in after) is asked for, not a default.
    secret = Change(
        "o",
        "text_embedding",
        "openai",
        Action.CREATE,
        ("new",),
        after={
            "service_settings": {
                "api_key": "(sensitive)",
                "model_id": "m",
                "rate_limit": {"requests_per_minute": 3000},
            }
        },
        desired={"service": "openai", "service_settings": {"api_key": "${KEY}", "model_id": "m"}},
    )
    assert render.server_filled(secret) == {"service_settings.rate_limit.requests_per_minute"}
    # A plan without a desired body cannot tell them apart: nothing is marked.
    assert render.server_filled(Change("x", "t", "s", Action.CREATE, after={"a": 1})) == frozenset()


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
