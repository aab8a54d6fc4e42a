"""The workflows end to end against the in-process emulator: each report's exit code, the confirm
callback, the lease renewed after it, and the errors that stop a workflow."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler import offline, workflows
from reconciler.applier import ApplyOptions
from reconciler.cli_base import run_async
from reconciler.client import Connection, Elasticsearch
from reconciler.emulator import Emulator, EmulatorConfig
from reconciler.lease import take_lock
from reconciler.progress import LogReporter
from reconciler.reports import ApplyReport, PlanReport, WorkflowError
from reconciler.session import Planning
from reconciler.state import LockInfo
from reconciler.storage import FileBackend

ENV = {"ANTHROPIC_API_KEY": "sk-ant-workflows"}
FAST = ApplyOptions(poll_interval=0.01)
E5 = (
    "inference_id: e5\ntask_type: text_embedding\nservice: elasticsearch\n"
    "service_settings: {model_id: .multilingual-e5-small, num_threads: 1, num_allocations: 1}\n"
)


def anthropic(inference_id: str, max_tokens: int = 64) -> str:
    return (
        f"inference_id: {inference_id}\ntask_type: completion\nservice: anthropic\n"
        "service_settings: {api_key: '${ANTHROPIC_API_KEY}', model_id: claude-3-5-sonnet-20240620}\n"
        f"task_settings: {{max_tokens: {max_tokens}}}\n"
    )


class RecordingBackend(FileBackend):
    """A file backend that logs its lock renewals and state writes, in order."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.calls: list[str] = []

    async def renew(self, info: LockInfo) -> LockInfo:
        self.calls.append("renew")
        return await super().renew(info)

    async def write(self, state: object, token: object) -> object:
        self.calls.append("write")
        return await super().write(state, token)  # type: ignore[arg-type]


@dataclass
class World:
    emulator: Emulator
    es: Elasticsearch
    backend: RecordingBackend
    manifests: Path

    def write(self, name: str, text: str) -> None:
        (self.manifests / name).write_text(text)

    async def apply(self, confirm: workflows.Confirm = lambda report: True, **request: object) -> ApplyReport:
        wanted = workflows.ApplyRequest(self.manifests, **{"options": FAST, **request})  # type: ignore[arg-type]
        return await workflows.apply(
            self.es, self.backend, wanted, confirm=confirm, reporter=LogReporter(), env=ENV
        )


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    emulator = Emulator(EmulatorConfig(deploy_seconds=0))
    (tmp_path / "manifests").mkdir()
    async with Elasticsearch(
        Connection(urls=("http://es",)), transport=httpx.ASGITransport(app=emulator)
    ) as es:
        yield World(emulator, es, RecordingBackend(tmp_path / "state.json"), tmp_path / "manifests")


async def plan(world: World, *, detailed: bool = False) -> PlanReport:
    request = workflows.PlanRequest(world.manifests, detailed_exitcode=detailed)
    return await workflows.plan(world.es, world.backend, request, env=ENV)


# -- plan ----------------------------------------------------------------------------------------


async def test_plan_exits_2_on_changes_only_with_detailed_exitcode(world: World) -> None:
    world.write("a.yaml", anthropic("a"))
    assert (await plan(world)).exit_code == 0
    assert (await plan(world, detailed=True)).exit_code == 2
    assert (await world.apply()).exit_code == 0
    assert (await plan(world, detailed=True)).exit_code == 0  # converged: no changes


async def test_invalid_manifests_make_no_plan_and_exit_1(world: World) -> None:
    world.write("a.yaml", "inference_id: a\ntask_type: completion\nservice: anthropic\n")
    report = await plan(world, detailed=True)
    assert report.plan is None
    assert report.validation.errors
    assert report.exit_code == 1


async def test_a_plan_with_errors_exits_1(world: World) -> None:
    world.write("a.yaml", anthropic("a"))
    assert (await world.apply()).exit_code == 0
    await world.es.request(
        "PUT", "/_ingest/pipeline/p", body={"processors": [{"inference": {"model_id": "a"}}]}
    )
    (world.manifests / "a.yaml").unlink()
    report = await plan(world)
    assert report.plan is not None
    assert report.plan.errors  # deleting an endpoint in use needs --allow-referenced
    assert not report.applicable
    assert report.exit_code == 1


