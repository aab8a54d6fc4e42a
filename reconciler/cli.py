"""The command line: parses options and wires the modules together (the only module that does)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import os
import sys
import time
import typing
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from reconciler import __version__

app = typer.Typer(
    name="reconciler",
    help="Keep the inference endpoints of an Elasticsearch cluster equal to a folder of YAML manifests.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"reconciler {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the tool's version."),
    ] = False,
) -> None:
    """Keep the inference endpoints of an Elasticsearch cluster equal to a folder of YAML manifests."""
    _LOGGING["format"] = "console"  # until a command's --log-format says otherwise


@app.command()
def emulator(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).")] = 9200,
    es_version: Annotated[
        str, typer.Option("--version", help="Elasticsearch version to emulate: 8.19.x or 9.0.x to 9.5.x.")
    ] = "9.5.0",
    latency_ms: Annotated[float, typer.Option(help="Latency added to every request, in milliseconds.")] = 0.0,
    fault_rate: Annotated[
        float, typer.Option(help="Share of requests answered 429 or 503 without being applied (0 to 1).")
    ] = 0.0,
    fault_seed: Annotated[int, typer.Option(help="Seed of the fault injection, for repeatable runs.")] = 0,
    lost_response_rate: Annotated[
        float, typer.Option(help="Share of writes applied whose response is then lost (0 to 1).")
    ] = 0.0,
    retry_after: Annotated[float, typer.Option(help="Seconds sent in Retry-After with injected 429s.")] = 1.0,
    deploy_seconds: Annotated[
        float, typer.Option(help="Seconds a trained-model deployment takes to reach its target allocations.")
    ] = 5.0,
    ml_capacity: Annotated[
        int | None,
        typer.Option(
            help="Processors on the ML node (an allocation uses num_threads); more allocations stay pending."
        ),
    ] = None,
    ml_autoscaling: Annotated[
        bool,
        typer.Option(
            help="Pending allocations wait for capacity (as on Elastic Cloud); without it a start that "
            "cannot be placed fails at once (429; 409 from 9.5)."
        ),
    ] = True,
    max_put_wait: Annotated[
        float,
        typer.Option(help="Seconds a PUT of an in-cluster endpoint waits at most before answering 408."),
    ] = 30.0,
    fail_model: Annotated[
        list[str] | None, typer.Option(help="Deployments of this model fail (repeatable).")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(help="Require `Authorization: ApiKey <this>`; without it no auth is needed.")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Persist the cluster here across restarts (default: in memory).")
    ] = None,
    eis: Annotated[
        bool, typer.Option(help="Also list the preconfigured EIS (`elastic` service) endpoints.")
    ] = False,
    trained_model: Annotated[
        list[str] | None,
        typer.Option(
            help="A model uploaded with eland, as MODEL_ID[:TASK_TYPE] (default text_embedding; repeatable)."
        ),
    ] = None,
) -> None:
    """Serve an emulated Elasticsearch cluster (the inference, trained-model, ingest and document APIs)."""
    from reconciler.emulator import EmulatorConfig, serve

    config = EmulatorConfig(
        version=es_version,
        latency_ms=latency_ms,
        fault_rate=fault_rate,
        fault_seed=fault_seed,
        lost_response_rate=lost_response_rate,
        retry_after=retry_after,
        deploy_seconds=deploy_seconds,
        ml_capacity=ml_capacity,
        ml_autoscaling=ml_autoscaling,
        max_put_wait=max_put_wait,
        fail_models=tuple(fail_model or ()),
        api_key=api_key,
        data_dir=data_dir,
        eis=eis,
        trained_models=tuple(
            (model, task or "text_embedding")
            for model, _, task in (spec.partition(":") for spec in trained_model or ())
        ),
    )
    try:
        config.parsed_version()
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--version") from None
    serve(config, host, port)


ManifestsOption = Annotated[
    Path,
    typer.Option(
        "--manifests", envvar="RECONCILER_MANIFESTS", help="The folder of manifests, read recursively."
    ),
]
VersionOption = Annotated[
    str,
    typer.Option(
        "--es-version",
        help="The Elasticsearch version to validate for (8.19 or 9.0 to 9.5; default the newest).",
    ),
]


@app.command()
def validate(manifests: ManifestsOption = Path("manifests"), es_version: VersionOption = "9.5") -> None:
    """Check the manifests offline, reporting every error as file:line: field.path: message."""

    from reconciler.catalog import Version, supported
    from reconciler.manifests import load

    try:
        version = Version.parse(es_version)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--es-version") from None
    if not supported(version):
        raise typer.BadParameter(
            "the tool knows Elasticsearch 8.19 and 9.0 to 9.5", param_hint="--es-version"
        )
    result = load(manifests, version, os.environ)
    for warning in result.warnings:
        typer.echo(f"{warning.file}:{warning.line}: {warning.path}: warning: {warning.message}", err=True)
    for problem in result.errors:
        typer.echo(str(problem))
    line = f"{version.major}.{version.minor}"
    if result.errors:
        typer.echo(
            f"{len(result.errors)} error(s) in {result.files} file(s) (Elasticsearch {line}).", err=True
        )
        raise typer.Exit(1)
    typer.echo(
        f"{len(result.endpoints)} endpoint(s) in {result.files} file(s) are valid for Elasticsearch {line}."
    )


@app.command()
def schema() -> None:
    """Print the JSON Schema of the manifest format, for editors (yaml-language-server)."""
    import json

    from reconciler.model import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


# -- options shared by the commands that talk to a cluster --------------------------------------


@dataclass(frozen=True)
class Common:
    """The connection, state and output options of a cluster command."""

    url: str | None
    api_key: str | None
    username: str | None
    password: str | None
    bearer_token: str | None
    ca_cert: str | None
    insecure: bool
    state: str
    workspace: str
    log_format: str
    no_color: bool

    def connection(self) -> Any:
        from reconciler.client import Connection

        try:
            return Connection.from_urls(
                self.url,
                api_key=self.api_key,
                username=self.username,
                password=self.password,
                bearer_token=self.bearer_token,
                ca_cert=self.ca_cert,
                insecure=self.insecure,
            )
        except ValueError as error:
            raise typer.BadParameter(str(error)) from None

    def color(self) -> bool:
        return not self.no_color and sys.stdout.isatty()

    def backend(self, es: Any) -> Any:
        """Where this command's state lives (--state, --workspace)."""
        from reconciler.state import backend_for

        return backend_for(self.state, es, self.workspace)


