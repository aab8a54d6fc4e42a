"""The `/_inference` APIs: PUT, GET, DELETE and `_update` of inference endpoints.

Each function takes the parsed request, checks it in the order Elasticsearch does (reference §8),
changes the cluster and returns the response body, or raises `EsError`. What a service accepts
and echoes comes from the service catalog; what is particular to the server (the probe that
measures embedding dimensions, trained-model deployments, references, preconfigured endpoints)
lives here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from reconciler import catalog
from reconciler.catalog import Service, Version
from reconciler.emulator import ml
from reconciler.emulator.cluster import Cluster, Endpoint, secret_digest
from reconciler.emulator.errors import EsError, bad_request, not_found, validation_failed

# Dimensions the emulated "probe" call measures for well-known embedding models.
MODEL_DIMENSIONS: dict[str, int] = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
    "embed-english-v3.0": 1024,
    "embed-multilingual-v3.0": 1024,
    "embed-english-light-v3.0": 384,
    "embed-multilingual-light-v3.0": 384,
    "embed-v4.0": 1536,
    "mistral-embed": 1024,
    "text-embedding-004": 768,
    "text-embedding-005": 768,
    "gemini-embedding-001": 3072,
    "jina-embeddings-v3": 1024,
    "jina-embeddings-v2-base-en": 768,
    "voyage-3": 1024,
    "voyage-3-large": 1024,
    "voyage-3-lite": 512,
    "amazon.titan-embed-text-v2:0": 1024,
    "amazon.titan-embed-text-v1": 1536,
}
DEFAULT_DIMENSIONS = 1024
POLL_SECONDS = 0.02


def _parse_body(raw: bytes | None) -> dict[str, Any]:
    if not raw or not raw.strip():
        raise bad_request("parse_exception", "request body is required")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        line = getattr(error, "lineno", 1)
        column = getattr(error, "colno", 1)
        raise EsError(
            400,
            "x_content_parse_exception",
            f"[{line}:{column}] Unexpected character: {error}",
            caused_by=("json_parse_exception", str(error)),
        ) from None
    if not isinstance(body, dict):
        raise bad_request("parse_exception", "request body must be a JSON object")
    return body


def _path_task_type(text: str, version: Version) -> str:
    task_type = catalog.parse_task_type(text, version)
    if task_type is None:
        raise bad_request("status_exception", f"Unknown task_type [{text}]")
    return task_type


def _check_id(inference_id: str) -> None:
    if not catalog.valid_inference_id(inference_id):
        raise validation_failed(
            catalog.invalid_inference_id_reason(inference_id), es_type="action_request_validation_exception"
        )


# -- preconfigured endpoints -------------------------------------------------------------------


def default_endpoints(cluster: Cluster) -> list[Endpoint]:
    """The `.`-prefixed endpoints every cluster has (and EIS ones, when EIS is on)."""
    adaptive = {"enabled": True, "min_number_of_allocations": 0, "max_number_of_allocations": 32}
    e5 = catalog.E5_MODEL_X86 if cluster.config.linux_x86 else catalog.E5_MODEL
    found = [
        Endpoint(
            ".elser-2-elasticsearch",
            "sparse_embedding",
            "elasticsearch",
            {"num_threads": 1, "model_id": cluster.elser_model, "adaptive_allocations": dict(adaptive)},
            chunking_settings=dict(catalog.DEFAULT_CHUNKING),
            preconfigured=True,
        ),
        Endpoint(
            ".multilingual-e5-small-elasticsearch",
            "text_embedding",
            "elasticsearch",
            {"num_threads": 1, "model_id": e5, "adaptive_allocations": dict(adaptive)},
            chunking_settings=dict(catalog.DEFAULT_CHUNKING),
            preconfigured=True,
        ),
        Endpoint(
            ".rerank-v1-elasticsearch",
            "rerank",
            "elasticsearch",
            {"num_threads": 1, "model_id": catalog.RERANK_MODEL, "adaptive_allocations": dict(adaptive)},
            task_settings={"return_documents": True},
            preconfigured=True,
        ),
    ]
    if cluster.config.eis:
        rpm = {"rate_limit": {"requests_per_minute": 240}}
        found += [
            Endpoint(
                ".elser-2-elastic",
                "sparse_embedding",
                "elastic",
                {"model_id": "elser_model_2"},
                chunking_settings=dict(catalog.DEFAULT_CHUNKING),
                preconfigured=True,
            ),
            Endpoint(
                ".rainbow-sprinkles-elastic",
                "chat_completion",
                "elastic",
                {"model_id": "rainbow-sprinkles", **rpm},
                preconfigured=True,
            ),
            Endpoint(
                ".jina-embeddings-v3",
                "text_embedding",
                "elastic",
                {"model_id": "jina-embeddings-v3", "dimensions": 1024, "similarity": "cosine"},
                chunking_settings=dict(catalog.DEFAULT_CHUNKING),
                preconfigured=True,
            ),
        ]
    return found


def _ensure_defaults(cluster: Cluster) -> None:
    """Preconfigured endpoints are persisted on first read and re-appear after a forced delete."""
    added = False
    for endpoint in default_endpoints(cluster):
        if endpoint.inference_id not in cluster.endpoints:
            cluster.endpoints[endpoint.inference_id] = endpoint
            added = True
    if added:
        cluster.save()


# -- rendering ---------------------------------------------------------------------------------


def render(cluster: Cluster, endpoint: Endpoint) -> dict[str, Any]:
    """One endpoint as GET, PUT and `_update` print it."""
    settings = endpoint.service_settings
    if endpoint.service == "elasticsearch":
        settings = _with_dynamic_allocations(cluster, endpoint)
    out: dict[str, Any] = {
        "inference_id": endpoint.inference_id,
        "task_type": endpoint.task_type,
        "service": endpoint.service,
        "service_settings": settings,
    }
    if endpoint.task_settings:
        out["task_settings"] = endpoint.task_settings
    if endpoint.chunking_settings is not None:
        out["chunking_settings"] = endpoint.chunking_settings
    return out


def _with_dynamic_allocations(cluster: Cluster, endpoint: Endpoint) -> dict[str, Any]:
    """num_allocations is read from the deployment on every GET, and printed first."""
    settings = dict(endpoint.service_settings)
    dep = cluster.deployments.get(settings.get("deployment_id") or endpoint.inference_id)
    if dep is not None:
        settings["num_allocations"] = dep.target
    order = ("num_allocations", "num_threads", "model_id", "adaptive_allocations", "deployment_id")
    ordered = {k: settings[k] for k in order if settings.get(k) is not None}
    ordered.update({k: v for k, v in settings.items() if k not in ordered and v is not None})
    return ordered


# -- GET ---------------------------------------------------------------------------------------


def get_endpoints(cluster: Cluster, first: str | None, second: str | None) -> dict[str, Any]:
    """GET /_inference[/{id}] | /_inference/{task_type}/{id|_all|*}."""
    _ensure_defaults(cluster)
    version = cluster.version

    def everything() -> list[Endpoint]:
        return sorted(cluster.endpoints.values(), key=lambda e: e.inference_id)

    if first is None or (second is None and first in ("_all", "*")):
        return {"endpoints": [render(cluster, e) for e in everything()]}
    if second is None:
        endpoint = cluster.endpoints.get(first)
        if endpoint is None:
            raise not_found(f"Inference endpoint not found [{first}]")
        return {"endpoints": [render(cluster, endpoint)]}
    task_type = _path_task_type(first, version)
    if second in ("_all", "*"):
        return {"endpoints": [render(cluster, e) for e in everything() if e.task_type == task_type]}
    endpoint = cluster.endpoints.get(second)
    if endpoint is None:
        raise not_found(f"Inference endpoint not found [{second}]")
    _check_task_type_matches(task_type, endpoint)
    return {"endpoints": [render(cluster, endpoint)]}


def _check_task_type_matches(task_type: str, endpoint: Endpoint) -> None:
    if task_type != endpoint.task_type:
        raise bad_request(
            "status_exception",
            f"Requested task type [{task_type}] does not match the inference endpoint's task type [{endpoint.task_type}]",
        )


# -- PUT ---------------------------------------------------------------------------------------


async def put_endpoint(
    cluster: Cluster, path_task_type: str | None, inference_id: str, raw: bytes | None, timeout_text: str
) -> tuple[dict[str, Any], list[str]]:
    """PUT /_inference/[{task_type}/]{id}: returns the stored endpoint and any deprecation warnings."""
    version = cluster.version
    url_task = _path_task_type(path_task_type, version) if path_task_type is not None else None
    body = _parse_body(raw)
    _check_id(inference_id)  # which also refuses the preconfigured (`.`-prefixed) ids
    task_type = _resolve_task_type(url_task, body.pop("task_type", None), version)
    service_name = body.pop("service", None)
    if service_name is None:
        raise bad_request(
            "status_exception", "Inference endpoint configuration is missing the [service] setting"
        )
    service = catalog.service(service_name, version) if isinstance(service_name, str) else None
    if service is None:
        raise bad_request("status_exception", f"Unknown service [{catalog.java_str(service_name)}]")
    if inference_id in cluster.deployments:
        raise bad_request(
            "status_exception",
            f"Inference endpoint IDs must be unique. Requested inference endpoint ID [{inference_id}] "
            "matches existing trained model ID(s) but must not.",
        )
    if service.deploys_model:
        return await _put_in_cluster(cluster, service, task_type, inference_id, body, timeout_text)
    checked = catalog.check_endpoint(service, task_type, body, version)
    _raise_first(checked.problems, service.name)
    settings = dict(checked.service_settings)
    if task_type == "text_embedding" and service.dimensions_filled:
        _probe_embedding(service, settings)
    endpoint = _endpoint(service, version, inference_id, task_type, settings, checked)
    _store(cluster, endpoint)
    cluster.save()
    return render(cluster, endpoint), []


def _resolve_task_type(url_task: str | None, body_task: Any, version: Version) -> str:
    if body_task is None:
        if url_task is None:
            raise bad_request("status_exception", "model is missing required setting [task_type]")
        return url_task
    parsed = catalog.parse_task_type(str(body_task), version)
    if parsed is None:
        raise bad_request("status_exception", f"Unknown task_type [{catalog.java_str(body_task)}]")
    if url_task is not None and parsed != url_task:
        raise bad_request(
            "status_exception",
            "Cannot resolve conflicting task_type parameter in the request URL "
            f"[{url_task}] and the request body [{catalog.java_str(body_task)}]",
        )
    return parsed


def _raise_first(problems: Sequence[catalog.Problem], service_name: str) -> None:
    """Answer as Elasticsearch does for the first stage that failed; nothing when all is well."""
    if problems:
        es_type, reason = catalog.first_failure(problems, service_name)
        raise EsError(400, es_type, reason)


def _endpoint(
    service: Service,
    version: Version,
    inference_id: str,
    task_type: str,
    settings: dict[str, Any],
    checked: catalog.Checked,
) -> Endpoint:
    digests = {name: secret_digest(value) for name, value in checked.secrets.items()}
    return Endpoint(
        inference_id,
        task_type,
        service.stored_name(version),
        settings,
        checked.task_settings,
        checked.chunking_settings,
        digests,
    )


def _probe_embedding(service: Service, settings: dict[str, Any]) -> None:
    """The test inference a PUT makes: it measures dimensions and fixes the similarity."""
    if settings.get("dimensions") is None:
        model = settings.get("model_id") or settings.get("model") or ""
        settings["dimensions"] = MODEL_DIMENSIONS.get(str(model), DEFAULT_DIMENSIONS)
    if settings.get("similarity") is None:
        similarity = service.default_similarity(settings)
        if similarity is not None:
            settings["similarity"] = similarity


def _store(cluster: Cluster, endpoint: Endpoint) -> None:
    """Add the endpoint (the caller saves, once, when all its changes are made)."""
    if endpoint.inference_id in cluster.endpoints:
        raise bad_request(
            "resource_already_exists_exception",
            f"Inference endpoint [{endpoint.inference_id}] already exists",
        )
    cluster.endpoints[endpoint.inference_id] = endpoint


# -- in-cluster endpoints (elasticsearch, elser) -----------------------------------------------


async def _put_in_cluster(
    cluster: Cluster,
    service: Service,
    task_type: str,
    inference_id: str,
    body: dict[str, Any],
    timeout_text: str,
) -> tuple[dict[str, Any], list[str]]:
    version = cluster.version
    raw_settings = body.get("service_settings")
    warnings: list[str] = []
    if isinstance(raw_settings, dict) and raw_settings.get("deployment_id") is not None:
        settings = _settings_from_deployment(cluster, raw_settings)
        checked = catalog.check_endpoint(
            service, task_type, {**body, "service_settings": dict(settings)}, version
        )
        _raise_first([p for p in checked.problems if p.stage < catalog.Stage.DEPLOYMENT], service.name)
        endpoint = _endpoint(service, version, inference_id, task_type, settings, checked)
        _store(cluster, endpoint)
        cluster.save()
        return render(cluster, endpoint), warnings

    checked = catalog.check_endpoint(service, task_type, body, version)
    _raise_first([p for p in checked.problems if p.stage < catalog.Stage.DEPLOYMENT], service.name)
    settings = dict(checked.service_settings)
    if settings.get("model_id") is None:
        settings["model_id"] = cluster.elser_model
        warnings.append(
            "Putting elasticsearch service inference endpoints (including elser service) without a model_id field "
            "is deprecated and will be removed in a future release. Please specify a model_id field."
        )
    model_id = str(settings["model_id"])
    _check_model(cluster, model_id, task_type)
    if model_id in cluster.eland_models and task_type == "text_embedding":
        # Custom models print what the probe measured, like external embedding services.
        settings.update({"dimensions": DEFAULT_DIMENSIONS, "similarity": "cosine", "element_type": "float"})
    if service.deprecated is not None:
        warnings.append(service.deprecated.format(model_id=model_id))
    _raise_first(checked.problems, service.name)
    # The server stores the request's settings; num_allocations is read back from the deployment.
    endpoint = _endpoint(service, version, inference_id, task_type, settings, checked)
    _store(cluster, endpoint)
    cluster.models.add(model_id)
    adaptive = settings.get("adaptive_allocations")
    target = settings.get("num_allocations")
    if target is None:
        low = adaptive.get("min_number_of_allocations") if isinstance(adaptive, dict) else None
        target = low if low else 1
    now = cluster.now()
    dep = ml.new_deployment(
        cluster.ml,
        inference_id,
        model_id,
        int(settings["num_threads"]),
        int(target),
        now,
        adaptive=adaptive,
        owner=inference_id,
    )
    cluster.deployments[inference_id] = dep
    cluster.save()
    await _wait_started(cluster, dep, timeout_text)
    return render(cluster, endpoint), warnings


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
    """Start-deployment waits for the first allocation (`wait_for=started`), bounded by `timeout`."""
    seconds = parse_time_value(timeout_text, "timeout")
    budget = min(seconds, cluster.config.max_put_wait)
    deadline = cluster.now() + budget
    while True:
        now = cluster.now()
        share = ml.shares(cluster.ml, list(cluster.deployments.values()), now).get(dep.deployment_id, 0)
        failure = ml.start_failure(cluster.ml, dep, share, now)
        if failure is not None:
            if failure.status == 429 and cluster.version.at_least(9, 5):
                failure.status = 409
            raise failure
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


# -- DELETE ------------------------------------------------------------------------------------


def references(cluster: Cluster, inference_id: str) -> tuple[list[str], list[str]]:
    """Pipelines with an inference processor and indices with a semantic_text field using the id."""
    pipelines = sorted(p for p, body in cluster.pipelines.items() if inference_id in _pipeline_models(body))
    indexes = sorted(
        name for name, index in cluster.indices.items() if inference_id in semantic_text_ids(index.mappings)
    )
    return pipelines, indexes


def _pipeline_models(pipeline: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(pipeline, dict):
        for key, value in pipeline.items():
            if key == "inference" and isinstance(value, dict) and isinstance(value.get("model_id"), str):
                found.add(value["model_id"])
            found |= _pipeline_models(value)
    elif isinstance(pipeline, list):
        for item in pipeline:
            found |= _pipeline_models(item)
    return found


def semantic_text_ids(mappings: Any) -> set[str]:
    """Every inference id a mapping's semantic_text fields use."""
    found: set[str] = set()
    if isinstance(mappings, dict):
        if mappings.get("type") == "semantic_text":
            found.add(str(mappings.get("inference_id")))
            if isinstance(mappings.get("search_inference_id"), str):
                found.add(mappings["search_inference_id"])
        for value in mappings.values():
            found |= semantic_text_ids(value)
    return found


