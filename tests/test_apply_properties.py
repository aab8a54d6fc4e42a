"""Apply then plan is empty, for random valid manifest sets on 8.19 and 9.x (the applier in-process)."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.applier import ApplyOptions
from reconciler.catalog import Version
from reconciler.client import Connection, Elasticsearch
from reconciler.emulator import Emulator, EmulatorConfig
from reconciler.manifests import load
from reconciler.planner import Live, Options, plan
from reconciler.progress import LogReporter
from reconciler.session import read_cluster
from reconciler.state import State, StateError
from reconciler.storage import FileBackend
from reconciler.workflows import execute
from tests.strategies import manifests


async def _apply_then_plan(version: Version, documents: list[tuple[dict[str, Any], dict[str, str]]]) -> None:
    env: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for i, (manifest, needed) in enumerate(documents):
            manifest["inference_id"] = f"m{i}-{manifest['inference_id']}"
            env.update(needed)
            (root / "manifests").mkdir(exist_ok=True)
            (root / "manifests" / f"m{i}.json.yaml").write_text(json.dumps(manifest))
        validation = load(root / "manifests", version, env)
        assert validation.ok, [str(e) for e in validation.errors]
        # With EIS authorised, so that `elastic` endpoints can be created too.
        emulator = Emulator(EmulatorConfig(version=str(version), deploy_seconds=0, eis=True))
        backend = FileBackend(root / "state.json")
        async with Elasticsearch(
            Connection(urls=("http://es",)), transport=httpx.ASGITransport(app=emulator)
        ) as es:
            cluster = await read_cluster(es, backend)
            first = plan(validation.endpoints, Live(cluster.endpoints, version), None, Options())
            options = ApplyOptions(poll_interval=0.01)
            result = await execute(
                es, backend, cluster, first, env=env, reporter=LogReporter(), options=options
            )
            assert not result.failed, result.failed
            state = (await backend.read()).state
            live = {e["inference_id"]: e for e in await es.endpoints()}
            again = plan(validation.endpoints, Live(live, version), state, Options())
            assert not again.has_changes, [
                (c.inference_id, c.action, c.diff) for c in again.changes if c.action.value != "no-op"
            ]


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # examples: the profile
@given(
    st.sampled_from([Version(8, 19, 3), Version(9, 5, 0)]).flatmap(
        lambda v: st.tuples(st.just(v), st.lists(manifests(v), min_size=1, max_size=6))
    )
)
def test_apply_then_plan_is_empty(case: tuple[Version, list[tuple[dict[str, Any], dict[str, str]]]]) -> None:
    version, documents = case
    asyncio.run(_apply_then_plan(version, documents))


class FailingBackend(FileBackend):
    """Its third write fails, as a state index that became unwritable would."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writes = 0

    async def write(self, state: State, token: Any) -> Any:
        self.writes += 1
        if self.writes == 3:
            raise StateError("the state index is read-only")
        return await super().write(state, token)


async def test_a_state_write_error_stops_every_action_before_it_is_raised(tmp_path: Path) -> None:
    folder = tmp_path / "manifests"
    folder.mkdir()
    for i in range(40):
        (folder / f"a{i}.yaml").write_text(
            f"inference_id: a{i}\ntask_type: completion\nservice: anthropic\n"
            "service_settings: {api_key: '${KEY}', model_id: m}\ntask_settings: {max_tokens: 8}\n"
        )
    env = {"KEY": "k"}
    validation = load(folder, Version(9, 5), env)
    emulator = Emulator(EmulatorConfig(deploy_seconds=0, latency_ms=5))
    backend = FailingBackend(tmp_path / "state.json")
    async with Elasticsearch(
        Connection(urls=("http://es",)), transport=httpx.ASGITransport(app=emulator)
    ) as es:
        cluster = await read_cluster(es, backend)
        first = plan(validation.endpoints, Live({}, Version(9, 5)), None, Options())
        options = ApplyOptions(parallelism=4, poll_interval=0.01)
        with pytest.raises(StateError, match="read-only"):
            await execute(es, backend, cluster, first, env=env, reporter=LogReporter(), options=options)
        # Nothing goes on after the error: no task of the apply is left to send a request.
        assert asyncio.all_tasks() == {asyncio.current_task()}
        assert len(emulator.cluster.endpoints) < 40
