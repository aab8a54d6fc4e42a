"""The one module that speaks HTTP to Elasticsearch: connection settings, auth, TLS, retries, errors.

Errors (all `ElasticsearchError`):

    ElasticsearchError            status, Elasticsearch error type and reason (cut short)
    ├── ApiError                  the server answered with an error status
    │   └── TransientApiError     429 / 502 / 503 / 504: retried before it is raised
    └── TransportError            the server could not be reached, or the connection broke

Retries, backoff with jitter and `Retry-After` live in `Elasticsearch.request` and nowhere else.
A request that may have reached the server (a write whose connection broke after sending) is not
retried: the caller settles it by reading back (`TransportError.maybe_applied`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx

from reconciler import __version__

DEFAULT_URL = "http://localhost:9200"
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

    def __init__(self, method: str, path: str, reason: str, *, maybe_applied: bool) -> None:
        super().__init__(method, path, None, None, reason)
        self.maybe_applied = maybe_applied


class RawJson(str):
    """A request body already encoded as JSON: sent as it is (the state's cached encoding)."""


@dataclass(frozen=True)
class Connection:
    """Where the cluster is and how to authenticate (DESIGN.md §4)."""

    urls: tuple[str, ...] = (DEFAULT_URL,)
    api_key: str | None = None
    username: str | None = None
    password: str | None = None
    bearer_token: str | None = None
    ca_cert: str | None = None
    insecure: bool = False
    timeout: float = 30.0

    def __post_init__(self) -> None:
        kinds = [
            k
            for k, v in (
                ("api key", self.api_key),
                ("basic", self.username),
                ("bearer token", self.bearer_token),
            )
            if v
        ]
        if len(kinds) > 1:
            raise ValueError(f"give one way to authenticate, not {' and '.join(kinds)}")
        if self.username is not None and self.password is None:
            raise ValueError("--username needs --password (or ELASTICSEARCH_PASSWORD)")
        if not self.urls:
            raise ValueError("no Elasticsearch URL")

    @classmethod
    def from_urls(cls, text: str | None, **options: Any) -> Connection:
        """From --url: comma-separated URLs. Credentials in a URL (`https://user:pw@host`) become
        basic auth, so they are sent as a header and the URLs kept, printed and logged hold none."""
        urls, users = [], set()
        for raw in (text or DEFAULT_URL).split(","):
            url = raw.strip().rstrip("/")
            if not url:
                continue
            parts = urlsplit(url)
            if parts.username is not None:
                users.add((unquote(parts.username), unquote(parts.password or "")))
                url = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
            urls.append(url)
        if len(users) > 1:
            raise ValueError("the URLs name different users: give one --username and --password")
        if users:
            if options.get("username") or options.get("password"):
                raise ValueError("give the user in the URL or as --username/--password, not both")
            options["username"], options["password"] = users.pop()
        return cls(urls=tuple(urls), **options)

    def __repr__(self) -> str:
        # Credentials never show: this object reaches logs and exceptions.
        return f"Connection(urls={self.urls!r}, auth={self.auth_kind()}, insecure={self.insecure})"

    def auth_kind(self) -> str:
        if self.api_key:
            return "api-key"
        if self.username:
            return "basic"
        if self.bearer_token:
            return "bearer"
        return "none"

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": f"reconciler/{__version__}"}
        if self.api_key:
            headers["Authorization"] = f"ApiKey {self.api_key}"
        elif self.bearer_token:
            headers["Authorization"] = f"Bearer {self.bearer_token}"
        elif self.username:
            token = base64.b64encode(f"{self.username}:{self.password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        return headers

    def verify(self) -> ssl.SSLContext | bool:
        if self.insecure:
            return False
        if self.ca_cert:
            return ssl.create_default_context(cafile=self.ca_cert)
        return True


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
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._on_retry = on_retry
        self._url_index = 0
        self.requests = 0  # HTTP requests sent, retries included (for logs and benchmarks)
        self._headers = connection.headers()
        self._timeout = httpx.Timeout(connection.timeout).as_dict()
        # Requests go straight to transports: the client layer (redirects, cookies, auth flows)
        # costs a third of each request and the tool needs none of it. And httpcore's pool checks
        # every connection whenever a request starts or ends, so several small pools keep that
        # cost flat as parallelism grows.
        per_pool = 4
        if transport is not None:
            self._pools: list[httpx.AsyncBaseTransport] = [transport]
        else:
            verify = _tls(connection)
            self._pools = [
                httpx.AsyncHTTPTransport(
                    verify=verify,
                    limits=httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool),
                )
                for _ in range(max(1, -(-max_connections // per_pool)))
            ]
        self._next_pool = 0

    @property
    def url(self) -> str:
        return self.connection.urls[self._url_index]

    async def close(self) -> None:
        for pool in self._pools:
            await pool.aclose()

    async def _exchange(
        self, method: str, url: str, params: Mapping[str, str] | None, body: Any
    ) -> httpx.Response:
        text = body if body is None or isinstance(body, RawJson) else json.dumps(body)
        content = text.encode() if text is not None else b""
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = httpx.Request(
            method,
            url,
            params=params,
            headers=headers,
            content=content,
            extensions={"timeout": self._timeout},
        )
        pool = self._pools[self._next_pool]
        self._next_pool = (self._next_pool + 1) % len(self._pools)
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
                retryable = isinstance(error, TransientApiError) or not error.maybe_applied
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
            try:
                response = await self._exchange(method, self.url + path, params, body)
            except httpx.ConnectError as error:
                # Never reached the server: try the next URL (ELASTICSEARCH_ENDPOINTS).
                last = TransportError(
                    method, path, f"cannot connect to {self.url}: {error}", maybe_applied=False
                )
                self._url_index = (self._url_index + 1) % len(self.connection.urls)
                continue
            except httpx.TimeoutException as error:
                raise TransportError(
                    method, path, f"timed out: {type(error).__name__}", maybe_applied=not idempotent
                ) from None
            except httpx.TransportError as error:
                raise TransportError(
                    method, path, f"connection broke: {error}", maybe_applied=not idempotent
                ) from None
            return _answer(method, path, response, ok)
        assert last is not None
        raise last

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
            raise _api_error("PUT", f"/{index}", response.status, response.body)


def _tls(connection: Connection) -> ssl.SSLContext | bool:
    """One TLS context for all the client's pools: each transport would otherwise load the CA
    bundle again (about 40 ms apiece), and for plain http URLs there is nothing to verify."""
    verify = connection.verify()
    if verify is not True:
        return verify
    if not any(url.startswith("https:") for url in connection.urls):
        return False
    return httpx.create_ssl_context()


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


def _api_error(method: str, path: str, status: int, body: Any, retry_after: float | None = None) -> ApiError:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        es_type, reason = error.get("type"), str(error.get("reason", ""))
    else:
        es_type, reason = None, str(error if error is not None else body)[:REASON_LIMIT]
    if status in TRANSIENT_STATUSES and not (status == 429 and es_type == "status_exception"):
        # A 429 status_exception is a refusal (no ML capacity), not back-pressure.
        return TransientApiError(method, path, status, es_type, reason, retry_after=retry_after)
    return ApiError(method, path, status, es_type, reason)


def _answer(method: str, path: str, response: httpx.Response, ok: Sequence[int]) -> Response:
    try:
        body = response.json() if response.content else None
    except ValueError:
        body = response.text
    if response.status_code < 300 or response.status_code in ok:
        return Response(response.status_code, body)
    retry_after = _seconds(response.headers.get("retry-after"))
    raise _api_error(method, path, response.status_code, body, retry_after)


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