def pipeline_counts(cluster: Cluster) -> dict[str, int]:
    """How many pipelines name each model, directly or through an endpoint's deployment."""
    counts: dict[str, int] = {}
    for body in cluster.pipelines.values():
        for name in _pipeline_models(body):
            endpoint = cluster.endpoints.get(name)
            model = endpoint.service_settings.get("model_id") if endpoint is not None else name
            counts[str(model)] = counts.get(str(model), 0) + 1
    return counts


def delete_endpoint(
    cluster: Cluster, path_task_type: str | None, inference_id: str, *, dry_run: bool, force: bool
) -> dict[str, Any]:
    """DELETE /_inference/[{task_type}/]{id} with `dry_run` and `force` (reference §7)."""
    _ensure_defaults(cluster)
    task_type = _path_task_type(path_task_type, cluster.version) if path_task_type is not None else None
    endpoint = cluster.endpoints.get(inference_id)
    if endpoint is None:
        raise not_found(f"Inference endpoint not found [{inference_id}]")
    if task_type is not None:
        _check_task_type_matches(task_type, endpoint)
    pipelines, indexes = references(cluster, inference_id)
    message = _referenced_message(inference_id, pipelines, indexes)
    if dry_run:
        return {"acknowledged": False, "pipelines": pipelines, "indexes": indexes, "error_message": message}
    if endpoint.preconfigured and not force:
        raise bad_request(
            "status_exception",
            f"[{inference_id}] is a reserved inference endpoint. Cannot delete a reserved inference endpoint. "
            "Use the force=true query parameter to delete the inference endpoint.",
        )
    if message and not force:
        raise EsError(409, "status_exception", message)
    dep = cluster.deployments.get(inference_id)
    if dep is not None and dep.owner in (None, inference_id):
        del cluster.deployments[inference_id]
    del cluster.endpoints[inference_id]
    cluster.save()
    return {"acknowledged": True, "pipelines": [], "indexes": []}


