"""The applier: executes a Plan against the cluster, records each action in the state, waits for deployments.

It branches on each change's `action` only. Deletes (and the delete half of replaces) run first,
then creates and updates; independent endpoints run in parallel up to `parallelism`. Every action
that reached the cluster is written to the state before it counts as done (writes are grouped: one
in flight at a time carries every action finished meanwhile), so an interrupted apply loses
nothing. One endpoint's failure does not stop the others.

A create whose answer was lost, or that is refused because the id exists, is settled by reading
the endpoint back and comparing it with what was asked. Deployments of in-cluster endpoints are
then waited for together, one batched stats request per poll; a deployment that fails or does not
finish in time marks its endpoint tainted, so that the next plan replaces it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from reconciler import catalog, planner
from reconciler.catalog import Version
from reconciler.client import ApiError, Elasticsearch, ElasticsearchError, TransportError
from reconciler.plan import Action, Change, Plan
from reconciler.progress import DeploymentStatus, Reporter
from reconciler.sensitive import BadReferenceError, Resolver, Secret, digest
from reconciler.state import Backend, EndpointRecord, State, now_iso


@dataclass(frozen=True)
class ApplyOptions:
    parallelism: int = 8
    wait: bool = True
    wait_timeout: float = 1200.0
    poll_interval: float = 1.0
    allow_referenced: bool = False


@dataclass(frozen=True)
class Outcome:
    inference_id: str
    action: str
    status: str  # done | failed | skipped
    detail: str | None = None


@dataclass
class Result:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def counts(self) -> dict[str, int]:
        return {
            status: sum(o.status == status for o in self.outcomes) for status in ("done", "failed", "skipped")
        }


class ApplyError(Exception):
    """The plan cannot be applied as it stands (stale, for another cluster, secrets moved)."""


# -- secrets -----------------------------------------------------------------------------------


def resolve_secrets(plan: Plan, resolver: Resolver, salt: str | None) -> dict[str, dict[str, Secret]]:
    """Each change's secrets, read again from their references; with the plan's salt at hand,
    each must still be the secret that was planned."""
    resolved: dict[str, dict[str, Secret]] = {}
    problems = []
    for change in plan.changes:
        for path, planned in change.secrets.items():
            try:
                secret = Secret(resolver.resolve(planned.reference))
            except BadReferenceError as error:
                problems.append(f"{change.inference_id}: service_settings.{path}: {error}")
                continue
            if salt is not None and digest(secret, salt) != planned.digest:
                problems.append(
                    f"{change.inference_id}: service_settings.{path} ({planned.reference}) is not the secret that was planned"
                )
            resolved.setdefault(change.inference_id, {})[path] = secret
    if problems:
        raise ApplyError("; ".join(problems))
    return resolved


def _with_secrets(settings: Mapping[str, Any], secrets: Mapping[str, Secret]) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in settings.items()}
    for path, secret in secrets.items():
        top, _, inner = path.partition(".")
        if inner:
            out.setdefault(top, {})[inner] = secret.reveal()
        else:
            out[top] = secret.reveal()
    return out


def requested_view(change: Change) -> dict[str, Any]:
    """What was asked, as the server echoes it, without the (redacted) secrets."""
    after = dict(change.after or {})
    settings = after["service_settings"] = dict(after.get("service_settings") or {})
    for path in change.secrets:
        top, _, inner = path.partition(".")
        if inner and isinstance(settings.get(top), Mapping):
            rest = {k: v for k, v in settings[top].items() if k != inner}
            if rest:
                settings[top] = rest
            else:
                settings.pop(top)
        else:
            settings.pop(top, None)
    return after


# -- the state, written as actions finish ------------------------------------------------------


class StateWriter:
    """Group commit: each caller returns once a write holding its change has been stored.

    Endpoint records are kept in a mutable map and a State is built only per write, so recording
    N actions costs N map updates plus one write per batch, not N copies of the whole state.
    """

    def __init__(self, backend: Backend, state: State, token: Any) -> None:
        self.backend = backend
        self.base = state
        self.endpoints: dict[str, EndpointRecord] = dict(state.endpoints)
        self.token = token
        self._changed = 0
        self._written = 0
        self._lock = asyncio.Lock()

    async def put(self, inference_id: str, record: EndpointRecord) -> None:
        self.endpoints[inference_id] = record
        await self._commit()

    async def forget(self, inference_id: str) -> None:
        self.endpoints.pop(inference_id, None)
        await self._commit()

    async def _commit(self) -> None:
        self._changed += 1
        mine = self._changed
        async with self._lock:
            if self._written >= mine:
                return
            target = self._changed
            snapshot = replace(self.base, serial=self.base.serial + 1, endpoints=dict(self.endpoints))
            self.token = await self.backend.write(snapshot, self.token)
            self.base = replace(self.base, serial=snapshot.serial)
            self._written = target


# -- executing a plan --------------------------------------------------------------------------


class Applier:
    def __init__(
        self,
        es: Elasticsearch,
        writer: StateWriter,
        version: Version,
        secrets: Mapping[str, Mapping[str, Secret]],
        reporter: Reporter,
        options: ApplyOptions,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.es = es
        self.writer = writer
        self.version = version
        self.secrets = secrets
        self.reporter = reporter
        self.options = options
        self.sleep = sleep
        self.result = Result()
        self._limit = asyncio.Semaphore(max(1, options.parallelism))

    async def apply(
        self, plan: Plan, live: Mapping[str, Mapping[str, Any]], wanted_ids: frozenset[str]
    ) -> Result:
        changes = [c for c in plan.changes if c.action is not Action.NO_OP]
        removing = [c for c in changes if c.action in (Action.DELETE, Action.REPLACE)]
        deleted = await self._gather(self._delete, removing)
        later = [
            c
            for c in changes
            if c.action in (Action.CREATE, Action.UPDATE, Action.READ)
            or (c.action is Action.REPLACE and c.inference_id in deleted)
        ]
        for change in changes:
            if change.action is Action.REPLACE and change.inference_id not in deleted:
                self._outcome(change, "skipped", "its delete failed")
        waiting = await self._gather(lambda c: self._put(c, live), later)
        await self._record_noops(plan, live, wanted_ids)
        if self.options.wait:
            await self._wait([c for c in later if c.inference_id in waiting and c.wait])
        return self.result

    async def _gather(
        self, run: Callable[[Change], Coroutine[Any, Any, bool]], changes: Sequence[Change]
    ) -> set[str]:
        """Run each change; their failures are outcomes, but an error of the state storage stops
        them all before it is raised (no action may go on unrecorded, or past the lock's release)."""
        try:
            async with asyncio.TaskGroup() as group:
                tasks: dict[str, asyncio.Task[bool]] = {
                    c.inference_id: group.create_task(run(c)) for c in changes
                }
        except BaseExceptionGroup as errors:
            raise errors.exceptions[0] from None
        return {inference_id for inference_id, task in tasks.items() if task.result()}

    def _outcome(
        self, change: Change, status: str, detail: str | None = None, action: str | None = None
    ) -> None:
        self.result.outcomes.append(
            Outcome(change.inference_id, action or change.action.value, status, detail)
        )
        self.reporter.action(
            change.inference_id,
            action or change.action.value,
            status,
            **({"detail": detail} if detail else {}),
        )

    # -- deletes -------------------------------------------------------------------------------

    async def _delete(self, change: Change) -> bool:
        force = self.options.allow_referenced and change.referenced
        try:
            async with self._limit:  # the parallelism bounds requests to the cluster, not state writes
                await self.es.delete_endpoint(change.task_type, change.inference_id, force=force)
        except ElasticsearchError as error:
            self._outcome(change, "failed", error.describe(), "delete")
            return False
        await self.writer.forget(change.inference_id)
        if change.action is Action.DELETE:
            self._outcome(change, "done")
        return True

    # -- creates, updates and reads ------------------------------------------------------------

    async def _put(self, change: Change, live: Mapping[str, Mapping[str, Any]]) -> bool:
        """Create, update or read one endpoint; True when there is a deployment to wait for."""
        try:
            async with self._limit:
                if change.action is Action.READ:
                    echo, waiting = live[change.inference_id], False
                elif change.action is Action.UPDATE:
                    echo, waiting = await self._update(change, live[change.inference_id]), True
                else:
                    echo, waiting = await self._create(change)
        except ElasticsearchError as error:
            self._outcome(change, "failed", error.describe())
            await self._record_if_present(change)
            return False
        await self.writer.put(change.inference_id, self._record(change, echo))
        self._outcome(change, "done")
        return waiting

    def _record(self, change: Change, echo: Mapping[str, Any], *, tainted: bool = False) -> EndpointRecord:
        secrets = self.secrets.get(change.inference_id, {})
        salt = self.writer.base.salt
        previous = self.writer.endpoints.get(change.inference_id)
        if change.action is Action.READ and previous is not None:
            return replace(previous, applied=planner.live_view(echo), applied_at=now_iso())
        return EndpointRecord(
            task_type=change.task_type,
            service=change.service,
            requested=requested_view(change),
            applied=planner.live_view(echo),
            secret_digests={path: digest(secret, salt) for path, secret in secrets.items()},
            lifecycle=dict(change.lifecycle),
            applied_at=now_iso(),
            tainted=tainted,
        )

    def _body(self, change: Change) -> dict[str, Any]:
        request = dict(change.request or {})
        request["service_settings"] = _with_secrets(
            request.get("service_settings", {}), self.secrets.get(change.inference_id, {})
        )
        return request

    async def _create(self, change: Change) -> tuple[Mapping[str, Any], bool]:
        """PUT the endpoint; a lost answer or an 'already exists' is settled by reading it back."""
        body = self._body(change)
        wait_for = "30s" if change.wait and (self.version.major == 8 or self.version.at_least(9, 1)) else None
        try:
            response = await self.es.put_endpoint(
                change.task_type, change.inference_id, body, wait_for=wait_for
            )
        except TransportError as error:
            if not error.maybe_applied:
                raise
            return await self._settle(change, error), True
        except ApiError as error:
            if error.status == 400 and ("already exists" in error.reason or "must be unique" in error.reason):
                return await self._settle(change, error), True
            raise
        if response.status == 408:  # the deployment keeps starting: wait for it below
            echo = await self.es.endpoint(change.inference_id)
            if echo is None:
                raise ApiError(
                    "PUT",
                    f"/_inference/{change.task_type}/{change.inference_id}",
                    408,
                    None,
                    "timed out and not stored",
                )
            return echo, True
        return response.body, True

    async def _settle(self, change: Change, cause: ElasticsearchError) -> Mapping[str, Any]:
        """A write whose answer was lost (or a create refused as existing) succeeded if the endpoint
        now reads back as what was asked; otherwise the original error stands."""
        echo = await self.es.endpoint(change.inference_id)
        if echo is not None:
            want = requested_view(change)
            have = planner.live_view(echo)
            skip = planner.dynamic_paths(want) | planner.dynamic_paths(have)
            if not planner.differences(want, have, owned=set(), skip=skip, ignore=()):
                self.reporter.action(
                    change.inference_id, change.action.value, "settled", detail=cause.describe()
                )
                return echo
        raise cause

    async def _update(self, change: Change, live: Mapping[str, Any]) -> Mapping[str, Any]:
        body = update_body(change, live, self.secrets.get(change.inference_id, {}), self.version)
        if not body:
            return live
        try:
            response = await self.es.update_endpoint(change.task_type, change.inference_id, body)
        except TransportError as error:
            if not error.maybe_applied:
                raise
            return await self._settle(change, error)
        echo: Mapping[str, Any] = response.body
        return echo

    async def _record_if_present(self, change: Change) -> None:
        """A failed create may still have stored the endpoint: record it, tainted, to replace later."""
        if change.action not in (Action.CREATE, Action.REPLACE):
            return
        try:
            echo = await self.es.endpoint(change.inference_id)
        except ElasticsearchError:
            return
        if echo is not None:
            await self.writer.put(change.inference_id, self._record(change, echo, tainted=True))

    async def _record_noops(
        self, plan: Plan, live: Mapping[str, Mapping[str, Any]], wanted: frozenset[str]
    ) -> None:
        """Adopt endpoints the state lacks, clear taints that healed, forget what is gone everywhere."""
        for change in plan.changes:
            if change.action is not Action.NO_OP or change.inference_id not in live:
                continue
            record = self.writer.endpoints.get(change.inference_id)
            if record is None or record.tainted or dict(record.lifecycle) != dict(change.lifecycle):
                await self.writer.put(change.inference_id, self._record(change, live[change.inference_id]))
        planned = {c.inference_id for c in plan.changes}
        for inference_id in list(self.writer.endpoints):
            if inference_id not in live and inference_id not in wanted and inference_id not in planned:
                await self.writer.forget(inference_id)

    # -- waiting -------------------------------------------------------------------------------

    async def _wait(self, changes: Sequence[Change]) -> None:
        if not changes:
            return
        results = await wait_for_deployments(
            self.es,
            {
                c.inference_id: (deployment_of(c), c.wait_timeout or self.options.wait_timeout)
                for c in changes
            },
            self.reporter,
            self.options.poll_interval,
            self.sleep,
        )
        for change in changes:
            status = results[change.inference_id]
            if status.outcome == "done":
                continue
            self._outcome(change, "failed", wait_failure(status), "wait")
            record = self.writer.endpoints.get(change.inference_id)
            if record is not None:
                await self.writer.put(change.inference_id, replace(record, tainted=True))


def deployment_of(change: Change) -> str:
    settings = (change.request or {}).get("service_settings") or {}
    return str(settings.get("deployment_id") or change.inference_id)


def wait_failure(status: DeploymentStatus) -> str:
    what = "failed" if status.outcome == "failed" else f"did not finish within {status.elapsed:.0f}s"
    reason = f": {status.reason}" if status.reason else ""
    return f"deployment {status.deployment_id} {what} (allocation {status.allocation()}, state {status.state}){reason}"


# -- the _update body (reference §6) -----------------------------------------------------------


def update_body(
    change: Change, live: Mapping[str, Any], secrets: Mapping[str, Secret], version: Version
) -> dict[str, Any]:
    """What `_update` needs for this change on this version: only what it can and must change.

    service is never sent; Anthropic-style task_settings are sent whole (the server replaces
    them), with ignored paths filled from the cluster; up to 9.4 any service_settings object is read
    as new secrets, so the secrets are resent whenever service_settings is sent.
    """
    request = change.request or {}
    service = catalog.SERVICES[str(request.get("service"))]
    newest = version.at_least(9, 5)
    paths = [d.path for d in change.diff]
    desired = request.get("service_settings") or {}
    body: dict[str, Any] = {}
    settings: dict[str, Any] = {}
    if service.deploys_model:
        if newest and any(p.startswith("service_settings.adaptive_allocations") for p in paths):
            settings["adaptive_allocations"] = desired.get("adaptive_allocations")
        elif "service_settings.num_allocations" in paths:
            settings["num_allocations"] = desired.get("num_allocations")
    else:
        secret_paths = {f"service_settings.{p}" for p in change.secrets}
        rotated = any(p in secret_paths for p in paths)
        if newest:
            for path in paths:
                name = (
                    path.split(".")[1]
                    if path.startswith("service_settings.") and path not in secret_paths
                    else None
                )
                if name is not None:
                    settings[name] = desired.get(name)
        if rotated or (settings and not newest):
            settings = _with_secrets(settings, secrets)
    if settings:
        body["service_settings"] = settings
    if any(p.startswith("task_settings.") or p == "task_settings" for p in paths):
        task = dict(request.get("task_settings") or {})
        current = live.get("task_settings") or {}
        for ignored in change.lifecycle.get("ignore_changes", []):
            section, _, name = str(ignored).partition(".")
            if section == "task_settings" and name in current:
                task[name] = current[name]
        body["task_settings"] = task
    if newest and any(p.startswith("chunking_settings") for p in paths) and "chunking_settings" in request:
        body["chunking_settings"] = request["chunking_settings"]
    return body


# -- waiting for deployments (also the `wait` command) -----------------------------------------


def evaluate(stats: Mapping[str, Any] | None) -> tuple[str, int, int, str, str | None]:
    """(outcome, allocations, target, state, reason) of a deployment, as the reference's §9 decides."""
    if stats is None:
        return "waiting", 0, 0, "absent", "the deployment does not exist (yet)"
    status = stats.get("allocation_status") or {}
    count, target = int(status.get("allocation_count", 0)), int(status.get("target_allocation_count", 0))
    nodes = stats.get("nodes") or []
    node_failures = [n for n in nodes if (n.get("routing_state") or {}).get("routing_state") == "failed"]
    reason = stats.get("reason") or next(((n["routing_state"].get("reason")) for n in node_failures), None)
    if stats.get("state") == "failed" or (nodes and len(node_failures) == len(nodes)):
        return "failed", count, target, "failed", reason
    if status.get("state") == "fully_allocated" and count == target:
        return "done", count, target, str(status.get("state")), None
    return "waiting", count, target, str(status.get("state", stats.get("state", "starting"))), reason


async def wait_for_deployments(
    es: Elasticsearch,
    pending: Mapping[str, tuple[str, float]],
    reporter: Reporter,
    interval: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> dict[str, DeploymentStatus]:
    """Poll every pending deployment with one stats request per interval until each is done,
    failed or past its deadline. `pending` maps endpoint id to (deployment id, timeout seconds)."""
    started = time.monotonic()
    results: dict[str, DeploymentStatus] = {}
    while True:
        open_ids = [i for i in pending if i not in results]
        stats = await es.deployment_stats([pending[i][0] for i in open_ids])
        elapsed = time.monotonic() - started
        shown = []
        for inference_id in pending:
            if inference_id in results:
                shown.append(results[inference_id])
                continue
            deployment_id, timeout = pending[inference_id]
            outcome, count, target, state, reason = evaluate(stats.get(deployment_id))
            if outcome == "waiting" and elapsed >= timeout:
                outcome = "timed-out"
            status = DeploymentStatus(
                inference_id, deployment_id, count, target, state, reason, elapsed, outcome
            )
            if outcome != "waiting":
                results[inference_id] = status
            shown.append(status)
        reporter.poll(shown)
        if len(results) == len(pending):
            return results
        await sleep(interval)
