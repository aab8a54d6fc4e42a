"""`PUT /_inference/[{task_type}/]{id}/_update`: changing an endpoint in place, by its server's rules.

What `_update` accepts depends on the version (reference §6; the catalog's `NEWEST_UPDATE`): up to
9.4 any service_settings object is a whole new set of secrets and an in-cluster endpoint can
change only num_allocations; from 9.5 the service settings the parser merges, chunking_settings
and adaptive allocations change too. task_settings are merged key by key or replaced whole, as
the service's entry in the catalog says. From 8.16 to 9.3 a successful update rebuilds the endpoint
without its chunking settings, which then read back as the old default (C5, issue #139574).
"""

from __future__ import annotations

import json
from typing import Any

from reconciler import catalog
from reconciler.catalog import Field, Kind, Service, Version
from reconciler.emulator import ml
from reconciler.emulator.cluster import Cluster, Endpoint, secret_digest
from reconciler.emulator.endpoints import check_id, parse_body, path_task_type, raise_first, render
from reconciler.emulator.errors import EsError, bad_request, not_found, validation_failed
from reconciler.emulator.wording import java_str, unknown_settings_reason

_UPDATABLE_KEYS = ("task_type", "service_settings", "task_settings")
_IN_CLUSTER_KEYS = ("num_allocations", "adaptive_allocations")


async def update_endpoint(
    cluster: Cluster, path_task: str | None, inference_id: str, raw: bytes | None
) -> dict[str, Any]:
    """Check the request, change the endpoint (and its deployment), and print it."""
    version = cluster.version
    newest = catalog.NEWEST_UPDATE.covers(version)
    url_task = path_task_type(path_task, version) if path_task is not None else None
    body = parse_body(raw)
    check_id(inference_id)
    if not body:
        raise bad_request("status_exception", "Request body is empty")
    _check_sections(body, newest)
    endpoint = cluster.endpoints.get(inference_id)
    if endpoint is None:
        raise not_found(f"The inference endpoint [{inference_id}] does not exist and cannot be updated")
    for requested in (url_task, body.get("task_type")):
        if requested is not None and catalog.parse_task_type(str(requested), version) != endpoint.task_type:
            raise bad_request(
                "status_exception", "Task type must match the task type of the existing endpoint"
            )
    service = catalog.SERVICES[endpoint.service]
    if service.deploys_model:
        _update_in_cluster(cluster, service, endpoint, body, newest)
    else:
        _update_external(cluster, service, endpoint, body, newest)
    if catalog.update_resets_chunking(version) and catalog.chunking_applies(endpoint.task_type):
        endpoint.chunking_settings = dict(catalog.OLD_DEFAULT_CHUNKING)
    cluster.save()
    return render(cluster, endpoint)


def _check_sections(body: dict[str, Any], newest: bool) -> None:
    """Only the updatable sections, each an object."""
    allowed = (*_UPDATABLE_KEYS, "chunking_settings") if newest else _UPDATABLE_KEYS
    extra = {k: v for k, v in body.items() if k not in allowed}
    if extra:
        raise bad_request(
            "status_exception",
            "Request contained fields which cannot be updated, remove these fields and try again "
            f"[{java_str(extra)}]",
        )
    for section in ("service_settings", "task_settings", "chunking_settings"):
        if section in body and not isinstance(body[section], dict):
            raise bad_request(
                "status_exception", f"Unable to parse [{section}] in the request [{java_str(body)}]"
            )


# -- external services -------------------------------------------------------------------------


def _update_external(
    cluster: Cluster, service: Service, endpoint: Endpoint, body: dict[str, Any], newest: bool
) -> None:
    """Everything is checked before anything changes: a refused update changes nothing."""
    version = cluster.version
    settings, digests = dict(endpoint.service_settings), dict[str, str]()
    if body.get("service_settings") is not None:
        settings, digests = _new_service_settings(
            cluster, service, endpoint, body["service_settings"], newest
        )
    task_settings = endpoint.task_settings
    if "task_settings" in body:
        # Merged over the stored values, unless the service replaces task_settings whole.
        base = {} if service.task_settings_update == "replace" else _raw_task_settings(service, endpoint)
        requested = {**base, **body["task_settings"]}
        task_settings, problems = catalog.check_task_settings(service, endpoint.task_type, requested, version)
        raise_first(problems, service.name)
    chunking = endpoint.chunking_settings
    if "chunking_settings" in body:
        chunking = _new_chunking(service, endpoint.task_type, body["chunking_settings"], version)
    endpoint.service_settings = settings
    endpoint.secret_digests.update(digests)
    endpoint.task_settings = task_settings
    endpoint.chunking_settings = chunking