def _referenced_message(inference_id: str, pipelines: list[str], indexes: list[str]) -> str:
    parts = []
    if pipelines:
        parts.append(
            f"Inference endpoint {inference_id} is referenced by pipelines: [{', '.join(pipelines)}]. "
            "Ensure that no pipelines are using this inference endpoint, or use force to ignore this warning "
            "and delete the inference endpoint."
        )
    if indexes:
        parts.append(
            f"Inference endpoint {inference_id} is being used in the mapping for indexes: [{', '.join(indexes)}]. "
            "Ensure that no index mappings are using this inference endpoint, or use force to ignore this warning "
            "and delete the inference endpoint."
        )
    return " ".join(parts)


# -- _update -----------------------------------------------------------------------------------

_UPDATABLE_KEYS = ("task_type", "service_settings", "task_settings")


async def update_endpoint(
    cluster: Cluster, path_task_type: str | None, inference_id: str, raw: bytes | None
) -> dict[str, Any]:
    """PUT /_inference/[{task_type}/]{id}/_update, by the rules of the server's version (§6)."""
    version = cluster.version
    newest = version.at_least(9, 5)
    url_task = _path_task_type(path_task_type, version) if path_task_type is not None else None
    body = _parse_body(raw)
    _check_id(inference_id)
    if not body:
        raise bad_request("status_exception", "Request body is empty")
    allowed = (*_UPDATABLE_KEYS, "chunking_settings") if newest else _UPDATABLE_KEYS
    extra = {k: v for k, v in body.items() if k not in allowed}
    if extra:
        raise bad_request(
            "status_exception",
            "Request contained fields which cannot be updated, remove these fields and try again "
            f"[{catalog.java_str(extra)}]",
        )
    for section in ("service_settings", "task_settings", "chunking_settings"):
        if section in body and not isinstance(body[section], dict):
            raise bad_request(
                "status_exception", f"Unable to parse [{section}] in the request [{catalog.java_str(body)}]"
            )
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
        _update_in_cluster(cluster, endpoint, body, newest)
    else:
        _update_external(cluster, service, endpoint, body, newest)
    cluster.save()
    return render(cluster, endpoint)


