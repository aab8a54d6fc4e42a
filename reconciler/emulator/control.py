"""The emulator's own control API under `/_emulator/`: what tests steer and inspect.

Counters of the requests served, fault injection, the ML capacity, autoscaling and deployment
speed, the clock, failing, scaling or removing a deployment by hand, and the digests of an
endpoint's secrets. It is never faulted, delayed or counted, and answers plain JSON rather than
Elasticsearch's envelope.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from reconciler.emulator import ml
from reconciler.emulator.cluster import Cluster
from reconciler.emulator.faults import Faults, RequestLog

Json = Any
ACKNOWLEDGED = {"acknowledged": True}


@dataclass
class Control:
    """The state the control API changes: the cluster, the faults and the request log."""

    cluster: Cluster
    faults: Faults
    requests: RequestLog

    async def handle(self, method: str, full_path: str, body: bytes) -> tuple[int, Json]:
        """(status, body) of one control request."""
        path = full_path.removeprefix("/_emulator")
        data = json.loads(body) if body.strip() else {}
        handler = self._plain.get((method, path))
        if handler is not None:
            return 200, await handler(data)
        for pattern, (verb, by_name) in _NAMED.items():
            match = re.fullmatch(pattern, path)
            if match is not None and method == verb:
                return by_name(self, match[1], match[2] if match.lastindex == 2 else "", data)
        return 404, {"error": f"unknown emulator control request [{method} {full_path}]"}

    @property
    def _plain(self) -> dict[tuple[str, str], Callable[[Json], Awaitable[Json]]]:
        return {
            ("GET", "/requests"): self._requests,
            ("DELETE", "/requests"): self._reset_requests,
            ("PUT", "/faults"): self._configure_faults,
            ("PUT", "/ml"): self._configure_ml,
            ("POST", "/clock/_advance"): self._advance_clock,
        }

    async def _requests(self, data: Json) -> Json:
        return self.requests.to_json()

    async def _reset_requests(self, data: Json) -> Json:
        self.requests.reset()
        return ACKNOWLEDGED

    async def _configure_faults(self, data: Json) -> Json:
        self.faults.configure(data)
        return ACKNOWLEDGED

    async def _configure_ml(self, data: Json) -> Json:
        settings = self.cluster.ml
        if "capacity" in data:
            settings.capacity = None if data["capacity"] is None else int(data["capacity"])
        if "deploy_seconds" in data:
            settings.deploy_seconds = float(data["deploy_seconds"])
        if "autoscaling" in data:
            settings.autoscaling = bool(data["autoscaling"])
        if "scale_up_seconds" in data:
            value = data["scale_up_seconds"]
            settings.scale_up_seconds = None if value is None else float(value)
        return ACKNOWLEDGED

    async def _advance_clock(self, data: Json) -> Json:
        self.cluster.advance(float(data.get("seconds", 0)))
        self.cluster.save()
        return {"acknowledged": True, "now": self.cluster.now()}

    def _deployment(self, deployment_id: str, action: str, data: Json) -> tuple[int, Json]:
        """Fail a deployment (with a reason), scale it to a number of allocations, or remove it (as
        Elasticsearch deletes a deployment that failed to start, or a stop through the ML API does)."""
        cluster = self.cluster
        dep = cluster.deployments.get(deployment_id)
        if dep is None:
            return 404, {"error": f"no deployment [{deployment_id}]"}
        now = cluster.now()
        if action == "remove":
            del cluster.deployments[deployment_id]
        elif action == "fail":
            dep.failure = str(data.get("reason", ml.failure_reason(dep)))
            dep.fail_at = now
        else:
            share = ml.shares(cluster.ml, list(cluster.deployments.values()), now).get(dep.deployment_id, 0)
            ml.scale(cluster.ml, dep, share, int(data["allocations"]), now)
        cluster.save()
        return 200, ACKNOWLEDGED

    def _secrets(self, inference_id: str, _: str, data: Json) -> tuple[int, Json]:
        endpoint = self.cluster.endpoints.get(inference_id)
        if endpoint is None:
            return 404, {"error": f"no endpoint [{inference_id}]"}
        return 200, endpoint.secret_digests


# Requests that name a deployment or an endpoint: pattern -> (method, handler).
_NAMED: dict[str, tuple[str, Callable[[Control, str, str, Json], tuple[int, Json]]]] = {
    r"/deployments/([^/]+)/_(fail|scale|remove)": ("POST", Control._deployment),
    r"/endpoints/([^/]+)/secrets": ("GET", Control._secrets),
}
