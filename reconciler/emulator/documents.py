"""Indices, documents and ingest pipelines: what the cluster state backend and references need.

Documents support the optimistic concurrency the state backend relies on (`op_type=create`,
`if_seq_no` / `if_primary_term`, with Elasticsearch's 409 texts); indices are created on first
write; an index's `semantic_text` fields and a pipeline's `inference` processors are what make an
inference endpoint referenced.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from reconciler.emulator.cluster import Cluster, Document, Index, new_uuid
from reconciler.emulator.errors import EsError, bad_request, validation_failed

SHARDS = {"total": 2, "successful": 1, "failed": 0}
DEFAULT_SEMANTIC_TEXT_ENDPOINT = ".elser-2-elasticsearch"
_INDEX_NAME = re.compile(r"[^A-Z\\/*?\"<>| ,#:]+")


def _index_missing(name: str, resource_type: str) -> EsError:
    return EsError(
        404,
        "index_not_found_exception",
        f"no such index [{name}]",
        metadata={"resource.type": resource_type, "resource.id": name, "index_uuid": "_na_", "index": name},
    )


def _check_index_name(name: str) -> None:
    problem = None
    if name != name.lower():
        problem = "must be lowercase"
    elif name.startswith(("_", "-", "+")):
        problem = "must not start with '_', '-', or '+'"
    elif name in (".", "..") or not _INDEX_NAME.fullmatch(name):
        problem = 'must not contain the following characters [\\, /, *, ?, ", <, >, |, space, ",", #, :]'
    if problem is not None:
        raise EsError(
            400,
            "invalid_index_name_exception",
            f"Invalid index name [{name}], {problem}",
            metadata={"index_uuid": "_na_", "index": name},
        )


# -- indices -----------------------------------------------------------------------------------


def create_index(cluster: Cluster, name: str, body: dict[str, Any]) -> dict[str, Any]:
    _check_index_name(name)
    existing = cluster.indices.get(name)
    if existing is not None:
        raise EsError(
            400,
            "resource_already_exists_exception",
            f"index [{name}/{existing.uuid}] already exists",
            metadata={"index_uuid": existing.uuid, "index": name},
        )
    mappings = _with_default_inference_ids(body.get("mappings") or {})
    settings = body.get("settings") or {}
    cluster.indices[name] = Index(name, new_uuid(), mappings, settings)
    cluster.save()
    return {"acknowledged": True, "shards_acknowledged": True, "index": name}


def _with_default_inference_ids(mappings: Any) -> Any:
    """The server writes the default endpoint into semantic_text fields that name none."""
    if isinstance(mappings, dict):
        filled = {k: _with_default_inference_ids(v) for k, v in mappings.items()}
        if filled.get("type") == "semantic_text":
            filled.setdefault("inference_id", DEFAULT_SEMANTIC_TEXT_ENDPOINT)
        return filled
    return mappings


def get_index(cluster: Cluster, name: str) -> dict[str, Any]:
    index = cluster.indices.get(name)
    if index is None:
        raise _index_missing(name, "index_or_alias")
    return {
        name: {
            "aliases": {},
            "mappings": index.mappings,
            "settings": {"index": {"uuid": index.uuid, **index.settings}},
        }
    }


def delete_index(cluster: Cluster, name: str) -> dict[str, Any]:
    if cluster.indices.pop(name, None) is None:
        raise _index_missing(name, "index_or_alias")
    cluster.save()
    return {"acknowledged": True}


# -- documents ---------------------------------------------------------------------------------


def _write_result(index: Index, doc_id: str, doc: Document, result: str, refreshed: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"_index": index.name, "_id": doc_id, "_version": doc.version, "result": result}
    if refreshed:
        out["forced_refresh"] = True
    out.update({"_shards": SHARDS, "_seq_no": doc.seq_no, "_primary_term": doc.primary_term})
    return out


def index_document(
    cluster: Cluster,
    name: str,
    doc_id: str,
    source: dict[str, Any],
    *,
    create: bool,
    if_seq_no: int | None,
    if_primary_term: int | None,
    refresh: bool,
) -> tuple[int, dict[str, Any]]:
    """PUT /{index}/_doc/{id} (and `_create`, `op_type=create`); returns (status, body)."""
    _check_index_name(name)
    problems = []
    if create and (if_seq_no is not None or if_primary_term is not None):
        problems.append("create operations do not support compare and set. use index instead")
    if if_seq_no is not None and not if_primary_term:
        problems.append("ifSeqNo is set, but primary term is [0]")
    if if_seq_no is None and if_primary_term:
        problems.append(f"ifSeqNo is unassigned, but primary term is [{if_primary_term}]")
    if len(doc_id.encode()) > 512:
        problems.append(
            f"id [{doc_id}] is too long, must be no longer than 512 bytes but was: {len(doc_id.encode())}"
        )
    if problems:
        raise validation_failed(*problems, es_type="action_request_validation_exception")

    index = cluster.indices.get(name)
    if index is None:
        index = cluster.indices[name] = Index(name, new_uuid())
    current = index.docs.get(doc_id)
    conflict = None
    if create and current is not None:
        conflict = (
            f"[{doc_id}]: version conflict, document already exists (current version [{current.version}])"
        )
    elif if_seq_no is not None:
        if current is None:
            conflict = (
                f"[{doc_id}]: version conflict, required seqNo [{if_seq_no}], primary term [{if_primary_term}]. "
                "but no document was found"
            )
        elif (current.seq_no, current.primary_term) != (if_seq_no, if_primary_term):
            conflict = (
                f"[{doc_id}]: version conflict, required seqNo [{if_seq_no}], primary term [{if_primary_term}]. "
                f"current document has seqNo [{current.seq_no}] and primary term [{current.primary_term}]"
            )
    if conflict is not None:
        raise EsError(
            409,
            "version_conflict_engine_exception",
            conflict,
            metadata={"index_uuid": index.uuid, "shard": "0", "index": name},
        )
    doc = Document(source, index.next_seq_no, 1, (current.version + 1) if current else 1)
    index.next_seq_no += 1
    index.docs[doc_id] = doc
    cluster.save()
    result = "updated" if current is not None else "created"
    return (200 if current is not None else 201), _write_result(index, doc_id, doc, result, refresh)


def get_document(cluster: Cluster, name: str, doc_id: str) -> tuple[int, dict[str, Any]]:
    index = cluster.indices.get(name)
    if index is None:
        raise _index_missing(name, "index_expression")
    doc = index.docs.get(doc_id)
    if doc is None:
        return 404, {"_index": name, "_id": doc_id, "found": False}
    return 200, {
        "_index": name,
        "_id": doc_id,
        "_version": doc.version,
        "_seq_no": doc.seq_no,
        "_primary_term": doc.primary_term,
        "found": True,
        "_source": doc.source,
    }


def document_exists(cluster: Cluster, name: str, doc_id: str) -> int:
    """HEAD /{index}/_doc/{id}: 200 or 404 with an empty body (RestGetAction answers HEAD with the
    status alone), a missing index being a 404 too."""
    index = cluster.indices.get(name)
    return 200 if index is not None and doc_id in index.docs else 404


def delete_document(
    cluster: Cluster,
    name: str,
    doc_id: str,
    *,
    if_seq_no: int | None,
    if_primary_term: int | None,
    refresh: bool,
) -> tuple[int, dict[str, Any]]:
    index = cluster.indices.get(name)
    if index is None:
        raise _index_missing(name, "index_expression")
    current = index.docs.get(doc_id)
    if if_seq_no is not None and (
        current is None or (current.seq_no, current.primary_term) != (if_seq_no, if_primary_term)
    ):
        found = (
            "but no document was found"
            if current is None
            else f"current document has seqNo [{current.seq_no}] and primary term [{current.primary_term}]"
        )
        raise EsError(
            409,
            "version_conflict_engine_exception",
            f"[{doc_id}]: version conflict, required seqNo [{if_seq_no}], primary term [{if_primary_term}]. {found}",
            metadata={"index_uuid": index.uuid, "shard": "0", "index": name},
        )
    seq_no = index.next_seq_no
    index.next_seq_no += 1
    if current is not None:
        del index.docs[doc_id]
    cluster.save()  # the sequence number moved even when nothing was deleted
    if current is None:
        return 404, _write_result(index, doc_id, Document({}, seq_no, 1, 1), "not_found", refresh)
    return 200, _write_result(index, doc_id, Document({}, seq_no, 1, current.version + 1), "deleted", refresh)


# -- ingest pipelines --------------------------------------------------------------------------


def put_pipeline(cluster: Cluster, pipeline_id: str, body: dict[str, Any]) -> dict[str, Any]:
    processors = body.get("processors")
    if not isinstance(processors, list):
        raise EsError(
            400,
            "parse_exception",
            "[processors] required property is missing",
            metadata={"property_name": "processors", "pipeline_id": pipeline_id},
        )
    cluster.pipelines[pipeline_id] = body
    cluster.save()
    return {"acknowledged": True}


def get_pipelines(cluster: Cluster, pipeline_id: str | None) -> tuple[int, dict[str, Any]]:
    if pipeline_id is None or pipeline_id in ("*", "_all"):
        return 200, dict(cluster.pipelines)
    found = {p: b for p, b in cluster.pipelines.items() if _matches(p, pipeline_id)}
    return (200 if found else 404), found


def delete_pipeline(cluster: Cluster, pipeline_id: str) -> dict[str, Any]:
    hits = [p for p in cluster.pipelines if _matches(p, pipeline_id)]
    if not hits and "*" not in pipeline_id:
        raise EsError(404, "resource_not_found_exception", f"pipeline [{pipeline_id}] is missing")
    for hit in hits:
        del cluster.pipelines[hit]
    cluster.save()
    return {"acknowledged": True}


def _matches(name: str, pattern: str) -> bool:
    return any(re.fullmatch(".*".join(map(re.escape, part.split("*"))), name) for part in pattern.split(","))


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("parse_exception", "request body must be a JSON object")
    return body


def search(cluster: Cluster, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """GET/POST /{index}/_search, as far as the state backend lists its workspaces: `match_all` or a
    `term` on a top-level field, `size`, `_source` true/false. Every stored document is searchable
    at once (the emulator has no refresh interval); hits come in id order."""
    index = cluster.indices.get(name)
    if index is None:
        raise _index_missing(name, "index_or_alias")
    query = body.get("query") or {"match_all": {}}
    if not isinstance(query, dict) or len(query) != 1 or next(iter(query)) not in ("match_all", "term"):
        raise bad_request(
            "parsing_exception",
            f"unknown query [{next(iter(query), '') if isinstance(query, dict) else query}]",
        )
    wanted: tuple[str, Any] | None = None
    if "term" in query:
        ((field, value),) = query["term"].items()
        wanted = (field, value.get("value") if isinstance(value, dict) else value)
    matched = [
        (doc_id, doc)
        for doc_id, doc in sorted(index.docs.items())
        if wanted is None or doc.source.get(wanted[0]) == wanted[1]
    ]
    size = int(body.get("size", 10))
    hits = [
        {
            "_index": name,
            "_id": doc_id,
            "_score": 1.0,
            **({"_source": doc.source} if body.get("_source", True) else {}),
        }
        for doc_id, doc in matched[:size]
    ]
    return {
        "took": 1,
        "timed_out": False,
        "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        "hits": {
            "total": {"value": len(matched), "relation": "eq"},
            "max_score": 1.0 if hits else None,
            "hits": hits,
        },
    }


def uri_search(body: dict[str, Any], params: Mapping[str, str]) -> dict[str, Any]:
    """The search body with what the query string says (`q=field:value`, `size`, `_source`)."""
    out = dict(body)
    if "q" in params:
        field, sep, value = params["q"].partition(":")
        if not sep:
            raise bad_request(
                "parsing_exception", f"only field:value queries are emulated, not [{params['q']}]"
            )
        out["query"] = {"term": {field: value}}
    if "size" in params:
        if not params["size"].isdigit():
            raise bad_request(
                "illegal_argument_exception",
                f"Failed to parse int parameter [size] with value [{params['size']}]",
            )
        out["size"] = int(params["size"])
    if "_source" in params:
        out["_source"] = params["_source"] != "false"
    return out
