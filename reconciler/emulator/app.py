"""The emulator's HTTP face: an ASGI application that speaks like Elasticsearch.

It routes as Elasticsearch's RestController does (no handler: 400; wrong method: 405 with
`Allow`), rejects unknown query parameters with Elasticsearch's message, checks the
`compatible-with` media types, answers every response with `X-elastic-product: Elasticsearch`,
and wraps errors in the Elasticsearch envelope. Around the handlers sit the request log,
authentication, latency and fault injection (the REST layer's own checks are in `rest`).
`/_emulator/...` is the emulator's own control API (`control`); it is never faulted, delayed or
counted.

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

from reconciler import catalog
from reconciler.emulator import documents, inference, ml, update
from reconciler.emulator.cluster import Cluster, EmulatorConfig
from reconciler.emulator.control import Control
from reconciler.emulator.errors import EsError, bad_request
from reconciler.emulator.faults import Faults, LostResponseError, RequestLog
from reconciler.emulator.rest import FlatResponse, authenticate, check_params, negotiate

Json = Any
BUILD = {
    "8.16": ("9.12.0", "7.17.0", "7.0.0"),
    "8.17": ("9.12.0", "7.17.0", "7.0.0"),
    "8.18": ("9.12.1", "7.17.0", "7.0.0"),
    "8.19": ("9.12.2", "7.17.0", "7.0.0"),
    "9.0": ("10.1.0", "8.18.0", "8.0.0"),
    "9.1": ("10.2.2", "8.19.0", "8.0.0"),
    "9.2": ("10.3.1", "8.19.0", "8.0.0"),
    "9.3": ("10.3.2", "8.19.0", "8.0.0"),
    "9.4": ("10.4.0", "8.19.0", "8.0.0"),
    "9.5": ("10.5.0", "8.19.0", "8.0.0"),
}

# The query parameters each kind of handler accepts (besides the global ones).
STATS_PARAMS = {"allow_no_match", "from", "size"}
REFRESH_PARAMS = {"ignore_unavailable", "allow_no_indices", "expand_wildcards"}
SEARCH_PARAMS = REFRESH_PARAMS | {"q", "size", "_source"}
DOC_WRITE = {
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
DOC_READ = {
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
DOC_DELETE = {
    "if_seq_no",
    "if_primary_term",
    "refresh",
    "routing",
    "timeout",
    "version",
    "version_type",
    "wait_for_active_shards",
}
INDEX_PARAMS = {
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


def _route(pattern: str, **handlers: tuple[Handler, set[str]]) -> Route:
    """A route from a pattern whose `{name}`s each match one path segment."""
    regex = re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m[1]}>[^/]+)", pattern)
    return Route(re.compile(regex), {m: (h, frozenset(p)) for m, (h, p) in handlers.items()})


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
        self.control = Control(self.cluster, self.faults, self.requests)
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
            status, payload = await self.control.handle(method, path, body)
            return status, payload, {}, False
        self.requests.record(method, path)
        headers: dict[str, str] = {"X-elastic-product": "Elasticsearch"}
        try:
            compat = negotiate(self.cluster.version.major, request, body)
            if compat is not None:
                headers["content-type"] = f"application/vnd.elasticsearch+json;compatible-with={compat}"
            authenticate(self.config.api_key, request)
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
        except FlatResponse as flat:
            headers.update(flat.headers)
            return flat.status, flat.body, headers, False

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
            check_params(path, params, accepted)
            return await handler(Call(request, match.groupdict(), params, body))
        uri = path + (f"?{request.url.query}" if request.url.query else "")
        if allowed:
            raise FlatResponse(
                405,
                {
                    "error": f"Incorrect HTTP method for uri [{uri}] and method [{method}], allowed: [{', '.join(allowed)}]",
                    "status": 405,
                },
                {"Allow": ",".join(allowed)},
            )
        raise FlatResponse(400, {"error": f"no handler found for uri [{uri}] and method [{method}]"})

    # -- routes ------------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        """Every route, in the order they are tried (the first whose pattern matches the path wins)."""
        return [
            _route("/", GET=(self._root, set()), HEAD=(self._root, set())),
            *self._inference_routes(),
            _route("/_ml/trained_models/_stats", GET=(self._model_stats, STATS_PARAMS)),
            _route("/_ml/trained_models/{ids}/_stats", GET=(self._model_stats, STATS_PARAMS)),
            *self._document_routes(),
        ]

    def _inference_routes(self) -> list[Route]:
        version = self.cluster.version
        put_params = {"timeout"} if catalog.PUT_TIMEOUT.covers(version) else set()
        # The `_update` rewritten in 9.5 also takes a timeout.
        update_params = {"timeout"} if catalog.NEWEST_UPDATE.covers(version) else set()
        delete_params = {"force", "dry_run"}
        endpoint = {
            "GET": (self._get_inference, set[str]()),
            "PUT": (self._put_inference, put_params),
            "DELETE": (self._delete_inference, delete_params),
            "POST": (self._perform_inference, {"timeout"}),
        }
        routes = [_route("/_inference", GET=(self._get_inference, set()))]
        for path in ("/_inference/{first}", "/_inference/{first}/{second}"):
            if catalog.UPDATE_ARRIVED.covers(version):
                routes.append(_route(f"{path}/_update", PUT=(self._update_inference, update_params)))
            routes.append(_route(f"{path}/_stream", POST=(self._perform_inference, {"timeout"})))
            routes.append(_route(path, **endpoint))
        return routes

    def _document_routes(self) -> list[Route]:
        """Pipelines, documents and indices, as the cluster state backend and references use them."""
        return [
            _route("/_ingest/pipeline", GET=(self._get_pipeline, {"master_timeout", "summary"})),
            _route(
                "/_ingest/pipeline/{id}",
                GET=(self._get_pipeline, {"master_timeout", "summary"}),
                PUT=(self._put_pipeline, {"master_timeout", "timeout", "if_version"}),
                DELETE=(self._delete_pipeline, {"master_timeout", "timeout"}),
            ),
            _route(
                "/{index}/_doc/{id}",
                GET=(self._get_doc, DOC_READ),
                HEAD=(self._head_doc, DOC_READ),
                PUT=(self._put_doc, DOC_WRITE),
                POST=(self._put_doc, DOC_WRITE),
                DELETE=(self._delete_doc, DOC_DELETE),
            ),
            _route(
                "/{index}/_create/{id}", PUT=(self._create_doc, DOC_WRITE), POST=(self._create_doc, DOC_WRITE)
            ),
            _route(
                "/{index}/_refresh", POST=(self._refresh, REFRESH_PARAMS), GET=(self._refresh, REFRESH_PARAMS)
            ),
            _route("/{index}/_search", GET=(self._search, SEARCH_PARAMS), POST=(self._search, SEARCH_PARAMS)),
            _route(
                "/{index}",
                GET=(self._get_index, INDEX_PARAMS),
                HEAD=(self._head_index, INDEX_PARAMS),
                PUT=(self._create_index, INDEX_PARAMS),
                DELETE=(self._delete_index, INDEX_PARAMS),
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
        return Reply(await update.update_endpoint(self.cluster, task_type, inference_id, call.body))

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

    async def _head_doc(self, call: Call) -> Reply:
        status = documents.document_exists(self.cluster, call.path["index"], call.path["id"])
        return Reply(None, status, {"content-type": "text/plain; charset=UTF-8"})

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

    async def _search(self, call: Call) -> Reply:
        body = documents.require_object(call.json()) if call.body.strip() else {}
        return Reply(
            documents.search(self.cluster, call.path["index"], documents.uri_search(body, call.params))
        )

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


def _encode(payload: Json, pretty: bool) -> bytes:
    if pretty:
        return (json.dumps(payload, indent=2, separators=(",", " : ")) + "\n").encode()
    return json.dumps(payload, separators=(",", ":")).encode()
