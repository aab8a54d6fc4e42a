"""PUT of in-cluster endpoints (elasticsearch, elser): the model, its deployment, the wait for it.

An in-cluster endpoint either starts a trained-model deployment of its own (its id is the
endpoint's) or uses an existing one named by `deployment_id`. The model must be a built-in one the
platform can run or one uploaded with eland for that task type; the PUT then blocks until the first
allocation started, within `timeout` and the emulator's `--max-put-wait`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from reconciler import catalog
from reconciler.catalog import Problem, Service
from reconciler.emulator import ml
from reconciler.emulator.cluster import Cluster, Endpoint
from reconciler.emulator.endpoints import DEFAULT_DIMENSIONS, new_endpoint, raise_first, render, store
from reconciler.emulator.errors import EsError, bad_request, not_found

POLL_SECONDS = 0.02
_NO_MODEL_ID = (
    "Putting elasticsearch service inference endpoints (including elser service) without a model_id field "
    "is deprecated and will be removed in a future release. Please specify a model_id field."
)


async def put_in_cluster(
    cluster: Cluster,
    service: Service,
    task_type: str,
    inference_id: str,
    body: dict[str, Any],
    timeout_text: str,
) -> tuple[dict[str, Any], list[str]]:
    """Store the endpoint and start its deployment; returns it as printed, and the warnings."""
    raw_settings = body.get("service_settings")
    if isinstance(raw_settings, dict) and raw_settings.get("deployment_id") is not None:
        return _put_on_deployment(cluster, service, task_type, inference_id, body, raw_settings), []
    version = cluster.version
    checked = catalog.check_endpoint(service, task_type, body, version)
    raise_first(_before_deployment(checked.problems), service.name)
    settings = dict(checked.service_settings)
    warnings: list[str] = []
    if settings.get("model_id") is None:
        settings["model_id"] = cluster.elser_model
        warnings.append(_NO_MODEL_ID)
    model_id = str(settings["model_id"])
    _check_model(cluster, model_id, task_type)
    if model_id in cluster.eland_models and task_type == "text_embedding":
        # Custom models print what the probe measured, like external embedding services.
        settings.update({"dimensions": DEFAULT_DIMENSIONS, "similarity": "cosine", "element_type": "float"})
    if service.deprecated is not None:
        warnings.append(service.deprecated.format(model_id=model_id))
    raise_first(checked.problems, service.name)
    # The server stores the request's settings; num_allocations is read back from the deployment.
    endpoint = new_endpoint(service, version, inference_id, task_type, settings, checked)
    store(cluster, endpoint)
    cluster.models.add(model_id)
    dep = _start_deployment(cluster, endpoint)
    cluster.save()
    await _wait_started(cluster, dep, timeout_text)
    return render(cluster, endpoint), warnings


def _before_deployment(problems: Sequence[Problem]) -> list[Problem]:
    """The problems found before the deployment is asked for (its own checks come after the model)."""
    return [p for p in problems if p.stage < catalog.Stage.DEPLOYMENT]


def _put_on_deployment(
    cluster: Cluster,
    service: Service,
    task_type: str,
    inference_id: str,
    body: dict[str, Any],
    raw_settings: dict[str, Any],
) -> dict[str, Any]:
    settings = _settings_from_deployment(cluster, raw_settings)
    version = cluster.version
    checked = catalog.check_endpoint(
        service, task_type, {**body, "service_settings": dict(settings)}, version
    )
    raise_first(_before_deployment(checked.problems), service.name)
    endpoint = new_endpoint(service, version, inference_id, task_type, settings, checked)
    store(cluster, endpoint)
    cluster.save()
    return render(cluster, endpoint)


def _start_deployment(cluster: Cluster, endpoint: Endpoint) -> ml.Deployment:
    """The endpoint's own deployment: num_allocations, else the adaptive minimum, else one."""
    settings = endpoint.service_settings
    adaptive = settings.get("adaptive_allocations")
    target = settings.get("num_allocations")
    if target is None:
        low = adaptive.get("min_number_of_allocations") if isinstance(adaptive, dict) else None
        target = low if low else 1
    dep = ml.new_deployment(
        cluster.ml,
        endpoint.deployment_id,
        str(settings["model_id"]),
        int(settings["num_threads"]),
        int(target),
        cluster.now(),
        adaptive=adaptive,
        owner=endpoint.inference_id,
    )
    cluster.deployments[dep.deployment_id] = dep
    return dep


