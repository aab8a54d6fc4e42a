"""The /_inference CRUD APIs: path forms, task types, GET forms, DELETE, and the PUT checks of §8."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Es

CLAUDE: dict[str, Any] = {
    "service": "anthropic",
    "service_settings": {"api_key": "sk-ant-canary", "model_id": "claude-3-5-sonnet-20240620"},
    "task_settings": {"max_tokens": 1024},
}
OPENAI: dict[str, Any] = {
    "service": "openai",
    "service_settings": {"api_key": "sk-canary", "model_id": "text-embedding-3-small"},
}


def error(response: Any) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["error"]["type"], body["error"]["reason"]


# -- PUT path forms and task types -------------------------------------------------------------


async def test_put_with_the_task_type_in_the_path_returns_the_endpoint_unwrapped(es: Es) -> None:
    response = await es.put("/_inference/completion/my-claude", json=CLAUDE)
    assert response.status_code == 200
    assert response.json() == {
        "inference_id": "my-claude",
        "task_type": "completion",
        "service": "anthropic",
        "service_settings": {
            "model_id": "claude-3-5-sonnet-20240620",
            "rate_limit": {"requests_per_minute": 50},
        },
        "task_settings": {"max_tokens": 1024},
    }
    assert list(response.json()) == [
        "inference_id",
        "task_type",
        "service",
        "service_settings",
        "task_settings",
    ]


async def test_put_with_the_task_type_in_the_body(es: Es) -> None:
    response = await es.put("/_inference/my-claude", json={**CLAUDE, "task_type": "COMPLETION "})
    assert response.status_code == 200
    assert response.json()["task_type"] == "completion"


async def test_put_without_any_task_type_is_refused(es: Es) -> None:
    assert error(await es.put("/_inference/my-claude", json=CLAUDE)) == (
        400,
        "status_exception",
        "model is missing required setting [task_type]",
    )


async def test_conflicting_task_types_are_refused(es: Es) -> None:
    response = await es.put("/_inference/completion/x", json={**CLAUDE, "task_type": "rerank"})
    assert error(response) == (
        400,
        "status_exception",
        "Cannot resolve conflicting task_type parameter in the request URL [completion] and the request body [rerank]",
    )


@pytest.mark.parametrize("path", ["/_inference/bogus/x", "/_inference/bogus/x/_update"])
async def test_unknown_path_task_type(es9: Es, path: str) -> None:
    response = await es9.put(path, json=CLAUDE)
    assert error(response) == (400, "status_exception", "Unknown task_type [bogus]")


async def test_task_types_follow_the_version(make_es: Any) -> None:
    body = {"service": "jinaai", "service_settings": {"api_key": "k", "model_id": "jina-clip-v2"}}
    old = await make_es(version="9.3.0")
    assert error(await old.put("/_inference/embedding/j", json=body))[2] == "Unknown task_type [embedding]"
    new = await make_es(version="9.5.0")
    assert (await new.put("/_inference/embedding/j", json=body)).status_code == 200


async def test_the_request_body_is_required(es9: Es) -> None:
    response = await es9.client.put("/_inference/completion/x")
    assert error(response) == (400, "parse_exception", "request body is required")


@pytest.mark.parametrize("bad_id", ["UPPER", ".dotted", "_all", "ends-", "with space", "-lead"])
async def test_invalid_ids_are_refused(es9: Es, bad_id: str) -> None:
    response = await es9.put(f"/_inference/completion/{bad_id}", json=CLAUDE)
    status, es_type, reason = error(response)
    assert (status, es_type) == (400, "action_request_validation_exception")
    assert reason == (
        f"Validation Failed: 1: Invalid inference_id; '{bad_id}' can contain lowercase alphanumeric (a-z and 0-9), "
        "hyphens or underscores; must start and end with alphanumeric;"
    )


@pytest.mark.parametrize("good_id", ["a", "0", "my.endpoint_v2-1"])
async def test_valid_ids(es9: Es, good_id: str) -> None:
    assert (await es9.put(f"/_inference/completion/{good_id}", json=CLAUDE)).status_code == 200


async def test_put_is_create_only(es: Es) -> None:
    assert (await es.put("/_inference/completion/c", json=CLAUDE)).status_code == 200
    assert error(await es.put("/_inference/completion/c", json=CLAUDE)) == (
        400,
        "resource_already_exists_exception",
        "Inference endpoint [c] already exists",
    )


async def test_service_is_required_and_must_be_known(es: Es) -> None:
    body = {k: v for k, v in CLAUDE.items() if k != "service"}
    assert error(await es.put("/_inference/completion/c", json=body)) == (
        400,
        "status_exception",
        "Inference endpoint configuration is missing the [service] setting",
    )
    assert error(await es.put("/_inference/completion/c", json={**body, "service": "Anthropic"})) == (
        400,
        "status_exception",
        "Unknown service [Anthropic]",
    )


async def test_services_follow_the_version(make_es: Any) -> None:
    body = {"service": "ai21", "service_settings": {"api_key": "k", "model_id": "jamba-large"}}
    assert error(await (await make_es(version="8.19.3")).put("/_inference/completion/a", json=body))[2] == (
        "Unknown service [ai21]"
    )
    assert (
        await (await make_es(version="9.5.0")).put("/_inference/completion/a", json=body)
    ).status_code == 200


# -- service validation ------------------------------------------------------------------------


async def test_unsupported_task_type_for_the_service(es: Es) -> None:
    assert error(await es.put("/_inference/text_embedding/c", json=CLAUDE)) == (
        400,
        "status_exception",
        "The [anthropic] service does not support task type [text_embedding]",
    )


@pytest.mark.parametrize(("version", "status"), [("9.4.0", 400), ("9.5.0", 200)])
async def test_anthropic_chat_completion_arrived_in_9_5(make_es: Any, version: str, status: int) -> None:
    es = await make_es(version=version)
    assert (await es.put("/_inference/chat_completion/c", json=CLAUDE)).status_code == status


async def test_missing_service_settings(es: Es) -> None:
    body = {"service": "anthropic", "task_settings": {"max_tokens": 1}}
    assert error(await es.put("/_inference/completion/c", json=body)) == (
        400,
        "status_exception",
        "Missing required field [service_settings]",
    )


async def test_an_integer_temperature_is_refused_and_floats_stay_floats(es: Es) -> None:
    body = {**CLAUDE, "task_settings": {"max_tokens": 10, "temperature": 1}}
    # The Anthropic task settings read temperature with the throwing removeAsType: a bare 400
    # status_exception, not a "Validation Failed" list.
    assert error(await es.put("/_inference/completion/c", json=body)) == (
        400,
        "status_exception",
        "field [temperature] is not of the expected type. The value [1] cannot be converted to a [Double]",
    )
    body = {**CLAUDE, "task_settings": {"max_tokens": 10, "temperature": 1.0, "top_p": 0.25}}
    response = await es.put("/_inference/completion/c", json=body)
    assert response.json()["task_settings"] == {"max_tokens": 10, "temperature": 1.0, "top_p": 0.25}
    assert '"temperature":1.0' in response.text


async def test_anthropic_top_k_comes_back_under_top_p_and_poisons_every_get(es9: Es) -> None:
    body = {**CLAUDE, "task_settings": {"max_tokens": 10, "top_k": 5}}
    response = await es9.put("/_inference/completion/c", json=body)
    assert response.json()["task_settings"] == {"max_tokens": 10, "top_p": 5}
    # Stored under top_p as an integer, it can no longer be parsed as the Double top_p is (C11):
    # reading the endpoint fails, and so does every list that includes it.
    unreadable = (
        400,
        "status_exception",
        "field [top_p] is not of the expected type. The value [5] cannot be converted to a [Double]",
    )
    for path in (
        "/_inference/c",
        "/_inference/completion/c",
        "/_inference/_all",
        "/_inference/completion/_all",
    ):
        assert error(await es9.get(path)) == unreadable, path
    # A list that does not include it is fine; deleting it heals the cluster.
    assert (await es9.get("/_inference/text_embedding/_all")).status_code == 200
    assert (await es9.delete("/_inference/c")).status_code == 200
    assert (await es9.get("/_inference/_all")).status_code == 200


async def test_a_settings_object_of_another_type_fails_the_unchecked_cast(es9: Es) -> None:
    """ServiceUtils.removeFromMapOrDefaultEmpty casts to Map unchecked: a 500 class_cast_exception."""
    for settings in ({"rate_limit": 50}, {"rate_limit": "fast"}):
        body = {**CLAUDE, "service_settings": {**CLAUDE["service_settings"], **settings}}
        status, es_type, reason = error(
            await es9.put("/_inference/completion/c", json={**body, "task_settings": {"max_tokens": 1}})
        )
        assert (status, es_type) == (500, "class_cast_exception")
        assert "cannot be cast to class java.util.Map" in reason
    body = {**CLAUDE, "task_settings": [1]}
    assert error(await es9.put("/_inference/completion/c", json=body))[2].startswith(
        "class java.util.ArrayList cannot be cast to class java.util.Map"
    )
    assert (await es9.get("/_inference/c")).status_code == 404  # nothing stored


async def test_validation_errors_of_one_stage_are_reported_together(es9: Es) -> None:
    body = {"service": "anthropic", "service_settings": {"model_id": ""}, "task_settings": {"max_tokens": 1}}
    assert error(await es9.put("/_inference/completion/c", json=body)) == (
        400,
        "validation_exception",
        "Validation Failed: 1: [service_settings] Invalid value empty string. [model_id] must be a non-empty string;",
    )
    body = {"service": "watsonxai", "service_settings": {"api_key": "k"}}
    reason = error(await es9.put("/_inference/text_embedding/w", json=body))[2]
    assert reason == (
        "Validation Failed: 1: [service_settings] does not contain the required setting [model_id];"
        "2: [service_settings] does not contain the required setting [project_id];"
        "3: [service_settings] does not contain the required setting [url];"
        "4: [service_settings] does not contain the required setting [api_version];"
    )


async def test_settings_are_checked_in_elasticsearchs_order(es9: Es) -> None:
    # service_settings before task_settings before secrets, then unknown keys.
    body: dict[str, Any] = {
        "service": "anthropic",
        "service_settings": {"model_id": "m", "extra": 1},
        "task_settings": {},
    }
    assert error(await es9.put("/_inference/completion/c", json=body))[2] == (
        "Validation Failed: 1: [task_settings] does not contain the required setting [max_tokens];"
    )
    body["task_settings"] = {"max_tokens": 1}
    assert error(await es9.put("/_inference/completion/c", json=body))[2] == (
        "Validation Failed: 1: [secret_settings] does not contain the required setting [api_key];"
    )
    body["service_settings"]["api_key"] = "k"
    assert error(await es9.put("/_inference/completion/c", json=body)) == (
        400,
        "status_exception",
        "Model configuration contains settings [{extra=1}] unknown to the [anthropic] service",
    )


async def test_positive_integers_and_enums(es9: Es) -> None:
    body = {**CLAUDE, "task_settings": {"max_tokens": 0}}
    assert error(await es9.put("/_inference/completion/c", json=body))[2] == (
        "Validation Failed: 1: [task_settings] Invalid value [0]. [max_tokens] must be a positive integer;"
    )
    body = {
        "service": "openai",
        "service_settings": {**OPENAI["service_settings"], "similarity": "manhattan"},
    }
    assert error(await es9.put("/_inference/text_embedding/o", json=body))[2] == (
        "Validation Failed: 1: [service_settings] Invalid value [manhattan] received. "
        "[similarity] must be one of [cosine, dot_product, l2_norm];"
    )


async def test_rate_limit_defaults_and_its_own_checks(es9: Es) -> None:
    response = await es9.put("/_inference/text_embedding/o", json=OPENAI)
    assert response.json()["service_settings"]["rate_limit"] == {"requests_per_minute": 3000}
    response = await es9.put(
        "/_inference/completion/oc",
        json={**OPENAI, "service_settings": {"api_key": "k", "model_id": "gpt-4o"}},
    )
    assert response.json()["service_settings"]["rate_limit"] == {"requests_per_minute": 500}
    body = {
        **CLAUDE,
        "service_settings": {**CLAUDE["service_settings"], "rate_limit": {"requests_per_minute": 7}},
    }
    response = await es9.put("/_inference/completion/c1", json=body)
    assert response.json()["service_settings"]["rate_limit"] == {"requests_per_minute": 7}
    body["service_settings"]["rate_limit"] = {"requests_per_minute": 7, "burst": 2}
    assert error(await es9.put("/_inference/completion/c2", json=body)) == (
        400,
        "status_exception",
        "Model configuration contains settings [{burst=2}] unknown to the [anthropic] service",
    )
    body["service_settings"]["rate_limit"] = {"requests_per_minute": -3}
    assert error(await es9.put("/_inference/completion/c3", json=body))[2] == (
        "Validation Failed: 1: [rate_limit] Invalid value [-3]. [requests_per_minute] must be a positive long;"
    )


async def test_secrets_are_never_returned_by_anything(es: Es) -> None:
    canary = "sk-canary-8c1f2e"
    body = {**CLAUDE, "service_settings": {**CLAUDE["service_settings"], "api_key": canary}}
    responses = [await es.put("/_inference/completion/c", json=body)]
    responses += [await es.get(p) for p in ("/_inference", "/_inference/c", "/_inference/completion/c")]
    responses.append(
        await es.put("/_inference/completion/c/_update", json={"service_settings": {"api_key": canary + "2"}})
    )
    responses.append(await es.delete("/_inference/c?dry_run=true"))
    for response in responses:
        assert response.status_code == 200, response.text
        assert canary not in response.text
    assert canary not in str(es.cluster.endpoints["c"].to_json())


async def test_text_embedding_stores_measured_dimensions_and_default_similarity(es: Es) -> None:
    response = await es.put("/_inference/text_embedding/o", json=OPENAI)
    settings = response.json()["service_settings"]
    assert settings["dimensions"] == 1536
    assert settings["similarity"] == "dot_product"
    cohere = {
        "service": "cohere",
        "service_settings": {"api_key": "k", "model_id": "embed-english-v3.0", "embedding_type": "int8"},
    }
    settings = (await es.put("/_inference/text_embedding/co", json=cohere)).json()["service_settings"]
    # cosine from 8.18 (PR #125370), dot_product before (C2)
    similarity = "dot_product" if es.version.startswith(("8.16.", "8.17.")) else "cosine"
    assert (settings["similarity"], settings["embedding_type"]) == (similarity, "byte")


# -- chunking ----------------------------------------------------------------------------------


async def test_chunking_defaults_for_embedding_task_types(es: Es) -> None:
    response = await es.put("/_inference/text_embedding/o", json=OPENAI)
    assert response.json()["chunking_settings"] == {
        "strategy": "sentence",
        "max_chunk_size": 250,
        "sentence_overlap": 1,
    }
    response = await es.put("/_inference/text_embedding/o2", json={**OPENAI, "chunking_settings": {}})
    assert response.json()["chunking_settings"]["strategy"] == "sentence"


async def test_chunking_is_unknown_to_completion(es: Es) -> None:
    body = {**CLAUDE, "chunking_settings": {"strategy": "word", "max_chunk_size": 100, "overlap": 10}}
    assert error(await es.put("/_inference/completion/c", json=body)) == (
        400,
        "status_exception",
        "Model configuration contains settings [{chunking_settings={strategy=word, max_chunk_size=100, overlap=10}}] "
        "unknown to the [anthropic] service",
    )


CHUNKING_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("9.5.0", {"max_chunk_size": 100}, "Can't generate Chunker without ChunkingStrategy provided"),
    ("9.5.0", {"strategy": "Sentence", "max_chunk_size": 100}, "Invalid chunkingStrategy Sentence"),
    (
        "9.5.0",
        {"strategy": "sentence"},
        "[chunking_settings] does not contain the required setting [max_chunk_size]",
    ),
    (
        "9.5.0",
        {"strategy": "sentence", "max_chunk_size": 5},
        "[chunking_settings] Invalid value [5.0]. [max_chunk_size] must be a greater than or equal to [20.0]",
    ),
    (
        "9.1.0",
        {"strategy": "sentence", "max_chunk_size": 301},
        "[chunking_settings] Invalid value [301.0]. [max_chunk_size] must be a less than or equal to [300.0]",
    ),
    (
        "9.5.0",
        {"strategy": "sentence", "max_chunk_size": 100, "sentence_overlap": 2},
        "sentence_overlap[2] must be either 0 or 1",
    ),
    (
        "9.5.0",
        {"strategy": "sentence", "max_chunk_size": 100, "overlap": 2},
        "Sentence based chunking settings can not have the following settings: [overlap]",
    ),
    (
        "9.5.0",
        {"strategy": "word", "max_chunk_size": 100},
        "[chunking_settings] does not contain the required setting [overlap]",
    ),
    (
        "9.5.0",
        {"strategy": "word", "max_chunk_size": 100, "overlap": 0},
        "[chunking_settings] Invalid value [0]. [overlap] must be a positive integer",
    ),
    (
        "9.5.0",
        {"strategy": "word", "max_chunk_size": 250, "overlap": 200},
        "[chunking_settings] Invalid value [200.0]. [overlap] must be a less than or equal to [125.0]",
    ),
    (
        "9.5.0",
        {"strategy": "recursive", "max_chunk_size": 100, "separators": []},
        "Recursive chunking settings can not have an empty list of separators",
    ),
    (
        "9.5.0",
        {"strategy": "recursive", "max_chunk_size": 100, "separators": ["\n"], "separator_group": "markdown"},
        "Recursive chunking settings can not have both separators and separator_set",
    ),
    ("9.0.4", {"strategy": "recursive", "max_chunk_size": 100}, "Invalid chunkingStrategy recursive"),
]


@pytest.mark.parametrize(("version", "chunking", "reason"), CHUNKING_CASES)
async def test_chunking_rules(make_es: Any, version: str, chunking: dict[str, Any], reason: str) -> None:
    es = await make_es(version=version)
    response = await es.put("/_inference/text_embedding/o", json={**OPENAI, "chunking_settings": chunking})
    assert response.status_code == 400
    assert reason in response.json()["error"]["reason"]


async def test_chunking_echo_forms(es9: Es) -> None:
    cases = [
        (
            {"strategy": "word", "max_chunk_size": 120, "overlap": 20},
            {"strategy": "word", "max_chunk_size": 120, "overlap": 20},
        ),
        (
            {"strategy": "sentence", "max_chunk_size": 400},
            {"strategy": "sentence", "max_chunk_size": 400, "sentence_overlap": 1},
        ),
        ({"strategy": "none"}, {"strategy": "none"}),
    ]
    for i, (given, echoed) in enumerate(cases):
        response = await es9.put(
            f"/_inference/text_embedding/o{i}", json={**OPENAI, "chunking_settings": given}
        )
        assert response.json()["chunking_settings"] == echoed
    response = await es9.put(
        "/_inference/text_embedding/r",
        json={
            **OPENAI,
            "chunking_settings": {
                "strategy": "recursive",
                "max_chunk_size": 200,
                "separator_group": "markdown",
            },
        },
    )
    echoed = response.json()["chunking_settings"]
    assert "separator_group" not in echoed
    assert echoed["separators"][0] == "\n# "


# -- GET forms ---------------------------------------------------------------------------------


async def test_get_forms(es: Es) -> None:
    await es.put("/_inference/completion/b-claude", json=CLAUDE)
    await es.put("/_inference/text_embedding/a-openai", json=OPENAI)
    for path in ("/_inference", "/_inference/_all", "/_inference/*"):
        ids = [e["inference_id"] for e in (await es.get(path)).json()["endpoints"]]
        assert ids == sorted(ids)
        assert {"a-openai", "b-claude", ".elser-2-elasticsearch"} <= set(ids)
    one = (await es.get("/_inference/b-claude")).json()["endpoints"]
    assert [e["inference_id"] for e in one] == ["b-claude"]
    assert [
        e["inference_id"] for e in (await es.get("/_inference/completion/b-claude")).json()["endpoints"]
    ] == ["b-claude"]
    completions = (await es.get("/_inference/completion/_all")).json()["endpoints"]
    assert [e["inference_id"] for e in completions] == ["b-claude"]
    if not es.version.startswith(("8.16.", "8.17.")):  # chat_completion arrived in 8.18
        assert (await es.get("/_inference/chat_completion/*")).json() == {"endpoints": []}


async def test_get_with_one_segment_reads_it_as_an_id(es9: Es) -> None:
    assert error(await es9.get("/_inference/sparse_embedding")) == (
        404,
        "resource_not_found_exception",
        "Inference endpoint not found [sparse_embedding]",
    )
    assert error(await es9.get("/_inference/my-*"))[0] == 404


async def test_get_with_a_mismatched_task_type(es9: Es) -> None:
    await es9.put("/_inference/completion/c", json=CLAUDE)
    assert error(await es9.get("/_inference/rerank/c")) == (
        400,
        "status_exception",
        "Requested task type [rerank] does not match the inference endpoint's task type [completion]",
    )


# -- preconfigured endpoints -------------------------------------------------------------------


async def test_preconfigured_endpoints(es: Es) -> None:
    endpoints = {e["inference_id"]: e for e in (await es.get("/_inference")).json()["endpoints"]}
    elser = endpoints[".elser-2-elasticsearch"]
    assert elser["service"] == "elasticsearch"
    assert elser["service_settings"]["adaptive_allocations"] == {
        "enabled": True,
        "min_number_of_allocations": 0,
        "max_number_of_allocations": 32,
    }
    assert endpoints[".multilingual-e5-small-elasticsearch"]["task_type"] == "text_embedding"
    assert not any(e["service"] == "elastic" for e in endpoints.values())


EIS_IDS = {
    "8.17.0": set[str](),  # the service was behind a feature flag
    "8.18.0": {".elser-v2-elastic", ".rainbow-sprinkles-elastic"},
    "9.0.0": {".elser-v2-elastic", ".rainbow-sprinkles-elastic"},
    "8.19.0": {
        ".elser-2-elastic",
        ".multilingual-embed-v1-elastic",
        ".rainbow-sprinkles-elastic",
        ".rerank-v1-elastic",
    },
    "9.2.0": {
        ".elastic-rerank-v1",
        ".elser-2-elastic",
        ".gp-llm-v2-chat_completion",
        ".jina-embeddings-v3",
        ".rainbow-sprinkles-elastic",
    },
    "9.3.0": {
        ".elser-2-elastic",
        ".gp-llm-v2-chat_completion",
        ".gp-llm-v2-completion",
        ".jina-embeddings-v3",
        ".jina-reranker-v2",
        ".rainbow-sprinkles-elastic",
    },
}


@pytest.mark.parametrize("version", sorted(EIS_IDS))
async def test_eis_preconfigured_endpoints_by_version(make_es: Any, version: str) -> None:
    without = await make_es(version=version)
    ids = {e["inference_id"] for e in (await without.get("/_inference")).json()["endpoints"]}
    assert not {i for i in ids if i.endswith("-elastic") or i.startswith((".jina", ".gp-"))}
    es = await make_es(version=version, eis=True)
    listed = {e["inference_id"]: e for e in (await es.get("/_inference")).json()["endpoints"]}
    eis = {i for i, e in listed.items() if e["service"] == "elastic"}
    assert eis == EIS_IDS[version]
    for endpoint in (listed[i] for i in eis):
        assert endpoint["inference_id"].startswith(".")
        # Rate limits are printed up to 9.1 only (switched off in 9.2); never a secret.
        assert ("rate_limit" in endpoint["service_settings"]) is (version < "9.2"), endpoint
        assert set(endpoint["service_settings"]) <= {"model_id", "rate_limit", "similarity", "dimensions"}


async def test_eis_endpoints_of_9_5(make_es: Any) -> None:
    es = await make_es(eis=True)
    listed = {e["inference_id"]: e for e in (await es.get("/_inference")).json()["endpoints"]}
    assert {".elser-2-elastic", ".jina-embeddings-v5-text-small", ".jina-reranker-v2"} <= set(listed)
    assert listed[".jina-embeddings-v5-text-small"]["service_settings"] == {
        "similarity": "cosine",
        "dimensions": 1024,
        "model_id": "jina-embeddings-v5-text-small",
    }
    # Deleting one needs force, and it comes back on the next read.
    assert error(await es.delete("/_inference/.elser-2-elastic"))[0] == 400
    assert (await es.delete("/_inference/.elser-2-elastic?force=true")).status_code == 200
    assert (await es.get("/_inference/.elser-2-elastic")).status_code == 200


async def test_without_eis_the_elastic_service_supports_no_task_type(es9: Es) -> None:
    body = {"service": "elastic", "service_settings": {"model_id": "elser_model_2"}}
    assert error(await es9.put("/_inference/sparse_embedding/s", json=body)) == (
        400,
        "status_exception",
        "The [elastic] service does not support task type [sparse_embedding]",
    )
    assert (await es9.get("/_inference/s")).status_code == 404


async def test_preconfigured_endpoints_need_force_and_come_back(es: Es) -> None:
    if es.version.startswith(("8.16.", "8.17.")):
        return  # refused even with force before 8.18: tests/es_facts/versions-8.16-8.18.yaml
    response = await es.delete("/_inference/.elser-2-elasticsearch")
    assert error(response) == (
        400,
        "status_exception",
        "[.elser-2-elasticsearch] is a reserved inference endpoint. "
        "Use the force=true query parameter to delete the inference endpoint.",
    )
    assert (await es.delete("/_inference/.elser-2-elasticsearch?force=true")).json()["acknowledged"] is True
    ids = {e["inference_id"] for e in (await es.get("/_inference")).json()["endpoints"]}
    assert ".elser-2-elasticsearch" in ids


async def test_reserved_ids_cannot_be_created(es9: Es) -> None:
    # The id rule refuses a leading dot before the reserved-id check is reached.
    status, es_type, _ = error(
        await es9.put("/_inference/sparse_embedding/.elser-2-elasticsearch", json=CLAUDE)
    )
    assert (status, es_type) == (400, "action_request_validation_exception")


# -- DELETE ------------------------------------------------------------------------------------


async def test_delete(es: Es) -> None:
    await es.put("/_inference/completion/c", json=CLAUDE)
    assert error(await es.delete("/_inference/rerank/c"))[2] == (
        "Requested task type [rerank] does not match the inference endpoint's task type [completion]"
    )
    dry = await es.delete("/_inference/completion/c?dry_run=true")
    assert dry.json() == {"acknowledged": False, "pipelines": [], "indexes": [], "error_message": ""}
    assert (await es.get("/_inference/c")).status_code == 200
    assert (await es.delete("/_inference/c")).json() == {"acknowledged": True, "pipelines": [], "indexes": []}
    assert error(await es.delete("/_inference/c")) == (
        404,
        "resource_not_found_exception",
        "Inference endpoint not found [c]",
    )


async def test_boolean_parameters_are_strict(es9: Es) -> None:
    await es9.put("/_inference/completion/c", json=CLAUDE)
    assert error(await es9.delete("/_inference/c?force=yes"))[2] == (
        "Failed to parse value [yes] as only [true] or [false] are allowed."
    )
    assert (await es9.delete("/_inference/c?dry_run")).json()["acknowledged"] is False
