"""What `_update` changes in place, and the body it sends, on each Elasticsearch version.

The planner asks `updatable` of every changed path: an endpoint is updated in place only when each
one is (else it is replaced). `update_body` is then what `PUT .../_update` gets: only what it can
and must change on that version. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reconciler import catalog
from reconciler.catalog import Service, Version
from reconciler.model import Desired
from reconciler.plan import DiffEntry
from reconciler.views import with_secrets


def update_body(
    desired: Desired,
    request: Mapping[str, Any],
    service: Service,
    paths: Sequence[str],
    live: Mapping[str, Any],
    version: Version,
) -> dict[str, Any]:
    """What `_update` needs for this change on this version: only what it can and must change.

    service is never sent; merged-style task_settings are sent whole (the server replaces them),
    with ignored paths filled from the cluster; up to 9.4 any service_settings object is read as
    new secrets, so the secrets are resent whenever service_settings is sent. `request` is the
    PUT body (secrets as references), from which the parts sent are taken.
    """
    newest = version.at_least(9, 5)
    body: dict[str, Any] = {}
    settings = (
        _allocation_settings(request["service_settings"], paths, newest)
        if service.deploys_model
        else _external_settings(desired, request["service_settings"], paths, newest)
    )
    if settings:
        body["service_settings"] = settings
    if any(p.startswith("task_settings.") or p == "task_settings" for p in paths):
        task = dict(request.get("task_settings") or {})
        current = live.get("task_settings") or {}
        for ignored_path in desired.lifecycle.ignore_changes:
            section, _, name = ignored_path.partition(".")
            if section == "task_settings" and name in current:
                task[name] = current[name]
        body["task_settings"] = task
    if newest and any(p.startswith("chunking_settings") for p in paths) and "chunking_settings" in request:
        body["chunking_settings"] = request["chunking_settings"]
    return body


def _allocation_settings(wanted: Mapping[str, Any], paths: Sequence[str], newest: bool) -> dict[str, Any]:
    """An in-cluster deployment's _update changes its allocations only."""
    if newest and any(p.startswith("service_settings.adaptive_allocations") for p in paths):
        return {"adaptive_allocations": wanted.get("adaptive_allocations")}
    if "service_settings.num_allocations" in paths:
        return {"num_allocations": wanted.get("num_allocations")}
    return {}


def _external_settings(
    desired: Desired, wanted: Mapping[str, Any], paths: Sequence[str], newest: bool
) -> dict[str, Any]:
    secret_paths = {f"service_settings.{p}" for p in desired.secrets}
    settings: dict[str, Any] = {}
    if newest:
        for path in paths:
            if path.startswith("service_settings.") and path not in secret_paths:
                name = path.split(".")[1]
                settings[name] = wanted.get(name)
    if any(p in secret_paths for p in paths) or (settings and not newest):
        # The catalog's secrets go together; a value from a reference in any other field (a
        # `model_id: ${...}`) only when it changed: the server refuses what it cannot update.
        references = {
            p: r
            for p, r in desired.secret_references.items()
            if p.split(".")[0] in catalog.SECRET_FIELD_NAMES or f"service_settings.{p}" in paths
        }
        settings = with_secrets(settings, references)
    return settings


def updatable(service: Service, task_type: str, entry: DiffEntry, version: Version) -> bool:
    """Whether `_update` makes this change in place on this version (else the endpoint is replaced)."""
    if entry.path in ("task_type", "service"):
        return False
    if (
        entry.after is None
        and entry.path.startswith("task_settings.")
        and service.task_settings_update == "merge"
    ):
        return False  # a merging _update cannot remove a key
    return catalog.updatable_in_place(service, task_type, entry.path, version)