# -- apply ---------------------------------------------------------------------------------------


async def test_apply_shows_the_plan_then_replans_to_no_changes(world: World) -> None:
    world.write("a.yaml", anthropic("a"))
    shown: list[PlanReport] = []

    def confirm(planned: PlanReport) -> bool:
        shown.append(planned)
        return True

    report = await world.apply(confirm)
    assert [r.plan is not None and r.plan.has_changes for r in shown] == [True]
    assert report.result is not None
    assert report.result.counts() == {"done": 1, "failed": 0, "skipped": 0}
    assert report.after_plan is not None
    assert not report.after_plan.has_changes
    assert report.exit_code == 0


async def test_a_refused_confirmation_changes_nothing_and_exits_1(world: World) -> None:
    world.write("a.yaml", anthropic("a"))
    report = await world.apply(lambda planned: False)
    assert report.result is None
    assert report.exit_code == 1
    assert "a" not in world.emulator.cluster.endpoints
    assert "write" not in world.backend.calls
    assert await world.backend.current_lock() is None  # released


async def test_the_lease_is_renewed_after_confirmation_before_anything_is_sent(world: World) -> None:
    world.write("a.yaml", anthropic("a"))

    seen: list[list[str]] = []

    def confirm(planned: PlanReport) -> bool:
        seen.append(list(world.backend.calls))
        return True

    assert (await world.apply(confirm)).exit_code == 0
    assert seen == [[]]  # asked once, before anything was renewed or written
    assert world.backend.calls[0] == "renew"
    assert "write" in world.backend.calls[1:]


async def test_a_lock_taken_during_the_confirmation_stops_the_apply(world: World) -> None:
    world.write("a.yaml", anthropic("a"))
    lock_file = world.backend.lock_path

    def slow_yes(planned: PlanReport) -> bool:
        held = json.loads(lock_file.read_text())
        lock_file.write_text(json.dumps({**held, "id": "another-run"}))
        return True

    with pytest.raises(WorkflowError, match="is no longer held"):
        await world.apply(slow_yes)
    assert "write" not in world.backend.calls
    assert "a" not in world.emulator.cluster.endpoints
    assert "another-run" in lock_file.read_text()


async def test_a_held_lock_stops_apply_with_the_holder_named(world: World) -> None:
    world.write("a.yaml", anthropic("a"))
    await take_lock(world.backend, "apply", 0)
    with pytest.raises(WorkflowError, match=r"the state is locked: lock .* for apply since"):
        await world.apply()


async def test_a_stale_saved_plan_is_refused(world: World, tmp_path: Path) -> None:
    world.write("a.yaml", anthropic("a"))
    saved = tmp_path / "plan.json"
    first = await plan(world)
    assert first.plan is not None
    saved.write_text(first.plan.dumps())
    assert (await world.apply()).exit_code == 0  # the state moved on since the plan was saved
    with pytest.raises(WorkflowError, match="stale"):
        await world.apply(planfile=saved)


async def test_a_saved_plan_is_applied_without_confirmation(world: World, tmp_path: Path) -> None:
    world.write("a.yaml", anthropic("a"))
    saved = tmp_path / "plan.json"
    first = await plan(world)
    assert first.plan is not None
    saved.write_text(first.plan.dumps())

    def never(planned: PlanReport) -> bool:
        raise AssertionError("a saved plan was reviewed already")

    report = await world.apply(never, planfile=saved)
    assert report.exit_code == 0
    assert report.after_plan is None


async def test_an_unreadable_plan_file_is_a_workflow_error(tmp_path: Path) -> None:
    (tmp_path / "plan.json").write_text("{not json")
    with pytest.raises(WorkflowError, match=r"plan\.json"):
        workflows.load_plan(tmp_path / "plan.json")


