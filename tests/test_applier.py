"""The plan is the whole contract: apply sends exactly the requests the plan shows, and nothing else.

The applier runs in-process against the emulator through a transport that records every request
it sends, so each test compares what went over the wire with what the plan says: the same
requests in the same order per endpoint, the secret references replaced by their values and by
nothing else. State-only actions (read, adopt, forget) send nothing; a plan without changes writes
neither the cluster nor the state.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler import render
from reconciler.applier import ApplyOptions
from reconciler.catalog import Version
from reconciler.client import Connection, Elasticsearch
from reconciler.emulator import Emulator, EmulatorConfig
from reconciler.manifests import load
from reconciler.plan import Action, Plan
from reconciler.planner import Live, Options, plan, with_references
from reconciler.progress import LogReporter
from reconciler.session import read_cluster
from reconciler.storage import FileBackend
from reconciler.workflows import execute

ENV = {"KEY": "sk-canary-applier-7f3a"}


def claude(inference_id: str, max_tokens: int = 100, task_type: str = "completion") -> str:
    return (
        f"inference_id: {inference_id}\ntask_type: {task_type}\nservice: anthropic\n"
        "service_settings: {api_key: '${KEY}', model_id: claude-3-5-sonnet-20240620}\n"
        f"task_settings: {{max_tokens: {max_tokens}}}\n"
    )


def elser(inference_id: str, task_type: str = "sparse_embedding") -> str:
    return (
        f"inference_id: {inference_id}\ntask_type: {task_type}\nservice: elasticsearch\n"
        "service_settings: {model_id: .elser_model_2, num_allocations: 1, num_threads: 1}\n"
    )


class Recording(httpx.AsyncBaseTransport):
    """The emulator, with a record of every request that could change it."""

    def __init__(self, emulator: Emulator) -> None:
        self.inner = httpx.ASGITransport(app=emulator)
        self.sent: list[tuple[str, str, dict[str, str], Any]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "GET" and request.url.path.startswith("/_inference"):
            body = json.loads(request.content) if request.content else None
            self.sent.append((request.method, request.url.path, dict(request.url.params), body))
        return await self.inner.handle_async_request(request)


class Project:
    """Manifests in a folder, the emulator, the state in a file: plan and apply as the tool does."""

    def __init__(self, root: Path, version: str) -> None:
        self.root = root
        self.version = Version.parse(version)
        self.transport = Recording(Emulator(EmulatorConfig(version=version, deploy_seconds=0)))
        self.backend = FileBackend(root / "state.json")
        (root / "manifests").mkdir()

    def write(self, name: str, text: str) -> None:
        (self.root / "manifests" / name).write_text(text)

    def remove(self, name: str) -> None:
        (self.root / "manifests" / name).unlink()

    def client(self) -> Elasticsearch:
        return Elasticsearch(Connection(urls=("http://es",)), transport=self.transport)

    async def plan(self, references: dict[str, dict[str, list[str]]] | None = None) -> Plan:
        validation = load(self.root / "manifests", self.version, ENV)
        assert validation.ok, [str(e) for e in validation.errors]
        async with self.client() as es:
            live = {e["inference_id"]: e for e in await es.endpoints()}
        state = (await self.backend.read()).state
        planned = plan(validation.endpoints, Live(live, self.version), state, Options())
        return with_references(planned, references or {}, allow_referenced=True)

    async def apply(self, planned: Plan) -> list[tuple[str, str, dict[str, str], Any]]:
        """Apply the plan; the requests it sent."""
        async with self.client() as es:
            cluster = await read_cluster(es, self.backend)
            salt = cluster.state.salt if cluster.state is not None else None
            self.transport.sent.clear()
            result = await execute(
                es,
                self.backend,
                cluster,
                planned,
                env=ENV,
                reporter=LogReporter(),
                options=ApplyOptions(poll_interval=0.01),
                salt=salt,
            )
        assert not result.failed, result.failed
        return list(self.transport.sent)


def expected_wire(planned: Plan) -> dict[str, list[tuple[str, str, dict[str, str], Any]]]:
    """Per endpoint, the plan's requests as they must be sent: each secret reference (and only
    those) replaced by its value."""
    wire: dict[str, list[tuple[str, str, dict[str, str], Any]]] = {}
    for change in planned.changes:
        for request in change.requests:
            text = json.dumps(request.body)
            for secret in change.secrets.values():
                text = text.replace(json.dumps(secret.reference), json.dumps(ENV["KEY"]))
            wire.setdefault(change.inference_id, []).append(
                (request.method, request.path, dict(request.query), json.loads(text))
            )
    return wire


def by_endpoint(sent: list[tuple[str, str, dict[str, str], Any]]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {}
    for entry in sent:
        grouped.setdefault(entry[1].split("/")[3], []).append(entry)
    return grouped


@pytest.mark.parametrize("version", ["8.19.3", "9.5.0"])
async def test_apply_sends_exactly_the_requests_of_the_plan(tmp_path: Path, version: str) -> None:
    project = Project(tmp_path, version)
    project.write("keep.yaml", claude("keep"))
    project.write("grow.yaml", claude("grow"))
    project.write("retype.yaml", elser("retype"))
    project.write("gone.yaml", claude("gone"))
    created = await project.plan()
    assert by_endpoint(await project.apply(created)) == expected_wire(created)

    project.write("grow.yaml", claude("grow", max_tokens=900))  # update in place
    project.write("retype.yaml", elser("retype", task_type="text_embedding"))  # replace
    project.remove("gone.yaml")  # delete
    changed = await project.plan()
    actions = {c.inference_id: c.action for c in changed.changes}
    assert actions == {
        "keep": Action.NO_OP,
        "grow": Action.UPDATE,
        "retype": Action.REPLACE,
        "gone": Action.DELETE,
    }
    # What a reviewer reads (plan, show, the Markdown comment) names every request that is sent.
    shown = render.human(Plan.loads(changed.dumps())) + render.markdown(changed)
    lines = [f"> {r.line()}" for c in changed.changes for r in c.requests]
    assert lines
    assert all(shown.count(line) == 2 for line in lines), shown
    sent = await project.apply(changed)
    assert by_endpoint(sent) == expected_wire(changed)
    # A replace deletes the endpoint under the task type it has, then creates it under the new one
    # (Elasticsearch refuses a DELETE whose path names another task type).
    assert [(m, p) for m, p, _, _ in by_endpoint(sent)["retype"]] == [
        ("DELETE", "/_inference/sparse_embedding/retype"),
        ("PUT", "/_inference/text_embedding/retype"),
    ]
    assert not (await project.plan()).has_changes


async def test_a_plan_without_changes_writes_neither_the_cluster_nor_the_state(tmp_path: Path) -> None:
    project = Project(tmp_path, "9.5.0")
    project.write("a.yaml", claude("a"))
    await project.apply(await project.plan())
    before = (tmp_path / "state.json").read_text()
    again = await project.plan()
    assert not again.has_changes
    assert await project.apply(again) == []
    assert (tmp_path / "state.json").read_text() == before


async def test_state_only_actions_send_nothing_and_record_what_the_plan_says(tmp_path: Path) -> None:
    project = Project(tmp_path, "9.5.0")
    project.write("a.yaml", claude("a"))
    project.write("b.yaml", claude("b"))
    await project.apply(await project.plan())
    # a: its lifecycle changes only; b: deleted behind the tool's back and from the manifests.
    project.write("a.yaml", claude("a") + "lifecycle: {prevent_destroy: true}\n")
    project.remove("b.yaml")
    async with project.client() as es:
        await es.request("DELETE", "/_inference/completion/b")
    planned = await project.plan()
    assert {c.inference_id: (c.action, c.reasons) for c in planned.changes} == {
        "a": (Action.ADOPT, ("lifecycle-changed",)),
        "b": (Action.FORGET, ("missing-from-cluster", "removed-from-manifests")),
    }
    assert await project.apply(planned) == []
    state = (await project.backend.read()).state
    assert state is not None
    assert set(state.endpoints) == {"a"}
    assert state.endpoints["a"].lifecycle["prevent_destroy"] is True
    assert not (await project.plan()).has_changes


async def test_the_plan_carries_force_for_a_referenced_delete(tmp_path: Path) -> None:
    """--allow-referenced is recorded in the plan's DELETE (force=true): apply needs no flag of its own."""
    project = Project(tmp_path, "9.5.0")
    project.write("a.yaml", claude("a"))
    await project.apply(await project.plan())
    async with project.client() as es:
        await es.request(
            "PUT", "/_ingest/pipeline/p", body={"processors": [{"inference": {"model_id": "a"}}]}
        )
    project.remove("a.yaml")
    planned = await project.plan(references={"a": {"pipelines": ["p"], "indexes": []}})
    (delete,) = planned.changes
    assert [r.line() for r in delete.requests] == ["DELETE /_inference/completion/a?force=true"]
    saved = Plan.loads(planned.dumps())
    assert await project.apply(saved) == [("DELETE", "/_inference/completion/a", {"force": "true"}, None)]


class EchoingPuts(Recording):
    """The emulator, but every PUT of an endpoint fails with a 500 whose reason echoes the body,
    as a proxy or a server bug may: the secrets it was sent come back in the error text."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and request.url.path.startswith("/_inference"):
            reason = f"failed to parse {request.content.decode()}"
            return httpx.Response(500, json={"error": {"type": "exception", "reason": reason}})
        return await super().handle_async_request(request)


async def test_a_server_error_echoing_the_body_shows_no_resolved_secret(tmp_path: Path) -> None:
    project = Project(tmp_path, "9.5.0")
    project.transport = EchoingPuts(Emulator(EmulatorConfig(version="9.5.0", deploy_seconds=0)))
    project.write("a.yaml", claude("a"))
    planned = await project.plan()
    async with project.client() as es:
        cluster = await read_cluster(es, project.backend)
        result = await execute(
            es, project.backend, cluster, planned, env=ENV, reporter=LogReporter(), options=ApplyOptions()
        )
    (failure,) = result.failed
    assert failure.detail is not None
    assert "failed to parse" in failure.detail
    assert ENV["KEY"] not in failure.detail
    assert "(sensitive)" in failure.detail
