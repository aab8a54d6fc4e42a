"""Combining environments' reports (order, exit code) and comparing their manifests, without a cluster."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from reconciler import display, environments, project, workflows
from reconciler.environments import Outcome, Rendered
from reconciler.manifests import Validation
from reconciler.manifests_yaml import Document
from reconciler.plan import Action, Change, Plan
from reconciler.reports import DriftReport, PlanReport

NO_ERRORS = Validation((), (), (), 0)


def planned(*actions: Action) -> PlanReport:
    changes = tuple(Change(f"e{i}", "completion", "anthropic", a) for i, a in enumerate(actions))
    return PlanReport(Plan({}, {}, changes), NO_ERRORS, detailed_exitcode=True)


async def test_every_environment_runs_at_once(tmp_path: Path) -> None:
    """`across` starts every environment's work before any ends: each one here waits until all have
    started, which run one after another would never see (the first would time out)."""
    names = ["dev", "staging", "prod"]
    lines = ["environments:"] + [
        f"  {n}:\n    connection: {{url_env: {n.upper()}_URL}}\n    state: file:{n}.json" for n in names
    ]
    (tmp_path / "manifests").mkdir()
    (tmp_path / "reconciler.yaml").write_text("\n".join(lines) + "\n")
    environ = {f"{n.upper()}_URL": "http://127.0.0.1:9" for n in names}  # never contacted
    started: set[str] = set()
    everyone = asyncio.Event()

    def work(target: workflows.Target) -> Any:
        async def run(es: object, backend: object) -> PlanReport:
            assert target.environment is not None
            started.add(target.environment.name)
            if started == set(names):
                everyone.set()
            await everyone.wait()
            return planned(Action.NO_OP)

        return run

    outcomes = await environments.across(project.load(tmp_path / "reconciler.yaml"), work, {}, environ, 5)
    assert [(o.environment, o.error, o.exit_code) for o in outcomes] == [(n, None, 0) for n in names]


def test_one_exit_code_failure_over_changes_over_nothing() -> None:
    quiet = Outcome("a", planned(Action.NO_OP))
    changed = Outcome("b", planned(Action.UPDATE))
    failed = Outcome("c", None, "cannot connect")
    drifted = Outcome("d", DriftReport((), 0, frozenset(), {}))
    assert environments.exit_code([quiet, drifted]) == 0
    assert environments.exit_code([quiet, changed]) == 2
    assert environments.exit_code([quiet, changed, failed]) == 1
    assert environments.exit_code([Outcome("e", PlanReport(None, NO_ERRORS))]) == 1


def test_the_markdown_lists_failures_then_destructive_changes_then_the_rest() -> None:
    outcomes = [
        Outcome("dev", planned(Action.NO_OP)),
        Outcome("staging", planned(Action.UPDATE)),
        Outcome("prod", planned(Action.CREATE, Action.REPLACE)),
        Outcome("edge", None, "no answer within 5s"),
    ]
    text = environments.markdown(outcomes, display.MarkdownView(), "Plan")
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections == ["## edge", "## prod :warning: destroys or replaces", "## staging", "## dev"]
    assert "- **edge: FAILED (no answer within 5s)**" in text
    assert "- **prod: 1 create, 1 replace**" in text
    human = environments.human(outcomes, display.HumanView())
    assert next(line for line in human.splitlines() if line.startswith("===")) == "=== dev: no changes ==="


def test_the_json_holds_one_plan_per_environment_or_its_error() -> None:
    outcomes = [Outcome("dev", planned(Action.CREATE)), Outcome("edge", None, "refused")]
    document = json.loads(environments.as_json(outcomes, "plan"))
    assert document["exit_code"] == 1
    assert [e["environment"] for e in document["environments"]] == ["dev", "edge"]
    assert document["environments"][0]["plan"]["changes"][0]["action"] == "create"
    assert document["environments"][1] == {
        "environment": "edge",
        "exit_code": 1,
        "seconds": 0.0,
        "error": "refused",
    }


def rendered(*manifests: Any) -> Rendered:
    return Rendered(tuple(Document("f.yaml", 1, m) for m in manifests), ())


def test_differences_field_by_field_and_endpoints_only_one_side_has() -> None:
    base = {
        "inference_id": "a",
        "service": "openai",
        "service_settings": {"model_id": "m", "dimensions": 512},
    }
    other = {**base, "service_settings": {"model_id": "m", "similarity": "cosine"}}
    rows = environments.differences(
        rendered(base, {"inference_id": "only-left"}), rendered(other, {"inference_id": "only-right"})
    )
    assert rows == [
        ("a", "service_settings.dimensions", 512, None),
        ("a", "service_settings.similarity", None, "cosine"),
        ("only-left", "", {"inference_id": "only-left"}, None),
        ("only-right", "", None, {"inference_id": "only-right"}),
    ]
    text = environments.differences_text(rows, "staging", "prod")
    assert "  only-left: only in staging\n" in text
    assert "  a service_settings.dimensions: 512 -> (not set in prod)\n" in text


def test_a_literal_secret_is_never_shown_a_reference_is() -> None:
    left = {"inference_id": "a", "service_settings": {"api_key": "canary-literal", "model_id": "m"}}
    right = {"inference_id": "a", "service_settings": {"api_key": "${KEY}", "model_id": "m"}}
    rows = environments.differences(rendered(left), rendered(right))
    assert rows == [("a", "service_settings.api_key", "(sensitive)", "${KEY}")]
    text = environments.render_text(rendered(left, right), "prod")
    assert "canary" not in text
    assert "${KEY}" in text
