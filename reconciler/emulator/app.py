"""The emulator's HTTP face: an ASGI application that speaks like Elasticsearch.

It routes as Elasticsearch's RestController does (no handler: 400; wrong method: 405 with
`Allow`), rejects unknown query parameters with Elasticsearch's message, checks the
`compatible-with` media types, answers every response with `X-elastic-product: Elasticsearch`,
and wraps errors in the Elasticsearch envelope. Around the handlers sit the request log,
authentication, latency and fault injection. `/_emulator/...` is the emulator's own control API
(counters, faults, clock, deployments); it is never faulted, delayed or counted.

Use it in-process through `httpx.ASGITransport(app=Emulator(config))`, or on a socket with
`reconciler emulator` (uvicorn).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from reconciler.emulator import documents, inference, ml
from reconciler.emulator.cluster import Cluster, EmulatorConfig
from reconciler.emulator.errors import EsError, bad_request
from reconciler.emulator.faults import Faults, LostResponseError, RequestLog

Json = Any
GLOBAL_PARAMS = frozenset({"pretty", "human", "error_trace", "filter_path", "format"})
BUILD = {
    "8.19": ("9.12.2", "7.17.0", "7.0.0"),
    "9.0": ("10.1.0", "8.18.0", "8.0.0"),
    "9.1": ("10.2.2", "8.19.0", "8.0.0"),
    "9.2": ("10.3.1", "8.19.0", "8.0.0"),
    "9.3": ("10.3.2", "8.19.0", "8.0.0"),
    "9.4": ("10.4.0", "8.19.0", "8.0.0"),
    "9.5": ("10.5.0", "8.19.0", "8.0.0"),
}
_COMPAT = re.compile(
    r"application/vnd\.elasticsearch\+[a-z-]+\s*;\s*compatible-with\s*=\s*(\d+)", re.IGNORECASE
)


@dataclass
class Call:
    """What a handler receives: the request, its path parameters and the parsed query."""

    request: Request
    path: Mapping[str, str]
    params: Mapping[str, str]
    body: bytes

    def flag(self, name: str) -> bool:
        value = self.params.get(name)
        if value is None:
            return False
        if value in ("", "true"):
            return True
        if value == "false":
            return False
        raise bad_request(
            "illegal_argument_exception",
            f"Failed to parse value [{value}] as only [true] or [false] are allowed.",
        )

    def integer(self, name: str, default: int | None = None) -> int | None:
        value = self.params.get(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise bad_request(
                "illegal_argument_exception", f"Failed to parse int parameter [{name}] with value [{value}]"
            ) from None

    def json(self) -> Json:
        if not self.body.strip():
            raise bad_request("parse_exception", "request body is required")
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise EsError(
                400,
                "x_content_parse_exception",
                f"[1:1] {error}",
                caused_by=("json_parse_exception", str(error)),
            ) from None


@dataclass
class Reply:
    body: Json
    status: int = 200
    headers: Mapping[str, str] | None = None


Handler = Callable[[Call], Awaitable[Reply]]


@dataclass(frozen=True)
class Route:
    pattern: re.Pattern[str]
    handlers: Mapping[str, tuple[Handler, frozenset[str]]]


class Emulator:
    """An emulated Elasticsearch cluster behind an ASGI interface."""

    def __init__(self, config: EmulatorConfig | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config or EmulatorConfig()
        self.cluster = Cluster(self.config, clock)
        self.faults = Faults(
            latency_ms=self.config.latency_ms,
            fault_rate=self.config.fault_rate,
            lost_response_rate=self.config.lost_response_rate,
            retry_after=self.config.retry_after,
            seed=self.config.fault_seed,
        )
        self.requests = RequestLog()
        self.node_name = "emulator-0"
        self.routes = self._routes()

    # -- ASGI --------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        body = await request.body()
        status, payload, headers, lost = await self._respond(request, body)
        pretty = request.query_params.get("pretty", "true" if request.url.path == "/" else None)
        raw = b"" if payload is None else _encode(payload, pretty not in (None, "false"))
        head = [(b"content-type", headers.pop("content-type", "application/json").encode())]
        head += [(k.lower().encode(), str(v).encode()) for k, v in headers.items()]
        head.append((b"content-length", str(len(raw)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": head})
        if lost:
            raise LostResponseError("emulated lost response: the write was applied")
        await send({"type": "http.response.body", "body": b"" if request.method == "HEAD" else raw})

    async def _respond(self, request: Request, body: bytes) -> tuple[int, Json, dict[str, str], bool]:
        path = request.url.path
        method = request.method
        if path.startswith("/_emulator/") or path == "/_emulator":
            reply = await self._control(request, body)
            return reply.status, reply.body, dict(reply.headers or {}), False
        self.requests.record(method, path)
        headers: dict[str, str] = {"X-elastic-product": "Elasticsearch"}
        try:
            compat = self._negotiate(request, body)
            if compat is not None:
                headers["content-type"] = f"application/vnd.elasticsearch+json;compatible-with={compat}"
            self._authenticate(request)
            if self.faults.latency_ms > 0:
                await asyncio.sleep(self.faults.latency_ms / 1000)
            rejection = self.faults.rejection()
            if rejection is not None:
                raise rejection
            lost = self.faults.lose_response(method)
            reply = await self._dispatch(request, body)
            headers.update(reply.headers or {})
            return reply.status, reply.body, headers, lost
        except EsError as error:
            headers.update(error.headers)
            if error.status in (401, 403):
                headers.pop("X-elastic-product", None)
            return error.status, error.body(), headers, False
        except _FlatResponse as flat:
            headers.update(flat.headers)
            return flat.status, flat.body, headers, False

    def _negotiate(self, request: Request, body: bytes) -> int | None:
        """REST compatibility (RestCompatibleVersionHelper): the major a request asked for."""
        current = self.cluster.version.major
        accept = request.headers.get("accept")
        content_type = request.headers.get("content-type")
        accept_version = _compat_version(accept)
        content_version = _compat_version(content_type)
        has_content = bool(body)
        try:
            asked = accept_version or current
            if asked > current or asked < current - 1:
                raise _compat_error(
                    f"Accept version must be either version {current} or {current - 1}, but found {asked}. Accept={accept}"
                )
            if has_content:
                given = content_version or current
                if given > current or given < current - 1:
                    raise _compat_error(
                        f"Content-Type version must be either version {current} or {current - 1}, but found {given}. "
                        f"Content-Type={content_type}"
                    )
                if given != asked:
                    raise _compat_error(
                        "A compatible version is required on both Content-Type and Accept headers if either one has "
                        "requested a compatible version and the compatible versions must match. "
                        f"Accept={accept}, Content-Type={content_type}"
                    )
                if (accept_version is None) != (content_version is None):
                    raise _compat_error(
                        "A compatible version is required on both Content-Type and Accept headers if either one has "
                        f"requested a compatible version. Accept={accept}, Content-Type={content_type}"
                    )
        except _CompatError as failure:
            raise EsError(
                400,
                "media_type_header_exception",
                "Invalid media-type value on headers [Accept, Content-Type]",
                caused_by=("status_exception", failure.reason),
            ) from None
        if has_content and content_type is not None:
            media = content_type.split(";")[0].strip().lower()
            if media in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
                raise _FlatResponse(
                    406, {"error": f"Content-Type header [{content_type}] is not supported", "status": 406}
                )
        return accept_version

    def _authenticate(self, request: Request) -> None:
        expected = self.config.api_key
        if expected is None:
            return
        given = request.headers.get("authorization")
        challenge = {"WWW-Authenticate": 'ApiKey, Basic realm="security", charset="UTF-8"'}
        if given is None:
            raise EsError(
                401,
                "security_exception",
                f"missing authentication credentials for REST request [{request.url.path}]",
                metadata={
                    "header": {"WWW-Authenticate": ["ApiKey", 'Basic realm="security", charset="UTF-8"']}
                },
                headers=challenge,
            )
        if given != f"ApiKey {expected}":
            raise EsError(
                401,
                "security_exception",
                "unable to authenticate with provided credentials and anonymous access is not allowed for this request",
                metadata={
                    "header": {"WWW-Authenticate": ["ApiKey", 'Basic realm="security", charset="UTF-8"']}
                },
                headers=challenge,
            )

    async def _dispatch(self, request: Request, body: bytes) -> Reply:
        path = request.url.path
        method = request.method
        allowed: list[str] = []
        for route in self.routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            if method not in route.handlers:
                allowed = allowed or sorted(route.handlers)
                continue
            handler, accepted = route.handlers[method]
            params = dict(request.query_params)
            _check_params(path, params, accepted)
            return await handler(Call(request, match.groupdict(), params, body))
        uri = path + (f"?{request.url.query}" if request.url.query else "")
        if allowed:
            raise _FlatResponse(
                405,
                {
                    "error": f"Incorrect HTTP method for uri [{uri}] and method [{method}], allowed: [{', '.join(allowed)}]",
                    "status": 405,
                },
                {"Allow": ",".join(allowed)},
            )
        raise _FlatResponse(400, {"error": f"no handler found for uri [{uri}] and method [{method}]"})

    # -- routes ------------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        version = self.cluster.version
        put_params = {"timeout"} if (version.major == 8 or version.at_least(9, 1)) else set()
        update_params = {"timeout"} if version.at_least(9, 5) else set()
        delete_params = {"force", "dry_run"}
        doc_write = {
            "op_type",
            "if_seq_no",
            "if_primary_term",
            "refresh",
            "routing",
            "timeout",
            "version",
            "version_type",
            "pipeline",
            "require_alias",
            "wait_for_active_shards",
            "require_data_stream",
        }
        doc_read = {
            "_source",
            "_source_excludes",
            "_source_includes",
            "preference",
            "realtime",
            "refresh",
            "routing",
            "stored_fields",
            "version",
            "version_type",
        }
        doc_delete = {
            "if_seq_no",
            "if_primary_term",
            "refresh",
            "routing",
            "timeout",
            "version",
            "version_type",
            "wait_for_active_shards",
        }
        index_params = {
            "master_timeout",
            "timeout",
            "wait_for_active_shards",
            "ignore_unavailable",
            "allow_no_indices",
            "expand_wildcards",
            "include_defaults",
            "local",
            "flat_settings",
        }
        seg = r"[^/]+"

        def route(pattern: str, **handlers: tuple[Handler, set[str]]) -> Route:
            regex = re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m[1]}>{seg})", pattern)
            return Route(re.compile(regex), {m: (h, frozenset(p)) for m, (h, p) in handlers.items()})

        return [
            route("/", GET=(self._root, set()), HEAD=(self._root, set())),
            route("/_inference", GET=(self._get_inference, set())),
            route("/_inference/{first}/_update", PUT=(self._update_inference, update_params)),
            route("/_inference/{first}/_stream", POST=(self._perform_inference, {"timeout"})),
            route(
                "/_inference/{first}",
                GET=(self._get_inference, set()),
                PUT=(self._put_inference, put_params),
                DELETE=(self._delete_inference, delete_params),
                POST=(self._perform_inference, {"timeout"}),
            ),
            route("/_inference/{first}/{second}/_update", PUT=(self._update_inference, update_params)),
            route("/_inference/{first}/{second}/_stream", POST=(self._perform_inference, {"timeout"})),
            route(
                "/_inference/{first}/{second}",
                GET=(self._get_inference, set()),
                PUT=(self._put_inference, put_params),
                DELETE=(self._delete_inference, delete_params),
                POST=(self._perform_inference, {"timeout"}),
            ),
            route("/_ml/trained_models/_stats", GET=(self._model_stats, {"allow_no_match", "from", "size"})),
            route(
                "/_ml/trained_models/{ids}/_stats",
                GET=(self._model_stats, {"allow_no_match", "from", "size"}),
            ),
            route("/_ingest/pipeline", GET=(self._get_pipeline, {"master_timeout", "summary"})),
            route(
                "/_ingest/pipeline/{id}",
                GET=(self._get_pipeline, {"master_timeout", "summary"}),
                PUT=(self._put_pipeline, {"master_timeout", "timeout", "if_version"}),
                DELETE=(self._delete_pipeline, {"master_timeout", "timeout"}),
            ),
            route(
                "/{index}/_doc/{id}",
                GET=(self._get_doc, doc_read),
                PUT=(self._put_doc, doc_write),
                POST=(self._put_doc, doc_write),
                DELETE=(self._delete_doc, doc_delete),
            ),
            route(
                "/{index}/_create/{id}", PUT=(self._create_doc, doc_write), POST=(self._create_doc, doc_write)
            ),
            route(
                "/{index}/_refresh",
                POST=(self._refresh, {"ignore_unavailable", "allow_no_indices", "expand_wildcards"}),
                GET=(self._refresh, {"ignore_unavailable", "allow_no_indices", "expand_wildcards"}),
            ),
            route(
                "/{index}",
                GET=(self._get_index, index_params),
                HEAD=(self._head_index, index_params),
                PUT=(self._create_index, index_params),
                DELETE=(self._delete_index, index_params),
            ),
        ]

    # -- handlers ----------------------------------------------------------------------------

    async def _root(self, call: Call) -> Reply:
        version = self.cluster.version
        lucene, wire, index = BUILD[f"{version.major}.{version.minor}"]
        body = {
            "name": self.node_name,
            "cluster_name": self.config.cluster_name,
            "cluster_uuid": self.cluster.cluster_uuid,
            "version": {
                "number": str(version),
                "build_flavor": "default",
                "build_type": "docker",
                "build_hash": "0000000000000000000000000000000000000000",
                "build_date": "2026-01-01T00:00:00.000000000Z",
                "build_snapshot": False,
                "lucene_version": lucene,
                "minimum_wire_compatibility_version": wire,
                "minimum_index_compatibility_version": index,
            },
            "tagline": "You Know, for Search",
        }
        return Reply(body)

    async def _get_inference(self, call: Call) -> Reply:
        return Reply(inference.get_endpoints(self.cluster, call.path.get("first"), call.path.get("second")))

    async def _put_inference(self, call: Call) -> Reply:
        task_type, inference_id = _target(call)
        body, warnings = await inference.put_endpoint(
            self.cluster, task_type, inference_id, call.body, call.params.get("timeout", "30s")
        )
        headers = {
            "Warning": ", ".join(f'299 Elasticsearch-{self.cluster.version}-0000000 "{w}"' for w in warnings)
        }
        return Reply(body, headers=headers if warnings else None)

    async def _delete_inference(self, call: Call) -> Reply:
        task_type, inference_id = _target(call)
        body = inference.delete_endpoint(
            self.cluster, task_type, inference_id, dry_run=call.flag("dry_run"), force=call.flag("force")
        )
        return Reply(body)

    async def _update_inference(self, call: Call) -> Reply:
        task_type, inference_id = _target(call)
        return Reply(await inference.update_endpoint(self.cluster, task_type, inference_id, call.body))

    async def _perform_inference(self, call: Call) -> Reply:
        raise EsError(
            400, "status_exception", "The emulator stores inference endpoints; it does not perform inference"
        )

    async def _model_stats(self, call: Call) -> Reply:
        cluster = self.cluster
        body = ml.trained_model_stats(
            cluster.ml,
            sorted(cluster.models),
            list(cluster.deployments.values()),
            inference.pipeline_counts(cluster),
            call.path.get("ids"),
            allow_no_match=call.flag("allow_no_match") if "allow_no_match" in call.params else True,
            start=call.integer("from", 0) or 0,
            size=call.integer("size", 100) or 0,
            now=cluster.now(),
            version=str(cluster.version),
        )
        return Reply(body)

    async def _get_pipeline(self, call: Call) -> Reply:
        status, body = documents.get_pipelines(self.cluster, call.path.get("id"))
        return Reply(body, status)

    async def _put_pipeline(self, call: Call) -> Reply:
        body = documents.require_object(call.json())
        return Reply(documents.put_pipeline(self.cluster, call.path["id"], body))

    async def _delete_pipeline(self, call: Call) -> Reply:
        return Reply(documents.delete_pipeline(self.cluster, call.path["id"]))

    async def _put_doc(self, call: Call) -> Reply:
        op_type = call.params.get("op_type", "index")
        if op_type not in ("index", "create"):
            raise bad_request(
                "illegal_argument_exception", f"opType must be 'create' or 'index', found: [{op_type}]"
            )
        return await self._write_doc(call, create=op_type == "create")

    async def _create_doc(self, call: Call) -> Reply:
        return await self._write_doc(call, create=True)

    async def _write_doc(self, call: Call, *, create: bool) -> Reply:
        source = documents.require_object(call.json())
        status, body = documents.index_document(
            self.cluster,
            call.path["index"],
            call.path["id"],
            source,
            create=create,
            if_seq_no=call.integer("if_seq_no"),
            if_primary_term=call.integer("if_primary_term"),
            refresh=_refresh(call),
        )
        return Reply(body, status)

    async def _get_doc(self, call: Call) -> Reply:
        status, body = documents.get_document(self.cluster, call.path["index"], call.path["id"])
        return Reply(body, status)

    async def _delete_doc(self, call: Call) -> Reply:
        status, body = documents.delete_document(
            self.cluster,
            call.path["index"],
            call.path["id"],
            if_seq_no=call.integer("if_seq_no"),
            if_primary_term=call.integer("if_primary_term"),
            refresh=_refresh(call),
        )
        return Reply(body, status)

    async def _refresh(self, call: Call) -> Reply:
        documents.get_index(self.cluster, call.path["index"])
        return Reply({"_shards": {"total": 2, "successful": 1, "failed": 0}})

    async def _get_index(self, call: Call) -> Reply:
        return Reply(documents.get_index(self.cluster, call.path["index"]))

    async def _head_index(self, call: Call) -> Reply:
        return Reply(None, 200 if call.path["index"] in self.cluster.indices else 404)

    async def _create_index(self, call: Call) -> Reply:
        body = documents.require_object(call.json()) if call.body.strip() else {}
        return Reply(documents.create_index(self.cluster, call.path["index"], body))

    async def _delete_index(self, call: Call) -> Reply:
        return Reply(documents.delete_index(self.cluster, call.path["index"]))

    # -- control API -------------------------------------------------------------------------

    async def _control(self, request: Request, body: bytes) -> Reply:
        """The emulator's own API: GET/DELETE requests, PUT faults and ml, clock and deployments."""
        path = request.url.path.removeprefix("/_emulator")
        method = request.method
        data = json.loads(body) if body.strip() else {}
        cluster = self.cluster
        if path == "/requests" and method == "GET":
            return Reply(self.requests.to_json())
        if path == "/requests" and method == "DELETE":
            self.requests.reset()
            return Reply({"acknowledged": True})
        if path == "/faults" and method == "PUT":
            self.faults.configure(data)
            return Reply({"acknowledged": True})
        if path == "/ml" and method == "PUT":
            if "capacity" in data:
                cluster.ml.capacity = None if data["capacity"] is None else int(data["capacity"])
            if "deploy_seconds" in data:
                cluster.ml.deploy_seconds = float(data["deploy_seconds"])
            return Reply({"acknowledged": True})
        if path == "/clock/_advance" and method == "POST":
            cluster.advance(float(data.get("seconds", 0)))
            cluster.save()
            return Reply({"acknowledged": True, "now": cluster.now()})
        match = re.fullmatch(r"/deployments/([^/]+)/_(fail|scale)", path)
        if match is not None and method == "POST":
            dep = cluster.deployments.get(match[1])
            if dep is None:
                return Reply({"error": f"no deployment [{match[1]}]"}, 404)
            now = cluster.now()
            if match[2] == "fail":
                dep.failure = str(data.get("reason", ml.failure_reason(dep)))
                dep.fail_at = now
            else:
                share = ml.shares(cluster.ml, list(cluster.deployments.values()), now).get(
                    dep.deployment_id, 0
                )
                ml.scale(cluster.ml, dep, share, int(data["allocations"]), now)
            cluster.save()
            return Reply({"acknowledged": True})
        match = re.fullmatch(r"/endpoints/([^/]+)/secrets", path)
        if match is not None and method == "GET":
            endpoint = cluster.endpoints.get(match[1])
            if endpoint is None:
                return Reply({"error": f"no endpoint [{match[1]}]"}, 404)
            return Reply(endpoint.secret_digests)
        return Reply({"error": f"unknown emulator control request [{method} {request.url.path}]"}, 404)


