"""The emulator's HTTP behaviour: root document, headers, compatibility, routing, parameters, auth."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Es

COMPAT = "application/vnd.elasticsearch+json; compatible-with={}"


async def test_root_document_has_the_spec_fields_for_the_version(es: Es) -> None:
    response = await es.get("/")
    assert response.status_code == 200
    body = response.json()
    assert body["version"]["number"] == es.version
    assert body["tagline"] == "You Know, for Search"
    assert body["cluster_uuid"] == es.cluster.cluster_uuid
    line = ".".join(es.version.split(".")[:2])
    expected_wire = "7.17.0" if line.startswith("8.") else {"9.0": "8.18.0"}.get(line, "8.19.0")
    assert body["version"]["minimum_wire_compatibility_version"] == expected_wire
    assert response.text.startswith("{\n  ")  # GET / is pretty-printed unless ?pretty=false
    assert not (await es.get("/?pretty=false")).text.startswith("{\n")


async def test_head_root_has_headers_and_no_body(es9: Es) -> None:
    response = await es9.client.head("/")
    assert response.status_code == 200
    assert response.content == b""
    assert int(response.headers["content-length"]) == len((await es9.get("/")).content)


async def test_every_response_names_the_product_and_is_json(es9: Es) -> None:
    for path in ("/", "/_inference", "/_inference/missing", "/_ml/trained_models/_stats", "/x/y/z/w"):
        response = await es9.client.get(path)
        assert response.headers["x-elastic-product"] == "Elasticsearch", path
        assert response.headers["content-type"].startswith("application/json"), path


@pytest.mark.parametrize(("version", "asked"), [("9.5.0", 9), ("9.5.0", 8), ("8.19.3", 8), ("8.19.3", 7)])
async def test_compatible_media_types_are_accepted_and_echoed(make_es: Any, version: str, asked: int) -> None:
    es = await make_es(version=version)
    header = COMPAT.format(asked)
    response = await es.client.put(
        "/_inference/completion/c",
        content=b'{"service":"anthropic","service_settings":{"api_key":"k","model_id":"m"},"task_settings":{"max_tokens":8}}',
        headers={"accept": header, "content-type": header},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == f"application/vnd.elasticsearch+json;compatible-with={asked}"


@pytest.mark.parametrize(("version", "asked", "allowed"), [("9.5.0", 7, "9 or 8"), ("8.19.3", 9, "8 or 7")])
async def test_a_major_the_version_cannot_serve_is_refused(
    make_es: Any, version: str, asked: int, allowed: str
) -> None:
    es = await make_es(version=version)
    header = COMPAT.format(asked)
    response = await es.client.get("/", headers={"accept": header})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "media_type_header_exception"
    assert error["reason"] == "Invalid media-type value on headers [Accept, Content-Type]"
    assert error["caused_by"] == {
        "type": "status_exception",
        "reason": f"Accept version must be either version {allowed}, but found {asked}. Accept={header}",
    }


async def test_mismatched_compat_headers_with_a_body_are_refused(es9: Es) -> None:
    response = await es9.client.put(
        "/_ingest/pipeline/p",
        content=b'{"processors":[]}',
        headers={"accept": COMPAT.format(8), "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert "must match" in response.json()["error"]["caused_by"]["reason"]


async def test_unknown_routes_and_wrong_methods_answer_like_the_rest_controller(es9: Es) -> None:
    response = await es9.client.get("/_this/is/not/registered?x=1")
    assert response.status_code == 400
    assert response.json() == {
        "error": "no handler found for uri [/_this/is/not/registered?x=1] and method [GET]"
    }
    response = await es9.client.post("/_inference")
    assert response.status_code == 405
    assert response.json() == {
        "error": "Incorrect HTTP method for uri [/_inference] and method [POST], allowed: [GET]",
        "status": 405,
    }
    assert response.headers["allow"] == "GET"


async def test_unknown_query_parameters_are_refused_with_suggestions(es9: Es) -> None:
    response = await es9.delete("/_inference/x?forse=true")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "illegal_argument_exception"
    assert (
        error["reason"]
        == "request [/_inference/x] contains unrecognized parameter: [forse] -> did you mean [force]?"
    )
    response = await es9.get("/_inference?a=1&b=2")
    assert (
        response.json()["error"]["reason"]
        == "request [/_inference] contains unrecognized parameters: [a], [b]"
    )
    # Global parameters are accepted everywhere.
    assert (await es9.get("/_inference?human=true&error_trace=false")).status_code == 200


@pytest.mark.parametrize(
    ("version", "accepted"),
    [
        ("8.16.2", False),
        ("8.18.1", False),
        ("8.19.3", True),
        ("9.0.4", False),
        ("9.1.0", True),
        ("9.5.0", True),
    ],
)
async def test_put_timeout_parameter_exists_only_where_the_version_takes_it(
    make_es: Any, version: str, accepted: bool
) -> None:
    es = await make_es(version=version)
    body = {
        "service": "anthropic",
        "service_settings": {"api_key": "k", "model_id": "m"},
        "task_settings": {"max_tokens": 8},
    }
    response = await es.put("/_inference/completion/c?timeout=10s", json=body)
    if accepted:
        assert response.status_code == 200
    else:
        assert response.status_code == 400
        assert (
            response.json()["error"]["reason"]
            == "request [/_inference/completion/c] contains unrecognized parameter: [timeout]"
        )


async def test_update_timeout_parameter_only_from_9_5(make_es: Any) -> None:
    for version, status in (("9.4.0", 400), ("9.5.0", 404)):
        es = await make_es(version=version)
        response = await es.put(
            "/_inference/completion/none/_update?timeout=5s", json={"task_settings": {"max_tokens": 1}}
        )
        assert response.status_code == status, version


async def test_api_key_is_required_when_configured(make_es: Any) -> None:
    es = await make_es(api_key="c2VjcmV0")
    missing = await es.client.get("/")
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "security_exception"
    assert "x-elastic-product" not in missing.headers  # Elasticsearch drops it on 401 and 403
    wrong = await es.client.get("/", headers={"authorization": "ApiKey nope"})
    assert wrong.status_code == 401
    right = await es.client.get("/", headers={"authorization": "ApiKey c2VjcmV0"})
    assert right.status_code == 200


async def test_unsupported_versions_are_refused() -> None:
    from reconciler.emulator import Emulator, EmulatorConfig

    for version in ("8.15.4", "9.6.0", "7.17.1", "nine"):
        with pytest.raises(ValueError, match=r"8\.19|version"):
            Emulator(EmulatorConfig(version=version))
