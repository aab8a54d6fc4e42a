"""The HTTP client: auth, TLS settings, errors, retries with backoff and Retry-After, several URLs."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.client import (
    REASON_LIMIT,
    ApiError,
    Connection,
    Elasticsearch,
    Redactor,
    RetryPolicy,
    TransientApiError,
    TransportError,
)
from reconciler.emulator import Emulator, EmulatorConfig
from reconciler.sensitive import Secret


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


def pools(es: Elasticsearch) -> list[httpx.AsyncBaseTransport]:
    """The client's transports, whatever proxy each goes through."""
    return [pool for by_proxy in es._pools.values() for pool in by_proxy]


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


async def test_requests_in_flight_together_all_move_on_to_the_url_that_answers() -> None:
    """Eight requests that each find the first URL down move on by one URL together: each tries
    the dead one once. Each used to move the shared index on by one, so with two URLs half of them
    went back to the dead one, and only a retry after a backoff saved them (or none, without)."""
    seen: list[str] = []

    async def handle(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)  # so that the requests are all in flight at once
        seen.append(request.url.host)
        if request.url.host == "down":
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={}, headers={"X-elastic-product": "Elasticsearch"})

    connection = Connection(urls=("http://down:9200", "http://up:9200"))
    transport = httpx.MockTransport(handle)
    async with Elasticsearch(connection, transport=transport, retry=RetryPolicy(attempts=1)) as es:
        await asyncio.gather(*(es.info() for _ in range(8)))
    assert sorted(seen) == ["down"] * 8 + ["up"] * 8


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
    contexts = {id(pool._pool._ssl_context) for pool in pools(https)}  # type: ignore[attr-defined]
    assert len(pools(https)) > 1
    assert len(contexts) == 1
    assert pools(https)[0]._pool._ssl_context.verify_mode is ssl.CERT_REQUIRED  # type: ignore[attr-defined]
    plain = Elasticsearch(Connection(urls=("http://localhost:9200",)))
    assert pools(plain)[0]._pool._ssl_context.verify_mode is ssl.CERT_NONE  # type: ignore[attr-defined]
    await https.close()
    await plain.close()


# -- server text is untrusted: secrets redacted, reasons cut short (DESIGN.md §9) ----------------

# An API key as Elasticsearch issues it: base64 of `id:key`; its decoded form and its key part are
# secret too, and so is every other value the run knows.
KEY_PART = "canary-key-part"
API_KEY = base64.b64encode(f"key-id:{KEY_PART}".encode()).decode()
RESOLVED = 'canary-resolved "quoted" value'
IN_BODY = "canary-secret-in-body"
CANARIES = (API_KEY, KEY_PART, f"key-id:{KEY_PART}", "canary-resolved", IN_BODY, "canary-pw", "canary-tok")


def assert_no_canary(*texts: str) -> None:
    for text in texts:
        for canary in CANARIES:
            assert canary not in text, text


def echoing_transport(status: int, seen: list[str]) -> httpx.MockTransport:
    """Answers `status` with a reason echoing the request: its Authorization header and its body."""

    def handle(request: httpx.Request) -> httpx.Response:
        echo = f"[{request.headers.get('authorization')}] {request.method} {request.url} {request.content.decode()}"
        seen.append(echo)
        flat = "flat" in request.url.path
        body = {"error": echo} if flat else {"error": {"type": "echo_exception", "reason": echo}}
        return httpx.Response(status, json=body)

    return httpx.MockTransport(handle)


@pytest.mark.parametrize("path", ["/echo", "/flat"])
@pytest.mark.parametrize(
    "connection",
    [
        {"api_key": API_KEY},
        {"api_key": f"key-id:{KEY_PART}"},
        {"username": "elastic", "password": "canary-pw"},
        {"bearer_token": "canary-tok"},
    ],
)
async def test_an_error_echoing_the_request_shows_no_secret(connection: dict[str, Any], path: str) -> None:
    seen: list[str] = []
    es = Elasticsearch(Connection(**connection), transport=echoing_transport(500, seen))
    es.redact_values([RESOLVED])
    async with es:
        body = {"service_settings": {"api_key": Secret(IN_BODY), "other": RESOLVED}}
        with pytest.raises(ApiError) as caught:
            await es.request("PUT", path, body=body)
    error = caught.value
    assert any(canary in seen[0] for canary in CANARIES)  # the server did echo them
    assert_no_canary(str(error), error.describe(), error.reason, repr(error), str(error.args))
    assert "(sensitive)" in error.reason
    assert len(error.reason) <= 301


async def test_what_retries_log_shows_no_secret() -> None:
    seen: list[str] = []
    logged: list[str] = []

    async def sleep(_: float) -> None:
        pass

    es = Elasticsearch(
        Connection(api_key=API_KEY),
        transport=echoing_transport(503, seen),
        retry=RetryPolicy(attempts=3),
        sleep=sleep,
        on_retry=lambda error, _: logged.append(str(error)),
    )
    es.redact_values([Secret(RESOLVED)])
    async with es:
        with pytest.raises(TransientApiError) as caught:
            await es.request("PUT", "/echo", body={"value": RESOLVED})
    assert len(logged) == 2
    assert_no_canary(*logged, str(caught.value))


async def test_a_secret_at_the_cut_is_not_left_in_part() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        reason = "x" * (REASON_LIMIT - 5) + RESOLVED
        return httpx.Response(400, json={"error": {"type": "t", "reason": reason}})

    es = Elasticsearch(Connection(), transport=httpx.MockTransport(handle))
    es.redact_values([RESOLVED])
    async with es:
        with pytest.raises(ApiError) as caught:
            await es.info()
    assert "canary" not in str(caught.value)
    assert RESOLVED[:5] not in caught.value.reason