class _FlatResponse(Exception):  # noqa: N818 (a response to send, not an error)
    """A response whose body is not the error envelope (routing errors, 406)."""

    def __init__(self, status: int, body: Json, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


class _CompatError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _compat_error(reason: str) -> _CompatError:
    return _CompatError(reason)


def _compat_version(header: str | None) -> int | None:
    if header is None:
        return None
    match = _COMPAT.search(header)
    return int(match[1]) if match else None


def _target(call: Call) -> tuple[str | None, str]:
    """(task type or None, inference id) of /_inference/[{task_type}/]{inference_id}."""
    first, second = call.path["first"], call.path.get("second")
    return (first, second) if second is not None else (None, first)


def _refresh(call: Call) -> bool:
    value = call.params.get("refresh")
    if value is None or value == "false":
        return False
    if value in ("", "true"):
        return True
    if value == "wait_for":
        return False
    raise bad_request("illegal_argument_exception", f"Unknown value for refresh: [{value}].")


def _check_params(path: str, params: Mapping[str, str], accepted: frozenset[str]) -> None:
    """Elasticsearch refuses query parameters a handler does not know (BaseRestHandler)."""
    unknown = sorted(p for p in params if p not in accepted and p not in GLOBAL_PARAMS)
    if not unknown:
        return
    known = sorted(accepted | {"error_trace"})
    parts = []
    for name in unknown:
        candidates = [c for c in known if _similarity(name, c) > 0.5]
        candidates.sort(key=lambda c: (-_similarity(name, c), c))
        hint = ""
        if candidates:
            listed = "[" + ", ".join(candidates) + "]"
            hint = f" -> did you mean {'any of ' if len(candidates) > 1 else ''}{listed}?"
        parts.append(f"[{name}]{hint}")
    noun = "parameters" if len(unknown) > 1 else "parameter"
    raise bad_request(
        "illegal_argument_exception", f"request [{path}] contains unrecognized {noun}: {', '.join(parts)}"
    )


def _similarity(a: str, b: str) -> float:
    """Lucene's LevenshteinDistance: 1 - edit distance / longest length."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    longest = max(len(a), len(b)) or 1
    return 1.0 - previous[-1] / longest


def _encode(payload: Json, pretty: bool) -> bytes:
    if pretty:
        return (json.dumps(payload, indent=2, separators=(",", " : ")) + "\n").encode()
    return json.dumps(payload, separators=(",", ":")).encode()
