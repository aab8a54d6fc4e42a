"""A saved plan is untrusted (DESIGN §9): each attack on a plan file, made as an attacker would.

The plan is made by the tool, saved, edited as JSON, and applied through `workflows.apply` (the
code path of `apply PLANFILE`) against an in-process emulator whose every write is recorded: an
edited plan is refused whole, nothing is sent and the state file does not change. The honest
paths still work: an unedited plan applies, a signed plan applies with its key, and a signed plan
that was edited, or read without the key, is refused. The first attacks are also made over a real
socket with the CLI (`make_tool`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler import plancheck, workflows
from reconciler.applier import ApplyOptions
from reconciler.client import Connection, Elasticsearch
from reconciler.emulator import Emulator, EmulatorConfig
from reconciler.plan import Plan
from reconciler.planner import Live, Options, plan
from reconciler.progress import LogReporter
from reconciler.reports import ApplyReport, WorkflowError
from reconciler.session import Planning
from reconciler.state import State
from reconciler.storage import FileBackend
from reconciler.views import fingerprint
from tests import test_planner as golden
from tests.e2e import MakeTool, Tool, anthropic, saved_plan
from tests.test_applier import Recording, claude, elser

CASES = golden.CASES
KEY = "plan-signing-key-3b7e"
ENV = {"KEY": "sk-canary-tamper-51c2", "GITHUB_TOKEN": "ghp-canary-token-9d1e"}
Edit = Callable[[dict[str, Any]], None]


class Project:
    """Manifests, the in-process emulator (writes recorded) and a state file: plan --out and apply."""

    def __init__(self, root: Path, version: str = "9.5.0") -> None:
        self.root = root
        self.transport = Recording(Emulator(EmulatorConfig(version=version, deploy_seconds=0)))
        self.manifests = root / "manifests"
        self.manifests.mkdir()
        self.state_file = root / "state.json"
        self.backend = FileBackend(self.state_file)

    def write(self, name: str, text: str) -> None:
        (self.manifests / name).write_text(text)

    def remove(self, name: str) -> None:
        (self.manifests / name).unlink()

    def client(self) -> Elasticsearch:
        return Elasticsearch(Connection(urls=("http://es",)), transport=self.transport)

    async def es(self, method: str, path: str, body: Any = None) -> None:
        async with self.client() as es:
            await es.request(method, path, body=body)

    async def fingerprint(self, inference_id: str) -> str | None:
        """What an attacker writes in an appended change so that it does not look stale."""
        async with self.client() as es:
            return fingerprint(await es.endpoint(inference_id))

    async def save(self, key: str | None = None, planning: Planning | None = None) -> Path:
        """`plan --out plan.json` (signed with `key`)."""
        request = workflows.PlanRequest(self.manifests, planning or Planning())
        async with self.client() as es:
            report = await workflows.plan(es, self.backend, request, env=ENV)
        assert report.plan is not None
        assert not report.plan.errors, report.plan.errors
        path = self.root / "plan.json"
        path.write_text(report.plan.dumps(key=key))
        return path

    async def apply(self, planfile: Path | None = None, env: dict[str, str] | None = None) -> ApplyReport:
        request = workflows.ApplyRequest(
            self.manifests, planfile=planfile, options=ApplyOptions(poll_interval=0.01)
        )
        async with self.client() as es:
            return await workflows.apply(
                es,
                self.backend,
                request,
                confirm=lambda _: True,
                reporter=LogReporter(),
                env={**ENV, **(env or {})},
            )

    async def applied(self, planfile: Path | None = None, env: dict[str, str] | None = None) -> None:
        report = await self.apply(planfile, env)
        assert report.result is not None
        assert not report.result.failed, report.result.failed

    async def refused(self, planfile: Path, env: dict[str, str] | None = None) -> str:
        """Apply an edited plan: refused, nothing sent, the state unchanged; the message."""
        state = self.state_file.read_text() if self.state_file.exists() else None
        self.transport.sent.clear()
        with pytest.raises(WorkflowError) as refusal:
            await self.apply(planfile, env)
        assert self.transport.sent == []
        assert (self.state_file.read_text() if self.state_file.exists() else None) == state
        message = str(refusal.value)
        assert not any(secret in message for secret in (*ENV.values(), KEY)), message
        return message


def edit(path: Path, change: Edit) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2))


def entry(data: dict[str, Any], inference_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in data["changes"] if c["inference_id"] == inference_id)
    return found


def as_delete(change: dict[str, Any], task_type: str = "completion") -> None:
    """Turn a change into a delete as the planner writes one (no desired body, no secrets)."""
    change.update(
        action="delete",
        reason="removed-from-manifests",
        reasons=["removed-from-manifests"],
        desired=None,
        secrets={},
        lifecycle={},
        requests=[
            {
                "method": "DELETE",
                "path": f"/_inference/{task_type}/{change['inference_id']}",
                "query": {},
                "body": None,
            }
        ],
    )


async def managed(tmp_path: Path) -> Project:
    """keep (prevent_destroy) and grow applied; grow's max_tokens changed since: an update is planned."""
    project = Project(tmp_path)
    project.write("keep.yaml", claude("keep") + "lifecycle: {prevent_destroy: true}\n")
    project.write("grow.yaml", claude("grow"))
    await project.applied()
    project.write("grow.yaml", claude("grow", max_tokens=900))
    return project


