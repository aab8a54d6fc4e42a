"""PUT .../_update by the version-dependent rules of the reference's §6."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.emulator.cluster import secret_digest
from tests.conftest import Es
from tests.test_emulator_inference import CLAUDE, OPENAI, error

OLD = ("8.19.3", "9.0.4", "9.4.0")
ELSER: dict[str, Any] = {
    "service": "elasticsearch",
    "service_settings": {"model_id": ".elser_model_2", "num_threads": 1, "num_allocations": 1},
}


async def _claude(make_es: Any, version: str) -> Es:
    es: Es = await make_es(version=version)
    body = {**CLAUDE, "task_settings": {"max_tokens": 100, "temperature": 0.5}}
    assert (await es.put("/_inference/completion/c", json=body)).status_code == 200
    return es


@pytest.mark.parametrize("version", [*OLD, "9.5.0"])
async def test_body_shape_rules(make_es: Any, version: str) -> None:
    es = await _claude(make_es, version)
    assert error(await es.put("/_inference/completion/c/_update", json={})) == (
        400,
        "status_exception",
        "Request body is empty",
    )
    response = await es.put(
        "/_inference/completion/c/_update", json={"service": "anthropic", "task_settings": {"max_tokens": 5}}
    )
    assert error(response) == (
        400,
        "status_exception",
        "Request contained fields which cannot be updated, remove these fields and try again [{service=anthropic}]",
    )
    response = await es.put(
        "/_inference/completion/c/_update", json={"task_type": "rerank", "task_settings": {"max_tokens": 5}}
    )
    assert error(response)[2] == "Task type must match the task type of the existing endpoint"
    response = await es.put("/_inference/completion/nope/_update", json={"task_settings": {"max_tokens": 5}})
    assert error(response)[0] == 404
    response = await es.put("/_inference/completion/c/_update", json={"service_settings": "x"})
    assert error(response)[2].startswith("Unable to parse [service_settings] in the request")


@pytest.mark.parametrize("version", [*OLD, "9.5.0"])
async def test_anthropic_task_settings_are_replaced_whole(make_es: Any, version: str) -> None:
    es = await _claude(make_es, version)
    response = await es.put("/_inference/completion/c/_update", json={"task_settings": {"temperature": 0.9}})
    assert (
        error(response)[2]
        == "Validation Failed: 1: [task_settings] does not contain the required setting [max_tokens];"
    )
    response = await es.put("/_inference/completion/c/_update", json={"task_settings": {"max_tokens": 200}})
    assert response.status_code == 200
    assert response.json()["task_settings"] == {
        "max_tokens": 200
    }  # temperature is gone: replaced, not merged
    assert (await es.get("/_inference/c")).json()["endpoints"][0]["task_settings"] == {"max_tokens": 200}


async def test_other_services_merge_task_settings(es9: Es) -> None:
    body = {**OPENAI, "task_settings": {"user": "alice"}}
    await es9.put(
        "/_inference/completion/o", json={**body, "service_settings": {"api_key": "k", "model_id": "gpt-4o"}}
    )
    response = await es9.put(
        "/_inference/completion/o/_update", json={"task_settings": {"headers": {"x": "y"}}}
    )
    assert response.json()["task_settings"] == {"user": "alice", "headers": {"x": "y"}}


@pytest.mark.parametrize("version", OLD)
async def test_up_to_9_4_service_settings_are_new_secrets_and_need_the_api_key(
    make_es: Any, version: str
) -> None:
    es = await _claude(make_es, version)
    response = await es.put(
        "/_inference/completion/c/_update", json={"service_settings": {"model_id": "other"}}
    )
    assert (
        error(response)[2]
        == "Validation Failed: 1: [secret_settings] does not contain the required setting [api_key];"
    )
    response = await es.put(
        "/_inference/completion/c/_update",
        json={"service_settings": {"api_key": "rotated", "model_id": "ignored"}},
    )
    assert response.status_code == 200
    assert response.json()["service_settings"]["model_id"] == "claude-3-5-sonnet-20240620"  # silently ignored
    assert es.cluster.endpoints["c"].secret_digests["api_key"] == secret_digest("rotated")


async def test_9_5_merges_updatable_settings_and_refuses_the_rest(make_es: Any) -> None:
    es = await _claude(make_es, "9.5.0")
    response = await es.put(
        "/_inference/completion/c/_update",
        json={"service_settings": {"rate_limit": {"requests_per_minute": 9}}},
    )
    assert response.status_code == 200, response.text
    assert response.json()["service_settings"]["rate_limit"] == {"requests_per_minute": 9}
    response = await es.put(
        "/_inference/completion/c/_update", json={"service_settings": {"model_id": "other"}}
    )
    assert error(response) == (
        400,
        "status_exception",
        "Model configuration contains settings [{model_id=other}] unknown to the [anthropic] service",
    )


@pytest.mark.parametrize(("version", "status"), [("9.4.0", 400), ("9.5.0", 200)])
async def test_chunking_settings_become_updatable_in_9_5(make_es: Any, version: str, status: int) -> None:
    es = await make_es(version=version)
    await es.put("/_inference/text_embedding/o", json=OPENAI)
    chunking = {"strategy": "word", "max_chunk_size": 100, "overlap": 10}
    response = await es.put("/_inference/text_embedding/o/_update", json={"chunking_settings": chunking})
    assert response.status_code == status
    if status == 200:
        assert response.json()["chunking_settings"] == chunking


@pytest.mark.parametrize("version", OLD)
async def test_in_cluster_endpoints_update_only_num_allocations_up_to_9_4(make_es: Any, version: str) -> None:
    es = await make_es(version=version)
    assert (await es.put("/_inference/sparse_embedding/e", json=ELSER)).status_code == 200
    response = await es.put(
        "/_inference/sparse_embedding/e/_update", json={"service_settings": {"num_allocations": 3}}
    )
    assert response.json()["service_settings"]["num_allocations"] == 3
    assert es.cluster.deployments["e"].target == 3
    response = await es.put("/_inference/sparse_embedding/e/_update", json={"task_settings": {"x": 1}})
    assert error(response) == (
        400,
        "status_exception",
        'Failed to parse [num_allocations] of update request [{"task_settings":{"x":1}}]',
    )
    response = await es.put(
        "/_inference/sparse_embedding/e/_update", json={"service_settings": {"num_allocations": 0}}
    )
    assert error(response) == (
        400,
        "validation_exception",
        "Validation Failed: 1: [number_of_allocations] must be a positive integer;",
    )
    assert es.cluster.deployments["e"].target == 3


async def test_in_cluster_endpoints_update_allocations_or_adaptive_in_9_5(es9: Es) -> None:
    assert (await es9.put("/_inference/sparse_embedding/e", json=ELSER)).status_code == 200
    adaptive = {"enabled": True, "min_number_of_allocations": 2, "max_number_of_allocations": 4}
    response = await es9.put(
        "/_inference/sparse_embedding/e/_update",
        json={"service_settings": {"adaptive_allocations": adaptive}},
    )
    assert response.status_code == 200, response.text
    assert response.json()["service_settings"]["adaptive_allocations"] == adaptive
    assert es9.cluster.deployments["e"].target == 2
    response = await es9.put(
        "/_inference/sparse_embedding/e/_update", json={"service_settings": {"num_threads": 2}}
    )
    assert error(response)[2] == "[num_threads] cannot be updated"
    both = {"num_allocations": 1, "adaptive_allocations": adaptive}
    response = await es9.put("/_inference/sparse_embedding/e/_update", json={"service_settings": both})
    assert error(response)[2] == "[num_allocations] cannot be set if [adaptive_allocations] is set"
    response = await es9.put(
        "/_inference/sparse_embedding/e/_update", json={"service_settings": {"num_allocations": 2}}
    )
    assert "adaptive_allocations" not in response.json()["service_settings"]  # one clears the other


# -- C5: from 8.17 to 9.3 a successful `_update` resets chunking_settings ----------------------

OLD_DEFAULT_CHUNKING = {"strategy": "word", "max_chunk_size": 250, "overlap": 100}
WORD_CHUNKING = {"strategy": "word", "max_chunk_size": 100, "overlap": 20}


@pytest.mark.parametrize(
    ("version", "resets"),
    [
        ("8.16.2", True),
        ("8.17.1", True),
        ("8.19.3", True),
        ("9.0.4", True),
        ("9.3.1", True),
        ("9.4.0", False),
        ("9.5.0", False),
    ],
)
async def test_a_successful_update_resets_chunking_where_the_server_does(
    make_es: Any, version: str, resets: bool
) -> None:
    es: Es = await make_es(version=version)
    body = {**OPENAI, "chunking_settings": WORD_CHUNKING}
    assert (await es.put("/_inference/text_embedding/o", json=body)).status_code == 200
    refused = await es.put(
        "/_inference/text_embedding/o/_update", json={"task_type": "rerank", "task_settings": {"user": "u"}}
    )
    assert refused.status_code == 400
    (stored,) = (await es.get("/_inference/o")).json()["endpoints"]
    assert stored["chunking_settings"] == WORD_CHUNKING  # a refused update changes nothing
    updated = await es.put("/_inference/text_embedding/o/_update", json={"task_settings": {"user": "u"}})
    assert updated.status_code == 200, updated.text
    expected = OLD_DEFAULT_CHUNKING if resets else WORD_CHUNKING
    assert updated.json()["chunking_settings"] == expected
    (stored,) = (await es.get("/_inference/o")).json()["endpoints"]
    assert (stored["task_settings"], stored["chunking_settings"]) == ({"user": "u"}, expected)


async def test_the_reset_reaches_in_cluster_endpoints_and_spares_completions(make_es: Any) -> None:
    es: Es = await make_es(version="9.1.0")
    assert (await es.put("/_inference/sparse_embedding/elser", json=ELSER)).status_code == 200
    updated = await es.put(
        "/_inference/sparse_embedding/elser/_update", json={"service_settings": {"num_allocations": 2}}
    )
    assert updated.json()["chunking_settings"] == OLD_DEFAULT_CHUNKING
    es = await _claude(make_es, "9.1.0")
    updated = await es.put("/_inference/completion/c/_update", json={"task_settings": {"max_tokens": 7}})
    assert "chunking_settings" not in updated.json()