# -- drift, status, wait, import, validate -------------------------------------------------------


async def test_drift_exits_2_when_the_cluster_moved_and_builds_the_json_form(world: World) -> None:
    world.write("a.yaml", anthropic("a"))
    assert (await world.apply()).exit_code == 0
    clean = await workflows.drift(world.es, world.backend)
    assert clean.exit_code == 0
    await world.es.request(
        "PUT", "/_inference/completion/a/_update", body={"task_settings": {"max_tokens": 7}}
    )
    moved = await workflows.drift(world.es, world.backend)
    assert moved.exit_code == 2
    document = moved.to_json()
    assert document["format_version"] == 1
    assert set(document["cluster"]) == {"url", "version", "cluster_uuid", "cluster_name"}
    assert document["summary"]["endpoints_checked"] == 1
    assert document["summary"]["endpoints_drifted"] == 1
    known = frozenset(f["id"] for f in document["findings"])
    again = (await workflows.drift(world.es, world.backend, known)).to_json()
    assert again["summary"]["new_findings"] == 0


async def test_status_rows_come_with_allocation_from_the_catalog(world: World) -> None:
    world.write("e5.yaml", E5)
    world.write("a.yaml", anthropic("a"))
    assert (await world.apply()).exit_code == 0
    report = await workflows.status(world.es, world.backend)
    assert report.exit_code == 0
    rows = {row["inference_id"]: row for row in report.to_json()["endpoints"]}
    assert rows["e5"]["allocation"] == {"count": 1, "target": 1, "state": "fully_allocated"}
    assert rows["e5"]["managed"] is True
    assert rows["a"]["allocation"] is None
    assert rows["a"]["model_id"] == "claude-3-5-sonnet-20240620"
    assert list(rows["a"]) == [
        "inference_id",
        "task_type",
        "service",
        "model_id",
        "managed",
        "preconfigured",
        "allocation",
        "deployment_state",
        "drifted",
    ]


async def test_wait_reports_done_and_refuses_unknown_endpoints(world: World) -> None:
    world.write("e5.yaml", E5)
    assert (await world.apply(options=dataclasses.replace(FAST, wait=False))).exit_code == 0
    done = await workflows.wait(world.es, ["e5"], seconds=30, reporter=LogReporter(), poll_interval=0.01)
    assert [s.inference_id for s in done.done] == ["e5"]
    assert done.exit_code == 0
    with pytest.raises(WorkflowError, match="no endpoint nope"):
        await workflows.wait(world.es, ["nope"], seconds=1, reporter=LogReporter(), poll_interval=0.01)


async def test_import_writes_manifests_and_the_next_plan_needs_only_the_secret(
    world: World, tmp_path: Path
) -> None:
    world.write("a.yaml", anthropic("a"))
    assert (await world.apply()).exit_code == 0
    await workflows.forget(world.backend, "a", lock_timeout=0)
    forgotten = (await world.backend.read()).state
    assert forgotten is not None
    assert "a" not in forgotten.endpoints
    assert "a" in world.emulator.cluster.endpoints  # forgotten by the state, left in the cluster
    (world.manifests / "a.yaml").unlink()
    request = workflows.ImportRequest(("a",), world.manifests)
    report = await workflows.import_endpoints(world.es, world.backend, request)
    assert report.exit_code == 0
    assert [path.name for path, _ in report.written] == ["a.yaml"]
    env = {**ENV, **dict.fromkeys(report.written[0][1], ENV["ANTHROPIC_API_KEY"])}
    again = await workflows.plan(world.es, world.backend, workflows.PlanRequest(world.manifests), env=env)
    assert again.plan is not None
    assert [(c.inference_id, c.action.value, c.reasons) for c in again.plan.changes] == [
        ("a", "update", ("secret-unknown",))
    ]
    with pytest.raises(WorkflowError, match="no live endpoint b"):
        await workflows.import_endpoints(world.es, world.backend, workflows.ImportRequest(("b",), tmp_path))


