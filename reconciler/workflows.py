"""The workflows behind the commands — validate, plan, apply, drift, status, wait, import — end to end.

Each takes plain inputs (a connected client, the state backend, paths, a request value) and, where
the run talks back, a `Confirm` callback (apply's "yes") and a `Reporter` (actions and wait polls),
and returns a report (`reconciler.reports`) that owns its exit code. Nothing here prints: the
command line picks a view and renders the report.

What stops a workflow before it can report — an Elasticsearch or state error, a held lock, an
unsupported version, an unreadable, invalid or stale plan file, a secret that moved — is raised as
one `WorkflowError` (exit code 1) carrying the message for the user.

`execute` is the one place a plan is carried out (secrets resolved, state writer and applier
built, the plan applied): `apply`, the benchmark and the tests all go through it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import structlog

from reconciler import catalog, importer, plancheck, planner, takeover, views
from reconciler.applier import (
    Applier,
    ApplyError,
    ApplyOptions,
    Result,
    StateWriter,
    resolve_secrets,
    wait_for_deployments,
)
from reconciler.client import Connection, Elasticsearch, ElasticsearchError
from reconciler.lease import StoppedBySignalError, locked
from reconciler.manifests import Validation, load
from reconciler.overlays import Layers, Shared
from reconciler.plan import PLAN_KEY_VARIABLE, Plan, PlanFormatError
from reconciler.progress import Planned, Reporter
from reconciler.project import Environment
from reconciler.reports import (
    Allocation,
    ApplyReport,
    DriftReport,
    ImportReport,
    PlanReport,
    StatusReport,
    StatusRow,
    WaitReport,
    WorkflowError,
)
from reconciler.resolver import Resolver
from reconciler.session import (
    Cluster,
    Planning,
    UnsupportedVersionError,
    make_plan,
    read_cluster,
    referenced_values,
    supported_version,
)
from reconciler.state import LockInfo, State, StateError
from reconciler.storage import Backend, backend_for

# -- what stops a workflow ---------------------------------------------------------------------


_STOPPING = (
    ElasticsearchError,
    StateError,
    UnsupportedVersionError,
    PlanFormatError,
    ApplyError,
    importer.UnsafeImportError,
)


class SignalledError(WorkflowError):
    """SIGTERM or SIGINT stopped a workflow that held the lock (released): exit 128 + the signal
    number, 143 for SIGTERM and 130 for SIGINT, as a shell reports a process killed by it."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@contextlib.contextmanager
def stopping() -> Iterator[None]:
    """Raise each error that stops a workflow as a WorkflowError with the same message."""
    try:
        yield
    except StoppedBySignalError as error:
        raise SignalledError(str(error), error.exit_code) from error
    except _STOPPING as error:
        raise WorkflowError(str(error)) from error


P = ParamSpec("P")
R = TypeVar("R")


