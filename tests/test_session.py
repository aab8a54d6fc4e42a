"""Reading the cluster for a plan: a constant number of requests, and read-only credentials."""

from __future__ import annotations

from pathlib import Path

import httpx

from reconciler.client import Connection, Elasticsearch
from reconciler.emulator import Emulator, EmulatorConfig
from reconciler.session import make_plan
from reconciler.state import EndpointRecord, State
from reconciler.storage import ClusterBackend


class ReadOnly(httpx.AsyncBaseTransport):
    """Credentials without manage_inference: every DELETE, dry_run included, is forbidden."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "GET":
            body = {
                "error": {
                    "type": "security_exception",
                    "reason": "action [cluster:admin/xpack/inference/delete] is unauthorized",
                },
                "status": 403,
            }
            return httpx.Response(403, json=body)
        return await self.inner.handle_async_request(request)


async def test_a_plan_with_read_only_credentials_warns_that_references_were_not_checked(
    tmp_path: Path,
) -> None:
    emulator = Emulator(EmulatorConfig())
    body = {
        "service": "anthropic",
        "service_settings": {"api_key": "k", "model_id": "m"},
        "task_settings": {"max_tokens": 5},
    }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator), base_url="http://es") as admin:
        await admin.put("/_inference/completion/old", json=body)
    live = {
        "task_type": "completion",
        "service": "anthropic",
        "service_settings": {"model_id": "m", "rate_limit": {"requests_per_minute": 50}},
        "task_settings": {"max_tokens": 5},
    }
    async with Elasticsearch(
        Connection(urls=("http://es",)), transport=httpx.ASGITransport(app=emulator)
    ) as es:
        await ClusterBackend(es, "default").write(
            State.new("default")
            .with_endpoint("old", EndpointRecord("completion", "anthropic", live, live))
            .bumped(),
            None,
        )
    (tmp_path / "manifests").mkdir()
    async with Elasticsearch(
        Connection(urls=("http://es",)), transport=ReadOnly(httpx.ASGITransport(app=emulator))
    ) as es:
        planned, validation, _ = await make_plan(
            es, ClusterBackend(es, "default"), tmp_path / "manifests", env={}
        )
    assert validation.ok
    assert planned is not None
    assert [(c.inference_id, c.action.value) for c in planned.changes] == [("old", "delete")]
    assert not planned.errors
    assert any("could not check what uses old" in w for w in planned.warnings)