def _new_service_settings(
    cluster: Cluster, service: Service, endpoint: Endpoint, requested: dict[str, Any], newest: bool
) -> tuple[dict[str, Any], dict[str, str]]:
    """The service_settings the endpoint will have, and the digests of the secrets it was given."""
    fields = {f.name: f for f in service.settings(endpoint.task_type, cluster.version)}
    secrets = {k: v for k, v in requested.items() if k in fields and fields[k].secret}
    merged = dict(endpoint.service_settings)
    if newest:
        merged.update(_merged_settings(cluster, service, endpoint, fields, requested, secrets))
    else:
        _require_secrets(service, fields, secrets, requested)
    return merged, _secret_digests(secrets)


def _require_secrets(
    service: Service, fields: dict[str, Field], secrets: dict[str, Any], requested: dict[str, Any]
) -> None:
    # Up to 9.4 any service_settings object is read as a whole new set of secrets.
    required = [f.name for f in fields.values() if f.secret and f.required]
    for group in service.one_of:
        names = [n for n in group.names if n in fields and fields[n].secret]
        if names and not any(n in secrets for n in names):
            required.append(names[0])
    missing = [n for n in required if requested.get(n) is None]
    if missing:
        raise validation_failed(*(catalog.missing_setting(n, "secret_settings") for n in missing))


def _merged_settings(
    cluster: Cluster,
    service: Service,
    endpoint: Endpoint,
    fields: dict[str, Field],
    requested: dict[str, Any],
    secrets: dict[str, Any],
) -> dict[str, Any]:
    """From 9.5: the settings the service's update parser takes (C6), checked as a PUT would check
    them over the stored ones."""
    updatable = {n for n in fields if n in service.updatable and not fields[n].secret}
    unknown = {k: v for k, v in requested.items() if k not in updatable and k not in secrets}
    if unknown:
        raise bad_request("status_exception", unknown_settings_reason(unknown, service.name))
    probe = {**{k: v for k, v in endpoint.service_settings.items() if k in updatable}, **requested}
    checked = catalog.check_endpoint(
        service, endpoint.task_type, {"service_settings": probe}, cluster.version
    )
    # The probe lacks the settings `_update` does not take: only what was sent can be wrong.
    problems = [
        p for p in checked.problems if p.path.split(".")[1] in probe and p.stage != catalog.Stage.UNKNOWN
    ]
    raise_first(problems, service.name)
    return {name: checked.service_settings[name] for name in updatable if name in checked.service_settings}


def _secret_digests(secrets: dict[str, Any]) -> dict[str, str]:
    for name, value in secrets.items():
        if not isinstance(value, str) or not value:
            raise validation_failed(catalog.empty_string("secret_settings", name))
    return {name: secret_digest(value) for name, value in secrets.items()}


def _raw_task_settings(service: Service, endpoint: Endpoint) -> dict[str, Any]:
    """The stored task settings under their request names (undoing `echo_as`)."""
    renamed = {f.echo_as: f.name for f in service.task_settings if f.echo_as}
    return {renamed.get(k, k): v for k, v in endpoint.task_settings.items()}


def _new_chunking(service: Service, task_type: str, value: dict[str, Any], version: Version) -> Any:
    if not catalog.chunking_applies(task_type):
        raise bad_request(
            "status_exception", unknown_settings_reason({"chunking_settings": value}, service.name)
        )
    chunking, problems = catalog.check_chunking(value, version)
    raise_first(problems, service.name)
    return chunking


# -- in-cluster services -----------------------------------------------------------------------


def _update_in_cluster(
    cluster: Cluster, service: Service, endpoint: Endpoint, body: dict[str, Any], newest: bool
) -> None:
    settings = body.get("service_settings") or {}
    adaptive: dict[str, Any] | None = None
    if newest:
        allocations, adaptive = _newest_allocations(cluster, service, endpoint, settings)
    else:
        allocations = _allocations_before_9_5(body, settings)
    dep = _owned_deployment(cluster, endpoint)
    _apply_allocations(cluster, endpoint, dep, allocations, adaptive, newest)