_COMMON: dict[str, tuple[Any, Any]] = {
    "url": (
        Annotated[
            str | None,
            typer.Option(
                envvar=["ELASTICSEARCH_URL", "ELASTICSEARCH_ENDPOINTS", "ES_URL"],
                help="Elasticsearch URL (default http://localhost:9200); several comma-separated are tried in order.",
                show_envvar=True,
            ),
        ],
        None,
    ),
    "api_key": (
        Annotated[
            str | None,
            typer.Option(
                envvar=["ELASTICSEARCH_API_KEY", "ES_API_KEY"],
                help="API key (Authorization: ApiKey).",
                show_default=False,
            ),
        ],
        None,
    ),
    "username": (
        Annotated[str | None, typer.Option(envvar="ELASTICSEARCH_USERNAME", help="Basic auth user.")],
        None,
    ),
    "password": (
        Annotated[
            str | None,
            typer.Option(envvar="ELASTICSEARCH_PASSWORD", help="Basic auth password.", show_default=False),
        ],
        None,
    ),
    "bearer_token": (
        Annotated[
            str | None,
            typer.Option(envvar="ELASTICSEARCH_BEARER_TOKEN", help="Bearer token.", show_default=False),
        ],
        None,
    ),
    "ca_cert": (
        Annotated[
            str | None, typer.Option(envvar="ELASTICSEARCH_CA_CERT", help="CA certificate (PEM) to trust.")
        ],
        None,
    ),
    "insecure": (
        Annotated[
            bool,
            typer.Option(envvar="ELASTICSEARCH_INSECURE", help="Do not verify TLS certificates (warns)."),
        ],
        False,
    ),
    "state": (
        Annotated[
            str, typer.Option(envvar="RECONCILER_STATE", help="Where the state lives: cluster, or file:PATH.")
        ],
        "cluster",
    ),
    "workspace": (
        Annotated[
            str,
            typer.Option(envvar="RECONCILER_WORKSPACE", help="State workspace (one state per workspace)."),
        ],
        "default",
    ),
    "log_format": (
        Annotated[str, typer.Option(envvar="RECONCILER_LOG_FORMAT", help="Logs on stderr: console or json.")],
        "console",
    ),
    "no_color": (
        Annotated[bool, typer.Option("--no-color", envvar="NO_COLOR", help="No colours in the output.")],
        False,
    ),
}

