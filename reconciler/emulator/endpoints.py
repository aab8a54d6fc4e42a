"""What every inference API shares: reading the request's parts, storing and printing endpoints.

The request body, the task type of the path and the id are read and checked here as each
`/_inference` API does; the first failure of the catalog's checks is answered as Elasticsearch
answers it; and a stored endpoint is printed as GET, PUT and `_update` print it, the preconfigured
(`.`-prefixed) ones included.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from reconciler import catalog
from reconciler.catalog import Service, Since, Version
from reconciler.emulator import eis
from reconciler.emulator.cluster import Cluster, Endpoint, secret_digest
from reconciler.emulator.errors import EsError, bad_request, validation_failed
from reconciler.emulator.wording import first_failure

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
FORCE_DELETES_RESERVED = Since((8, 18), (9, 0))
# The Elastic Rerank default endpoint: PR #117939 (December 2024, after 8.17 was cut).
RERANK_DEFAULT_SINCE = Since((8, 18), (9, 0))


def probe_embedding(service: Service, settings: dict[str, Any], version: Version) -> None:
    """The test inference a PUT makes: it measures dimensions and fixes the similarity."""
    if settings.get("dimensions") is None:
        model = settings.get("model_id") or settings.get("model") or ""
        settings["dimensions"] = MODEL_DIMENSIONS.get(str(model), DEFAULT_DIMENSIONS)
    if settings.get("similarity") is None:
        similarity = service.default_similarity(settings, version)
        if similarity is not None:
            settings["similarity"] = similarity


def parse_body(raw: bytes | None) -> dict[str, Any]:
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


def path_task_type(text: str, version: Version) -> str:
    task_type = catalog.parse_task_type(text, version)
    if task_type is None:
        raise bad_request("status_exception", f"Unknown task_type [{text}]")
    return task_type


def check_id(inference_id: str) -> None:
    if not catalog.valid_inference_id(inference_id):
        raise validation_failed(
            catalog.invalid_inference_id_reason(inference_id), es_type="action_request_validation_exception"
        )


def check_reserved_delete(version: Version, endpoint: Endpoint, force: bool) -> None:
    """A preconfigured endpoint cannot be deleted on 8.16 and 8.17, even with force; from 8.18 and
    9.0 force deletes it, and it comes back on the next read (PR #124781, backports #124879 to 8.18
    and #124877 to 9.0; TransportDeleteInferenceEndpointActionTests)."""
    if not endpoint.preconfigured:
        return
    reason = f"[{endpoint.inference_id}] is a reserved inference endpoint. "
    if not FORCE_DELETES_RESERVED.covers(version):
        raise bad_request("status_exception", reason + "Cannot delete a reserved inference endpoint.")
    if not force:
        raise bad_request(
            "status_exception",
            reason + "Use the force=true query parameter to delete the inference endpoint.",
        )


def check_task_type_matches(task_type: str, endpoint: Endpoint) -> None:
    if task_type != endpoint.task_type:
        raise bad_request(
            "status_exception",
            f"Requested task type [{task_type}] does not match the inference endpoint's task type [{endpoint.task_type}]",
        )


def raise_first(problems: Sequence[catalog.Problem], service_name: str) -> None:
    """Answer as Elasticsearch does for the first stage that failed; nothing when all is well."""
    if problems:
        es_type, reason = first_failure(problems, service_name)
        raise EsError(400, es_type, reason)


def new_endpoint(
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


def store(cluster: Cluster, endpoint: Endpoint) -> None:
    """Add the endpoint (the caller saves, once, when all its changes are made)."""
    if endpoint.inference_id in cluster.endpoints:
        raise bad_request(
            "resource_already_exists_exception",
            f"Inference endpoint [{endpoint.inference_id}] already exists",
        )
    cluster.endpoints[endpoint.inference_id] = endpoint


# -- rendering ---------------------------------------------------------------------------------


def render(cluster: Cluster, endpoint: Endpoint) -> dict[str, Any]:
    """One endpoint as GET, PUT and `_update` print it."""
    settings = endpoint.service_settings
    if endpoint.deploys_model:
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
    dep = cluster.deployments.get(endpoint.deployment_id)
    if dep is not None:
        settings["num_allocations"] = dep.target
    order = ("num_allocations", "num_threads", "model_id", "adaptive_allocations", "deployment_id")
    ordered = {k: settings[k] for k in order if settings.get(k) is not None}
    ordered.update({k: v for k, v in settings.items() if k not in ordered and v is not None})
    return ordered


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
    ]
    if RERANK_DEFAULT_SINCE.covers(cluster.version):
        found.append(
            Endpoint(
                ".rerank-v1-elasticsearch",
                "rerank",
                "elasticsearch",
                {"num_threads": 1, "model_id": catalog.RERANK_MODEL, "adaptive_allocations": dict(adaptive)},
                task_settings={"return_documents": True},
                preconfigured=True,
            )
        )
    if cluster.config.eis:
        found += eis.default_endpoints(cluster.version)
    return found


def ensure_defaults(cluster: Cluster) -> None:
    """Preconfigured endpoints are persisted on first read and re-appear after a forced delete."""
    added = False
    for endpoint in default_endpoints(cluster):
        if endpoint.inference_id not in cluster.endpoints:
            cluster.endpoints[endpoint.inference_id] = endpoint
            added = True
    if added:
        cluster.save()