# -- the honest path ---------------------------------------------------------------------------


async def test_an_unedited_saved_plan_applies(tmp_path: Path) -> None:
    project = Project(tmp_path)
    for name in ("grow", "gone", "keep"):
        project.write(f"{name}.yaml", claude(name))
    project.write("retype.yaml", elser("retype"))
    await project.applied()
    await project.es(
        "PUT",
        "/_inference/sparse_embedding/found",
        {
            "service": "elasticsearch",
            "service_settings": {"model_id": ".elser_model_2", "num_allocations": 1, "num_threads": 1},
        },
    )
    project.write("found.yaml", elser("found"))  # in the cluster, not in the state: adopted
    project.write("grow.yaml", claude("grow", max_tokens=900))
    # num_threads cannot change in place: a replace. (A replace that changes the task type is left
    # out: the reference check of `plan` dry-runs its DELETE under the new task type.)
    project.write("retype.yaml", elser("retype").replace("num_threads: 1", "num_threads: 2"))
    project.write("new.yaml", claude("new"))
    project.remove("gone.yaml")
    planfile = await project.save()
    actions = {c["inference_id"]: c["action"] for c in json.loads(planfile.read_text())["changes"]}
    assert actions == {
        "found": "adopt",
        "gone": "delete",
        "grow": "update",
        "keep": "no-op",
        "new": "create",
        "retype": "replace",
    }
    project.transport.sent.clear()
    await project.applied(planfile)
    assert sorted((m, p) for m, p, _, _ in project.transport.sent) == [
        ("DELETE", "/_inference/completion/gone"),
        ("DELETE", "/_inference/sparse_embedding/retype"),
        ("PUT", "/_inference/completion/grow/_update"),
        ("PUT", "/_inference/completion/new"),
        ("PUT", "/_inference/sparse_embedding/retype"),
    ]
    again = await project.save()
    assert {c["action"] for c in json.loads(again.read_text())["changes"]} == {"no-op"}


