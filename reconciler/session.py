"""Reading what a command works from — manifests, cluster, state — in a constant number of requests.

The first step of every workflow (`workflows`): it wires the manifest loader, the HTTP client,
the state backend and the planner. A plan costs GET /, one list of endpoints, one state read, at most
one batched stats call (only when a tainted endpoint needs its deployment checked), and one
`DELETE ?dry_run=true` per planned delete or replace — however many endpoints there are.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler import catalog, planner
from reconciler.catalog import Version
from reconciler.client import ApiError, Elasticsearch
from reconciler.manifests import Validation, load
from reconciler.plan import Plan
from reconciler.sensitive import masked
from reconciler.state import State
from reconciler.storage import Backend


class UnsupportedVersionError(Exception):
    """The cluster runs a version whose rules the catalog does not describe."""


@dataclass(frozen=True)
class Cluster:
    """One read of the cluster: its identity, version, endpoints and the state."""

    info: Mapping[str, Any]
    version: Version
    endpoints: Mapping[str, Mapping[str, Any]]
    state: State | None
    token: Any

    def identity(self, url: str) -> dict[str, Any]:
        """The `cluster` object of the plan and drift JSON forms."""
        return {
            "url": url,
            "version": str(self.info["version"]["number"]),
            "cluster_uuid": self.info.get("cluster_uuid"),
        }

    def live(self, url: str, deployments: Mapping[str, Mapping[str, Any]] | None = None) -> planner.Live:
        return planner.Live(
            endpoints=self.endpoints,
            version=self.version,
            deployments=deployments or {},
            cluster=self.identity(url),
        )


def supported_version(info: Mapping[str, Any]) -> Version:
    """The version GET / reports, if the catalog describes its rules."""
    version = Version.parse(str(info["version"]["number"]))
    if not catalog.supported(version):
        raise UnsupportedVersionError(
            f"Elasticsearch {version} is not supported: this tool knows 8.19 and 9.0 to 9.5"
        )
    return version


async def read_cluster(es: Elasticsearch, backend: Backend, info: Mapping[str, Any] | None = None) -> Cluster:
    """The cluster's endpoints and the state, read together; `info` (GET /) when this run has it."""
    info = info if info is not None else await es.info()
    version = supported_version(info)
    endpoints, snapshot = await asyncio.gather(es.endpoints(), backend.read())
    live = {e["inference_id"]: _shown(e, snapshot.state) for e in endpoints}
    return Cluster(info, version, live, snapshot.state, snapshot.token)


def _shown(endpoint: Mapping[str, Any], state: State | None) -> Mapping[str, Any]:
    """A live endpoint as every command may see it: what the server echoes of a value that came
    from a reference (a `model_id: ${...}`) is masked at the secret paths the state records."""
    record = state.endpoints.get(str(endpoint.get("inference_id"))) if state is not None else None
    settings = endpoint.get("service_settings")
    if state is None or record is None or not record.secret_digests or not isinstance(settings, Mapping):
        return endpoint
    return {**endpoint, "service_settings": masked(settings, record.secret_digests, state.salt)}


@dataclass(frozen=True)
class Planning:
    """What to plan, for plan and apply alike: targets, replacements, refresh-only or destroy."""

    options: planner.Options = field(default_factory=planner.Options)
    allow_referenced: bool = False  # deletes and replaces of endpoints in use go with force


async def make_plan(
    es: Elasticsearch,
    backend: Backend,
    manifests: Path,
    planning: Planning = Planning(),
    *,
    env: Mapping[str, str] | None = None,
    checked: tuple[Mapping[str, Any], Validation] | None = None,
) -> tuple[Plan | None, Validation, Cluster]:
    """Validate the manifests for the cluster's version and plan; no lock is taken, nothing written.
    `checked`: what this run already read (GET /) and the manifests it validated for that version."""
    cluster = await read_cluster(es, backend, checked[0] if checked is not None else None)
    if checked is not None:
        validation = checked[1]
    else:
        validation = load(manifests, cluster.version, os.environ if env is None else env)
    if not validation.ok:
        return None, validation, cluster
    state = cluster.state
    tainted = [
        cluster.endpoints[i]
        for i, r in (state.endpoints.items() if state else ())
        if r.tainted and i in cluster.endpoints
    ]
    deployments = await es.deployment_stats([catalog.deployment_id(e) for e in tainted]) if tainted else {}
    planned = planner.plan(validation.endpoints, cluster.live(es.url, deployments), state, planning.options)
    wanted = planner.needs_references(planned)
    found, unchecked = await _references(es, wanted)
    planned = planner.with_references(planned, found, planning.allow_referenced)
    if unchecked:
        note = (
            f"could not check what uses {', '.join(unchecked)}: DELETE ?dry_run=true needs the manage_inference "
            "privilege; apply will refuse (409) to delete an endpoint in use without --allow-referenced"
        )
        planned = dataclasses.replace(planned, warnings=(*planned.warnings, note))
    return planned, validation, cluster


async def _references(
    es: Elasticsearch, wanted: Sequence[tuple[str, str]]
) -> tuple[dict[str, dict[str, list[str]]], list[str]]:
    """References of each endpoint, and the ids they could not be read for (no privilege)."""
    limit = asyncio.Semaphore(8)
    unchecked: list[str] = []

    async def one(inference_id: str, task_type: str) -> tuple[str, dict[str, list[str]]] | None:
        async with limit:
            try:
                return inference_id, await es.references(inference_id, task_type)
            except ApiError as error:
                if error.status != 403:
                    raise
                unchecked.append(inference_id)
                return None

    found = [r for r in await asyncio.gather(*(one(i, t) for i, t in wanted)) if r is not None]
    return dict(found), sorted(unchecked)