def _update_external(
    cluster: Cluster, service: Service, endpoint: Endpoint, body: dict[str, Any], newest: bool
) -> None:
    version = cluster.version
    task_type = endpoint.task_type
    new_settings = body.get("service_settings")
    new_secrets: dict[str, str] = {}
    merged_settings = dict(endpoint.service_settings)
    if new_settings is not None:
        fields = {f.name: f for f in service.settings(task_type, version)}
        secrets = {k: v for k, v in new_settings.items() if k in fields and fields[k].secret}
        if not newest:
            # Up to 9.4 any service_settings object is read as a whole new set of secrets.
            required = [f.name for f in fields.values() if f.secret and f.required]
            for group in service.one_of:
                names = [n for n in group.names if n in fields and fields[n].secret]
                if names and not any(n in secrets for n in names):
                    required.append(names[0])
            missing = [n for n in required if new_settings.get(n) is None]
            if missing:
                raise validation_failed(*(catalog.missing_setting(n, "secret_settings") for n in missing))
        else:
            updatable = {n for n, f in fields.items() if f.updatable and not f.secret}
            unknown = {k: v for k, v in new_settings.items() if k not in updatable and k not in secrets}
            if unknown:
                raise bad_request("status_exception", catalog.unknown_settings_reason(unknown, service.name))
            probe = {**{k: v for k, v in endpoint.service_settings.items() if k in updatable}, **new_settings}
            checked = catalog.check_endpoint(service, task_type, {"service_settings": probe}, version)
            problems = [
                p
                for p in checked.problems
                if p.path.split(".")[1] in probe and p.stage != catalog.Stage.UNKNOWN
            ]
            _raise_first(problems, service.name)
            for name in updatable:
                if name in checked.service_settings:
                    merged_settings[name] = checked.service_settings[name]
        for name, value in secrets.items():
            if not isinstance(value, str) or not value:
                raise validation_failed(
                    f"[secret_settings] Invalid value empty string. [{name}] must be a non-empty string"
                )
            new_secrets[name] = secret_digest(value)

    task_settings = endpoint.task_settings
    if "task_settings" in body:
        requested = body["task_settings"]
        base = {} if service.task_settings_update == "replace" else _raw_task_settings(service, endpoint)
        task_settings, problems = catalog.check_task_settings(
            service, task_type, {**base, **requested}, version
        )
        _raise_first(problems, service.name)

    chunking = endpoint.chunking_settings
    if "chunking_settings" in body:
        if not catalog.chunking_applies(task_type):
            raise bad_request(
                "status_exception",
                catalog.unknown_settings_reason(
                    {"chunking_settings": body["chunking_settings"]}, service.name
                ),
            )
        chunking, chunk_problems = catalog.check_chunking(body["chunking_settings"], version)
        _raise_first(chunk_problems, service.name)

    endpoint.service_settings = merged_settings
    endpoint.secret_digests.update(new_secrets)
    endpoint.task_settings = task_settings
    endpoint.chunking_settings = chunking


