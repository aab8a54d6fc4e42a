"""Reading what a command works from — manifests, cluster, state — in a constant number of requests.

The first step of every workflow (`workflows`): it wires the manifest loader, the HTTP client,
the state backend and the planner. A plan costs GET /, one list of endpoints, one state read, at most
one batched stats call (only when a tainted endpoint needs its deployment checked), and one
`DELETE ?dry_run=true` per planned delete or replace — however many endpoints there are.

Intents a killed run left in the state (DESIGN §9) are settled here against the endpoint list
that read already has (`settle`): every command sees them settled; one holding the lock (apply)
stores the settling with its first state write.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler import catalog, planner, views
from reconciler.catalog import Version
from reconciler.client import ApiError, Elasticsearch
from reconciler.manifests import Validation, load
from reconciler.overlays import Layers
from reconciler.plan import Plan
from reconciler.sensitive import Secret, digest, masked
from reconciler.state import DONE, DROPPED, FORGOTTEN, EndpointRecord, Entry, State, replay
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
    # How the intents the state held were settled: to store with the next write under the lock.
    settled: tuple[Entry, ...] = ()
    notes: tuple[str, ...] = ()

    def identity(self, url: str) -> dict[str, Any]:
        """The `cluster` object of the plan and drift JSON forms."""
        return {
            "url": url,
            "version": str(self.info["version"]["number"]),
            "cluster_uuid": self.info.get("cluster_uuid"),
            "cluster_name": self.info.get("cluster_name"),  # for the plan's header only
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
            f"Elasticsearch {version} is not supported: this tool knows {catalog.SUPPORTED_RANGE}"
        )
    return version


async def read_cluster(es: Elasticsearch, backend: Backend, info: Mapping[str, Any] | None = None) -> Cluster:
    """The cluster's endpoints and the state, read together; `info` (GET /) when this run has it."""
    info = info if info is not None else await es.info()
    version = supported_version(info)
    endpoints, snapshot = await asyncio.gather(es.endpoints(), backend.read())
    raw = {str(e["inference_id"]): e for e in endpoints}
    state, settled, notes = settle(snapshot.state, raw) if snapshot.state is not None else (None, [], [])
    live = {i: _shown(e, state) for i, e in raw.items()}
    return Cluster(info, version, live, state, snapshot.token, tuple(settled), tuple(notes))


def settle(state: State, live: Mapping[str, Mapping[str, Any]]) -> tuple[State, list[Entry], list[str]]:
    """The state with each pending intent settled by what the cluster holds now, the entries that
    store that, and a note for each that could not be confirmed. An intended write that reads back
    as asked is recorded; one that does not exist changed nothing; one that exists otherwise is
    recorded as found, its secrets unknown (the next apply sends them). A delete happened when the
    endpoint is gone. A write whose effect cannot be told apart (a secret rotation) keeps the
    record before it: the next plan proposes it again."""
    entries: list[Entry] = []
    notes: list[str] = []
    for inference_id, intent in sorted(state.intents.items()):
        echo = live.get(inference_id)
        prior = state.endpoints.get(inference_id)
        if intent.op == "delete" or intent.record is None:
            entries.append(Entry(FORGOTTEN if echo is None else DROPPED, inference_id))
        elif echo is None or (prior is not None and _reads_back_as(prior.requested, echo)):
            entries.append(Entry(DROPPED, inference_id))
        elif _reads_back_as(intent.record.requested, echo):
            entries.append(Entry(DONE, inference_id, record=_found(intent.record, echo, state.salt)))
        elif prior is None:
            unknown = dataclasses.replace(_found(intent.record, echo, state.salt), secret_digests={})
            entries.append(Entry(DONE, inference_id, record=unknown))
            notes.append(
                f"{inference_id}: a run stopped while creating it, and the cluster holds another "
                "configuration than was asked: recorded as found, its secrets to be sent again"
            )
        else:
            entries.append(Entry(DROPPED, inference_id))
    return replay(state, entries), entries, notes


def _reads_back_as(requested: Mapping[str, Any], echo: Mapping[str, Any]) -> bool:
    have = views.live_view(echo)
    skip = views.dynamic_paths(requested) | views.dynamic_paths(have)
    return not views.differences(requested, have, owned=set(), skip=skip, ignore=())


def _found(intended: EndpointRecord, echo: Mapping[str, Any], salt: str) -> EndpointRecord:
    applied = views.live_view(echo)  # a referenced value the server echoes is masked (DESIGN §9)
    applied["service_settings"] = masked(applied["service_settings"], intended.secret_digests, salt)
    return dataclasses.replace(intended, applied=applied)


def _shown(endpoint: Mapping[str, Any], state: State | None) -> Mapping[str, Any]:
    """A live endpoint as every command may see it: what the server echoes of a value that came
    from a reference (a `model_id: ${...}`) is masked at the secret paths the state records."""
    record = state.endpoints.get(str(endpoint.get("inference_id"))) if state is not None else None
    settings = endpoint.get("service_settings")
    if state is None or record is None or not isinstance(settings, Mapping):
        return endpoint
    if not any(path.partition(".")[0] in settings for path in record.secret_digests):
        return endpoint  # the usual case: the server echoes no secret (api_key never)
    return {**endpoint, "service_settings": masked(settings, record.secret_digests, state.salt)}


def referenced_values(endpoint: Mapping[str, Any], state: State | None) -> list[str]:
    """The values the server echoes of an endpoint that came from references (the state holds
    their digests): what a command that resolves no manifest must still redact from server text."""
    record = state.endpoints.get(str(endpoint.get("inference_id"))) if state is not None else None
    settings = endpoint.get("service_settings")
    if state is None or record is None or not isinstance(settings, Mapping):
        return []
    found = []
    for path, recorded in record.secret_digests.items():
        top, _, inner = path.partition(".")
        holder = settings.get(top) if inner else settings
        value = holder.get(inner or top) if isinstance(holder, Mapping) else None
        if value is not None and digest(Secret(str(value)), state.salt) == recorded:
            found.append(str(value))
    return found


@dataclass(frozen=True)
class Planning:
    """What to plan, for plan and apply alike: targets, replacements, refresh-only or destroy."""

    options: planner.Options = field(default_factory=planner.Options)
    allow_referenced: bool = False  # deletes and replaces of endpoints in use go with force
    allow_takeover: bool = False  # act on endpoints another workspace's state manages (`takeover`)


async def make_plan(
    es: Elasticsearch,
    backend: Backend,
    manifests: Path | Layers,
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
    shared = manifests.shared if isinstance(manifests, Layers) else None
    memo = shared.planned if shared is not None else None
    planned = planner.plan(
        validation.endpoints, cluster.live(es.url, deployments), state, planning.options, memo
    )
    wanted = planner.needs_references(planned)
    found, unchecked = await _references(es, wanted)
    planned = planner.with_references(planned, found, planning.allow_referenced)
    if cluster.notes:  # intents of a stopped run that could not be confirmed (see `settle`)
        planned = dataclasses.replace(planned, warnings=(*planned.warnings, *cluster.notes))
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
