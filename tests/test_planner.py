"""The planner against golden cases (tests/planner_cases/*.yaml): desired + live + prior -> changes.

A case gives the manifests now, the manifests and the server's echo at the last apply (from which
the prior state is built as apply records it), the live endpoints, options, and the expected
changes, errors, warnings and unmanaged endpoints.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler import planner
from reconciler.catalog import Version
from reconciler.manifests import load
from reconciler.model import Desired
from reconciler.plan import Action, Plan
from reconciler.planner import Live, Memo, Options, plan, with_references
from reconciler.state import EndpointRecord, State
from reconciler.views import applied_record

CASES = sorted((Path(__file__).parent / "planner_cases").glob("*.yaml"))


def desired_from(text: str, env: dict[str, str], version: Version, folder: Path) -> list[Desired]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "m.yaml").write_text(text)
    result = load(folder, version, env)
    assert result.ok, [str(e) for e in result.errors]
    return list(result.endpoints)


def record_applied(
    desired: Desired, echo: Mapping[str, Any], state: State, version: Version
) -> EndpointRecord:
    """The state's record of `desired` once created and echoed as `echo`: the applier's own record
    (`views.applied_record`) of the change the planner makes of it."""
    (change,) = planner.plan([desired], Live({}, version), None).changes  # not `plan`: tests spy on it
    return applied_record(change, echo, desired.secrets, state.salt, "2026-01-01T00:00:00+00:00")


def run_case(case: dict[str, Any], folder: Path) -> Plan:
    desired, live, state, options = case_inputs(case, folder)
    planned = plan(desired, live, state, options)
    return with_references(planned, case.get("references", {}), case.get("allow_referenced", False))


def case_inputs(case: dict[str, Any], folder: Path) -> tuple[list[Desired], Live, State, Options]:
    """A case's manifests, live cluster, prior state and options, as the planner takes them."""
    version = Version.parse(case["version"])
    env = case.get("env", {})
    desired = desired_from(case.get("manifests", ""), env, version, folder / "now")
    live = {e["inference_id"]: e for e in case.get("live", [])}
    state = State("lineage-1", 7, "default", "salt")
    if "applied_manifests" in case:
        at_apply = desired_from(
            case["applied_manifests"], case.get("env_at_apply", env), version, folder / "then"
        )
        echoes = {e["inference_id"]: e for e in case.get("applied_live", case.get("live", []))}
        for d in at_apply:
            echo = echoes.get(d.inference_id) or {
                "inference_id": d.inference_id,
                "task_type": d.task_type,
                "service": d.service,
            }
            state = state.with_endpoint(d.inference_id, record_applied(d, echo, state, version))
    for inference_id in case.get("tainted", []):
        state = state.with_endpoint(
            inference_id, dataclasses.replace(state.endpoints[inference_id], tainted=True)
        )
    options = case.get("options", {})
    return (
        desired,
        Live(live, version, deployments=case.get("deployments", {})),
        state,
        Options(
            targets=frozenset(options.get("targets", ())),
            replace=frozenset(options.get("replace", ())),
            refresh_only=options.get("refresh_only", False),
            destroy=options.get("destroy", False),
        ),
    )


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_a_memo_shared_by_several_plans_changes_none_of_them(path: Path, tmp_path: Path) -> None:
    """`plan --all-envs` keeps what the planner derives from each manifest across the plans of its
    environments (`planner.Memo`): the same manifests planned through one memo against the case's
    cluster, an empty one and another version plan exactly as each does without it."""
    desired, live, state, options = case_inputs(yaml.safe_load(path.read_text()), tmp_path)
    other = Version(8, 19) if live.version.at_least(9, 0) else Version(9, 5)
    clusters = [
        (live, state),
        (Live({}, live.version), State("lineage-2", 1, "default", "another salt")),
        (dataclasses.replace(live, version=other), state),
    ]
    memo: Memo = {}
    for cluster, prior in clusters * 2:  # the second round reads every entry from the memo
        assert plan(desired, cluster, prior, options, memo) == plan(desired, cluster, prior, options)
    assert len(memo) == 2 * len(desired)  # one entry per manifest and version


