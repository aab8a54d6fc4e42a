"""Properties over arbitrary valid manifests of every service (hypothesis, against the in-process emulator).

1. What the validator accepts, the emulator (Elasticsearch's double) accepts.
2. The plan of a manifest against its own applied result is empty: nothing the server fills in
   shows as a change, on 8.19 and 9.x.
"""

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

from reconciler import catalog
from reconciler.catalog import Service, Version
from reconciler.emulator import Emulator, EmulatorConfig
from reconciler.manifests import load
from reconciler.plan import Action
from reconciler.planner import Live, plan
from reconciler.state import State
from tests.strategies import VERSIONS, manifests
from tests.test_planner import record_applied


def _body(request: dict[str, Any], env: dict[str, str], secrets: dict[str, str]) -> dict[str, Any]:
    """The plan's request body with each secret reference replaced by its value."""
    body: dict[str, Any] = json.loads(json.dumps(request))
    for path, reference in secrets.items():
        top, _, inner = path.partition(".")
        value = env[reference[2:-1]]
        if inner:
            body["service_settings"][top][inner] = value
        else:
            body["service_settings"][top] = value
    return body


async def _round_trip(manifest: dict[str, Any], env: dict[str, str], version: Version) -> None:
    with tempfile.TemporaryDirectory() as folder:
        # JSON is YAML 1.2 with every string quoted (PyYAML would leave 0e0 bare, a float in 1.2).
        (Path(folder) / "m.yaml").write_text(json.dumps(manifest))
        validation = load(Path(folder), version, env)
    assert validation.ok, [str(e) for e in validation.errors]
    (desired,) = validation.endpoints
    # With EIS authorised, so that `elastic` endpoints can be created too.
    emulator = Emulator(EmulatorConfig(version=str(version), deploy_seconds=0, eis=True))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator), base_url="http://es") as es:
        state = State.new("default")
        first = plan([desired], Live({}, version), state)
        (change,) = first.changes
        assert change.action is Action.CREATE
        (put,) = change.requests  # the plan's own request, sent as apply sends it
        assert put.body is not None
        secrets = {path: s.reference for path, s in change.secrets.items()}
        response = await es.request(
            put.method, put.path, params=dict(put.query), json=_body(dict(put.body), env, secrets)
        )
        assert response.status_code == 200, (manifest, response.text)
        live = (await es.get(f"/_inference/{desired.inference_id}")).json()["endpoints"][0]
        state = state.with_endpoint(desired.inference_id, record_applied(desired, live, state, version))
        again = plan([desired], Live({desired.inference_id: live}, version), state)
        (change,) = again.changes
        assert change.action is Action.NO_OP, (manifest, change.diff, live)
        # Nor when the state is lost: adopting it back changes nothing but the unknown secrets.
        adopted = plan([desired], Live({desired.inference_id: live}, version), State.new("default"))
        (change,) = adopted.changes
        if change.secrets:
            # Setting them is an `_update`, or a replace where it would reset the chunking (C5).
            extra: tuple[str, ...] = ()
            if catalog.update_changes_chunking(live.get("chunking_settings"), version):
                extra = ("update-resets-chunking",)
            assert change.reasons == ("secret-unknown", *extra), (manifest, change.diff)
            assert change.action is (Action.REPLACE if extra else Action.UPDATE)
        else:
            assert (change.action, change.reasons) == (Action.ADOPT, ("not-in-state",)), (
                manifest,
                change.diff,
            )


def _cases(service: Service) -> st.SearchStrategy[tuple[Version, tuple[dict[str, Any], dict[str, str]]]]:
    versions = [v for v in VERSIONS if service.available(v) and service.supported_task_types(v)]
    return st.sampled_from(versions).flatmap(lambda v: st.tuples(st.just(v), manifests(v, service)))


@pytest.mark.parametrize(
    "service", [catalog.SERVICES[name] for name in sorted(catalog.SERVICES)], ids=sorted(catalog.SERVICES)
)
def test_plan_of_the_applied_result_is_empty(service: Service) -> None:
    @settings(suppress_health_check=[HealthCheck.too_slow])  # examples and deadline: the profile
    @given(_cases(service))
    def check(case: tuple[Version, tuple[dict[str, Any], dict[str, str]]]) -> None:
        version, (manifest, env) = case
        asyncio.run(_round_trip(manifest, env, version))

    check()
