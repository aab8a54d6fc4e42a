"""The `/_inference` APIs but `_update`: PUT, GET and DELETE of inference endpoints.

Each function takes the parsed request, checks it in the order Elasticsearch does (reference §8),
changes the cluster and returns the response body, or raises `EsError`. What a service accepts
and echoes comes from the service catalog; PUTs of in-cluster endpoints continue in
`reconciler.emulator.in_cluster`; what DELETE checks first (pipelines and indexes that use the
endpoint, preconfigured endpoints) lives here.
"""

from __future__ import annotations

from typing import Any

from reconciler import catalog
from reconciler.catalog import Version
from reconciler.emulator import eis
from reconciler.emulator.cluster import Cluster, Endpoint
from reconciler.emulator.endpoints import (
    FORCE_DELETES_RESERVED,
    check_id,
    check_reserved_delete,
    check_task_type_matches,
    ensure_defaults,
    new_endpoint,
    parse_body,
    path_task_type,
    probe_embedding,
    raise_first,
    render,
    store,
)
from reconciler.emulator.errors import EsError, bad_request, not_found
from reconciler.emulator.in_cluster import put_in_cluster
from reconciler.emulator.wording import java_str, printed_service_name, wrong_type

# -- GET ---------------------------------------------------------------------------------------


def get_endpoints(cluster: Cluster, first: str | None, second: str | None) -> dict[str, Any]:
    """GET /_inference[/{id}] | /_inference/{task_type}/{id|_all|*}."""
    ensure_defaults(cluster)
    version = cluster.version

    def everything() -> list[Endpoint]:
        return sorted(cluster.endpoints.values(), key=lambda e: e.inference_id)

    if first is None or (second is None and first in ("_all", "*")):
        return _listed(cluster, everything())
    if second is None:
        endpoint = cluster.endpoints.get(first)
        if endpoint is None:
            raise not_found(f"Inference endpoint not found [{first}]")
        return _listed(cluster, [endpoint])
    task_type = path_task_type(first, version)
    if second in ("_all", "*"):
        return _listed(cluster, [e for e in everything() if e.task_type == task_type])
    endpoint = cluster.endpoints.get(second)
    if endpoint is None:
        raise not_found(f"Inference endpoint not found [{second}]")
    check_task_type_matches(task_type, endpoint)
    return _listed(cluster, [endpoint])


def _listed(cluster: Cluster, endpoints: list[Endpoint]) -> dict[str, Any]:
    """GET parses every stored endpoint it lists (TransportGetInferenceModelAction.parseModels): one
    that cannot be parsed fails the whole answer, a list included."""
    for endpoint in endpoints:
        _check_readable(cluster, endpoint)
    return {"endpoints": [render(cluster, e) for e in endpoints]}


def _check_readable(cluster: Cluster, endpoint: Endpoint) -> None:
    """A stored Double task setting that holds an integer cannot be read back (C11: Anthropic writes
    top_k under top_p, then `removeAsType(map, "top_p", Double.class)` throws a 400)."""
    service = catalog.SERVICES.get(endpoint.service)
    if service is None:
        return
    for spec in service.task_fields(endpoint.task_type, cluster.version):
        value = endpoint.task_settings.get(spec.name)
        if spec.kind is catalog.Kind.DOUBLE and value is not None and type(value) is not float:
            raise bad_request("status_exception", wrong_type(catalog.WrongType(spec.name, value, spec.kind)))


# -- PUT ---------------------------------------------------------------------------------------