F = TypeVar("F", bound=Callable[..., Any])


def cluster_command(func: F) -> F:
    """Give a command the shared options; it receives them as `common: Common`."""
    signature = inspect.signature(func)
    hints = typing.get_type_hints(func, include_extras=True)
    own = [p.replace(annotation=hints[name]) for name, p in signature.parameters.items() if name != "common"]
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, (annotation, default) in _COMMON.items()
    ]

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        common = Common(**{name: kwargs.pop(name) for name in _COMMON})
        if common.log_format not in ("console", "json"):
            raise typer.BadParameter("console or json", param_hint="--log-format")
        _configure_logging(common.log_format)
        return func(common=common, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=[*own, *extra])  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in [*own, *extra]}
    return wrapper  # type: ignore[return-value]


_LOGGING = {"format": "console"}


def _stderr(message: str, level: str = "error") -> None:
    """A message for the user on stderr: plain text, or one JSON event under --log-format json."""
    if _LOGGING["format"] == "json":
        getattr(_log(), level)("message", message=message)
    else:
        typer.echo(message, err=True)


def _report_validation(validation: Any) -> None:
    """Manifest warnings, then errors, as file:line: field.path: message."""
    for warning in validation.warnings:
        _stderr(f"{warning.file}:{warning.line}: {warning.path}: warning: {warning.message}", "warning")
    for problem in validation.errors:
        _stderr(str(problem))


def _configure_logging(log_format: str) -> None:
    import logging

    import structlog

    _LOGGING["format"] = log_format

    renderer: Any = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def _log() -> Any:
    import structlog

    return structlog.get_logger("reconciler")


