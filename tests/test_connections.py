"""Connections as elasticsearch-py and the elasticstack provider take them, end to end.

A Cloud ID decoded as elastic-transport decodes it; an API key as `id:key` or encoded; TLS through
a CA file, inline CA data or a pinned fingerprint; a client certificate (mTLS); proxies from the
environment; a request timeout; extra headers; ES_USERNAME / ES_PASSWORD. Every TLS case runs the
CLI against the emulator behind a TLS front (`TlsFront`, certificates from trustme), every proxy
case through a forward proxy (`Proxy`) on a real socket. Unreachable hosts, names that do not
resolve and refused TLS fail at once with one line.

The client's behaviour is read from its source (and the installed client is called to compare):
elastic/elastic-transport-python `elastic_transport/client_utils.py` (`parse_cloud_id`),
elastic/elasticsearch-py `elasticsearch/_sync/client/utils.py` (`cloud_id_to_node_configs`: https,
the es address; `_base64_auth_header`: a pair as base64 of `id:key`), and
`elastic_transport/_node/_urllib3_chain_certs.py` (`ssl_assert_fingerprint`: the peer certificate
or any of its chain, colons ignored, host name not checked).
"""

from __future__ import annotations

import base64
import contextlib
import re
import select
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from elastic_transport.client_utils import parse_cloud_id
from elasticsearch._sync.client.utils import _base64_auth_header
from hypothesis import given
from hypothesis import strategies as st

from reconciler.client import Connection, Elasticsearch, RetryPolicy, TransportError
from reconciler.connection import cloud_url, environment_proxy, fingerprint_of
from tests.conftest import Served
from tests.e2e import MakeTool, Run, Tool
from tests.test_cli_errors import assert_one_error_line
from tests.test_client import CountingServer

# -- Cloud ID ------------------------------------------------------------------------------------


def cloud_id(name: str, text: str) -> str:
    return f"{name}:{base64.b64encode(text.encode()).decode()}"


def client_url(value: str) -> str:
    """The URL elasticsearch-py connects to for a Cloud ID (elastic-transport's `parse_cloud_id`,
    then elasticsearch's `cloud_id_to_node_configs`: https, the es address)."""
    address = parse_cloud_id(value).es_address
    if address is None or not all(address):
        raise ValueError("Cloud ID missing host and port information for Elasticsearch")
    return f"https://{address[0]}:{address[1]}"


@pytest.mark.parametrize(
    ("value", "url"),
    [
        (cloud_id("prod", "eu-west-1.aws.found.io$abc123$def456"), "https://abc123.eu-west-1.aws.found.io:443"),
        (cloud_id("prod", "eu-west-1.aws.found.io:9243$abc123$def456"), "https://abc123.eu-west-1.aws.found.io:9243"),
        (cloud_id("x", "host.example$es-uuid"), "https://es-uuid.host.example:443"),  # no Kibana
        (cloud_id("", "host.example$es-uuid$"), "https://es-uuid.host.example:443"),  # empty name
    ],
)  # fmt: skip
def test_a_cloud_id_decodes_to_the_url_the_python_client_uses(value: str, url: str) -> None:
    assert cloud_url(value) == client_url(value) == url


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (base64.b64encode(b"host.example$uuid").decode(), "not an Elastic Cloud ID"),  # no NAME:
        ("name:!!!", "not an Elastic Cloud ID"),
        (cloud_id("n", "$uuid$kb"), "not an Elastic Cloud ID"),  # no host
        (cloud_id("n", "host.example:port$uuid"), "not an Elastic Cloud ID"),
        (cloud_id("n", "host.example"), "names no Elasticsearch"),  # no es uuid
        (cloud_id("n", "host.example$$kb"), "names no Elasticsearch"),
        ("n:" + base64.b64encode("hôst$u".encode()).decode(), "not an Elastic Cloud ID"),
        (cloud_id("a:b", "h.example$e$k"), "not an Elastic Cloud ID"),  # the name ends at the first :
    ],
)
def test_a_cloud_id_the_python_client_refuses_is_refused(value: str, message: str) -> None:
    with pytest.raises(ValueError, match="Cloud ID"):
        client_url(value)
    with pytest.raises(ValueError, match=message):
        cloud_url(value)


