"""Ingest pipelines and semantic_text indices as references (§7), and the document APIs of the state backend."""

from __future__ import annotations

from typing import Any

from tests.conftest import Es
from tests.test_emulator_inference import OPENAI, error

PIPELINE = {
    "processors": [
        {"inference": {"model_id": "emb", "input_output": {"input_field": "body", "output_field": "vec"}}}
    ]
}
MAPPING = {"mappings": {"properties": {"body": {"type": "semantic_text", "inference_id": "emb"}}}}


async def referenced(es: Es) -> None:
    assert (await es.put("/_inference/text_embedding/emb", json=OPENAI)).status_code == 200
    assert (await es.put("/_ingest/pipeline/p1", json=PIPELINE)).json() == {"acknowledged": True}
    assert (await es.put("/docs", json=MAPPING)).json() == {
        "acknowledged": True,
        "shards_acknowledged": True,
        "index": "docs",
    }


async def test_dry_run_lists_references_without_deleting(es: Es) -> None:
    await referenced(es)
    response = await es.delete("/_inference/emb?dry_run=true")
    body = response.json()
    assert (body["acknowledged"], body["pipelines"], body["indexes"]) == (False, ["p1"], ["docs"])
    assert body["error_message"] == (
        "Inference endpoint emb is referenced by pipelines: [p1]. Ensure that no pipelines are using this inference "
        "endpoint, or use force to ignore this warning and delete the inference endpoint. Inference endpoint emb is "
        "being used in the mapping for indexes: [docs]. Ensure that no index mappings are using this inference "
        "endpoint, or use force to ignore this warning and delete the inference endpoint."
    )
    assert (await es.get("/_inference/emb")).status_code == 200


async def test_referenced_delete_is_refused_without_force(es: Es) -> None:
    await referenced(es)
    status, es_type, reason = error(await es.delete("/_inference/emb"))
    assert (status, es_type) == (409, "status_exception")
    assert reason.startswith("Inference endpoint emb is referenced by pipelines: [p1].")
    assert (await es.delete("/_inference/emb?force=true")).json() == {
        "acknowledged": True,
        "pipelines": [],
        "indexes": [],
    }
    assert (await es.get("/_inference/emb")).status_code == 404
    assert "docs" in es.cluster.indices  # force leaves the index pointing at a missing endpoint


async def test_references_go_away_with_the_pipeline_and_index(es9: Es) -> None:
    await referenced(es9)
    assert (await es9.delete("/_ingest/pipeline/p1")).json() == {"acknowledged": True}
    assert (await es9.delete("/docs")).json() == {"acknowledged": True}
    assert (await es9.delete("/_inference/emb")).status_code == 200


async def test_semantic_text_without_inference_id_uses_the_default_elser(es9: Es) -> None:
    await es9.put("/plain", json={"mappings": {"properties": {"t": {"type": "semantic_text"}}}})
    body = (await es9.delete("/_inference/.elser-2-elasticsearch?dry_run=true")).json()
    assert body["indexes"] == ["plain"]


async def test_pipeline_and_index_apis(es9: Es) -> None:
    assert (await es9.get("/_ingest/pipeline/nope")).status_code == 404
    assert (await es9.get("/_ingest/pipeline/nope")).json() == {}
    assert error(await es9.delete("/_ingest/pipeline/nope")) == (
        404,
        "resource_not_found_exception",
        "pipeline [nope] is missing",
    )
    await es9.put("/_ingest/pipeline/p1", json=PIPELINE)
    assert (await es9.get("/_ingest/pipeline/p1")).json() == {"p1": PIPELINE}
    assert (await es9.put("/docs", json=MAPPING)).status_code == 200
    status, es_type, reason = error(await es9.put("/docs", json=MAPPING))
    assert (status, es_type) == (400, "resource_already_exists_exception")
    assert reason == f"index [docs/{es9.cluster.indices['docs'].uuid}] already exists"
    assert error(await es9.put("/Docs", json={}))[1] == "invalid_index_name_exception"
    assert (await es9.client.head("/docs")).status_code == 200
    assert (await es9.client.head("/nope")).status_code == 404


# -- documents ---------------------------------------------------------------------------------


async def test_document_lifecycle_with_optimistic_concurrency(es: Es) -> None:
    created = await es.put("/reconciler-state/_doc/state-default?op_type=create", json={"serial": 1})
    assert created.status_code == 201
    assert created.json() == {
        "_index": "reconciler-state",
        "_id": "state-default",
        "_version": 1,
        "result": "created",
        "_shards": {"total": 2, "successful": 1, "failed": 0},
        "_seq_no": 0,
        "_primary_term": 1,
    }
    got = (await es.get("/reconciler-state/_doc/state-default")).json()
    assert (got["found"], got["_source"], got["_seq_no"], got["_primary_term"]) == (True, {"serial": 1}, 0, 1)

    again = await es.put("/reconciler-state/_doc/state-default?op_type=create", json={"serial": 9})
    assert error(again) == (
        409,
        "version_conflict_engine_exception",
        "[state-default]: version conflict, document already exists (current version [1])",
    )
    assert again.json()["error"]["index"] == "reconciler-state"

    updated = await es.put(
        "/reconciler-state/_doc/state-default?if_seq_no=0&if_primary_term=1&refresh=true", json={"serial": 2}
    )
    assert updated.status_code == 200
    assert (updated.json()["result"], updated.json()["_version"], updated.json()["forced_refresh"]) == (
        "updated",
        2,
        True,
    )

    stale = await es.put(
        "/reconciler-state/_doc/state-default?if_seq_no=0&if_primary_term=1", json={"serial": 3}
    )
    assert error(stale) == (
        409,
        "version_conflict_engine_exception",
        "[state-default]: version conflict, required seqNo [0], primary term [1]. current document has seqNo [1] and primary term [1]",
    )
    deleted = await es.delete("/reconciler-state/_doc/state-default")
    assert (deleted.status_code, deleted.json()["result"]) == (200, "deleted")
    missing = await es.get("/reconciler-state/_doc/state-default")
    assert (missing.status_code, missing.json()) == (
        404,
        {"_index": "reconciler-state", "_id": "state-default", "found": False},
    )
    assert (await es.delete("/reconciler-state/_doc/state-default")).json()["result"] == "not_found"