T = TypeVar("T")


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command body; Elasticsearch and state errors become a message and exit code 1."""
    from reconciler.client import ElasticsearchError
    from reconciler.plan import PlanFormatError
    from reconciler.session import UnsupportedVersionError
    from reconciler.state import StateError

    try:
        return asyncio.run(coroutine)
    except (ElasticsearchError, StateError, UnsupportedVersionError, PlanFormatError) as error:
        _stderr(f"Error: {error}")
        raise typer.Exit(1) from None


def _client(common: Common, parallelism: int = 8) -> Any:
    from reconciler.client import Elasticsearch

    connection = common.connection()
    if connection.insecure:
        _log().warning("tls_verification_disabled", detail="--insecure: certificates are not verified")

    def retried(error: Exception, delay: float) -> None:
        _log().info("retry", error=str(error), delay=round(delay, 2))

    return Elasticsearch(connection, on_retry=retried, max_connections=parallelism + 4)


# -- plan, show, drift --------------------------------------------------------------------------

PlanFile = Annotated[
    Path | None, typer.Option("--out", help="Also write the plan (JSON) to this file, for apply.")
]


@app.command()
@cluster_command
def plan(
    common: Common,
    manifests: ManifestsOption = Path("manifests"),
    out: PlanFile = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    as_markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the plan as Markdown (pull requests).")
    ] = False,
    detailed_exitcode: Annotated[
        bool, typer.Option("--detailed-exitcode", help="Exit 2 when there are changes, 0 when none.")
    ] = False,
    target: Annotated[list[str] | None, typer.Option(help="Plan only this endpoint (repeatable).")] = None,
    replace: Annotated[
        list[str] | None, typer.Option(help="Replace this endpoint even if unchanged (repeatable).")
    ] = None,
    refresh_only: Annotated[
        bool, typer.Option("--refresh-only", help="Only accept the cluster's current values into the state.")
    ] = False,
    destroy: Annotated[
        bool, typer.Option("--destroy", help="Plan the deletion of every managed endpoint.")
    ] = False,
    allow_referenced: Annotated[
        bool,
        typer.Option(
            help="Allow deleting or replacing endpoints that pipelines or indexes use (with force)."
        ),
    ] = False,
) -> None:
    """Show what apply would change; takes no lock and writes nothing to the cluster."""
    from reconciler import render
    from reconciler.planner import Options
    from reconciler.session import make_plan

    if as_json and as_markdown:
        raise typer.BadParameter("choose one of --json and --markdown")

    async def body() -> Any:
        async with _client(common) as es:
            backend = common.backend(es)
            options = Options(frozenset(target or ()), frozenset(replace or ()), refresh_only, destroy)
            planned, validation, _ = await make_plan(
                es, backend, manifests, options, allow_referenced=allow_referenced
            )
            _log().debug("cluster_read", requests=es.requests, endpoints=len(validation.endpoints))
            return planned, validation

    planned, validation = _run(body())
    _report_validation(validation)
    if planned is None:
        raise typer.Exit(1)
    text = planned.dumps() if out is not None or as_json else ""
    if out is not None:
        out.write_text(text)
    if as_json:
        typer.echo(text, nl=False)
    elif as_markdown:
        typer.echo(render.markdown(planned), nl=False)
    else:
        typer.echo(render.human(planned, color=common.color()), nl=False)
    if planned.errors:
        raise typer.Exit(1)
    if detailed_exitcode and planned.has_changes:
        raise typer.Exit(2)


@app.command()
def show(
    planfile: Annotated[Path, typer.Argument(help="A plan saved with plan --out.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    no_color: Annotated[
        bool, typer.Option("--no-color", envvar="NO_COLOR", help="No colours in the output.")
    ] = False,
) -> None:
    """Print a saved plan."""
    from reconciler import render
    from reconciler.plan import Plan, PlanFormatError

    try:
        planned = Plan.loads(planfile.read_text())
    except (OSError, PlanFormatError) as error:
        _stderr(f"Error: {planfile}: {error}")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(planned.dumps(), nl=False)
    else:
        typer.echo(render.human(planned, color=not no_color and sys.stdout.isatty()), nl=False)


@app.command()
@cluster_command
def drift(
    common: Common,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
    as_markdown: Annotated[bool, typer.Option("--markdown", help="Print the findings as Markdown.")] = False,
    known_file: Annotated[
        Path | None,
        typer.Option(
            "--known",
            help="A previous drift --json output: findings with the same id are marked known, the others new.",
        ),
    ] = None,
) -> None:
    """Compare the cluster with what was last applied; exit 2 when it has moved away."""
    from reconciler import planner, render
    from reconciler.session import read_cluster

    known = _known_findings(known_file)

    async def body() -> Any:
        async with _client(common) as es:
            backend = common.backend(es)
            cluster = await read_cluster(es, backend)
            return cluster, es.url

    cluster, url = _run(body())
    state = cluster.state
    findings = planner.drift(cluster.endpoints, state) if state is not None else []
    checked = len(state.endpoints) if state is not None else 0
    if as_json:
        document = {
            "format_version": 1,
            "cluster": {
                "url": url,
                "version": cluster.info["version"]["number"],
                "cluster_uuid": cluster.info.get("cluster_uuid"),
            },
            "findings": [{**f.to_json(), "new": f.id not in known} for f in findings],
            "summary": {
                "endpoints_checked": checked,
                "endpoints_drifted": len({f.inference_id for f in findings}),
                "findings": len(findings),
                "new_findings": sum(f.id not in known for f in findings),
            },
        }
        typer.echo(json.dumps(document, indent=2))
    elif as_markdown:
        typer.echo(render.drift_markdown(findings, checked, known), nl=False)
    else:
        typer.echo(render.drift_human(findings, checked, known), nl=False)
    if findings:
        raise typer.Exit(2)


def _known_findings(path: Path | None) -> frozenset[str]:
    """The finding ids of a previous drift --json output; none when the file does not exist yet."""
    if path is None:
        return frozenset()
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return frozenset(str(finding["id"]) for finding in document["findings"])
    except FileNotFoundError:
        _stderr(f"{path}: not found; every finding counts as new", "warning")
        return frozenset()
    except (OSError, ValueError, KeyError, TypeError) as error:
        _stderr(f"Error: {path}: not a drift --json output ({type(error).__name__}: {error})")
        raise typer.Exit(1) from None


# -- apply and the runbook commands ----------------------------------------------------------

Duration = Annotated[str | None, typer.Option(help="A duration such as 90s, 15m or 1h.")]


def _seconds(text: str | None, name: str, default: float) -> float:
    from reconciler.model import parse_duration

    if text is None:
        return default
    try:
        return parse_duration(text)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint=name) from None


def _poll_interval() -> float:
    """Seconds between deployment polls: RECONCILER_POLL_INTERVAL (tests and the demo shorten it)."""
    text = os.environ.get("RECONCILER_POLL_INTERVAL", "1")
    try:
        return max(float(text), 0.01)
    except ValueError:
        raise typer.BadParameter(
            f"RECONCILER_POLL_INTERVAL must be a number of seconds, not {text!r}"
        ) from None


async def _take_lock(backend: Any, operation: str, lock_timeout: float) -> Any:
    """The state lock, waiting up to lock_timeout for a holder to finish (0: fail at once)."""
    from reconciler.state import LockHeldError, LockInfo

    deadline = time.monotonic() + lock_timeout
    while True:
        try:
            return await backend.lock(LockInfo.new(operation))
        except LockHeldError:
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(min(1.0, max(deadline - time.monotonic(), 0.05)))


async def _keep_alive(backend: Any, lock: Any) -> None:
    """Renew the lease while the holder works; a failed renewal is tried again next time."""
    from reconciler.client import ElasticsearchError
    from reconciler.state import StateError

    while True:
        await asyncio.sleep(lock.lease / 3)
        try:
            lock = await backend.renew(lock)
        except (ElasticsearchError, StateError) as error:
            _log().warning("lock_renewal_failed", lock_id=lock.id, error=str(error))


@contextlib.asynccontextmanager
async def _locked(backend: Any, operation: str, lock_timeout: float) -> AsyncIterator[Any]:
    """Hold the state lock, its lease renewed, for the block; released on any exit."""
    lock = await _take_lock(backend, operation, lock_timeout)
    keeper = asyncio.create_task(_keep_alive(backend, lock))
    try:
        yield lock
    finally:
        keeper.cancel()
        with contextlib.suppress(Exception):  # an unreleased lock expires with its lease
            await backend.unlock(lock.id)


def _confirm(auto_approve: bool) -> None:
    if auto_approve:
        return
    if not sys.stdin.isatty():
        typer.echo(
            "Error: apply without a plan file needs --auto-approve when it does not run on a terminal.",
            err=True,
        )
        raise typer.Exit(1)
    answer = typer.prompt("Apply these changes? Only 'yes' will be accepted", default="", show_default=False)
    if answer.strip() != "yes":
        typer.echo("Apply cancelled.", err=True)
        raise typer.Exit(1)


@app.command()
@cluster_command
def apply(
    common: Common,
    planfile: Annotated[
        Path | None, typer.Argument(help="A plan saved with plan --out: apply exactly that.")
    ] = None,
    manifests: ManifestsOption = Path("manifests"),
    auto_approve: Annotated[
        bool, typer.Option("--auto-approve", help="Do not ask for confirmation.")
    ] = False,
    target: Annotated[list[str] | None, typer.Option(help="Apply only this endpoint (repeatable).")] = None,
    replace: Annotated[
        list[str] | None, typer.Option(help="Replace this endpoint even if unchanged (repeatable).")
    ] = None,
    refresh_only: Annotated[
        bool, typer.Option("--refresh-only", help="Only accept the cluster's values into the state.")
    ] = False,
    destroy: Annotated[bool, typer.Option("--destroy", help="Delete every managed endpoint.")] = False,
    allow_referenced: Annotated[
        bool, typer.Option("--allow-referenced", help="Delete or replace endpoints in use (with force).")
    ] = False,
    parallelism: Annotated[int, typer.Option(min=1, help="Endpoints changed at once.")] = 8,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="Do not wait for trained-model deployments.")
    ] = False,
    wait_timeout: Duration = None,
    lock_timeout: Duration = None,
) -> None:
    """Make the cluster match the manifests (or the saved plan), and wait for deployments."""
    from reconciler import planner, render
    from reconciler.applier import Applier, ApplyError, ApplyOptions, StateWriter, resolve_secrets
    from reconciler.plan import Plan, PlanFormatError
    from reconciler.progress import reporter
    from reconciler.sensitive import Resolver
    from reconciler.session import make_plan, read_cluster
    from reconciler.state import State

    options = ApplyOptions(
        parallelism=parallelism,
        wait=not no_wait,
        wait_timeout=_seconds(wait_timeout, "--wait-timeout", 1200.0),
        poll_interval=_poll_interval(),
        allow_referenced=allow_referenced,
    )
    waiting = _seconds(lock_timeout, "--lock-timeout", 0.0)
    saved = None
    if planfile is not None:
        try:
            saved = Plan.loads(planfile.read_text())
        except (OSError, PlanFormatError) as error:
            _stderr(f"Error: {planfile}: {error}")
            raise typer.Exit(1) from None
        if saved.errors:
            _stderr("Error: the saved plan has errors and cannot be applied:\n" + "\n".join(saved.errors))
            raise typer.Exit(1)
    terminal = sys.stderr.isatty()

    async def body() -> Any:
        async with _client(common, parallelism) as es:
            backend = common.backend(es)
            async with _locked(backend, "apply", waiting) as lock:
                if saved is None:
                    run_options = planner.Options(
                        frozenset(target or ()), frozenset(replace or ()), refresh_only, destroy
                    )
                    planned, validation, cluster = await make_plan(
                        es, backend, manifests, run_options, allow_referenced=allow_referenced
                    )
                    _report_validation(validation)
                    if planned is None:
                        return None
                    typer.echo(render.human(planned, color=common.color()), nl=False)
                    if planned.errors:
                        return None
                    if planned.has_changes:
                        _confirm(auto_approve)
                        # The prompt blocked the loop, and the lease renewals with it: make sure
                        # the lock is still ours (renew raises if another run took it meanwhile).
                        await backend.renew(lock)
                    wanted = frozenset(d.inference_id for d in validation.endpoints)
                    salt_check = None
                else:
                    planned = saved
                    cluster = await read_cluster(es, backend)
                    moved = planner.stale(
                        planned, cluster.endpoints, cluster.state, cluster.info.get("cluster_uuid")
                    )
                    if moved:
                        raise ApplyError("the saved plan is stale: " + "; ".join(moved) + ". Plan again.")
                    wanted = frozenset(c.inference_id for c in planned.changes if c.request is not None)
                    salt_check = cluster.state.salt if cluster.state is not None else None
                secrets = resolve_secrets(planned, Resolver(os.environ), salt_check)
                state = cluster.state or State.new(common.workspace)
                writer = StateWriter(backend, state, cluster.token)
                applier = Applier(
                    es, writer, cluster.version, secrets, reporter(terminal, common.color()), options
                )
                try:
                    result = await applier.apply(planned, cluster.endpoints, wanted)
                finally:
                    applier.reporter.close()
                after = None
                if not result.failed and saved is None and not refresh_only and not destroy:
                    after, _, _ = await make_plan(
                        es, backend, manifests, planner.Options(), allow_referenced=allow_referenced
                    )
                return result, after

    try:
        outcome = _run(body())
    except ApplyError as error:
        _stderr(f"Error: {error}")
        raise typer.Exit(1) from None
    if outcome is None:
        raise typer.Exit(1)
    result, after = outcome
    for failure in result.failed:
        _stderr(f"Failed: {failure.inference_id} ({failure.action}): {failure.detail}")
    counts = result.counts()
    typer.echo(
        f"Apply finished: {counts['done']} done, {counts['failed']} failed, {counts['skipped']} skipped."
    )
    if after is not None:
        if after.has_changes:
            typer.echo("The cluster still differs from the manifests:")
            typer.echo(render.human(after, color=common.color()), nl=False)
        else:
            typer.echo("The cluster matches the manifests.")
    if result.failed:
        raise typer.Exit(1)


@app.command()
@cluster_command
def status(
    common: Common,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every live endpoint, managed or not: service, task type, model, allocation x/y and state, drift."""
    from reconciler import planner
    from reconciler.applier import evaluate
    from reconciler.session import deployment_id, read_cluster

    async def body() -> Any:
        async with _client(common) as es:
            backend = common.backend(es)
            cluster = await read_cluster(es, backend)
            in_cluster = [e for e in cluster.endpoints.values() if e.get("service") == "elasticsearch"]
            stats = await es.deployment_stats([deployment_id(e) for e in in_cluster])
            return cluster, stats

    cluster, stats = _run(body())
    state = cluster.state
    drifted = (
        {f.inference_id for f in planner.drift(cluster.endpoints, state)} if state is not None else set()
    )
    rows = []
    for inference_id, endpoint in sorted(cluster.endpoints.items()):
        settings = endpoint.get("service_settings") or {}
        deployment = (
            stats.get(deployment_id(endpoint)) if endpoint.get("service") == "elasticsearch" else None
        )
        allocation = None
        if deployment is not None:
            _, count, target, alloc_state, _ = evaluate(deployment)
            allocation = {"count": count, "target": target, "state": alloc_state}
        managed = state is not None and inference_id in state.endpoints
        rows.append(
            {
                "inference_id": inference_id,
                "task_type": endpoint.get("task_type"),
                "service": endpoint.get("service"),
                "model_id": settings.get("model_id")
                or settings.get("model")
                or (deployment or {}).get("model_id"),
                "managed": managed,
                "preconfigured": inference_id.startswith("."),
                "allocation": allocation,
                "deployment_state": (deployment or {}).get("state"),
                "drifted": inference_id in drifted,
            }
        )
    if as_json:
        typer.echo(json.dumps({"endpoints": rows}, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None)
    for column in ("endpoint", "task type", "service", "model", "managed", "allocation", "state", "drifted"):
        table.add_column(column)
    for row in rows:
        allocation = row["allocation"]
        table.add_row(
            str(row["inference_id"]),
            str(row["task_type"]),
            str(row["service"]),
            str(row["model_id"] or ""),
            "yes" if row["managed"] else ("preconfigured" if row["preconfigured"] else "no"),
            f"{allocation['count']}/{allocation['target']}" if allocation else "",
            str(allocation["state"] if allocation else ""),
            "yes" if row["drifted"] else "",
        )
    Console(no_color=not common.color(), width=200 if not sys.stdout.isatty() else None).print(table)


@app.command()
@cluster_command
def wait(
    common: Common,
    ids: Annotated[
        list[str], typer.Argument(help="Endpoints whose deployments to wait for.", metavar="ID...")
    ],
    timeout: Duration = None,
) -> None:
    """Wait until these endpoints' deployments are fully allocated; exit 1 on failure or timeout."""
    from reconciler.applier import wait_failure, wait_for_deployments
    from reconciler.progress import reporter
    from reconciler.session import deployment_id

    seconds = _seconds(timeout, "--timeout", 1200.0)
    interval = _poll_interval()

    async def body() -> Any:
        async with _client(common) as es:
            pending = {}
            for inference_id in ids:
                endpoint = await es.endpoint(inference_id)
                if endpoint is None:
                    _stderr(f"Error: no endpoint {inference_id}")
                    raise typer.Exit(1)
                pending[inference_id] = (deployment_id(endpoint), seconds)
            report = reporter(sys.stderr.isatty(), common.color())
            try:
                return await wait_for_deployments(es, pending, report, interval)
            finally:
                report.close()

    results = _run(body())
    failed = [s for s in results.values() if s.outcome != "done"]
    for status in failed:
        _stderr(f"Failed: {status.inference_id}: {wait_failure(status)}")
    for status in results.values():
        if status.outcome == "done":
            typer.echo(f"{status.inference_id}: {status.allocation()} fully allocated")
    if failed:
        raise typer.Exit(1)


@app.command(name="import")
@cluster_command
def import_(
    common: Common,
    ids: Annotated[
        list[str] | None, typer.Argument(help="Live endpoints to import.", metavar="[ID...]")
    ] = None,
    import_all: Annotated[
        bool, typer.Option("--all", help="Import every live endpoint not preconfigured.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Where to write the manifests (default: the --manifests folder)."),
    ] = None,
    manifests: ManifestsOption = Path("manifests"),
    lock_timeout: Duration = None,
) -> None:
    """Write a manifest per live endpoint (secrets as references to fill in) and adopt them into the state."""
    from reconciler import importer
    from reconciler.session import read_cluster

    if bool(ids) == import_all:
        raise typer.BadParameter("give endpoint ids or --all")
    folder = out or manifests
    waiting = _seconds(lock_timeout, "--lock-timeout", 0.0)

    async def body() -> Any:
        async with _client(common) as es:
            backend = common.backend(es)
            async with _locked(backend, "import", waiting):
                cluster = await read_cluster(es, backend)
                chosen = (
                    sorted(i for i in cluster.endpoints if not i.startswith("."))
                    if import_all
                    else list(ids or ())
                )
                missing = [i for i in chosen if i not in cluster.endpoints]
                if missing:
                    _stderr(f"Error: no live endpoint {', '.join(missing)}")
                    raise typer.Exit(1)
                written = importer.write_manifests([cluster.endpoints[i] for i in chosen], folder, cluster)
                await importer.adopt(
                    importer.adopted_state(written, cluster, common.workspace), cluster, backend
                )
                return written

    written = _run(body())
    for path, references in written:
        hint = f" (set {', '.join(references)})" if references else ""
        typer.echo(f"wrote {path}{hint}")


state_app = typer.Typer(help="Inspect and repair the state.", no_args_is_help=True)
app.add_typer(state_app, name="state")


@state_app.command("list")
@cluster_command
def state_list(common: Common) -> None:
    """The managed endpoints the state records, and its lock."""

    async def body() -> Any:
        async with _client(common) as es:
            backend = common.backend(es)
            return await backend.read(), await backend.current_lock(), backend.name

    snapshot, lock, name = _run(body())
    state = snapshot.state
    if state is None:
        typer.echo(f"No state in {name}.")
        return
    typer.echo(f"{name}: lineage {state.lineage}, serial {state.serial}, {len(state.endpoints)} endpoint(s)")
    for inference_id, record in sorted(state.endpoints.items()):
        flags = " tainted" if record.tainted else ""
        typer.echo(
            f"  {inference_id}  [{record.task_type}, {record.service}]  applied {record.applied_at}{flags}"
        )
    if lock is not None:
        typer.echo(("expired " if lock.expired() else "") + lock.describe())


@state_app.command("show")
@cluster_command
def state_show(common: Common, inference_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """One endpoint's record (secret digests only, never values), as JSON."""

    async def body() -> Any:
        async with _client(common) as es:
            return await common.backend(es).read()

    state = _run(body()).state
    record = state.endpoints.get(inference_id) if state is not None else None
    if record is None:
        _stderr(f"Error: the state has no endpoint {inference_id}")
        raise typer.Exit(1)
    typer.echo(json.dumps(record.to_json(), indent=2))


@state_app.command("rm")
@cluster_command
def state_rm(
    common: Common, inference_id: Annotated[str, typer.Argument(metavar="ID")], lock_timeout: Duration = None
) -> None:
    """Stop managing an endpoint: forget it in the state, leave it in the cluster."""

    async def body() -> Any:
        async with _client(common) as es:
            backend = common.backend(es)
            async with _locked(backend, "state rm", _seconds(lock_timeout, "--lock-timeout", 0.0)):
                snapshot = await backend.read()
                if snapshot.state is None or inference_id not in snapshot.state.endpoints:
                    return False
                await backend.write(snapshot.state.without(inference_id).bumped(), snapshot.token)
                return True

    if not _run(body()):
        _stderr(f"Error: the state has no endpoint {inference_id}")
        raise typer.Exit(1)
    typer.echo(f"{inference_id} is no longer managed (it stays in the cluster).")


@state_app.command("unlock")
@cluster_command
def state_unlock(common: Common, lock_id: Annotated[str, typer.Argument(metavar="LOCK_ID")]) -> None:
    """Remove a lock left by a process that died (the id is in the lock-held error)."""

    async def body() -> None:
        async with _client(common) as es:
            await common.backend(es).unlock(lock_id)

    _run(body())
    typer.echo(f"Lock {lock_id} removed.")


def main() -> None:
    app()