@given(
    st.text(st.characters(codec="ascii", exclude_characters="\n"), max_size=8),
    st.text(st.sampled_from("ab.-:$09"), max_size=24),
)
def test_any_cloud_id_decodes_as_the_python_client_decodes_it(name: str, payload: str) -> None:
    """Property: for any name and payload, the URL is the client's, or both refuse it; or the
    client's is not a URL (a port 0 or 99999, a host `:.x`), which only this tool refuses."""
    value = cloud_id(name, payload)
    try:
        expected: str | None = client_url(value)
    except ValueError:
        expected = None
    try:
        ours: str | None = cloud_url(value)
    except ValueError:
        ours = None
    if expected is not None and ours is None:
        with pytest.raises(ValueError, match="--url"):
            Connection(urls=(expected,))
    else:
        assert ours == expected


def test_cloud_id_is_the_url_and_refuses_a_url_beside_it() -> None:
    value = cloud_id("prod", "example.invalid:9243$es1$kb1")
    assert Connection.from_options(cloud_id=value).urls == ("https://es1.example.invalid:9243",)
    with pytest.raises(ValueError, match="--url or --cloud-id, not both"):
        Connection.from_options("http://localhost:9200", cloud_id=value)


def test_the_cli_connects_where_the_cloud_id_points(tmp_path: Path) -> None:
    value = cloud_id("prod", "127.0.0.1:9$es")  # port 9: nothing listens
    tool = Tool("", tmp_path)
    run = tool("status", "--cloud-id", value)
    assert_one_error_line(run, "https://es.127.0.0.1:9")
    run = Tool("http://localhost:9200", tmp_path)("status", env={"ELASTIC_CLOUD_ID": value})
    assert_one_error_line(run, "--url or --cloud-id, not both")


# -- credentials ---------------------------------------------------------------------------------


def test_an_api_key_as_id_and_key_is_encoded_as_the_python_client_encodes_the_pair() -> None:
    pair = Connection(api_key="VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw")
    expected = _base64_auth_header(("VuaCfGcBCdbkQm-e5aOx", "ui2lp2axTNmsyakw9tvNnw"))
    assert pair.headers()["Authorization"] == f"ApiKey {expected}"
    encoded = Connection(api_key=expected)
    assert encoded.headers()["Authorization"] == f"ApiKey {expected}"  # sent as it is
    with pytest.raises(ValueError, match="ID:KEY with both parts"):
        Connection(api_key="only-an-id:")


def test_the_cli_authenticates_with_an_id_and_key(
    serve_emulator: Callable[..., Served], tmp_path: Path
) -> None:
    encoded = base64.b64encode(b"key-id:canary-pair-secret").decode()
    tool = Tool(serve_emulator("--api-key", encoded).url, tmp_path)  # it wants exactly this header
    assert tool("status", env={"ES_API_KEY": "key-id:canary-pair-secret"}).code == 0
    refused = tool("status", env={"ES_API_KEY": "key-id:canary-wrong-secret"})
    assert refused.code == 1, refused
    assert "canary" not in refused.stderr + refused.stdout


def test_es_username_and_password_are_basic_auth(tmp_path: Path) -> None:
    seen = Echoing()
    with seen.serving() as url:
        run = Tool(url, tmp_path)("status", env={"ES_USERNAME": "ops", "ES_PASSWORD": "canary-es-pw"})
    assert run.code == 1
    assert seen.authorization == "Basic " + base64.b64encode(b"ops:canary-es-pw").decode()
    assert "canary" not in run.stderr + run.stdout


# -- headers and the request timeout -------------------------------------------------------------


def test_extra_headers_are_sent_and_credential_ones_redacted() -> None:
    connection = Connection.from_options(
        header=["X-Opaque-Id: run-42", "accept: application/vnd.elasticsearch+json; compatible-with=8",
                "X-Gateway-Token: canary-gw-token"],
    )  # fmt: skip
    headers = connection.headers()
    assert headers["X-Opaque-Id"] == "run-42"
    assert headers["accept"].endswith("compatible-with=8")
    assert "Accept" not in headers  # replaced
    assert "canary-gw-token" in connection.secrets()
    assert "run-42" not in connection.secrets()  # not a credential: left readable


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("X-No-Colon canary-value", "give 'Name: value'"),
        ("Bad Name: canary-value", "give 'Name: value'"),
        ("Content-Type: text/plain", "sets this header itself"),
        ("X-A: a\r\nX-Injected: canary-value", "line break"),
    ],
)
def test_a_malformed_header_is_refused_without_its_value(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        Connection.from_options(header=[text])
    assert "canary" not in str(caught.value)


def test_an_authorization_header_is_one_way_to_authenticate() -> None:
    assert Connection.from_options(header=["Authorization: Custom canary-x"]).auth_kind() == "header"
    with pytest.raises(ValueError, match="one way to authenticate"):
        Connection.from_options(header=["Authorization: Custom x"], api_key="k")


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30.0), ("2m", 120.0), ("2.5", 2.5), ("500ms", 0.5)])
def test_the_request_timeout_is_a_duration(text: str, seconds: float) -> None:
    assert Connection.from_options(request_timeout=text).timeout == seconds