def _settings_from_deployment(cluster: Cluster, raw: dict[str, Any]) -> dict[str, Any]:
    """With `deployment_id`, the endpoint takes its settings from that existing deployment."""
    deployment_id = raw["deployment_id"]
    dep = cluster.deployments.get(str(deployment_id))
    if dep is None:
        raise not_found(f"Cannot find deployment [{deployment_id}]", "status_exception")
    requested = raw.get("model_id")
    if requested is not None and requested != dep.model_id:
        raise bad_request(
            "status_exception",
            f"Deployment [{deployment_id}] uses model [{dep.model_id}] which does not match the model [{requested}] in the request.",
        )
    settings: dict[str, Any] = {
        "num_allocations": dep.target,
        "num_threads": dep.threads,
        "model_id": dep.model_id,
    }
    if dep.adaptive is not None:
        settings["adaptive_allocations"] = dep.adaptive
    settings["deployment_id"] = dep.deployment_id
    return settings


_ELAND_TYPES = {
    "text_embedding": "text_embedding",
    "sparse_embedding": "text_expansion",
    "rerank": "text_similarity",
}


def _check_model(cluster: Cluster, model_id: str, task_type: str) -> None:
    """Built-in models are accepted for any task type (the server does not check); eland ones are."""
    builtin = catalog.BUILTIN_MODELS.get(model_id)
    prefix = f"Error parsing request config, model id does not match any models available on this platform. Was [{model_id}]"
    if builtin is None:
        served = cluster.eland_models.get(model_id)
        if served is None:
            raise bad_request(
                "illegal_argument_exception",
                f"{prefix}. You may need to load it into the cluster using eland.",
            )
        if served != task_type:
            raise bad_request(
                "status_exception",
                f"Deployed model [{model_id}] with type [{_ELAND_TYPES[served]}] does not match the requested task type [{task_type}]",
            )
        return
    if builtin.x86_only and not cluster.config.linux_x86:
        hint = ". You may need to use a platform agnostic model." if builtin.family == "elser" else ""
        raise bad_request("illegal_argument_exception", f"{prefix}{hint}")


async def _wait_started(cluster: Cluster, dep: ml.Deployment, timeout_text: str) -> None:
    """Start-deployment waits for the first allocation (`wait_for=started`), bounded by `timeout`.

    TransportStartTrainedModelDeploymentAction: with nothing placed and scaling possible
    (autoscaling, lazy ML nodes) no node is initialising, so the wait is over at once and the PUT
    answers with 0 allocations (C8). A start refused for capacity (429) leaves no deployment, and one
    that fails while the PUT waits is deleted (`deleteFailedDeployment`, C9); the endpoint document,
    stored before the start, stays in both cases.
    """
    seconds = parse_time_value(timeout_text, "timeout")
    budget = min(seconds, cluster.config.max_put_wait)
    deadline = cluster.now() + budget
    while True:
        now = cluster.now()
        share = ml.shares(cluster.ml, list(cluster.deployments.values()), now).get(dep.deployment_id, 0)
        failure = ml.start_failure(cluster.ml, dep, share, now)
        if failure is not None:
            cluster.deployments.pop(dep.deployment_id, None)
            cluster.save()
            raise failure
        if share == 0 and cluster.ml.autoscaling:
            return
        if ml.allocation_count(cluster.ml, dep, share, now) >= 1 or dep.target == 0:
            return
        if now >= deadline:
            raise EsError(
                408,
                "model_deployment_timeout_exception",
                f"Timed out after [{timeout_text}] waiting for trained model deployment [{dep.deployment_id}] to start. "
                "Use the trained model stats API to track the state of the deployment and try again once it has started.",
            )
        await asyncio.sleep(min(POLL_SECONDS, max(deadline - now, 0.001)))


_UNITS = {"nanos": 1e-9, "micros": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_time_value(text: str, name: str) -> float:
    """Elasticsearch's TimeValue: a number with a unit (`30s`, `2m`, `500ms`); `-1` means forever."""
    value = text.strip().lower()
    if value == "-1":
        return float("inf")
    for unit in sorted(_UNITS, key=len, reverse=True):
        number = value.removesuffix(unit)
        if number != value and number.replace(".", "", 1).isdigit():
            return float(number) * _UNITS[unit]
    raise bad_request(
        "parse_exception",
        f"failed to parse setting [{name}] with value [{text}] as a time value: unit is missing or unrecognized",
    )