def _allocations_before_9_5(body: dict[str, Any], settings: dict[str, Any]) -> int:
    """Before 9.5 only num_allocations changes, and it must be given."""
    allocations = settings.get("num_allocations")
    if not catalog.kind_accepts(Kind.INTEGER, allocations):
        raise bad_request(
            "status_exception",
            f"Failed to parse [num_allocations] of update request [{json.dumps(body, separators=(',', ':'))}]",
        )
    if not isinstance(allocations, int) or allocations < 1:  # the deployment update it calls refuses it
        raise validation_failed("[number_of_allocations] must be a positive integer")
    return allocations


def _newest_allocations(
    cluster: Cluster, service: Service, endpoint: Endpoint, settings: dict[str, Any]
) -> tuple[int | None, dict[str, Any] | None]:
    """From 9.5: num_allocations or adaptive_allocations, exactly one of them."""
    _check_in_cluster_keys(settings)
    allocations = settings.get("num_allocations")
    if allocations is not None and (not catalog.kind_accepts(Kind.INTEGER, allocations) or allocations < 1):
        raise validation_failed(catalog.not_positive("service_settings", "num_allocations", allocations))
    if settings.get("adaptive_allocations") is None:
        return allocations, None
    probe = {"num_threads": 1, "model_id": "x", "adaptive_allocations": settings["adaptive_allocations"]}
    checked = catalog.check_endpoint(
        service, endpoint.task_type, {"service_settings": probe}, cluster.version
    )
    raise_first([p for p in checked.problems if "adaptive_allocations" in p.path], service.name)
    adaptive: dict[str, Any] = checked.service_settings["adaptive_allocations"]
    return allocations, adaptive


def _check_in_cluster_keys(settings: dict[str, Any]) -> None:
    if "num_threads" in settings:
        raise bad_request("status_exception", "[num_threads] cannot be updated")
    unknown = [k for k in settings if k not in _IN_CLUSTER_KEYS]
    if unknown:
        raise bad_request(
            "x_content_parse_exception", f"[1:2] [service_settings] unknown field [{unknown[0]}]"
        )
    if not any(k in settings for k in _IN_CLUSTER_KEYS):
        raise validation_failed(catalog.missing_one_of(list(_IN_CLUSTER_KEYS), "service_settings"))
    if all(settings.get(k) is not None for k in _IN_CLUSTER_KEYS):
        raise bad_request(
            "status_exception", "[num_allocations] cannot be set if [adaptive_allocations] is set"
        )


def _owned_deployment(cluster: Cluster, endpoint: Endpoint) -> ml.Deployment:
    """The endpoint's deployment, if this endpoint started it."""
    deployment_id = endpoint.deployment_id
    dep = cluster.deployments.get(deployment_id)
    if dep is None:
        raise not_found(
            f"Cannot update inference endpoint [{endpoint.inference_id}]: no model deployment [{deployment_id}]"
        )
    if dep.owner is not None and dep.owner != endpoint.inference_id:
        raise EsError(
            409,
            "status_exception",
            f"Cannot update inference endpoint [{endpoint.inference_id}] for model deployment [{deployment_id}] as it was "
            f"created by another inference endpoint. The model can only be updated using inference endpoint id [{dep.owner}].",
        )
    return dep


def _apply_allocations(
    cluster: Cluster,
    endpoint: Endpoint,
    dep: ml.Deployment,
    allocations: int | None,
    adaptive: dict[str, Any] | None,
    newest: bool,
) -> None:
    now = cluster.now()
    share = ml.shares(cluster.ml, list(cluster.deployments.values()), now).get(dep.deployment_id, 0)
    settings = endpoint.service_settings
    if newest:
        dep.adaptive = adaptive
        if adaptive is not None:
            settings["adaptive_allocations"] = adaptive
        else:
            settings.pop("adaptive_allocations", None)
    if allocations is not None:
        ml.scale(cluster.ml, dep, share, int(allocations), now)
        settings["num_allocations"] = int(allocations)
    elif adaptive is not None:
        settings.pop("num_allocations", None)
        # Scaled into the new bounds: at least the minimum (or one), at most the maximum.
        low = adaptive.get("min_number_of_allocations") or 1
        high = adaptive.get("max_number_of_allocations") or dep.target
        ml.scale(cluster.ml, dep, share, max(low, min(dep.target, high)), now)
