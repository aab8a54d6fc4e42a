"""The one module that speaks HTTP to Elasticsearch: connection settings, auth, TLS, retries, errors.

Errors (all `ElasticsearchError`):

    ElasticsearchError            status, Elasticsearch error type and reason (cut short)
    ├── ApiError                  the server answered with an error status
    │   └── TransientApiError     429 / 502 / 503 / 504: retried before it is raised
    └── TransportError            the server could not be reached, or the connection broke

Server text is untrusted for display (DESIGN.md §9): every error message is built by the client,
with each secret value the run knows (the connection's credentials, the secrets it was told about or
sent) replaced by `(sensitive)`, and the server's reason cut short after that.

Retries, backoff with jitter and `Retry-After` live in `Elasticsearch.request` and nowhere else.
A request that may have reached the server (a write whose connection broke after sending) is not
retried: the caller settles it by reading back (`TransportError.maybe_applied`).
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import ssl
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from reconciler.connection import (
    DEFAULT_URL,
    Connection,
    Redactor,
    environment_proxy,
    proxy_secrets,
)
from reconciler.sensitive import Secret

__all__ = [
    "DEFAULT_URL", "REASON_LIMIT", "TRANSIENT_STATUSES", "ApiError", "Connection", "Elasticsearch",
    "ElasticsearchError", "RawJson", "Redactor", "Response", "RetryPolicy", "TransientApiError", "TransportError",
]  # fmt: skip

REASON_LIMIT = 300
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})


class ElasticsearchError(Exception):
    """A failed call: the method and path, and what Elasticsearch said (reason cut short)."""

    def __init__(self, method: str, path: str, status: int | None, es_type: str | None, reason: str) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.es_type = es_type
        self.reason = reason if len(reason) <= REASON_LIMIT else reason[:REASON_LIMIT] + "…"
        super().__init__(self.describe())

    def describe(self) -> str:
        status = f"{self.status} " if self.status is not None else ""
        kind = f"{self.es_type}: " if self.es_type else ""
        return f"{self.method} {self.path}: {status}{kind}{self.reason}"


class ApiError(ElasticsearchError):
    """The server answered with an error status."""


class TransientApiError(ApiError):
    """429, 502, 503 or 504: the request was not applied and may be sent again."""

    def __init__(self, *args: Any, retry_after: float | None = None) -> None:
        super().__init__(*args)
        self.retry_after = retry_after


class TransportError(ElasticsearchError):
    """No answer: unreachable, timed out, or the connection broke."""

    def __init__(
        self, method: str, path: str, reason: str, *, maybe_applied: bool, permanent: bool = False
    ) -> None:
        super().__init__(method, path, None, None, reason)
        self.maybe_applied = maybe_applied
        self.permanent = permanent  # sending again cannot help (TLS refused): not retried


class RawJson(str):
    """A request body already encoded as JSON: sent as it is (the state's cached encoding)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, honouring Retry-After, up to `attempts` tries."""

    attempts: int = 8
    base: float = 0.1
    cap: float = 8.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        backoff = self.rng.uniform(0, min(self.cap, self.base * 2**attempt))
        return max(backoff, min(retry_after, self.cap * 4)) if retry_after is not None else backoff


@dataclass(frozen=True)
class Response:
    status: int
    body: Any


Sleep = Callable[[float], Awaitable[None]]


class Elasticsearch:
    """The calls the tool makes, over one pooled async connection."""

    def __init__(
        self,
        connection: Connection,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        on_retry: Callable[[ElasticsearchError, float], None] | None = None,
        max_connections: int = 16,
    ) -> None:
        self.connection = connection
        self.redact = Redactor(connection.secrets())
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._on_retry = on_retry
        self._url_index = 0
        self.requests = 0  # HTTP requests sent, retries included (for logs and benchmarks)
        self._headers = connection.headers()
        self._timeout = httpx.Timeout(connection.timeout).as_dict()
        self._answered = False  # until the cluster first answers, an unreachable one fails at once
        # Requests go straight to transports: the client layer (redirects, cookies, auth flows)
        # costs a third of each request and the tool needs none of it. And httpcore's pool checks
        # every connection whenever a request starts or ends, so several small pools keep that
        # cost flat as parallelism grows. Pools are by proxy (HTTPS_PROXY, HTTP_PROXY, NO_PROXY).
        self._pool_count = max(1, -(-max_connections // 4))
        found = urllib.request.getproxies_environment()
        self._proxies = {url: environment_proxy(url, found) for url in connection.urls}
        self.redact.add(proxy_secrets(self._proxies.values()))
        self._pools: dict[str | None, list[httpx.AsyncBaseTransport]] = {}
        if transport is not None:
            self._pools = {proxy: [transport] for proxy in self._proxies.values()}
        # With --ca-fingerprint the TLS context is known only once the pinned certificate is seen.
        self._verify = None if connection.ca_fingerprint else _tls(connection)
        self._opening = asyncio.Lock()
        if self._verify is not None:
            for proxy in set(self._proxies.values()):
                self._pools[proxy] = self._pools.get(proxy) or self._new_pools(proxy, self._verify)
        self._next_pool = 0

    def _new_pools(self, proxy: str | None, verify: ssl.SSLContext | bool) -> list[httpx.AsyncBaseTransport]:
        limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
        return [
            httpx.AsyncHTTPTransport(verify=verify, limits=limits, proxy=proxy)
            for _ in range(self._pool_count)
        ]

    async def _pool(self, base: str) -> httpx.AsyncBaseTransport:
        proxy = self._proxies[base]
        pools = self._pools.get(proxy)
        if pools is None:
            async with self._opening:
                if self._verify is None:
                    anchor = await pinned_certificate(self.connection, base, proxy)
                    self._verify = self.connection.pinned(anchor)
                pools = self._pools.get(proxy) or self._pools.setdefault(
                    proxy, self._new_pools(proxy, self._verify)
                )
        self._next_pool = (self._next_pool + 1) % len(pools)
        return pools[self._next_pool]

    def _wants_client_cert(self, base: str) -> bool:
        """An https server that drops the first connection has likely refused the absent client
        certificate (its alert lost as it closed): no retry will help."""
        return not self._answered and base.startswith("https:") and not self.connection.client_cert

    @property
    def url(self) -> str:
        return self.connection.urls[self._url_index]

    def redact_values(self, values: Iterable[str | Secret]) -> None:
        """Secret values the run's requests carry (resolved from the manifests): from now on they are
        replaced by `(sensitive)` in every error this client raises, and so in what retries log.
        Bodies may also hold `Secret`s themselves: those are revealed when sent, and redacted alike."""
        self.redact.add(value.reveal() if isinstance(value, Secret) else value for value in values)

    def _reveal(self, value: Any) -> str:
        """json.dumps' hook for what it cannot encode: a Secret in a body is sent, and redacted."""
        if isinstance(value, Secret):
            self.redact.add([value.reveal()])
            return value.reveal()
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    async def close(self) -> None:
        for pools in self._pools.values():
            for pool in pools:
                await pool.aclose()

    async def _exchange(
        self, method: str, base: str, path: str, params: Mapping[str, str] | None, body: Any
    ) -> httpx.Response:
        text = body if body is None or isinstance(body, RawJson) else json.dumps(body, default=self._reveal)
        content = text.encode() if text is not None else b""
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = httpx.Request(
            method,
            base + path,
            params=params,
            headers=headers,
            content=content,
            extensions={"timeout": self._timeout},
        )
        pool = await self._pool(base)
        response = await pool.handle_async_request(request)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    async def __aenter__(self) -> Elasticsearch:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    # -- the one request function --------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        ok: Sequence[int] = (),
        idempotent: bool | None = None,
    ) -> Response:
        """Send a request, retrying transient failures; statuses in `ok` are answers, not errors."""
        idempotent = method in ("GET", "HEAD") if idempotent is None else idempotent
        attempt = 0
        while True:
            try:
                return await self._send(method, path, params, body, ok, idempotent)
            except (TransientApiError, TransportError) as error:
                retry_after = error.retry_after if isinstance(error, TransientApiError) else None
                retryable = isinstance(error, TransientApiError) or not (
                    error.maybe_applied or error.permanent
                )
                attempt += 1
                if not retryable or attempt >= self.retry.attempts:
                    raise
                delay = self.retry.delay(attempt, retry_after)
                if self._on_retry is not None:
                    self._on_retry(error, delay)
                await self._sleep(delay)

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: Any,
        ok: Sequence[int],
        idempotent: bool,
    ) -> Response:
        last: TransportError | None = None
        for _ in self.connection.urls:
            self.requests += 1
            base = self.connection.urls[at := self._url_index]
            try:
                response = await self._exchange(method, base, path, params, body)
            except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                if _tls_refused(error):  # the same certificate on the next try: no retry will help
                    raise self._broken(method, path, f"TLS failed with {base}: {error}") from None
                # Never reached the server: try the next URL (ELASTICSEARCH_ENDPOINTS). Before the
                # cluster ever answered, it is a wrong address (or name) rather than a blip: no retry.
                last = self._broken(
                    method, path, _unreachable(base, error), None if not self._answered else False
                )
                if self._url_index == at:  # requests in flight together move on by one URL, not one each
                    self._url_index = (at + 1) % len(self.connection.urls)
                continue
            except httpx.UnsupportedProtocol as error:
                raise self._broken(method, path, f"{base}: {error}") from None
            except httpx.ProxyError as error:
                raise self._broken(method, path, f"the proxy refused {base}: {error}") from None
            except httpx.TimeoutException as error:
                reason = f"timed out: {type(error).__name__} (--request-timeout {self.connection.timeout:g}s)"
                raise self._broken(method, path, reason, not idempotent) from None
            except (httpx.TransportError, ssl.SSLError) as error:  # anyio lets a TLS alert through as it is
                if _tls_refused(error) or self._wants_client_cert(base):
                    reason = self.redact(_broke(base, error, self._wants_client_cert(base)))
                    raise TransportError(
                        method, path, reason, maybe_applied=not idempotent, permanent=True
                    ) from None
                raise self._broken(method, path, f"connection broke: {error}", not idempotent) from None
            self._answered = True
            return _answer(method, path, response, ok, self.redact)
        assert last is not None
        raise last

    def _broken(
        self, method: str, path: str, reason: str, maybe_applied: bool | None = None
    ) -> TransportError:
        """No answer; maybe_applied None: not worth retrying (TLS refused, not an http(s) URL)."""
        return TransportError(
            method,
            self.redact(path),
            self.redact(reason),
            maybe_applied=bool(maybe_applied),
            permanent=maybe_applied is None,
        )

    # -- Elasticsearch calls -------------------------------------------------------------------

    async def info(self) -> dict[str, Any]:
        body: dict[str, Any] = (await self.request("GET", "/")).body
        return body

    async def endpoints(self) -> list[dict[str, Any]]:
        """Every endpoint, preconfigured ones included: one request however many there are."""
        body = (await self.request("GET", "/_inference/_all")).body
        endpoints: list[dict[str, Any]] = body.get("endpoints", body.get("models", []))
        return endpoints

    async def endpoint(self, inference_id: str) -> dict[str, Any] | None:
        response = await self.request("GET", f"/_inference/{_id(inference_id)}", ok=(404,))
        if response.status == 404:
            return None
        found: list[dict[str, Any]] = response.body.get("endpoints", [])
        return found[0] if found else None

    async def deployment_stats(self, deployment_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """deployment_stats of each deployment id found (absent ones are left out), in one request."""
        asked = set(deployment_ids)
        wanted = sorted(asked)
        if not wanted:
            return {}
        # Long id lists ask for everything instead: a URL has limits, the stats API has `size`.
        many = len(wanted) > 100
        path = (
            "/_ml/trained_models/_stats"
            if many
            else f"/_ml/trained_models/{','.join(map(_id, wanted))}/_stats"
        )
        params = {"size": "10000"} if many else None
        response = await self.request("GET", path, params=params, ok=(404,))
        if response.status == 404:
            missing = _missing_ids(response.body)
            rest = [i for i in wanted if i not in missing]
            if not rest or not missing:
                return {}
            response = await self.request(
                "GET", f"/_ml/trained_models/{','.join(map(_id, rest))}/_stats", ok=(404,)
            )
            if response.status == 404:
                return {}
        found: dict[str, dict[str, Any]] = {}
        for entry in response.body.get("trained_model_stats", []):
            stats = entry.get("deployment_stats")
            if stats is not None and stats.get("deployment_id") in asked:
                found[stats["deployment_id"]] = stats
        return found

    async def references(self, inference_id: str, task_type: str) -> dict[str, list[str]]:
        """Pipelines and indexes that use the endpoint (DELETE ?dry_run=true changes nothing)."""
        response = await self.request(
            "DELETE",
            f"/_inference/{task_type}/{_id(inference_id)}",
            params={"dry_run": "true"},
            ok=(404,),
            idempotent=True,
        )
        if response.status == 404:
            return {"pipelines": [], "indexes": []}
        return {
            "pipelines": list(response.body.get("pipelines", [])),
            "indexes": list(response.body.get("indexes", [])),
        }

    async def put_endpoint(
        self, task_type: str, inference_id: str, body: Mapping[str, Any], wait_for: str | None = None
    ) -> Response:
        params = {"timeout": wait_for} if wait_for else None
        return await self.request(
            "PUT", f"/_inference/{task_type}/{_id(inference_id)}", params=params, body=dict(body), ok=(408,)
        )

    async def update_endpoint(self, task_type: str, inference_id: str, body: Mapping[str, Any]) -> Response:
        return await self.request(
            "PUT", f"/_inference/{task_type}/{_id(inference_id)}/_update", body=dict(body)
        )

    async def delete_endpoint(self, task_type: str, inference_id: str, *, force: bool = False) -> Response:
        params = {"force": "true"} if force else None
        return await self.request(
            "DELETE",
            f"/_inference/{task_type}/{_id(inference_id)}",
            params=params,
            ok=(404,),
            idempotent=True,
        )

    # -- documents (the cluster state backend) -------------------------------------------------

    async def get_document(self, index: str, doc_id: str) -> tuple[dict[str, Any], int, int] | None:
        """(source, seq_no, primary_term), or None when the document or the index is missing."""
        response = await self.request("GET", f"/{index}/_doc/{_id(doc_id)}", ok=(404,))
        if response.status == 404 or not response.body.get("found"):
            return None
        body = response.body
        return body["_source"], body["_seq_no"], body["_primary_term"]

    async def put_document(
        self,
        index: str,
        doc_id: str,
        source: Mapping[str, Any] | RawJson,
        *,
        expect: tuple[int, int] | None,
        create: bool = False,
    ) -> tuple[int, int] | None:
        """Write with optimistic concurrency; returns the new (seq_no, primary_term), None on conflict."""
        params = {"refresh": "true"}
        if create:
            params["op_type"] = "create"
        elif expect is not None:
            params.update(if_seq_no=str(expect[0]), if_primary_term=str(expect[1]))
        response = await self.request(
            "PUT", f"/{index}/_doc/{_id(doc_id)}", params=params, body=source, ok=(409,)
        )
        if response.status == 409:
            return None
        return response.body["_seq_no"], response.body["_primary_term"]

    async def delete_document(
        self, index: str, doc_id: str, *, expect: tuple[int, int] | None = None
    ) -> bool:
        """Delete; False when it was not there or had moved on (conflict)."""
        params = {"refresh": "true"}
        if expect is not None:
            params.update(if_seq_no=str(expect[0]), if_primary_term=str(expect[1]))
        response = await self.request(
            "DELETE", f"/{index}/_doc/{_id(doc_id)}", params=params, ok=(404, 409), idempotent=True
        )
        return response.status == 200

    async def ensure_index(self, index: str, body: Mapping[str, Any]) -> None:
        response = await self.request("PUT", f"/{index}", body=dict(body), ok=(400,), idempotent=True)
        if response.status == 400 and _error_type(response.body) != "resource_already_exists_exception":
            raise _api_error("PUT", f"/{index}", response.status, response.body, redact=self.redact)


def _tls(connection: Connection) -> ssl.SSLContext | bool:
    """One TLS context for all the client's pools: each transport would otherwise load the CA
    bundle again (about 40 ms apiece), and for plain http URLs there is nothing to verify."""
    verify = connection.verify()
    if verify is not True:
        return verify
    if not any(url.startswith("https:") for url in connection.urls):
        return False
    return connection.load_client_cert(httpx.create_ssl_context())


async def pinned_certificate(connection: Connection, base: str, proxy: str | None) -> bytes:
    """The certificate among those the server at `base` sends (its own, or one of its chain's) whose
    SHA-256 is --ca-fingerprint: read in a handshake of its own, over which nothing is sent; the
    client then verifies every connection against it (`Connection.pinned`)."""
    context = connection.probe_context()  # which records the certificates as `chain_seen`
    probe = httpx.AsyncHTTPTransport(verify=context, proxy=proxy)
    try:
        timeout = {"timeout": httpx.Timeout(connection.timeout).as_dict()}
        await probe.handle_async_request(httpx.Request("GET", base + "/", extensions=timeout))
    except httpx.ConnectError:
        if not hasattr(context, "chain_seen"):
            raise  # unreachable, or TLS refused: the caller says which
    finally:
        await probe.aclose()
    try:
        return connection.pinned_among(getattr(context, "chain_seen", []))
    except ValueError as error:
        reason = f"TLS failed with {base}: {error}"
        raise TransportError("GET", "/", reason, maybe_applied=False, permanent=True) from None


def _id(value: str) -> str:
    return quote(value, safe="")


def _error_type(body: Any) -> str | None:
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("type") if isinstance(error, dict) else None


def _missing_ids(body: Any) -> set[str]:
    error = body.get("error") if isinstance(body, dict) else None
    reason = error.get("reason", "") if isinstance(error, dict) else ""
    prefix = "No known trained model with model_id ["
    if not reason.startswith(prefix):
        return set()
    return set(reason[len(prefix) :].rstrip("]").split(","))


def _api_error(
    method: str,
    path: str,
    status: int,
    body: Any,
    retry_after: float | None = None,
    *,
    redact: Callable[[str], str] = str,  # str(text) is the text: nothing to redact
) -> ApiError:
    """The error for an answer; its type and reason are the server's, with the run's secrets redacted
    before the reason is cut short (a cut must not leave part of a secret)."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        es_type, reason = error.get("type"), _text(error.get("reason", ""))
    else:
        es_type, reason = None, _text(error if error is not None else body)
    shown_type = redact(str(es_type))[:REASON_LIMIT] if es_type is not None else None
    args = (method, redact(path), status, shown_type, redact(reason))
    if status in TRANSIENT_STATUSES and not (status == 429 and es_type == "status_exception"):
        # A 429 status_exception is a refusal (no ML capacity), not back-pressure.
        return TransientApiError(*args, retry_after=retry_after)
    return ApiError(*args)


def _text(value: Any) -> str:
    """Server text as a string: JSON for structures, so that secrets show in the form redaction knows."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = error
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def _unreachable(base: str, error: BaseException) -> str:
    """Why a URL could not be reached, in words: its host name does not resolve, or no answer."""
    dns = next((cause for cause in _causes(error) if isinstance(cause, socket.gaierror)), None)
    if dns is not None:
        return f"cannot connect to {base}: the host name {httpx.URL(base).host} does not resolve (DNS: {dns.strerror})"
    if isinstance(error, httpx.ConnectTimeout):
        return f"cannot connect to {base}: no answer within the --request-timeout"
    return f"cannot connect to {base}: {error or type(error).__name__}"


def _broke(base: str, error: BaseException, wants_cert: bool) -> str:
    """Why a connection broke, when no retry can help: TLS refused, or a client certificate wanted."""
    root = next((cause for cause in _causes(error) if str(cause)), error)
    if _tls_refused(error):
        return f"TLS failed with {base}: {root}"
    hint = "; if it requires a client certificate, give --client-cert" if wants_cert else ""
    return f"{base} closed the connection before answering ({root or type(root).__name__}){hint}"


def _tls_refused(error: BaseException) -> bool:
    """A connection refused by TLS (certificate verification, or a server that does not speak TLS)."""
    tls = any(isinstance(cause, ssl.SSLError) for cause in _causes(error))
    return tls or "CERTIFICATE_VERIFY_FAILED" in str(error)


def _answer(
    method: str, path: str, response: httpx.Response, ok: Sequence[int], redact: Callable[[str], str]
) -> Response:
    try:
        body = response.json() if response.content else None
    except ValueError:
        body = response.text
    if response.status_code < 300 or response.status_code in ok:
        return Response(response.status_code, body)
    retry_after = _seconds(response.headers.get("retry-after"))
    raise _api_error(method, path, response.status_code, body, retry_after, redact=redact)


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