async def test_an_emulator_400_that_echoes_a_value_shows_no_secret() -> None:
    es, _ = client(Emulator(EmulatorConfig()))
    es.redact_values([IN_BODY])
    async with es:
        with pytest.raises(ApiError) as caught:
            await es.request("PUT", "/idx/_doc/1", params={"if_seq_no": IN_BODY}, body={"a": 1})
    error = caught.value
    assert (error.status, error.es_type) == (400, "illegal_argument_exception")
    assert "with value [(sensitive)]" in error.reason
    assert_no_canary(str(error), error.describe())


def test_the_redactor_knows_the_forms_a_value_is_echoed_in() -> None:
    redact = Redactor(['a"b\\c', "ünï", "x y/z"])
    assert redact('a"b\\c, a\\"b\\\\c, \\u00fcn\\u00ef, ünï, x%20y%2Fz, x y/z') == ", ".join(
        ["(sensitive)"] * 6
    )
    assert Redactor()("as it is") == "as it is"
    assert "canary" not in Redactor(Connection(api_key=API_KEY).secrets())(f"ApiKey {API_KEY}, {KEY_PART}")


# -- TLS failures fail at once ---------------------------------------------------------------


class CountingServer:
    """A TCP server in a thread that counts the connections it accepts and hands each to `handle`,
    one after another, or each in a thread of its own when `concurrent`."""

    def __init__(self, handle: Callable[[socket.socket], None], *, concurrent: bool = False) -> None:
        self.handle = handle
        self.concurrent = concurrent
        self.accepted = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            if self.concurrent:
                threading.Thread(target=self._handle, args=(conn,), daemon=True).start()
            else:
                self._handle(conn)

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            with contextlib.suppress(OSError):
                self.handle(conn)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()
        self.sock.close()


def plain_http(conn: socket.socket) -> None:
    conn.recv(4096)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}")


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(params=["self-signed", "plain-http"])
def tls_refusing(request: pytest.FixtureRequest, self_signed: tuple[Path, Path]) -> Iterator[CountingServer]:
    """An https URL whose TLS handshake fails: a self-signed certificate, or a server speaking http."""
    handle = plain_http
    if request.param == "self-signed":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*self_signed)

        def handle(conn: socket.socket) -> None:
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(4096)

    server = CountingServer(handle)
    yield server
    server.close()


async def test_a_tls_failure_is_not_retried(tls_refusing: CountingServer) -> None:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    connection = Connection(urls=(f"https://127.0.0.1:{tls_refusing.port}",))
    async with Elasticsearch(connection, retry=RetryPolicy(attempts=4), sleep=sleep) as es:
        with pytest.raises(TransportError) as caught:
            await es.info()
    assert (tls_refusing.accepted, es.requests, sleeps) == (1, 1, [])  # one connection attempt
    assert caught.value.permanent
    assert "TLS failed" in str(caught.value)


async def test_a_url_that_is_not_http_fails_at_once() -> None:
    connection = Connection()
    object.__setattr__(connection, "urls", ("ftp://es",))  # past the check Connection makes
    async with Elasticsearch(connection, retry=RetryPolicy(attempts=4)) as es:
        with pytest.raises(TransportError) as caught:
            await es.info()
    assert caught.value.permanent
    assert es.requests == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http//x", "no http:// or https://"),
        ("localhost:9200", "no http:// or https://"),
        ("ftp://user:canary-pw@x", "the scheme ftp://"),
        ("http://:99999", "the port is not a number"),
        ("http://canary-pw@:99999", "the port is not a number"),
        ("http://:80", "no host"),
        ("http://[::1", "Invalid IPv6 URL"),
    ],
)
def test_a_malformed_url_is_refused_naming_it(url: str, message: str) -> None:
    with pytest.raises(ValueError, match="--url") as caught:
        Connection.from_urls(url)
    assert message in str(caught.value)
    assert_no_canary(str(caught.value))


def test_a_ca_certificate_that_cannot_be_read_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"--ca-cert .*No such file"):
        Connection(ca_cert=str(tmp_path / "missing.pem"))
    (tmp_path / "not.pem").write_text("not a certificate")
    with pytest.raises(ValueError, match=r"--ca-cert .*not a PEM certificate"):
        Connection(ca_cert=str(tmp_path / "not.pem"))


def test_the_ca_file_is_loaded_once_per_connection(self_signed: tuple[Path, Path]) -> None:
    """Checked when the connection is made, and that context is the one every pool uses."""
    cert, _ = self_signed
    connection = Connection(urls=("https://es.example:9243",), ca_cert=str(cert))
    context = connection.verify()
    assert isinstance(context, ssl.SSLContext)
    assert connection.verify() is context
    es = Elasticsearch(connection, max_connections=12)
    assert {id(pool._pool._ssl_context) for pool in pools(es)} == {id(context)}  # type: ignore[attr-defined]


def test_a_short_secret_is_redacted_where_it_stands_alone_not_inside_words() -> None:
    """A one-letter secret (`K=x`) once turned `max_tokens` into `ma(sensitive)_tokens` and a 400
    into `4(sensitive)(sensitive)`: short values are cut out only as whole tokens."""
    redact = Redactor(["x", "0"])
    assert redact("max_tokens must be below 400") == "max_tokens must be below 400"
    assert redact('{"api_key":"x","n":0}') == '{"api_key":"(sensitive)","n":(sensitive)}'
    assert redact("Bearer x") == "Bearer (sensitive)"
    long = "canary-0123456789"
    assert redact.__class__([long])(f"prefix{long}suffix") == "prefix(sensitive)suffix"
