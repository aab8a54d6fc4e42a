"""The HTTP client: auth, TLS settings, errors, retries with backoff and Retry-After, several URLs."""

from __future__ import annotations

import base64
import random
from typing import Any

import httpx
import pytest

from reconciler.client import (
    ApiError,
    Connection,
    Elasticsearch,
    RetryPolicy,
    TransientApiError,
    TransportError,
)
from reconciler.emulator import Emulator, EmulatorConfig


def client(emulator: Emulator, **connection: Any) -> tuple[Elasticsearch, list[float]]:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    es = Elasticsearch(
        Connection(urls=("http://es",), **connection),
        transport=httpx.ASGITransport(app=emulator),
        retry=RetryPolicy(attempts=4, rng=random.Random(1)),
        sleep=sleep,
    )
    return es, sleeps


async def test_calls_against_the_emulator() -> None:
    emulator = Emulator(EmulatorConfig(deploy_seconds=0))
    es, _ = client(emulator)
    async with es:
        assert (await es.info())["version"]["number"] == "9.5.0"
        body = {
            "service": "elasticsearch",
            "service_settings": {
                "model_id": ".multilingual-e5-small",
                "num_threads": 1,
                "num_allocations": 1,
            },
        }
        assert (await es.put_endpoint("text_embedding", "e5", body)).status == 200
        assert "e5" in [e["inference_id"] for e in await es.endpoints()]
        assert await es.endpoint("missing") is None
        stats = await es.deployment_stats(["e5", "gone"])
        assert set(stats) == {"e5"}
        assert stats["e5"]["allocation_status"]["state"] == "fully_allocated"
        assert await es.references("e5", "text_embedding") == {"pipelines": [], "indexes": []}
        assert (await es.delete_endpoint("text_embedding", "e5")).status == 200
        assert (await es.delete_endpoint("text_embedding", "e5")).status == 404


async def test_many_deployments_are_read_in_one_request() -> None:
    emulator = Emulator(EmulatorConfig(deploy_seconds=0))
    es, _ = client(emulator)
    body = {
        "service": "elasticsearch",
        "service_settings": {"model_id": ".multilingual-e5-small", "num_threads": 1, "num_allocations": 1},
    }
    async with es:
        for i in range(120):
            await es.put_endpoint("text_embedding", f"d{i}", body)
        before = es.requests
        stats = await es.deployment_stats([f"d{i}" for i in range(120)])
        assert len(stats) == 120
        assert es.requests - before == 1


async def test_errors_carry_status_type_and_a_short_reason() -> None:
    es, _ = client(Emulator(EmulatorConfig()))
    async with es:
        with pytest.raises(ApiError) as caught:
            await es.put_endpoint(
                "completion",
                "x",
                {
                    "service": "anthropic",
                    "service_settings": {"model_id": "m", "api_key": "k"},
                    "task_settings": {"max_tokens": "a" * 1000},
                },
            )
    error = caught.value
    assert (error.status, error.es_type) == (400, "validation_exception")
    assert len(error.reason) <= 301
    assert str(error).startswith("PUT /_inference/completion/x: 400 validation_exception: ")


async def test_transient_failures_are_retried_with_backoff_and_retry_after() -> None:
    emulator = Emulator(EmulatorConfig(fault_rate=1.0, retry_after=3))
    es, sleeps = client(emulator)
    async with es:
        with pytest.raises(TransientApiError):
            await es.endpoints()
    assert es.requests == 4
    assert len(sleeps) == 3
    assert all(s <= 32 for s in sleeps)
    assert any(s >= 3 for s in sleeps)  # a 429's Retry-After: 3 is honoured


async def test_a_few_faults_are_absorbed() -> None:
    emulator = Emulator(EmulatorConfig(fault_rate=0.3, fault_seed=5))
    es, _ = client(emulator)
    async with es:
        for _ in range(20):
            await es.info()
    assert es.requests > 20


async def test_a_capacity_429_is_not_retried() -> None:
    emulator = Emulator(EmulatorConfig(version="9.4.0", ml_capacity=0, ml_autoscaling=False))
    es, sleeps = client(emulator)
    body = {
        "service": "elasticsearch",
        "service_settings": {"model_id": ".multilingual-e5-small", "num_threads": 1, "num_allocations": 1},
    }
    async with es:
        with pytest.raises(ApiError) as caught:
            await es.put_endpoint("text_embedding", "e5", body)
    assert caught.value.status == 429
    assert not isinstance(caught.value, TransientApiError)
    assert sleeps == []