def _workflow(run: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    @functools.wraps(run)
    async def stopped(*args: P.args, **kwargs: P.kwargs) -> R:
        with stopping():
            return await run(*args, **kwargs)

    return stopped


# -- where a workflow works ---------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """The cluster a workflow works on, and where its state lives."""

    connection: Connection
    state: str = "cluster"  # or file:PATH
    workspace: str = "default"
    environment: Environment | None = None  # --env: the project file's environment
    shared: Shared | None = None  # --all-envs: what the environments' reads share

    def manifests(self, given: Path) -> Path | Layers:
        """What to read: the folder given, or with --env the project's base and the env's overlay."""
        env = self.environment
        return given if env is None else Layers(env.base, env.overlay, env.name, self.shared)


def connect(connection: Connection, parallelism: int = 8) -> Elasticsearch:
    """A client for the cluster whose retries are logged; it holds a few connections beyond the
    parallelism, for the state writes and reads that run beside the actions."""
    log = structlog.get_logger("reconciler")
    if connection.insecure:
        log.warning("tls_verification_disabled", detail="--insecure: certificates are not verified")

    def retried(error: Exception, delay: float) -> None:
        log.info("retry", error=str(error), delay=round(delay, 2))

    return Elasticsearch(connection, on_retry=retried, max_connections=parallelism + 4)


async def run(
    target: Target, work: Callable[[Elasticsearch, Backend], Awaitable[R]], parallelism: int = 8
) -> R:
    """Connect, open the state backend, and run `work` (a workflow) on them."""
    with stopping():
        async with connect(target.connection, parallelism) as es:
            if target.environment is not None and target.environment.es_version is not None:
                version = str((await es.info())["version"]["number"])
                problem = target.environment.version_problem(version)
                if problem is not None:
                    raise WorkflowError(problem)
            try:
                return await work(es, backend_for(target.state, es, target.workspace))
            except WorkflowError as error:
                # Built outside the client too (storage, plan checks): redacted as server text is.
                error.args = tuple(es.redact(str(arg)) for arg in error.args)
                raise


def _renewal_failed(lock: LockInfo, error: Exception) -> None:
    # The next renewal tries again; the lease outlives two failures in a row.
    structlog.get_logger("reconciler").warning("lock_renewal_failed", lock_id=lock.id, error=str(error))


# -- plan and saved plans ----------------------------------------------------------------------


@dataclass(frozen=True)
class PlanRequest:
    manifests: Path | Layers
    planning: Planning = field(default_factory=Planning)
    detailed_exitcode: bool = False
    workspace: str = "default"


@_workflow
async def plan(
    es: Elasticsearch, backend: Backend, request: PlanRequest, *, env: Mapping[str, str]
) -> PlanReport:
    """Validate the manifests for the cluster's version and plan; takes no lock, writes nothing."""
    planned, validation, _ = await make_plan(es, backend, request.manifests, request.planning, env=env)
    planned = await _guard(planned, backend, request.workspace, request.planning.allow_takeover)
    if planned is not None and isinstance(request.manifests, Layers):
        planned = dataclasses.replace(planned, environment=request.manifests.environment)
    return PlanReport(planned, validation, request.detailed_exitcode)


def load_plan(path: Path, *, to_apply: bool = False, env: Mapping[str, str] | None = None) -> Plan:
    """A plan saved with `plan --out`; to apply, it must carry no errors. With RECONCILER_PLAN_KEY
    in `env` (default: the environment) it must be signed with that key, without it unsigned."""
    key = (os.environ if env is None else env).get(PLAN_KEY_VARIABLE)
    try:
        saved = Plan.loads(path.read_text(), key=key)
    except (OSError, PlanFormatError) as error:
        raise WorkflowError(f"{path}: {error}") from None
    if to_apply and saved.errors:
        raise WorkflowError("the saved plan has errors and cannot be applied:\n" + "\n".join(saved.errors))
    return saved


def save_plan(planned: Plan, path: Path, env: Mapping[str, str] | None = None) -> None:
    """Write the plan for a later `apply PLANFILE`, signed when RECONCILER_PLAN_KEY is in `env`
    (default: the environment): the counterpart of `load_plan`."""
    key = (os.environ if env is None else env).get(PLAN_KEY_VARIABLE)
    try:
        path.write_text(planned.dumps(key=key))
    except OSError as error:
        raise WorkflowError(f"--out {path}: {error.strerror or error}") from None


async def validated(
    es: Elasticsearch, manifests: Path | Layers, env: Mapping[str, str]
) -> tuple[Mapping[str, Any], Validation]:
    """GET /, and the manifests validated for that version: what a command that writes checks
    before it takes the lock or changes anything (the plan under the lock reuses both)."""
    info = await es.info()
    return info, load(manifests, supported_version(info), env)


# -- apply -------------------------------------------------------------------------------------

# Shown each plan apply makes itself (valid or not), before anything changes; answers whether to
# apply it. Its answer matters only for an applicable plan.
Confirm = Callable[[PlanReport], bool]


@dataclass(frozen=True)
class ApplyRequest:
    """What to apply: the manifests, planned afresh under the lock, or a saved plan file."""

    manifests: Path | Layers
    planfile: Path | None = None
    planning: Planning = field(default_factory=Planning)
    options: ApplyOptions = field(default_factory=ApplyOptions)
    lock_timeout: float = 0.0
    workspace: str = "default"


async def execute(
    es: Elasticsearch,
    backend: Backend,
    cluster: Cluster,
    planned: Plan,
    *,
    env: Mapping[str, str],
    reporter: Reporter,
    options: ApplyOptions,
    workspace: str = "default",
    salt: str | None = None,
) -> Result:
    """Carry out a plan made against `cluster`, writing the state as each action finishes.

    Secrets are read again from their references; with `salt` (a saved plan's state), each must
    still be the secret that was planned. Errors of the state storage are raised as they are.
    """
    secrets = resolve_secrets(planned, Resolver(env), salt)
    # Server error text may echo what was sent: the client redacts every resolved secret from it.
    es.redact_values(secret for per_endpoint in secrets.values() for secret in per_endpoint.values())
    # The intents a stopped run left, settled when the cluster was read, are stored first.
    writer = StateWriter(backend, cluster.state or State.new(workspace), cluster.token, cluster.settled)
    applier = Applier(es, writer, secrets, reporter, options)
    result = await applier.apply(planned)
    await writer.close()  # the run's journal folded into one snapshot
    return result


@_workflow
async def apply(
    es: Elasticsearch,
    backend: Backend,
    request: ApplyRequest,
    *,
    confirm: Confirm,
    reporter: Reporter,
    env: Mapping[str, str],
) -> ApplyReport:
    """`_apply`; stopped by a signal, the reporter first says what was left how (done, failed,
    in flight, not started)."""
    try:
        return await _apply(es, backend, request, confirm=confirm, reporter=reporter, env=env)
    except StoppedBySignalError as error:
        reporter.stopped(f"apply stopped by {signal.Signals(error.signum).name}")
        raise


async def _apply(
    es: Elasticsearch,
    backend: Backend,
    request: ApplyRequest,
    *,
    confirm: Confirm,
    reporter: Reporter,
    env: Mapping[str, str],
) -> ApplyReport:
    """Validate; lock; plan and confirm (or re-check the saved plan); execute; plan again to show
    convergence. Invalid manifests stop it before the lock: nothing is written to the cluster."""
    saved = load_plan(request.planfile, to_apply=True, env=env) if request.planfile is not None else None
    if saved is not None:
        _same_environment(saved, request)
    if saved is None:
        checked = await validated(es, request.manifests, env)
        if not checked[1].ok:
            confirm(PlanReport(None, checked[1]))  # shows the errors
            return ApplyReport(None)
    carry_out = functools.partial(
        execute, env=env, reporter=reporter, options=request.options, workspace=request.workspace
    )
    async with locked(backend, "apply", request.lock_timeout, _renewal_failed) as lock:
        if saved is not None:
            cluster = await read_cluster(es, backend)
            moved = planner.stale(saved, cluster.endpoints, cluster.state, cluster.info.get("cluster_uuid"))
            if moved:
                raise WorkflowError("the saved plan is stale: " + "; ".join(moved) + ". Plan again.")
            # Untrusted (DESIGN §9); load_plan verified the signature when a key is set.
            signed = bool(env.get(PLAN_KEY_VARIABLE))
            plancheck.check(saved, cluster.endpoints, cluster.version, cluster.state, signed=signed)
            if why := takeover.refused(saved, await takeover.other_workspaces(backend)):
                raise WorkflowError(why)  # another workspace may have applied since the plan
            salt = cluster.state.salt if cluster.state is not None else None
            return ApplyReport(await carry_out(es, backend, cluster, saved, salt=salt))
        planned, validation, cluster = await make_plan(
            es, backend, request.manifests, request.planning, env=env, checked=checked
        )
        planned = await _guard(planned, backend, request.workspace, request.planning.allow_takeover, True)
        approved = confirm(PlanReport(planned, validation))
        if planned is None or planned.errors or not approved:
            return ApplyReport(None)
        if planned.has_changes:
            # The prompt blocked the event loop, and the lease renewals with it: renew raises if
            # another run took the lock meanwhile, before anything is sent.
            await backend.renew(lock)
        result = await carry_out(es, backend, cluster, planned)
        if result.failed or request.planning.options.refresh_only or request.planning.options.destroy:
            return ApplyReport(result)
        again = Planning(allow_referenced=request.planning.allow_referenced)
        after, _, _ = await make_plan(
            es, backend, request.manifests, again, env=env, checked=(cluster.info, validation)
        )
        return ApplyReport(result, after)


async def _guard(
    planned: Plan | None, backend: Backend, workspace: str, allowed: bool, applying: bool = False
) -> Plan | None:
    """The plan stamped with its workspace and warned of each takeover (`takeover.guarded`); to
    apply, a takeover it does not allow is one of its errors too."""
    if planned is None:
        return None
    managed = await takeover.other_workspaces(backend)
    guarded = takeover.guarded(planned, managed, workspace, allowed)
    why = takeover.refused(guarded, managed) if applying else None
    return dataclasses.replace(guarded, errors=(*guarded.errors, why)) if why else guarded


def _same_environment(saved: Plan, request: ApplyRequest) -> None:
    """A plan made for one environment (or none) applies there only: refused before any write."""
    here = request.manifests.environment if isinstance(request.manifests, Layers) else None
    if saved.environment != here:
        made = f"--env {saved.environment}" if saved.environment else "no --env"
        given = f"--env {here}" if here else "no --env"
        raise WorkflowError(
            f"{request.planfile}: the plan was made with {made}, this apply has {given}: refused before any change"
        )


# -- drift, status, wait -----------------------------------------------------------------------


@_workflow
async def drift(es: Elasticsearch, backend: Backend, known: frozenset[str] = frozenset()) -> DriftReport:
    """Compare the cluster with what the state says was last applied; reads only."""
    cluster = await read_cluster(es, backend)
    state = cluster.state
    findings = views.drift(cluster.endpoints, state) if state is not None else []
    checked = len(state.endpoints) if state is not None else 0
    return DriftReport(tuple(findings), checked, known, cluster.identity(es.url))


def known_findings(path: Path) -> frozenset[str] | None:
    """The finding ids of a previous `drift --json` output; None when the file does not exist yet."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return frozenset(str(finding["id"]) for finding in document["findings"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise WorkflowError(f"{path}: not a drift --json output ({type(error).__name__}: {error})") from None


@_workflow
async def status(es: Elasticsearch, backend: Backend) -> StatusReport:
    """Every live endpoint with its deployment's allocation (one batched stats call) and drift."""
    cluster = await read_cluster(es, backend)
    deployments = {
        inference_id: catalog.deployment_id(endpoint)
        for inference_id, endpoint in cluster.endpoints.items()
        if _deploys_model(endpoint)
    }
    stats = await es.deployment_stats(list(deployments.values()))
    state = cluster.state
    drifted = {f.inference_id for f in views.drift(cluster.endpoints, state)} if state is not None else set()
    rows = (
        _status_row(
            inference_id,
            endpoint,
            stats.get(deployments[inference_id]) if inference_id in deployments else None,
            managed=state is not None and inference_id in state.endpoints,
            drifted=inference_id in drifted,
        )
        for inference_id, endpoint in sorted(cluster.endpoints.items())
    )
    return StatusReport(tuple(rows))


def _deploys_model(endpoint: Mapping[str, Any]) -> bool:
    service = catalog.SERVICES.get(str(endpoint.get("service")))
    return service is not None and service.deploys_model


def _status_row(
    inference_id: str,
    endpoint: Mapping[str, Any],
    deployment: Mapping[str, Any] | None,
    *,
    managed: bool,
    drifted: bool,
) -> StatusRow:
    settings = endpoint.get("service_settings") or {}
    allocation = None
    if deployment is not None:
        _, count, target, state, _ = catalog.deployment_health(deployment)
        allocation = Allocation(count, target, state)
    return StatusRow(
        inference_id=inference_id,
        task_type=endpoint.get("task_type"),
        service=endpoint.get("service"),
        # Whatever the service calls its model setting; for in-cluster endpoints, the deployment's.
        model_id=settings.get("model_id") or settings.get("model") or (deployment or {}).get("model_id"),
        managed=managed,
        preconfigured=inference_id.startswith("."),
        allocation=allocation,
        deployment_state=(deployment or {}).get("state"),
        drifted=drifted,
    )


@_workflow
async def wait(
    es: Elasticsearch,
    ids: Sequence[str],
    *,
    seconds: float,
    reporter: Reporter,
    poll_interval: float,
    backend: Backend | None = None,
) -> WaitReport:
    """Wait until these endpoints' deployments are fully allocated, failed, or `seconds` have passed.
    With the state (`backend`), values that came from references are redacted from server text."""
    state = (await backend.read()).state if backend is not None else None
    pending = {}
    for inference_id in ids:
        endpoint = await es.endpoint(inference_id)
        if endpoint is None:
            raise WorkflowError(f"no endpoint {inference_id}")
        es.redact_values(referenced_values(endpoint, state))  # a referenced model id, in a reason
        pending[inference_id] = (catalog.deployment_id(endpoint), seconds)
    reporter.begin([Planned(i, "wait", seconds) for i in pending])  # the time left shows from the start
    return WaitReport(await wait_for_deployments(es, pending, reporter, poll_interval))


# -- import and state repairs ------------------------------------------------------------------


@dataclass(frozen=True)
class ImportRequest:
    ids: tuple[str, ...]  # ignored with every_endpoint
    folder: Path
    every_endpoint: bool = False


@_workflow
async def import_endpoints(es: Elasticsearch, backend: Backend, request: ImportRequest) -> ImportReport:
    """Write a manifest per live endpoint (refusing unsafe file names and existing files) and check
    that they validate. Takes no lock and writes no state: the next plan adopts them for review."""
    cluster = await read_cluster(es, backend)  # the state masks values that came from references
    chosen = _chosen(cluster, request)
    written = importer.write_manifests([cluster.endpoints[i] for i in chosen], request.folder, cluster)
    importer.validated(written, cluster.version)
    return ImportReport(written)


def _chosen(cluster: Cluster, request: ImportRequest) -> list[str]:
    chosen = (
        sorted(i for i in cluster.endpoints if not i.startswith("."))
        if request.every_endpoint
        else list(request.ids)
    )
    missing = [i for i in chosen if i not in cluster.endpoints]
    if missing:
        raise WorkflowError(f"no live endpoint {', '.join(missing)}")
    return chosen


@_workflow
async def record(backend: Backend, inference_id: str) -> dict[str, Any]:
    """`state show`: one endpoint's record, as JSON (secret digests only)."""
    state = (await backend.read()).state
    if state is None or inference_id not in state.endpoints:
        raise WorkflowError(f"the state has no endpoint {inference_id}")
    return state.endpoints[inference_id].to_json()


@_workflow
async def forget(backend: Backend, inference_id: str, *, lock_timeout: float) -> None:
    """`state rm`: drop an endpoint from the state under the lock; it stays in the cluster."""
    async with locked(backend, "state rm", lock_timeout, _renewal_failed):
        snapshot = await backend.read()
        if snapshot.state is None or inference_id not in snapshot.state.endpoints:
            raise WorkflowError(f"the state has no endpoint {inference_id}")
        await backend.write(snapshot.state.without(inference_id).bumped(), snapshot.token)