@pytest.mark.parametrize("text", ["0", "-1s", "soon", "inf"])
def test_a_request_timeout_that_is_no_duration_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="--request-timeout"):
        Connection.from_options(request_timeout=text)


def test_a_server_slower_than_the_request_timeout_times_out(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (backlog), never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        run = Tool(url, tmp_path)("status", "--request-timeout", "200ms", "--log-format", "json")
    assert run.code == 1, run
    assert "--request-timeout 0.2s" in run.stderr, run


# -- TLS: a CA file or text, a pinned fingerprint, a client certificate ----------------------------


class TlsFront:
    """A TLS server in front of a plain-http one (the emulator), as a secured cluster is: each
    connection's handshake (counted, and the refused ones), then bytes relayed both ways."""

    def __init__(self, upstream: str, context: ssl.SSLContext) -> None:
        self.upstream = httpx.URL(upstream)
        self.context = context
        self.refused = 0
        self.server = CountingServer(self._front, concurrent=True)

    @property
    def url(self) -> str:
        return f"https://localhost:{self.server.port}"

    @property
    def handshakes(self) -> int:
        return self.server.accepted

    def _front(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            self.refused += 1
            return
        assert self.upstream.port is not None
        with tls, socket.create_connection((self.upstream.host, self.upstream.port)) as plain:
            _relay(tls, plain)

    def close(self) -> None:
        self.server.close()


def _relay(one: socket.socket, other: socket.socket) -> None:
    """Bytes both ways until a side closes or both are idle for 10 s; a TLS side's decrypted bytes
    still buffered after a read (`pending`) are passed on too."""
    while True:
        ready, _, _ = select.select([one, other], [], [], 10)
        if not ready:
            return
        for side in ready:
            data = side.recv(65536)
            if not data:
                return
            to = other if side is one else one
            to.sendall(data)
            while isinstance(side, ssl.SSLSocket) and side.pending():
                to.sendall(side.recv(65536))


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def certs(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The CA, a client CA and a client certificate it issued, as files."""
    folder = tmp_path_factory.mktemp("certs")
    client_ca = trustme.CA()
    client = client_ca.issue_cert("reconciler@example.com")
    files = {
        "ca": ca.cert_pem,
        "client-ca": client_ca.cert_pem,
        "client-cert": client.cert_chain_pems[0],
        "client-key": client.private_key_pem,
        "client-both": client.private_key_and_cert_chain_pem,
    }
    paths = {name: folder / f"{name}.pem" for name in files}
    for name, blob in files.items():
        blob.write_to_path(str(paths[name]))
    return paths


def server_context(ca: trustme.CA, chain_extra: bytes = b"", client_ca: Path | None = None) -> ssl.SSLContext:
    """The front's TLS: a certificate for localhost from `ca` (or its chain with more certificates
    appended); with `client_ca`, a client certificate it issued is required."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems) + chain_extra
    with leaf.private_key_pem.tempfile() as key, _written(chain) as chain_file:
        context.load_cert_chain(chain_file, key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=str(client_ca))
    return context


@contextlib.contextmanager
def _written(data: bytes) -> Iterator[str]:
    with trustme.Blob(data).tempfile() as path:
        yield path


@pytest.fixture
def front(make_tool: MakeTool) -> Iterator[Callable[..., tuple[TlsFront, Tool]]]:
    """`front(context)`: an emulator behind a TLS front, and the CLI pointed at the front."""
    started: list[TlsFront] = []

    def build(context: ssl.SSLContext) -> tuple[TlsFront, Tool]:
        tool = make_tool()
        started.append(TlsFront(tool.url, context))
        tool.url = started[-1].url
        return started[-1], tool

    yield build
    for server in started:
        server.close()


def der(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode())


def leaf_fingerprint(server: TlsFront) -> str:
    pem = ssl.get_server_certificate(("127.0.0.1", int(server.url.rpartition(":")[2])))
    return fingerprint_of(der(pem.encode()))


def colons(fingerprint: str) -> str:
    return ":".join(fingerprint[i : i + 2] for i in range(0, 64, 2)).upper()


def test_tls_verified_with_a_ca_file_or_ca_text(front: Any, ca: trustme.CA, certs: dict[str, Path]) -> None:
    _, tool = front(server_context(ca))
    assert_one_error_line(tool("status"), "TLS failed", "CERTIFICATE_VERIFY_FAILED")  # not trusted by default
    assert tool("status", "--ca-cert", str(certs["ca"])).code == 0
    assert tool("status", env={"ELASTICSEARCH_CA_DATA": ca.cert_pem.bytes().decode()}).code == 0
    assert_one_error_line(tool("status", "--ca-data", "not pem"), "--ca-data", "not PEM")


def test_a_pinned_fingerprint_trusts_the_ca_or_the_server_certificate(front: Any, ca: trustme.CA) -> None:
    server, tool = front(server_context(ca, chain_extra=ca.cert_pem.bytes()))  # sends its CA too
    ca_print = fingerprint_of(der(ca.cert_pem.bytes()))
    assert tool("status", "--ca-fingerprint", colons(ca_print)).code == 0  # as Elasticsearch prints it
    assert tool("status", "--ca-fingerprint", leaf_fingerprint(server)).code == 0
    run = tool("status", "--ca-fingerprint", "ab" * 32)
    assert_one_error_line(run, "TLS failed", "no certificate it sends has the --ca-fingerprint", ca_print)
    # The probe that read the certificates sent nothing: what reached the cluster is one run's.
    log = httpx.get(f"{server.upstream}/_emulator/requests").json()["requests"]
    assert sum(r["count"] for r in log if r["path"] == "/") == 2  # GET / of the two runs that connected


def test_a_pinned_ca_is_not_fooled_by_a_chain_that_only_carries_it(front: Any, ca: trustme.CA) -> None:
    """An attacker's server can send the real CA's certificate (it is public) after its own: the
    certificate is not the CA's, so its signature must be checked, not only the fingerprint found."""
    attacker = trustme.CA()
    server, tool = front(server_context(attacker, chain_extra=ca.cert_pem.bytes()))
    run = tool("status", "--ca-fingerprint", fingerprint_of(der(ca.cert_pem.bytes())))
    assert_one_error_line(run, "TLS failed", "CERTIFICATE_VERIFY_FAILED")
    assert server.handshakes == 2  # the probe's (which reads the certificates only), then one attempt


def test_a_fingerprint_is_checked_when_given() -> None:
    with pytest.raises(ValueError, match="64 hex digits"):
        Connection(urls=("https://es:9200",), ca_fingerprint="abc")
    with pytest.raises(ValueError, match="https URLs"):
        Connection(urls=("http://es:9200",), ca_fingerprint="ab" * 32)
    with pytest.raises(ValueError, match="one way to trust"):
        Connection(urls=("https://es:9200",), ca_fingerprint="ab" * 32, insecure=True)


def test_mutual_tls_with_a_client_certificate(front: Any, ca: trustme.CA, certs: dict[str, Path]) -> None:
    server, tool = front(server_context(ca, client_ca=certs["client-ca"]))
    trust = ["--ca-cert", str(certs["ca"])]
    # Without a client certificate: one attempt, one line (the server's alert, or its reset if the
    # alert was lost, as when it closes with the request unread).
    run = tool("status", *trust)
    assert_one_error_line(run)
    assert "CERTIFICATE_REQUIRED" in run.stderr or "give --client-cert" in run.stderr, run
    assert server.handshakes == 1
    pair = ["--client-cert", str(certs["client-cert"]), "--client-key", str(certs["client-key"])]
    assert tool("status", *trust, *pair).code == 0
    assert tool("status", *trust, env={"ELASTICSEARCH_CLIENT_CERT": str(certs["client-both"])}).code == 0
    # A pinned server, or none verified, with a client certificate.
    both = ["--client-cert", str(certs["client-both"])]
    assert tool("status", "--ca-fingerprint", leaf_fingerprint(server), *both).code == 0
    assert tool("status", "--insecure", *both).code == 0


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["--client-cert", "{missing}"], "No such file"),
        (["--client-cert", "{ca}"], "not a PEM certificate and its unencrypted key"),  # no key in it
        (["--client-cert", "{client-cert}", "--client-key", "{ca}"], "not a PEM certificate"),
        (["--client-key", "{client-key}"], "--client-key needs --client-cert"),
        (["--client-cert", "{client-cert}", "--client-key", "{encrypted}"], "encrypted"),
    ],
)
def test_client_certificate_files_are_checked_first(
    tmp_path: Path, certs: dict[str, Path], files: list[str], message: str
) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(certs["client-key"].read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"canary-key-pw"),
        )
    )
    paths = {
        **{k: str(v) for k, v in certs.items()},
        "missing": str(tmp_path / "no.pem"),
        "encrypted": str(encrypted),
    }
    run = Tool("https://127.0.0.1:9", tmp_path)("status", *(f.format(**paths) for f in files))
    assert_one_error_line(run, message)