def _raw_task_settings(service: Service, endpoint: Endpoint) -> dict[str, Any]:
    """The stored task settings under their request names (undoing `echo_as`)."""
    renamed = {f.echo_as: f.name for f in service.task_settings if f.echo_as}
    return {renamed.get(k, k): v for k, v in endpoint.task_settings.items()}


def _update_in_cluster(cluster: Cluster, endpoint: Endpoint, body: dict[str, Any], newest: bool) -> None:
    settings = body.get("service_settings") or {}
    deployment_id = endpoint.service_settings.get("deployment_id") or endpoint.inference_id
    dep = cluster.deployments.get(deployment_id)
    if not newest:
        allocations = settings.get("num_allocations")
        if not catalog.kind_accepts(catalog.Kind.INTEGER, allocations):
            raise bad_request(
                "status_exception",
                f"Failed to parse [num_allocations] of update request [{json.dumps(body, separators=(',', ':'))}]",
            )
        if not isinstance(allocations, int) or allocations < 1:  # the deployment update it calls refuses it
            raise validation_failed("[number_of_allocations] must be a positive integer")
        adaptive = None  # before 9.5 only num_allocations changes
    else:
        if "num_threads" in settings:
            raise bad_request("status_exception", "[num_threads] cannot be updated")
        unknown = [k for k in settings if k not in ("num_allocations", "adaptive_allocations")]
        if unknown:
            raise bad_request(
                "x_content_parse_exception", f"[1:2] [service_settings] unknown field [{unknown[0]}]"
            )
        if "num_allocations" not in settings and "adaptive_allocations" not in settings:
            raise validation_failed(
                "[service_settings] does not contain one of the required settings [num_allocations, adaptive_allocations]"
            )
        if settings.get("num_allocations") is not None and settings.get("adaptive_allocations") is not None:
            raise bad_request(
                "status_exception", "[num_allocations] cannot be set if [adaptive_allocations] is set"
            )
        allocations = settings.get("num_allocations")
        if allocations is not None and (
            not catalog.kind_accepts(catalog.Kind.INTEGER, allocations) or allocations < 1
        ):
            raise validation_failed(
                f"[service_settings] Invalid value [{allocations}]. [num_allocations] must be a positive integer"
            )
        adaptive = None
        if settings.get("adaptive_allocations") is not None:
            service = catalog.SERVICES["elasticsearch"]
            probe = {
                "num_threads": 1,
                "model_id": "x",
                "adaptive_allocations": settings["adaptive_allocations"],
            }
            checked = catalog.check_endpoint(
                service, endpoint.task_type, {"service_settings": probe}, cluster.version
            )
            problems = [p for p in checked.problems if "adaptive_allocations" in p.path]
            _raise_first(problems, "elasticsearch")
            adaptive = checked.service_settings["adaptive_allocations"]
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
    now = cluster.now()
    deployments = list(cluster.deployments.values())
    share = ml.shares(cluster.ml, deployments, now).get(dep.deployment_id, 0)
    if newest:
        dep.adaptive = adaptive
        if adaptive is not None:
            endpoint.service_settings["adaptive_allocations"] = adaptive
        else:
            endpoint.service_settings.pop("adaptive_allocations", None)
    if allocations is not None:
        ml.scale(cluster.ml, dep, share, int(allocations), now)
        endpoint.service_settings["num_allocations"] = int(allocations)
    elif adaptive is not None:
        endpoint.service_settings.pop("num_allocations", None)
        low = adaptive.get("min_number_of_allocations") or 1
        ml.scale(
            cluster.ml,
            dep,
            share,
            max(low, min(dep.target, adaptive.get("max_number_of_allocations") or dep.target)),
            now,
        )