async def test_forget_and_record_refuse_an_unknown_endpoint(world: World) -> None:
    with pytest.raises(WorkflowError, match="the state has no endpoint x"):
        await workflows.forget(world.backend, "x", lock_timeout=0)
    with pytest.raises(WorkflowError, match="the state has no endpoint x"):
        await workflows.record(world.backend, "x")


def test_validate_exits_1_on_errors(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(anthropic("a"))
    assert offline.validate(tmp_path, "9.5", ENV).exit_code == 0
    (tmp_path / "b.yaml").write_text("inference_id: b\n")
    assert offline.validate(tmp_path, "8.19", ENV).exit_code == 1
    with pytest.raises(ValueError, match="knows Elasticsearch"):
        offline.validate(tmp_path, "7.17", ENV)


async def test_an_unsupported_state_spec_stops_the_run(tmp_path: Path) -> None:
    target = workflows.Target(Connection(urls=("http://127.0.0.1:9",)), state="s3://nowhere")

    async def nothing(es: Elasticsearch, backend: object) -> None:
        raise AssertionError("not reached")

    with pytest.raises(WorkflowError, match="--state must be cluster or file:PATH"):
        await workflows.run(target, nothing)


def test_planning_defaults_plan_everything() -> None:
    options = Planning().options
    assert options.targets == options.replace == frozenset()
    assert not options.refresh_only
    assert not options.destroy
    assert not Planning().allow_referenced


async def test_apply_reads_the_manifests_and_get_root_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validated before the lock, planned under it, planned again to show convergence: one read of
    the manifests, one GET / (the version and cluster id do not move within a run)."""
    from reconciler import manifests, session

    reads: list[Path] = []

    def counted(root: Path, *args: object, **kwargs: object) -> manifests.Validation:
        reads.append(root)
        return manifests.load(root, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(workflows, "load", counted)
    monkeypatch.setattr(session, "load", counted)
    world.write("a.yaml", anthropic("a"))
    report = await world.apply()
    assert report.exit_code == 0
    assert report.after_plan is not None
    assert not report.after_plan.has_changes
    assert reads == [world.manifests]
    logged = (await world.es.request("GET", "/_emulator/requests")).body["requests"]
    assert [r["count"] for r in logged if r["method"] == "GET" and r["path"] == "/"] == [1]


async def test_import_validates_what_it_wrote_once_and_writes_no_state(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The files only: no lock, no state write (the next plan adopts them for review)."""
    from reconciler import importer, manifests

    reads: list[object] = []
    load_files = manifests.load_files

    def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(args)
        return load_files(*args, **kwargs)

    monkeypatch.setattr(importer, "load_files", counted)
    world.write("a.yaml", anthropic("a"))
    assert (await world.apply()).exit_code == 0
    await workflows.forget(world.backend, "a", lock_timeout=0)
    (world.manifests / "a.yaml").unlink()
    before = await world.backend.read()
    report = await workflows.import_endpoints(
        world.es, world.backend, workflows.ImportRequest(("a",), world.manifests)
    )
    assert report.exit_code == 0
    assert len(reads) == 1
    after = await world.backend.read()
    assert after.token == before.token
    assert after.state is not None
    assert "a" not in after.state.endpoints


# -- how the command line runs a workflow --------------------------------------------------------


def test_the_command_line_never_builds_the_repr_of_a_workflow_result() -> None:
    """`asyncio.run` would: putting back the SIGINT handler, `signal` builds the repr of the handler
    it replaces, which holds the main task and so its result, a whole report (70 ms for the ten
    plans of `plan --all-envs` over 200 endpoints each; up to 3.12). `cli_base.run_async` keeps
    it out."""

    class Report:
        reprs = 0

        def __repr__(self) -> str:
            Report.reprs += 1
            return "Report()"

    async def work() -> Report:
        return Report()

    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # as in the command
    asyncio.run(work())
    assert (Report.reprs > 0) is (sys.version_info < (3, 13))  # what run_async is for
    Report.reprs = 0
    assert isinstance(run_async(work()), Report)
    assert Report.reprs == 0