# -- proxies from the environment ----------------------------------------------------------------


class Proxy(ThreadingHTTPServer):
    """A forward proxy: plain-http requests sent on (counted by host), CONNECT tunnels (for https)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.seen: list[str] = []
        self.client = httpx.Client(timeout=30, trust_env=False)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.client.close()


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Proxy

    def _forward(self) -> None:
        self.server.seen.append(f"{self.command} {httpx.URL(self.path).netloc.decode()}")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "proxy-connection")}
        answer = self.server.client.request(self.command, self.path, content=body, headers=headers)
        self.send_response(answer.status_code)
        for name, value in answer.headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward  # noqa: N815

    def do_CONNECT(self) -> None:
        self.server.seen.append(f"CONNECT {self.path}")
        host, _, port = self.path.rpartition(":")
        with socket.create_connection((host, int(port))) as upstream:
            self.send_response(200, "Connection established")
            self.end_headers()
            self.close_connection = True
            with contextlib.suppress(OSError):
                _relay(self.connection, upstream)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    server = Proxy()
    yield server
    server.stop()


def test_http_proxy_carries_plain_http_and_no_proxy_bypasses_it(make_tool: MakeTool, proxy: Proxy) -> None:
    tool = make_tool()
    netloc = httpx.URL(tool.url).netloc.decode()
    assert tool("status", env={"HTTP_PROXY": proxy.url, "NO_PROXY": ""}).code == 0
    assert proxy.seen
    assert set(proxy.seen) <= {f"GET {netloc}", f"HEAD {netloc}"}, proxy.seen
    proxy.seen.clear()
    assert tool("status", env={"HTTP_PROXY": proxy.url, "NO_PROXY": "127.0.0.1"}).code == 0
    assert proxy.seen == []


def test_https_proxy_tunnels_tls(front: Any, ca: trustme.CA, certs: dict[str, Path], proxy: Proxy) -> None:
    server, tool = front(server_context(ca))
    env = {"HTTPS_PROXY": proxy.url, "NO_PROXY": "", "ELASTICSEARCH_CA_CERT": str(certs["ca"])}
    assert tool("status", env=env).code == 0
    assert proxy.seen
    assert set(proxy.seen) == {f"CONNECT {server.url.removeprefix('https://')}"}
    assert server.handshakes == len(proxy.seen)  # every connection came through the proxy


def test_a_pinned_fingerprint_is_read_through_the_proxy(front: Any, ca: trustme.CA, proxy: Proxy) -> None:
    server, tool = front(server_context(ca, chain_extra=ca.cert_pem.bytes()))
    env = {"HTTPS_PROXY": proxy.url, "NO_PROXY": ""}
    assert tool("status", "--ca-fingerprint", fingerprint_of(der(ca.cert_pem.bytes())), env=env).code == 0
    assert server.handshakes == len(proxy.seen) >= 2  # the probe's tunnel, then the requests'


@pytest.mark.parametrize(
    ("url", "proxies", "expected"),
    [
        ("https://es.example:9243", {"https": "http://p:3128"}, "http://p:3128"),
        ("http://es.example:9200", {"https": "http://p:3128"}, None),
        ("http://es.example:9200", {"all": "p:3128"}, "http://p:3128"),
        ("https://es.example:9243", {"https": "http://p", "no": "ample"}, "http://p"),  # labels, not letters
        ("https://es.example:9243", {"https": "http://p", "no": ".example"}, None),
        ("https://es.example:9243", {"https": "http://p", "no": "example"}, None),
        ("https://es.example:9243", {"https": "http://p", "no": "es.example"}, None),
        ("https://es.example:9243", {"https": "http://p", "no": "other, *"}, None),
        ("https://es.example:9243", {"https": "http://p", "no": "es.example:9200"}, "http://p"),
        ("https://es.example:9243", {"https": "http://p", "no": "es.example:9243"}, None),
        ("http://[::1]:9200", {"http": "http://p", "no": "::1"}, None),
    ],
)
def test_the_proxy_is_chosen_as_curl_and_httpx_choose_it(
    url: str, proxies: dict[str, str], expected: str | None
) -> None:
    assert environment_proxy(url, proxies) == expected


def test_a_proxy_password_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://user:canary-proxy-pw@127.0.0.1:9")
    es = Elasticsearch(Connection(urls=("https://es.example:9243",)))
    assert es.redact("http://user:canary-proxy-pw@127.0.0.1:9") == "http://user:(sensitive)@127.0.0.1:9"


# -- what cannot be reached fails at once ----------------------------------------------------------


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("http://127.0.0.1:{closed}", "cannot connect to http://127.0.0.1:"),
        ("http://no-such-host.invalid:9200", "the host name no-such-host.invalid does not resolve"),
    ],
)
def test_an_unreachable_cluster_fails_at_once_with_one_line(tmp_path: Path, url: str, named: str) -> None:
    run: Run = Tool(url.format(closed=closed_port()), tmp_path)("status")
    assert_one_error_line(run, named)  # no retry lines before it


async def test_a_cluster_that_answered_once_is_retried_when_it_drops() -> None:
    answered: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if answered:
            raise httpx.ConnectError("refused", request=request)
        answered.append(request.url.path)
        return httpx.Response(200, json={})

    async def sleep(_: float) -> None:
        pass

    es = Elasticsearch(
        Connection(), transport=httpx.MockTransport(handle), retry=RetryPolicy(attempts=3), sleep=sleep
    )
    async with es:
        await es.info()
        with pytest.raises(TransportError) as caught:
            await es.info()
    assert not caught.value.permanent
    assert es.requests == 1 + 3  # a node restarting: retried


# -- the echoing server of the credentials tests -------------------------------------------------


class Echoing:
    """An http server that records the Authorization header and answers 401."""

    def __init__(self) -> None:
        self.authorization: str | None = None

    @contextlib.contextmanager
    def serving(self) -> Iterator[str]:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.authorization = self.headers.get("Authorization")
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()


# -- the docs say every way to connect -------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[1] / "docs" / "connecting.md"
CONNECTION = ("url", "cloud_id", "api_key", "username", "password", "bearer_token", "ca_cert", "ca_data",
              "ca_fingerprint", "client_cert", "client_key", "insecure", "request_timeout", "header")  # fmt: skip


def test_the_connection_options_all_have_their_docs_row() -> None:
    """docs/connecting.md names each connection option of the command line and all its variables."""
    from reconciler.options import COMMON

    table = DOCS.read_text().split("## Connection options")[1].split("\n## ")[0]
    rows = [line for line in table.splitlines() if line.startswith("| `--")]
    assert set(CONNECTION) <= set(COMMON)
    for name in CONNECTION:
        flag = COMMON[name].flags[0] if COMMON[name].flags else "--" + name.replace("_", "-")
        row = next((r for r in rows if re.search(rf"`{flag}[ `]", r.split(" | ")[0])), None)
        assert row is not None, f"{flag} has no row"
        envvar = COMMON[name].extra.get("envvar") or []
        for variable in [envvar] if isinstance(envvar, str) else envvar:
            assert f"`{variable}`" in row, f"{flag}: {variable} is not named"


def test_the_cloud_id_the_docs_show_decodes_as_they_say() -> None:
    shown = DOCS.read_text().split("export ELASTIC_CLOUD_ID='")[1].split("'")[0]
    assert cloud_url(shown) == client_url(shown) == "https://abc123.eu-west-1.aws.found.io:443"