def recording_transport(
    seen: list[httpx.Request], fail_hosts: frozenset[str] = frozenset()
) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host in fail_hosts:
            raise httpx.ConnectError("refused", request=request)
        seen.append(request)
        return httpx.Response(
            200, json={"version": {"number": "9.5.0"}}, headers={"X-elastic-product": "Elasticsearch"}
        )

    return httpx.MockTransport(handle)


@pytest.mark.parametrize(
    ("options", "header"),
    [
        ({"api_key": "a2V5"}, "ApiKey a2V5"),
        ({"bearer_token": "tok"}, "Bearer tok"),
        ({"username": "elastic", "password": "pw"}, "Basic ZWxhc3RpYzpwdw=="),
        ({}, None),
    ],
)
async def test_authentication_headers(options: dict[str, Any], header: str | None) -> None:
    seen: list[httpx.Request] = []
    async with Elasticsearch(Connection(**options), transport=recording_transport(seen)) as es:
        await es.info()
    assert seen[0].headers.get("authorization") == header


def test_one_way_to_authenticate_and_no_credentials_in_repr() -> None:
    with pytest.raises(ValueError, match="one way to authenticate"):
        Connection(api_key="a", bearer_token="b")
    with pytest.raises(ValueError, match="needs --password"):
        Connection(username="u")
    text = repr(Connection(api_key="canary-api-key"))
    assert "canary-api-key" not in text
    assert "api-key" in text


def test_credentials_in_a_url_become_basic_auth_and_leave_the_url() -> None:
    connection = Connection.from_urls(" https://elastic:canary%40pw@es.example:9243/ , http://[::1]:9200")
    assert connection.urls == ("https://es.example:9243", "http://[::1]:9200")
    assert (connection.username, connection.password) == ("elastic", "canary@pw")
    assert connection.headers()["Authorization"] == "Basic " + base64.b64encode(b"elastic:canary@pw").decode()
    assert "canary" not in repr(connection)
    with pytest.raises(ValueError, match="not both"):
        Connection.from_urls("https://a:b@es", username="c", password="d")
    with pytest.raises(ValueError, match="different users"):
        Connection.from_urls("https://a:b@es1,https://c:d@es2")
    assert Connection.from_urls(None).urls == ("http://localhost:9200",)


def test_tls_is_verified_by_default() -> None:
    assert Connection().verify() is True
    assert Connection(insecure=True).verify() is False


async def test_the_next_url_is_tried_when_one_cannot_be_reached() -> None:
    seen: list[httpx.Request] = []
    connection = Connection(urls=("http://down:9200", "http://up:9200"))
    async with Elasticsearch(connection, transport=recording_transport(seen, frozenset({"down"}))) as es:
        await es.info()
        await es.info()
    assert [r.url.host for r in seen] == ["up", "up"]  # and it stays on the one that answered


async def test_a_write_whose_connection_broke_is_not_retried() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("peer closed connection", request=request)

    async with Elasticsearch(
        Connection(), transport=httpx.MockTransport(broken), retry=RetryPolicy(attempts=3)
    ) as es:
        with pytest.raises(TransportError) as caught:
            await es.put_endpoint("completion", "x", {})
        assert caught.value.maybe_applied
        assert es.requests == 1
        with pytest.raises(TransportError) as read:
            await es.endpoints()
        assert not read.value.maybe_applied
        assert es.requests == 1 + 3  # reads are retried


def test_errors_print_the_flat_bodies_too() -> None:
    from reconciler.client import _api_error

    error = _api_error("GET", "/a/b", 400, {"error": "no handler found for uri [/a/b] and method [GET]"})
    assert "no handler found" in str(error)
    assert error.es_type is None


async def test_the_pools_share_one_tls_context_and_plain_http_loads_none() -> None:
    """Each transport would load the CA bundle again (about 40 ms apiece, on every command)."""
    import ssl

    https = Elasticsearch(Connection(urls=("https://es.example:9243",)), max_connections=12)
    contexts = {id(pool._pool._ssl_context) for pool in https._pools}  # type: ignore[attr-defined]
    assert len(https._pools) > 1
    assert len(contexts) == 1
    assert https._pools[0]._pool._ssl_context.verify_mode is ssl.CERT_REQUIRED  # type: ignore[attr-defined]
    plain = Elasticsearch(Connection(urls=("http://localhost:9200",)))
    assert plain._pools[0]._pool._ssl_context.verify_mode is ssl.CERT_NONE  # type: ignore[attr-defined]
    await https.close()
    await plain.close()