async def test_a_referenced_delete_with_force_and_a_refresh_only_plan_apply(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.write("a.yaml", claude("a"))
    project.write("b.yaml", claude("b"))
    await project.applied()
    await project.es("PUT", "/_ingest/pipeline/p", {"processors": [{"inference": {"model_id": "a"}}]})
    project.remove("a.yaml")
    planfile = await project.save(planning=Planning(allow_referenced=True))
    assert entry(json.loads(planfile.read_text()), "a")["requests"][0]["query"] == {"force": "true"}
    await project.applied(planfile)
    await project.es("PUT", "/_inference/completion/b/_update", {"task_settings": {"max_tokens": 7}})
    refresh = await project.save(planning=Planning(options=Options(refresh_only=True)))
    assert entry(json.loads(refresh.read_text()), "b")["action"] == "read"
    await project.applied(refresh)


async def test_a_signed_plan_applies_with_the_key(tmp_path: Path) -> None:
    project = await managed(tmp_path)
    planfile = await project.save(key=KEY)
    assert json.loads(planfile.read_text())["signature"].startswith("hmac-sha256:")
    workflows.load_plan(planfile, env={"RECONCILER_PLAN_KEY": KEY})  # what `show` reads
    project.transport.sent.clear()
    await project.applied(planfile, env={"RECONCILER_PLAN_KEY": KEY})
    assert [p for _, p, _, _ in project.transport.sent] == ["/_inference/completion/grow/_update"]


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_every_golden_plan_passes_the_check(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The planner's golden cases (every action and reason, 8.19 and 9.5 rules), saved and read back:
    the re-check finds nothing in a plan the planner made, but the errors that already stop it."""
    seen: dict[str, Any] = {}

    def spy(desired: Any, live: Live, state: State, options: Options) -> Plan:
        seen.update(live=live, state=state)
        return plan(desired, live, state, options)

    monkeypatch.setattr(golden, "plan", spy)
    planned = golden.run_case(yaml.safe_load(path.read_text()), tmp_path)
    saved = Plan.loads(planned.dumps())
    found = plancheck.violations(saved, seen["live"].endpoints, seen["live"].version, seen["state"])
    assert bool(found) == bool(planned.errors), found
    # Whatever it finds, it finds on the endpoints the plan's own errors already name.
    assert {v.split(":")[0] for v in found} <= {e.split(":")[0] for e in planned.errors}, (
        found,
        planned.errors,
    )


# -- signatures --------------------------------------------------------------------------------


async def test_a_tampered_signed_plan_is_refused(tmp_path: Path) -> None:
    """Even an edit every other check lets through (another secret reference for the api_key, on a
    cluster without digests to compare it with) breaks the signature."""
    project = Project(tmp_path)
    project.write("a.yaml", claude("a"))
    planfile = await project.save(key=KEY)
    signed = planfile.read_text()

    def other_secret(data: dict[str, Any]) -> None:
        change = entry(data, "a")
        change["secrets"]["api_key"]["reference"] = "${GITHUB_TOKEN}"
        for body in (change["desired"], change["requests"][0]["body"]):
            body["service_settings"]["api_key"] = "${GITHUB_TOKEN}"

    edit(planfile, other_secret)
    message = await project.refused(planfile, env={"RECONCILER_PLAN_KEY": KEY})
    assert "signature does not match" in message
    with pytest.raises(WorkflowError, match="signature does not match"):
        workflows.load_plan(planfile, env={"RECONCILER_PLAN_KEY": KEY})  # show refuses it too
    planfile.write_text(signed)  # as it was made: it applies, on a cluster without a state yet
    await project.applied(planfile, env={"RECONCILER_PLAN_KEY": KEY})
    assert [(m, p) for m, p, _, _ in project.transport.sent] == [("PUT", "/_inference/completion/a")]
    assert project.transport.sent[0][3]["service_settings"]["api_key"] == ENV["KEY"]


async def test_a_signed_plan_is_refused_without_the_key_and_with_another(tmp_path: Path) -> None:
    project = await managed(tmp_path)
    planfile = await project.save(key=KEY)
    assert "set RECONCILER_PLAN_KEY" in await project.refused(planfile, env={"RECONCILER_PLAN_KEY": ""})
    assert "signature does not match" in await project.refused(
        planfile, env={"RECONCILER_PLAN_KEY": "another-key"}
    )


async def test_an_unsigned_plan_is_refused_when_a_key_is_set(tmp_path: Path) -> None:
    project = await managed(tmp_path)
    planfile = await project.save(key=KEY)
    edit(planfile, lambda data: data.pop("signature"))
    assert "not signed" in await project.refused(planfile, env={"RECONCILER_PLAN_KEY": KEY})
    with pytest.raises(WorkflowError, match="not signed"):
        workflows.load_plan(planfile, env={"RECONCILER_PLAN_KEY": KEY})


# -- ownership and prevent_destroy -------------------------------------------------------------


@pytest.mark.parametrize("keep_desired", [False, True])
async def test_an_action_turned_into_delete_cannot_remove_a_prevent_destroy_endpoint(
    tmp_path: Path, keep_desired: bool
) -> None:
    project = await managed(tmp_path)
    planfile = await project.save()

    def delete_keep(data: dict[str, Any]) -> None:
        change = entry(data, "keep")
        desired = change["desired"]
        as_delete(change)  # its lifecycle emptied as well: the state's record still forbids it
        if keep_desired:
            change["desired"] = desired

    edit(planfile, delete_keep)
    message = await project.refused(planfile)
    assert "keep: lifecycle.prevent_destroy (the state's record) forbids this delete" in message


async def test_a_replace_of_a_prevent_destroy_endpoint_is_refused_whatever_the_plan_lifecycle(
    tmp_path: Path,
) -> None:
    project = await managed(tmp_path)
    planfile = await project.save()

    def replace_keep(data: dict[str, Any]) -> None:
        change = entry(data, "keep")
        change["action"] = "replace"
        change["lifecycle"] = {"prevent_destroy": False, "ignore_changes": []}
        put: dict[str, Any] = {
            "method": "PUT",
            "path": "/_inference/completion/keep",
            "query": {},
            "body": change["desired"],
        }
        delete: dict[str, Any] = {
            "method": "DELETE",
            "path": "/_inference/completion/keep",
            "query": {},
            "body": None,
        }
        change["requests"] = [delete, put]

    edit(planfile, replace_keep)
    assert "prevent_destroy (the state's record) forbids this replace" in await project.refused(planfile)


async def _create_theirs(project: Project) -> None:
    """`theirs`: an endpoint made in the cluster by someone else, which the tool does not manage."""
    await project.es(
        "PUT",
        "/_inference/completion/theirs",
        {
            "service": "anthropic",
            "service_settings": {"api_key": "x", "model_id": "claude-3-5-sonnet-20240620"},
            "task_settings": {"max_tokens": 5},
        },
    )


@pytest.mark.parametrize(
    ("inference_id", "task_type", "why"),
    [
        ("theirs", "completion", "neither in the state nor given a desired body"),
        (".elser-2-elasticsearch", "sparse_embedding", "preconfigured endpoint"),
    ],
)
async def test_an_appended_delete_of_an_endpoint_the_tool_does_not_manage_is_refused(
    tmp_path: Path, inference_id: str, task_type: str, why: str
) -> None:
    project = await managed(tmp_path)
    await _create_theirs(project)
    planfile = await project.save()
    assert inference_id in {u["inference_id"] for u in json.loads(planfile.read_text())["unmanaged"]}

    live = await project.fingerprint(inference_id)

    def append_delete(data: dict[str, Any]) -> None:
        change = json.loads(json.dumps(entry(data, "grow")))
        change.update(inference_id=inference_id, task_type=task_type, fingerprint=live)
        as_delete(change, task_type)
        data["changes"].append(change)

    edit(planfile, append_delete)
    assert f"{inference_id}: a delete of" in (message := await project.refused(planfile))
    assert why in message
    assert f"{inference_id}: the plan lists it as unmanaged (not to be touched) and changes it" in message


async def test_an_appended_delete_with_a_desired_body_is_refused(tmp_path: Path) -> None:
    """A desired body does not make a delete of an unmanaged endpoint one the planner makes."""
    project = await managed(tmp_path)
    project.write("theirs.yaml", claude("theirs"))
    await _create_theirs(project)
    planfile = await project.save()

    def delete_theirs(data: dict[str, Any]) -> None:
        change = entry(data, "theirs")
        desired = change["desired"]
        as_delete(change)
        change["desired"] = desired

    edit(planfile, delete_theirs)
    assert "a delete of an endpoint the plan still wants" in await project.refused(planfile)


# -- requests ----------------------------------------------------------------------------------


def _update(data: dict[str, Any]) -> dict[str, Any]:
    request: dict[str, Any] = entry(data, "grow")["requests"][0]
    return request


def _smaller(data: dict[str, Any]) -> None:
    _update(data)["body"]["task_settings"]["max_tokens"] = 5  # the diff still shows 900


def _other_path(data: dict[str, Any]) -> None:
    _update(data)["path"] = "/_inference/completion/keep/_update"


def _other_method(data: dict[str, Any]) -> None:
    _update(data)["method"] = "POST"


def _appended(data: dict[str, Any]) -> None:
    entry(data, "grow")["requests"].append(
        {"method": "DELETE", "path": "/_inference/completion/keep", "query": {}, "body": None}
    )


def _consistent(data: dict[str, Any]) -> None:
    """Desired body and request edited alike: what show displays (diff, after) no longer is."""
    change = entry(data, "grow")
    change["desired"]["task_settings"]["max_tokens"] = 5
    _smaller(data)


@pytest.mark.parametrize(
    ("tamper", "why"),
    [
        (_smaller, "their bodies differ"),
        (_other_path, "requests are not the ones the planner builds"),
        (_other_method, "requests are not the ones the planner builds"),
        (_appended, "requests are not the ones the planner builds"),
        (_consistent, "`diff` is not what the planner makes"),
    ],
)
async def test_an_edited_request_is_refused(tmp_path: Path, tamper: Edit, why: str) -> None:
    project = await managed(tmp_path)
    planfile = await project.save()
    edit(planfile, tamper)
    assert why in await project.refused(planfile)


async def test_force_on_a_delete_that_lists_no_references_is_refused(tmp_path: Path) -> None:
    project = await managed(tmp_path)
    project.write("gone.yaml", claude("gone"))
    await project.applied()
    project.remove("gone.yaml")
    planfile = await project.save()

    def force(data: dict[str, Any]) -> None:
        entry(data, "gone")["requests"][0]["query"] = {"force": "true"}

    edit(planfile, force)
    assert "DELETE /_inference/completion/gone?force=true" in await project.refused(planfile)


# -- secrets -----------------------------------------------------------------------------------


def _token_as_model_id(data: dict[str, Any]) -> None:
    change = entry(data, "a")
    change["secrets"]["model_id"] = {"reference": "${GITHUB_TOKEN}", "digest": "hmac-sha256:00"}
    for body in (change["desired"], change["requests"][0]["body"]):
        body["service_settings"]["model_id"] = "${GITHUB_TOKEN}"


def _unlisted_reference(data: dict[str, Any]) -> None:
    change = entry(data, "a")
    for body in (change["desired"], change["requests"][0]["body"]):
        body["service_settings"]["model_id"] = "${GITHUB_TOKEN}"


@pytest.mark.parametrize(
    ("tamper", "why"),
    [
        (_token_as_model_id, "secrets: service_settings.model_id is not a secret field of anthropic"),
        (_unlisted_reference, "service_settings.model_id is a ${...} reference that `secrets` does not list"),
    ],
)
async def test_a_secret_reference_for_a_non_secret_field_is_refused_on_a_cluster_without_state(
    tmp_path: Path, tamper: Edit, why: str
) -> None:
    project = Project(tmp_path)
    project.write("a.yaml", claude("a"))
    planfile = await project.save()
    assert not project.state_file.exists()
    edit(planfile, tamper)
    assert why in await project.refused(planfile)


# -- actions the planner cannot make -----------------------------------------------------------


def _create_existing(data: dict[str, Any]) -> None:
    change = entry(data, "grow")
    change["action"] = "create"
    change["requests"] = [
        {"method": "PUT", "path": "/_inference/completion/grow", "query": {}, "body": change["desired"]}
    ]


def _adopt_changed(data: dict[str, Any]) -> None:
    entry(data, "grow").update(action="adopt", requests=[])


def _forget_live(data: dict[str, Any]) -> None:
    change = entry(data, "grow")
    change.update(action="forget", requests=[], desired=None, secrets={})


def _read_with_desired(data: dict[str, Any]) -> None:
    entry(data, "grow").update(action="read", requests=[])


@pytest.mark.parametrize(
    ("tamper", "why"),
    [
        (_create_existing, "a create is not what the planner makes of it"),
        (
            _adopt_changed,
            "an adopt is not what the planner makes of it from the state and the live cluster (it makes an update)",
        ),
        (_forget_live, "a forget of an endpoint the cluster still has"),
        (_read_with_desired, "a read of an endpoint the plan still wants"),
    ],
)
async def test_an_action_the_planner_cannot_make_is_refused(tmp_path: Path, tamper: Edit, why: str) -> None:
    project = await managed(tmp_path)
    planfile = await project.save()
    edit(planfile, tamper)
    assert why in await project.refused(planfile)


# -- over a real socket, with the CLI ----------------------------------------------------------


def _refused_by_the_cli(tool: Tool, planfile: Path, env: dict[str, str] | None = None) -> str:
    state = (tool.root / "state.json").read_text()
    live = tool.live_ids()
    tool.reset_requests()
    run = tool("apply", str(planfile), env=env)
    assert run.code == 1, run
    assert tool.writes() == 0
    assert (tool.root / "state.json").read_text() == state
    assert tool.live_ids() == live
    return run.stderr


def test_cli_a_delete_of_a_prevent_destroy_endpoint_is_refused(make_tool: MakeTool) -> None:
    tool = make_tool()
    tool.write("keep.yaml", anthropic("keep") + "lifecycle: {prevent_destroy: true}\n")
    planfile = saved_plan(tool, max_tokens=300)
    edit(planfile, lambda data: as_delete(entry(data, "keep")))
    assert "prevent_destroy" in _refused_by_the_cli(tool, planfile)
    assert "keep" in tool.live_ids()


def test_cli_an_appended_delete_of_an_unmanaged_endpoint_is_refused(make_tool: MakeTool) -> None:
    tool = make_tool()
    body = {
        "service": "anthropic",
        "service_settings": {"api_key": "x", "model_id": "claude-3-5-sonnet-20240620"},
        "task_settings": {"max_tokens": 5},
    }
    assert tool.es("PUT", "/_inference/completion/theirs", json=body).status_code == 200
    planfile = saved_plan(tool, max_tokens=300)
    shown = tool("show", "--json", str(planfile)).json()
    assert "theirs" in {u["inference_id"] for u in shown["unmanaged"]}  # show: it will not be touched

    live = fingerprint(tool.es("GET", "/_inference/theirs").json()["endpoints"][0])

    def append(data: dict[str, Any]) -> None:
        change = json.loads(json.dumps(entry(data, "a")))
        change.update(inference_id="theirs", fingerprint=live)
        as_delete(change)
        data["changes"].append(change)

    edit(planfile, append)
    assert "theirs: a delete of an endpoint that is neither in the state" in _refused_by_the_cli(
        tool, planfile
    )
    assert "theirs" in tool.live_ids()


def test_cli_signed_plans(make_tool: MakeTool) -> None:
    tool = make_tool()
    signing = {"RECONCILER_PLAN_KEY": KEY}
    tool.write("a.yaml", anthropic("a"))
    assert tool("apply", "--auto-approve").code == 0
    tool.write("a.yaml", anthropic("a", max_tokens=300))
    planfile = tool.root / "plan.json"
    assert tool("plan", "--out", str(planfile), env=signing).code == 0
    assert "signature" in json.loads(planfile.read_text())
    assert tool("show", str(planfile), env=signing).code == 0
    shown = tool("show", str(planfile))
    assert shown.code == 1
    assert "set RECONCILER_PLAN_KEY" in shown.stderr
    assert KEY not in shown.stderr
    assert "set RECONCILER_PLAN_KEY" in _refused_by_the_cli(tool, planfile)
    text = planfile.read_text()
    edit(planfile, lambda data: entry(data, "a")["requests"][0]["body"]["task_settings"].update(max_tokens=5))
    assert "signature does not match" in (stderr := _refused_by_the_cli(tool, planfile, signing))
    assert KEY not in stderr
    planfile.write_text(text)
    applied = tool("apply", str(planfile), env=signing)
    assert applied.code == 0, applied
    assert tool.es("GET", "/_inference/a").json()["endpoints"][0]["task_settings"]["max_tokens"] == 300


# -- a reference a manifest put in a non-secret field -------------------------------------------


def _model_from_env(inference_id: str) -> str:
    return claude(inference_id).replace("model_id: claude-3-5-sonnet-20240620", "model_id: '${GITHUB_TOKEN}'")


async def test_an_unsigned_plan_may_not_introduce_a_reference_in_a_non_secret_field(tmp_path: Path) -> None:
    """Indistinguishable from the attack above without the manifests: refused, and the message
    says how to apply it (sign plans); `apply` without a plan file works."""
    project = Project(tmp_path)
    project.write("a.yaml", _model_from_env("a"))
    planfile = await project.save()
    assert "needs a signed plan" in await project.refused(planfile)
    await project.applied()


async def test_a_signed_plan_or_a_state_that_holds_it_lets_such_a_reference_through(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.write("a.yaml", _model_from_env("a"))
    await project.applied(await project.save(key=KEY), env={"RECONCILER_PLAN_KEY": KEY})
    # Applied once from the reviewed manifest, the state holds its digest: a later unsigned plan of
    # the same endpoint (another max_tokens) goes through.
    project.write("a.yaml", _model_from_env("a").replace("max_tokens: 100", "max_tokens: 300"))
    project.transport.sent.clear()
    await project.applied(await project.save())
    assert [p for _, p, _, _ in project.transport.sent] == ["/_inference/completion/a/_update"]


def _applied_a_and_hand_made(make_tool: MakeTool) -> Tool:
    """`a` applied; `hand` created in the cluster by hand, then given a manifest (never applied)."""
    tool = make_tool()
    tool.write("a.yaml", anthropic("a"))
    assert tool("apply", "--auto-approve").code == 0
    body = {
        "service": "anthropic",
        "service_settings": {"api_key": "x", "model_id": "claude-3-5-sonnet-20240620"},
        "task_settings": {"max_tokens": 64},
    }
    assert tool.es("PUT", "/_inference/completion/hand", json=body).status_code == 200
    tool.write("hand.yaml", anthropic("hand"))
    return tool


def test_cli_a_destroy_plan_never_deletes_an_endpoint_only_the_manifests_name(make_tool: MakeTool) -> None:
    """`hand` exists in the cluster and has a manifest, but was never applied: the state does not
    manage it, and a destroy plan gives it no desired body. A saved `plan --destroy` that deletes
    it (the planner makes that delete today) is refused whole at apply: nothing is touched."""
    tool = _applied_a_and_hand_made(make_tool)
    planfile = tool.root / "destroy.json"
    assert tool("plan", "--destroy", "--out", str(planfile)).code == 0
    data = json.loads(planfile.read_text())
    if not any(c["inference_id"] == "hand" for c in data["changes"]):  # a planner that leaves it out
        live = fingerprint(tool.es("GET", "/_inference/hand").json()["endpoints"][0])
        change = json.loads(json.dumps(entry(data, "a")))
        change.update(inference_id="hand", fingerprint=live, reason="destroy", reasons=["destroy"])
        as_delete(change)
        data["changes"].append(change)
        planfile.write_text(json.dumps(data))
    assert entry(json.loads(planfile.read_text()), "hand")["action"] == "delete"
    refused = _refused_by_the_cli(tool, planfile)
    assert "hand: a delete of an endpoint that is neither in the state nor given a desired body" in refused
    assert tool.live_ids() == {"a", "hand"}


def test_cli_apply_destroy_leaves_an_endpoint_only_the_manifests_name(make_tool: MakeTool) -> None:
    """The planner side of the rule above: `apply --destroy` deletes what the state manages and
    never a live endpoint that a manifest names but this workspace never applied."""
    tool = _applied_a_and_hand_made(make_tool)
    assert tool("apply", "--destroy", "--auto-approve").code == 0
    assert tool.live_ids() == {"hand"}