async def put_endpoint(
    cluster: Cluster, path_task: str | None, inference_id: str, raw: bytes | None, timeout_text: str
) -> tuple[dict[str, Any], list[str]]:
    """PUT /_inference/[{task_type}/]{id}: returns the stored endpoint and any deprecation warnings."""
    version = cluster.version
    url_task = path_task_type(path_task, version) if path_task is not None else None
    body = parse_body(raw)
    check_id(inference_id)  # which also refuses the preconfigured (`.`-prefixed) ids
    task_type = _resolve_task_type(url_task, body.pop("task_type", None), version)
    service_name = body.pop("service", None)
    if service_name is None:
        raise bad_request(
            "status_exception", "Inference endpoint configuration is missing the [service] setting"
        )
    service = catalog.service(service_name, version) if isinstance(service_name, str) else None
    if service is None:
        raise bad_request("status_exception", f"Unknown service [{java_str(service_name)}]")
    service = catalog.route(service, task_type, version)
    if service.name == eis.SERVICE and not cluster.config.eis:
        raise bad_request("status_exception", eis.refuse_unauthorised(task_type))
    if inference_id in cluster.deployments:
        raise bad_request(
            "status_exception",
            f"Inference endpoint IDs must be unique. Requested inference endpoint ID [{inference_id}] "
            "matches existing trained model ID(s) but must not.",
        )
    _cast_sections(body, task_type)
    if service.deploys_model:
        return await put_in_cluster(cluster, service, task_type, inference_id, body, timeout_text)
    checked = catalog.check_endpoint(service, task_type, body, version)
    raise_first(checked.problems, printed_service_name(service.name, version))
    settings = dict(checked.service_settings)
    if task_type == "text_embedding" and service.dimensions_filled:
        probe_embedding(service, settings, version)
    endpoint = new_endpoint(service, version, inference_id, task_type, settings, checked)
    store(cluster, endpoint)
    cluster.save()
    return render(cluster, endpoint), []


# The Java class Jackson reads each JSON value as.
_JAVA_CLASSES = {
    str: "java.lang.String",
    int: "java.lang.Integer",
    float: "java.lang.Double",
    bool: "java.lang.Boolean",
    list: "java.util.ArrayList",
}


def _cast_sections(body: dict[str, Any], task_type: str) -> None:
    """The settings objects are read with an unchecked cast to Map (ServiceUtils
    `removeFromMapOrThrowIfNull` / `removeFromMapOrDefaultEmpty`, also for `rate_limit` in
    RateLimitSettings.of): any other JSON value throws a ClassCastException, which Elasticsearch
    answers as a 500 `class_cast_exception` worded by the JVM."""
    settings = body.get("service_settings")
    candidates = [settings, body.get("task_settings")]
    if catalog.chunking_applies(task_type):
        candidates.append(body.get("chunking_settings"))
    if isinstance(settings, dict):
        candidates.append(settings.get("rate_limit"))
    for value in candidates:
        if value is None or isinstance(value, dict):
            continue
        java = _JAVA_CLASSES.get(type(value), "java.lang.Object")
        raise EsError(
            500,
            "class_cast_exception",
            f"class {java} cannot be cast to class java.util.Map ({java} and java.util.Map are in module "
            "java.base of loader 'bootstrap')",
        )


def _resolve_task_type(url_task: str | None, body_task: Any, version: Version) -> str:
    if body_task is None:
        if url_task is None:
            raise bad_request("status_exception", "model is missing required setting [task_type]")
        return url_task
    parsed = catalog.parse_task_type(str(body_task), version)
    if parsed is None:
        raise bad_request("status_exception", f"Unknown task_type [{java_str(body_task)}]")
    if url_task is not None and parsed != url_task:
        raise bad_request(
            "status_exception",
            "Cannot resolve conflicting task_type parameter in the request URL "
            f"[{url_task}] and the request body [{java_str(body_task)}]",
        )
    return parsed


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
    cluster: Cluster, path_task: str | None, inference_id: str, *, dry_run: bool, force: bool
) -> dict[str, Any]:
    """DELETE /_inference/[{task_type}/]{id} with `dry_run` and `force` (reference §7)."""
    ensure_defaults(cluster)
    task_type = path_task_type(path_task, cluster.version) if path_task is not None else None
    endpoint = cluster.endpoints.get(inference_id)
    if endpoint is None:
        raise not_found(f"Inference endpoint not found [{inference_id}]")
    if not FORCE_DELETES_RESERVED.covers(cluster.version):
        # 8.16 and 8.17 refuse a reserved id before anything else, a dry run included.
        check_reserved_delete(cluster.version, endpoint, force)
    if task_type is not None:
        check_task_type_matches(task_type, endpoint)
    pipelines, indexes = references(cluster, inference_id)
    message = _referenced_message(inference_id, pipelines, indexes)
    if dry_run:
        return {"acknowledged": False, "pipelines": pipelines, "indexes": indexes, "error_message": message}
    check_reserved_delete(cluster.version, endpoint, force)
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
