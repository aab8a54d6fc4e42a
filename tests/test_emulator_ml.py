"""Trained-model deployments of elasticsearch / elser endpoints and the stats API (reference §9)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from reconciler.emulator import ml
from tests.conftest import Es
from tests.test_emulator_inference import error

E5: dict[str, Any] = {
    "service": "elasticsearch",
    "service_settings": {"model_id": ".multilingual-e5-small", "num_threads": 1, "num_allocations": 2},
}
ELSER_ADAPTIVE: dict[str, Any] = {
    "service": "elser",
    "service_settings": {
        "num_threads": 1,
        "adaptive_allocations": {
            "enabled": True,
            "min_number_of_allocations": 0,
            "max_number_of_allocations": 4,
        },
    },
}


async def stats(es: Es, ids: str) -> dict[str, Any]:
    response = await es.get(f"/_ml/trained_models/{ids}/_stats")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def deployment(body: dict[str, Any], deployment_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        e["deployment_stats"]
        for e in body["trained_model_stats"]
        if e.get("deployment_stats", {}).get("deployment_id") == deployment_id
    )
    return found


async def test_deployment_id_is_the_inference_id_and_allocations_ramp_up(make_es: Any) -> None:
    es = await make_es(deploy_seconds=10.0, max_put_wait=0.2)
    es.cluster.advance(0)
    put = asyncio.create_task(es.put("/_inference/text_embedding/my-e5", json=E5))
    await asyncio.sleep(0.05)
    es.cluster.advance(5.0)  # the first of two allocations starts half-way
    response = await put
    assert response.status_code == 200, response.text
    dep = deployment(await stats(es, "my-e5"), "my-e5")
    assert dep["model_id"] == ".multilingual-e5-small"
    assert dep["allocation_status"] == {
        "allocation_count": 1,
        "target_allocation_count": 2,
        "state": "started",
    }
    assert dep["state"] == "started"
    es.cluster.advance(5.0)
    dep = deployment(await stats(es, "my-e5"), "my-e5")
    assert dep["allocation_status"] == {
        "allocation_count": 2,
        "target_allocation_count": 2,
        "state": "fully_allocated",
    }
    assert dep["nodes"][0]["routing_state"] == {"routing_state": "started"}


async def test_put_answers_408_after_the_timeout_with_the_endpoint_stored(make_es: Any) -> None:
    es = await make_es(deploy_seconds=600.0)
    response = await es.put("/_inference/text_embedding/slow?timeout=100ms", json=E5)
    assert error(response) == (
        408,
        "model_deployment_timeout_exception",
        "Timed out after [100ms] waiting for trained model deployment [slow] to start. Use the trained model stats "
        "API to track the state of the deployment and try again once it has started.",
    )
    assert (await es.get("/_inference/slow")).status_code == 200
    dep = deployment(await stats(es, "slow"), "slow")
    assert (dep["state"], dep["allocation_status"]["state"]) == ("starting", "starting")


async def test_max_put_wait_bounds_the_put(make_es: Any) -> None:
    es = await make_es(deploy_seconds=600.0, max_put_wait=0.05)
    response = await es.put("/_inference/text_embedding/slow", json=E5)
    assert error(response)[0:2] == (408, "model_deployment_timeout_exception")
    assert "[30s]" in error(response)[2]  # the message names the request's timeout, as Elasticsearch does


async def test_capacity_keeps_allocations_pending_with_the_reason(make_es: Any) -> None:
    es = await make_es(ml_capacity=3, max_put_wait=0.05)
    assert (await es.put("/_inference/text_embedding/first", json=E5)).status_code == 200
    assert (await es.put("/_inference/text_embedding/second", json=E5)).status_code == 200  # gets 1 of 2
    # Nothing placeable, but the cluster can scale: the PUT answers at once with 0 allocations (C8).
    third = await es.put("/_inference/text_embedding/third", json=E5)
    assert third.status_code == 200, third.text
    body = await stats(es, "_all")
    assert deployment(body, "first")["allocation_status"]["state"] == "fully_allocated"
    second = deployment(body, "second")
    assert second["allocation_status"] == {
        "allocation_count": 1,
        "target_allocation_count": 2,
        "state": "started",
    }
    third = deployment(body, "third")
    assert third["allocation_status"]["state"] == "starting"
    assert "insufficient allocated processors" in third["reason"]
    # Freed capacity goes to the pending allocations, in creation order.
    await es.delete("/_inference/first")
    body = await stats(es, "second,third")
    assert deployment(body, "second")["allocation_status"]["allocation_count"] == 2
    assert deployment(body, "third")["allocation_status"]["allocation_count"] == 1
    await es.client.put("/_emulator/ml", json={"capacity": None})
    assert deployment(await stats(es, "third"), "third")["allocation_status"]["state"] == "fully_allocated"


@pytest.mark.parametrize("version", ["8.19.0", "9.0.0", "9.4.0", "9.5.0"])
async def test_without_autoscaling_no_capacity_is_a_429_that_keeps_the_endpoint(
    make_es: Any, version: str
) -> None:
    """C8: 429 on every version up to 9.5.0 (not 409); no deployment is left; the endpoint, stored
    before the start, stays."""
    es = await make_es(version=version, ml_capacity=0, ml_autoscaling=False)
    assert error(await es.put("/_inference/text_embedding/e", json=E5)) == (
        429,
        "status_exception",
        "Could not start deployment because no ML nodes with sufficient capacity were found",
    )
    assert (await es.get("/_inference/e")).status_code == 200
    assert (await es.get("/_ml/trained_models/e/_stats")).status_code == 404
    model = (await stats(es, ".multilingual-e5-small"))["trained_model_stats"]
    assert [m.get("deployment_stats") for m in model] == [None]


async def test_without_autoscaling_a_partial_placement_is_a_429_too(make_es: Any) -> None:
    es = await make_es(ml_capacity=1, ml_autoscaling=False)  # room for 1 of the 2 allocations
    assert error(await es.put("/_inference/text_embedding/e", json=E5)) == (
        429,
        "status_exception",
        "Could not start deployment because there are not enough resources to provide all requested allocations",
    )
    assert (await es.get("/_inference/e")).status_code == 200
    assert (await es.get("/_ml/trained_models/e/_stats")).status_code == 404


async def test_with_autoscaling_the_put_returns_at_once_and_the_deployment_scales_up_later(
    make_es: Any,
) -> None:
    es = await make_es(ml_capacity=0, deploy_seconds=2.0, max_put_wait=30.0)
    await es.client.put("/_emulator/ml", json={"scale_up_seconds": 60})
    response = await es.put("/_inference/text_embedding/e", json=E5)  # does not wait 30 s
    assert response.status_code == 200, response.text
    assert response.json()["service_settings"]["num_allocations"] == 2
    dep = deployment(await stats(es, "e"), "e")
    assert (dep["state"], dep["allocation_status"]) == (
        "starting",
        {"allocation_count": 0, "target_allocation_count": 2, "state": "starting"},
    )
    es.cluster.advance(61.0)  # the autoscaler added a node; allocations start on it
    assert deployment(await stats(es, "e"), "e")["allocation_status"]["allocation_count"] == 1
    es.cluster.advance(1.0)
    assert deployment(await stats(es, "e"), "e")["allocation_status"] == {
        "allocation_count": 2,
        "target_allocation_count": 2,
        "state": "fully_allocated",
    }


async def test_a_failing_model_fails_the_put_and_its_deployment_is_deleted(make_es: Any) -> None:
    """C9: the failed assignment is deleted (deleteFailedDeployment); the endpoint stays stored."""
    es = await make_es(fail_models=(".multilingual-e5-small",), deploy_seconds=0.1)
    status, es_type, reason = error(await es.put("/_inference/text_embedding/bad", json=E5))
    assert (status, es_type) == (500, "status_exception")
    assert reason.startswith(
        "Could not start trained model deployment, the following nodes failed with errors [{"
    )
    assert "emulated failure" in reason
    assert (await es.get("/_inference/bad")).status_code == 200
    assert (await es.get("/_ml/trained_models/bad/_stats")).status_code == 404
    model = (await stats(es, ".multilingual-e5-small"))["trained_model_stats"]
    assert [m.get("deployment_stats") for m in model] == [None]


async def test_a_deployment_that_fails_after_the_put_stays_failed(make_es: Any) -> None:
    es = await make_es(fail_models=(".multilingual-e5-small",), deploy_seconds=2.0, max_put_wait=0.05)
    assert error(await es.put("/_inference/text_embedding/bad", json=E5))[0] == 408
    es.cluster.advance(1.5)
    dep = deployment(await stats(es, "bad"), "bad")
    assert dep["state"] == "failed"
    assert "emulated failure" in dep["reason"]
    assert dep["nodes"][0]["routing_state"]["routing_state"] == "failed"


async def test_a_deployment_can_be_removed_through_the_control_api(es9: Es) -> None:
    await es9.put("/_inference/text_embedding/e", json=E5)
    assert (await es9.client.post("/_emulator/deployments/e/_remove")).status_code == 200
    assert (await es9.get("/_ml/trained_models/e/_stats")).status_code == 404
    assert (await es9.get("/_inference/e")).status_code == 200


async def test_a_deployment_can_be_failed_through_the_control_api(es9: Es) -> None:
    await es9.put("/_inference/text_embedding/e", json=E5)
    response = await es9.client.post("/_emulator/deployments/e/_fail", json={"reason": "node crashed"})
    assert response.status_code == 200
    dep = deployment(await stats(es9, "e"), "e")
    assert (dep["state"], dep["reason"]) == ("failed", "node crashed")


async def test_adaptive_allocations_start_at_one_and_num_allocations_is_dynamic(es: Es) -> None:
    response = await es.put("/_inference/sparse_embedding/my-elser", json=ELSER_ADAPTIVE)
    assert response.status_code == 200, response.text
    settings = response.json()["service_settings"]
    assert settings["num_allocations"] == 1
    assert settings["model_id"] == ".elser_model_2_linux-x86_64"
    assert response.json()["service"] == "elasticsearch"
    await es.client.post("/_emulator/deployments/my-elser/_scale", json={"allocations": 0})
    endpoint = (await es.get("/_inference/my-elser")).json()["endpoints"][0]
    assert endpoint["service_settings"]["num_allocations"] == 0
    dep = deployment(await stats(es, "my-elser"), "my-elser")
    assert dep["allocation_status"] == {
        "allocation_count": 0,
        "target_allocation_count": 0,
        "state": "fully_allocated",
    }


async def test_elser_service_is_deprecated(es9: Es) -> None:
    response = await es9.put("/_inference/sparse_embedding/my-elser", json=ELSER_ADAPTIVE)
    warning = response.headers["warning"]
    assert warning.startswith("299 Elasticsearch-9.5.0-")
    assert "The [elser] service is deprecated" in warning
    assert "without a model_id field is deprecated" in warning


async def test_deployment_id_reuses_an_existing_deployment(es9: Es) -> None:
    await es9.put("/_inference/text_embedding/owner", json=E5)
    body = {"service": "elasticsearch", "service_settings": {"deployment_id": "owner"}}
    response = await es9.put("/_inference/text_embedding/sharer", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["service_settings"] == {
        "num_allocations": 2,
        "num_threads": 1,
        "model_id": ".multilingual-e5-small",
        "deployment_id": "owner",
    }
    assert "sharer" not in es9.cluster.deployments
    await es9.delete("/_inference/sharer")
    assert "owner" in es9.cluster.deployments
    missing = {"service": "elasticsearch", "service_settings": {"deployment_id": "nope"}}
    assert error(await es9.put("/_inference/text_embedding/x", json=missing)) == (
        404,
        "status_exception",
        "Cannot find deployment [nope]",
    )


async def test_an_id_taken_by_a_deployment_is_refused(es9: Es) -> None:
    await es9.put("/_inference/text_embedding/taken", json=E5)
    await es9.client.delete("/_inference/taken")
    es9.cluster.deployments["taken"] = ml.new_deployment(
        es9.cluster.ml, "taken", ".multilingual-e5-small", 1, 1, es9.cluster.now(), adaptive=None, owner=None
    )
    assert error(await es9.put("/_inference/text_embedding/taken", json=E5)) == (
        400,
        "status_exception",
        "Inference endpoint IDs must be unique. Requested inference endpoint ID [taken] matches existing trained model ID(s) but must not.",
    )


async def test_in_cluster_settings_are_checked(es9: Es) -> None:
    body: dict[str, Any] = {
        "service": "elasticsearch",
        "service_settings": {"num_threads": 1, "num_allocations": 1},
    }
    assert error(await es9.put("/_inference/text_embedding/x", json=body)) == (
        400,
        "illegal_argument_exception",
        "Error parsing service settings, model_id must be provided",
    )
    body = {
        "service": "elasticsearch",
        "service_settings": {"model_id": ".multilingual-e5-small", "num_threads": 1},
    }
    assert error(await es9.put("/_inference/text_embedding/x", json=body))[2] == (
        "Validation Failed: 1: [service_settings] does not contain one of the required settings "
        "[num_allocations, adaptive_allocations];"
    )
    body["service_settings"].update(num_allocations=1, num_threads=3)
    assert error(await es9.put("/_inference/text_embedding/x", json=body)) == (
        400,
        "action_request_validation_exception",
        "Validation Failed: 1: [threads_per_allocation] must be a power of 2 less than or equal to 32;",
    )
    body["service_settings"].update(num_threads=1, model_id="my-model")
    assert error(await es9.put("/_inference/text_embedding/x", json=body)) == (
        400,
        "illegal_argument_exception",
        "Error parsing request config, model id does not match any models available on this platform. "
        "Was [my-model]. You may need to load it into the cluster using eland.",
    )


async def test_eland_models_are_checked_against_the_task_type(make_es: Any) -> None:
    es = await make_es(trained_models=(("my-minilm", "text_embedding"),))
    body = {
        "service": "elasticsearch",
        "service_settings": {"model_id": "my-minilm", "num_threads": 1, "num_allocations": 1},
    }
    response = await es.put("/_inference/text_embedding/m", json=body)
    assert response.status_code == 200
    assert response.json()["service_settings"]["similarity"] == "cosine"
    assert error(await es.put("/_inference/sparse_embedding/m2", json=body))[2] == (
        "Deployed model [my-minilm] with type [text_embedding] does not match the requested task type [sparse_embedding]"
    )


async def test_delete_stops_the_deployment(es9: Es) -> None:
    await es9.put("/_inference/text_embedding/e", json=E5)
    await es9.delete("/_inference/e")
    assert "e" not in es9.cluster.deployments
    assert error(await es9.get("/_ml/trained_models/e/_stats")) == (
        404,
        "resource_not_found_exception",
        "No known trained model with model_id [e]",
    )


async def test_stats_lookup_rules(es: Es) -> None:
    await es.put("/_inference/text_embedding/a", json=E5)
    await es.put("/_inference/text_embedding/b", json=E5)
    by_model = await stats(es, ".multilingual-e5-small")
    assert [e["deployment_stats"]["deployment_id"] for e in by_model["trained_model_stats"]] == ["a", "b"]
    assert by_model["count"] == 1  # count is models, not deployments
    batched = await stats(es, "a,b")
    assert len(batched["trained_model_stats"]) == 2
    everything = (await es.get("/_ml/trained_models/_stats")).json()
    assert {e["model_id"] for e in everything["trained_model_stats"]} >= {
        "lang_ident_model_1",
        ".multilingual-e5-small",
    }
    assert "deployment_stats" not in next(
        e for e in everything["trained_model_stats"] if e["model_id"] == "lang_ident_model_1"
    )
    assert (
        error(await es.get("/_ml/trained_models/a,zz,yy/_stats"))[2]
        == "No known trained model with model_id [zz,yy]"
    )
    assert (await es.get("/_ml/trained_models/zz*/_stats")).json() == {"count": 0, "trained_model_stats": []}
    assert error(await es.get("/_ml/trained_models/zz*/_stats?allow_no_match=false"))[0] == 404
    paged = (await es.get("/_ml/trained_models/_stats?from=1&size=1")).json()
    assert len(paged["trained_model_stats"]) == 1


def test_allocation_state_is_computed_as_elasticsearch_does() -> None:
    assert ml.allocation_state(0, 2) == "starting"
    assert ml.allocation_state(1, 2) == "started"
    assert ml.allocation_state(2, 2) == "fully_allocated"
    assert ml.allocation_state(0, 0) == "fully_allocated"