async def test_create_endpoint_and_missing_index(es9: Es) -> None:
    assert (await es9.put("/locks/_create/lock-default", json={"holder": "a"})).status_code == 201
    assert error(await es9.client.post("/locks/_create/lock-default", json={"holder": "b"}))[0] == 409
    assert error(await es9.get("/nowhere/_doc/x")) == (
        404,
        "index_not_found_exception",
        "no such index [nowhere]",
    )
    assert error(await es9.delete("/nowhere/_doc/x"))[0] == 404
    assert "nowhere" not in es9.cluster.indices  # deletes do not create the index
    cas_on_missing = await es9.put("/locks/_doc/none?if_seq_no=3&if_primary_term=1", json={})
    assert (
        error(cas_on_missing)[2]
        == "[none]: version conflict, required seqNo [3], primary term [1]. but no document was found"
    )


async def test_document_request_validation(es9: Es) -> None:
    response = await es9.put("/s/_doc/x?op_type=create&if_seq_no=1&if_primary_term=1", json={})
    assert error(response) == (
        400,
        "action_request_validation_exception",
        "Validation Failed: 1: create operations do not support compare and set. use index instead;",
    )
    assert (
        error(await es9.put("/s/_doc/x?if_seq_no=1", json={}))[2]
        == "Validation Failed: 1: ifSeqNo is set, but primary term is [0];"
    )
    assert error(await es9.put("/s/_doc/x?refres=true", json={}))[2] == (
        "request [/s/_doc/x] contains unrecognized parameter: [refres] -> did you mean [refresh]?"
    )


async def test_data_dir_persists_the_cluster(tmp_path: Any, make_es: Any) -> None:
    first = await make_es(data_dir=tmp_path)
    await referenced(first)
    await first.put("/reconciler-state/_doc/s", json={"serial": 4})
    second = await make_es(data_dir=tmp_path)
    assert second.cluster.cluster_uuid == first.cluster.cluster_uuid
    assert (await second.get("/_inference/emb")).json() == (await first.get("/_inference/emb")).json()
    assert (await second.get("/reconciler-state/_doc/s")).json()["_source"] == {"serial": 4}
    assert (await second.delete("/_inference/emb?dry_run=true")).json()["pipelines"] == ["p1"]
    assert "sk-canary" not in (tmp_path / "cluster.json").read_text()


async def test_data_dir_keeps_what_every_change_moved(tmp_path: Any, make_es: Any) -> None:
    first = await make_es(data_dir=tmp_path)
    await first.put("/s/_doc/a", json={})
    assert (await first.delete("/s/_doc/missing")).json()["_seq_no"] == 1
    await first.request("POST", "/_emulator/clock/_advance", json={"seconds": 60})
    second = await make_es(data_dir=tmp_path, trained_models=(("my-model", "text_embedding"),))
    assert (await second.put("/s/_doc/b", json={})).json()["_seq_no"] == 2  # no sequence number reused
    assert second.cluster.offset == 60  # deployments keep their progress
    assert (await second.get("/_ml/trained_models/my-model/_stats")).status_code == 200  # this start's model


async def test_semantic_text_mappings_get_the_default_inference_id(es9: Es) -> None:
    await es9.put("/plain", json={"mappings": {"properties": {"t": {"type": "semantic_text"}}}})
    mapping = (await es9.get("/plain")).json()["plain"]["mappings"]
    assert mapping["properties"]["t"] == {"type": "semantic_text", "inference_id": ".elser-2-elasticsearch"}


async def test_head_of_a_document_answers_200_or_404_with_no_body(es9: Es) -> None:
    """RestGetAction answers HEAD /{index}/_doc/{id} with the status alone; a missing index is a 404."""
    assert (await es9.put("/locks/_doc/here", json={"holder": "a"})).status_code == 201
    found = await es9.request("HEAD", "/locks/_doc/here")
    assert (found.status_code, found.content, found.headers["content-length"]) == (200, b"", "0")
    assert found.headers["x-elastic-product"] == "Elasticsearch"
    for path in ("/locks/_doc/gone", "/nowhere/_doc/here"):
        missing = await es9.request("HEAD", path)
        assert (missing.status_code, missing.content) == (404, b""), path
    assert (await es9.request("HEAD", "/locks/_doc/here?realtime=false")).status_code == 200
    assert (await es9.request("HEAD", "/locks/_doc/here?bogus=1")).status_code == 400