def test_refresh_only_moves_the_state_from_the_applied_to_the_live_value(tmp_path: Path) -> None:
    case = yaml.safe_load((CASES[0].parent / "refresh-only.yaml").read_text())
    (read,) = [c for c in run_case(case, tmp_path).changes if c.action is Action.READ]
    assert [(d.path, d.before, d.after) for d in read.diff] == [("task_settings.top_n", 5, 7)]


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden_case_whole_plan(path: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The whole plan JSON (requests, bodies, secrets as references, wait, fingerprints) equals
    `<case>.plan.json`; `pytest --update-golden` rewrites those files for review in the diff."""
    planned = run_case(yaml.safe_load(path.read_text()), tmp_path)
    text = planned.dumps().replace(str(tmp_path), "$TMP")  # manifest paths in errors
    golden = path.with_suffix(".plan.json")
    if request.config.getoption("--update-golden"):
        golden.write_text(text)
    assert golden.exists(), f"{golden.name} is missing: run pytest --update-golden and review it"
    assert json.loads(text) == json.loads(golden.read_text())


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden_case(path: Path, tmp_path: Path) -> None:
    """The intent of each case, written by hand: actions, reasons, diff paths, errors."""
    case = yaml.safe_load(path.read_text())
    planned = run_case(case, tmp_path)
    got = []
    for change in planned.changes:
        entry: dict[str, Any] = {"id": change.inference_id, "action": change.action.value}
        if change.reasons:
            entry["reasons"] = list(change.reasons)
        if change.diff and change.action is not Action.CREATE:
            entry["diff"] = [d.path for d in change.diff]
        if change.replace_paths:
            entry["replace_paths"] = list(change.replace_paths)
        if change.referenced:
            entry["references"] = {k: list(v) for k, v in change.references.items()}
        got.append(entry)
    assert got == case["expect"], case["description"]
    expected_errors = case.get("errors", [])
    assert len(planned.errors) == len(expected_errors), planned.errors
    for want in expected_errors:
        assert any(error.startswith(want) for error in planned.errors), (want, planned.errors)
    if "warnings" in case:
        assert len(planned.warnings) == case["warnings"]
    if "unmanaged" in case:
        assert [u.inference_id for u in planned.unmanaged] == case["unmanaged"]
    for inference_id, secrets in case.get("after_secrets", {}).items():
        shown = planned.by_id(inference_id)
        assert shown is not None
        assert shown.after is not None
        for key, text in secrets.items():
            assert shown.after["service_settings"][key] == text


def test_every_action_and_reason_has_a_golden_case(tmp_path: Path) -> None:
    actions: set[str] = set()
    reasons: set[str] = set()
    for path in CASES:
        planned = run_case(yaml.safe_load(path.read_text()), tmp_path / path.stem)
        for change in planned.changes:
            actions.add(change.action.value)
            reasons.update(change.reasons)
    assert actions == {a.value for a in Action}
    from reconciler.plan import REASONS

    assert reasons == set(REASONS)


def test_the_plan_json_round_trips_exactly(tmp_path: Path) -> None:
    for path in CASES:
        planned = run_case(yaml.safe_load(path.read_text()), tmp_path / path.stem)
        again = Plan.loads(planned.dumps())
        assert again == planned
        assert again.dumps() == planned.dumps()


# -- drift -------------------------------------------------------------------------------------


def test_drift_findings_are_stable_and_typed() -> None:
    from reconciler.state import EndpointRecord
    from reconciler.views import drift

    applied = {
        "task_type": "rerank",
        "service": "cohere",
        "service_settings": {"model_id": "m", "rate_limit": {"requests_per_minute": 10}},
        "task_settings": {"top_n": 5},
    }
    record = EndpointRecord(
        "rerank",
        "cohere",
        requested=applied,
        applied=applied,
        lifecycle={"ignore_changes": ["task_settings.top_n"]},
    )
    state = State("l", 1, "default", "s", {"r": record, "gone": record})
    live = {
        "r": {
            **applied,
            "inference_id": "r",
            "service_settings": {"model_id": "m2", "url": "u"},
            "task_settings": {"top_n": 99},
        }
    }
    findings = drift(live, state)
    assert [(f.inference_id, f.path, f.kind) for f in findings] == [
        ("gone", "", "removed"),
        ("r", "service_settings.model_id", "changed"),
        ("r", "service_settings.rate_limit.requests_per_minute", "removed"),
        ("r", "service_settings.url", "added"),
    ]
    assert [f.id for f in drift(live, state)] == [f.id for f in findings]
    moved = {"r": {**live["r"], "service_settings": {"model_id": "m3", "url": "u"}}}
    assert drift(moved, state)[1].id != findings[1].id  # a new live value is a new finding
