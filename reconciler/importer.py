"""`import`: write a manifest for each live endpoint and adopt it into the state.

The manifest holds what the endpoint needs, in the form the manifests use: server defaults left
out (the default rate_limit, the default chunking, task settings defaults, num_allocations moved by
adaptive allocations, elser's filled-in model id), and each secret as a reference to fill in,
`${<ID>_<FIELD>}` in upper snake case. The state records the endpoint with no secret digests, so
the next plan shows nothing but the secrets it cannot know (`secret-unknown`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from reconciler import catalog, planner
from reconciler.catalog import Service
from reconciler.manifests import dump_manifest, load_files
from reconciler.session import Cluster
from reconciler.state import State, StateError
from reconciler.storage import Backend, now_iso


def reference_name(inference_id: str, field: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", f"{inference_id}_{field}".upper()).strip("_")


def manifest_for(endpoint: Mapping[str, Any], service: Service) -> tuple[dict[str, Any], list[str]]:
    """A manifest for a live endpoint, and the environment variables its secrets need."""
    task_type = str(endpoint["task_type"])
    settings = dict(endpoint.get("service_settings") or {})
    fields = {f.name: f for f in service.service_settings if f.applies(task_type, catalog.NEWEST_SUPPORTED)}
    rate_limit = settings.get("rate_limit")
    if isinstance(rate_limit, dict) and rate_limit.get("requests_per_minute") == service.default_rate_limit(
        task_type
    ):
        settings.pop("rate_limit")
    adaptive = settings.get("adaptive_allocations")
    if isinstance(adaptive, dict) and adaptive.get("enabled"):
        settings.pop("num_allocations", None)
    for name, spec in fields.items():
        if spec.default is not None and settings.get(name) == spec.default:
            settings.pop(name)
        if not spec.accepted:
            settings.pop(name, None)
    references = []
    for name in _secrets_needed(service, task_type):
        variable = reference_name(str(endpoint["inference_id"]), name)
        settings[name] = (
            {"token": f"${{{variable}}}"} if fields[name].kind is catalog.Kind.MAP else f"${{{variable}}}"
        )
        references.append(variable)
    manifest: dict[str, Any] = {
        "inference_id": endpoint["inference_id"],
        "task_type": task_type,
        "service": endpoint["service"],
        "service_settings": settings,
    }
    task = {
        k: v
        for k, v in (endpoint.get("task_settings") or {}).items()
        if not _is_default(service, task_type, k, v)
    }
    if task:
        manifest["task_settings"] = task
    chunking = endpoint.get("chunking_settings")
    if chunking is not None and chunking != catalog.DEFAULT_CHUNKING:
        manifest["chunking_settings"] = chunking
    return manifest, references


def _is_default(service: Service, task_type: str, key: str, value: Any) -> bool:
    return any(
        f.name == key and f.default is not None and f.default == value
        for f in service.task_fields(task_type, catalog.NEWEST_SUPPORTED)
    )


def _secrets_needed(service: Service, task_type: str) -> list[str]:
    fields = [
        f for f in service.service_settings if f.secret and f.applies(task_type, catalog.NEWEST_SUPPORTED)
    ]
    needed = [f.name for f in fields if f.required]
    for group in service.one_of:
        names = [n for n in group.names if any(f.name == n for f in fields)]
        if names and not any(n in needed for n in names):
            needed.append(names[0])
    return needed


def write_manifests(
    endpoints: Sequence[Mapping[str, Any]], folder: Path, cluster: Cluster
) -> list[tuple[Path, list[str]]]:
    """Write `<inference_id>.yaml` per endpoint; returns each file and the variables to set."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for endpoint in endpoints:
        manifest, references = manifest_for(endpoint, catalog.SERVICES[str(endpoint["service"])])
        comment = f"Imported from Elasticsearch {cluster.version} on {now_iso()}."
        if references:
            comment += f"\nSet {', '.join(references)} before plan or apply."
        path = folder / f"{endpoint['inference_id']}.yaml"
        path.write_text(dump_manifest(manifest, comment))
        written.append((path, references))
    return written


def adopted_state(written: Sequence[tuple[Path, list[str]]], cluster: Cluster, workspace: str) -> State:
    """The state with the imported endpoints recorded as applied, their secrets unknown."""
    placeholders = {name: "imported" for _, references in written for name in references}
    state = cluster.state or State.new(workspace)
    validation = load_files([path for path, _ in written], cluster.version, placeholders)
    if validation.errors:
        problems = "\n".join(str(e) for e in validation.errors)
        raise StateError(
            f"the imported manifests were written but do not validate, so nothing was adopted:\n{problems}"
        )
    for desired in validation.endpoints:
        record = planner.applied_record(
            desired, cluster.endpoints[desired.inference_id], state, cluster.version, now_iso()
        )
        state = state.with_endpoint(desired.inference_id, replace(record, secret_digests={}))
    return state


async def adopt(state: State, cluster: Cluster, backend: Backend) -> None:
    await backend.write(state.bumped(), cluster.token)
