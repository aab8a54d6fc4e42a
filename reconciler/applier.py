"""The applier: executes a Plan against the cluster, records each action in the state, waits for deployments.

It sends the requests each change carries, in the order its `action` gives, and never reads
what only explains a change (reason, diff, references): the plan computed every request. Deletes
(and the delete half of replaces) run first, then creates, updates and the state-only actions
(read, adopt, forget); independent endpoints run in parallel up to `parallelism`. Each request
that changes an endpoint is recorded in the state as intended before it is sent, and every action
that reached the cluster is written to the state before it counts as done (writes are grouped: one
in flight at a time carries every entry noted meanwhile, journalled by `StateWriter`), so an
interrupted apply loses nothing, even killed: the next run settles what it intended by reading
back (`session.settle`). One endpoint's failure does not stop the others.

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

from reconciler import catalog, views
from reconciler.client import ApiError, Elasticsearch, ElasticsearchError, Response, TransportError
from reconciler.plan import Action, Change, Plan, Request
from reconciler.progress import DeploymentStatus, Planned, Reporter
from reconciler.resolver import Resolver
from reconciler.sensitive import BadReferenceError, Secret, digest
from reconciler.state import DONE, DROPPED, FORGOTTEN, INTENT, EndpointRecord, Entry, State
from reconciler.storage import Backend, now_iso


@dataclass(frozen=True)
class ApplyOptions:
    parallelism: int = 8
    wait: bool = True
    wait_timeout: float = 1200.0
    poll_interval: float = 1.0


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


# -- the state, written as actions finish ------------------------------------------------------


class StateWriter:
    """Group commit: each caller returns once a write holding its entry has been stored.

    Entries (`reconciler.state.Entry`) are journalled: a write adds the entries noted since the
    last one (up to JOURNAL_BATCH), not the whole state, so recording N actions costs N entries.
    The first write of a state never stored, and a journal grown past the snapshot, write the
    whole state instead (a snapshot); `close` does so at the end of a run. Endpoint records are
    kept in mutable maps: a State is built only for those whole writes.
    """

    JOURNAL_BATCH = 256

    def __init__(self, backend: Backend, state: State, token: Any, settled: Sequence[Entry] = ()) -> None:
        self.backend = backend
        self.base = state
        self.endpoints: dict[str, EndpointRecord] = dict(state.endpoints)
        self.intents: dict[str, Entry] = dict(state.intents)
        self.token = token
        self._queue: list[Entry] = []
        self._noted = 0
        self._written = 0
        self._lock = asyncio.Lock()
        for entry in settled:  # the settling of a previous run's intents goes with the first write
            self._note(entry)

    def _note(self, entry: Entry) -> int:
        if entry.kind == INTENT:
            self.intents[entry.inference_id] = entry
        else:
            self.intents.pop(entry.inference_id, None)
            if entry.kind == DONE and entry.record is not None:
                self.endpoints[entry.inference_id] = entry.record
            elif entry.kind == FORGOTTEN:
                self.endpoints.pop(entry.inference_id, None)
        self._queue.append(entry)
        self._noted += 1
        return self._noted

    async def intend(self, inference_id: str, op: str, record: EndpointRecord | None = None) -> None:
        """Recorded before the request that changes the endpoint is sent (DESIGN §9)."""
        await self._commit(self._note(Entry(INTENT, inference_id, op, record)))

    async def put(self, inference_id: str, record: EndpointRecord) -> None:
        await self._commit(self._note(Entry(DONE, inference_id, record=record)))

    async def forget(self, inference_id: str) -> None:
        await self._commit(self._note(Entry(FORGOTTEN, inference_id)))

    async def drop(self, inference_id: str) -> None:
        """The intended request certainly changed nothing."""
        if inference_id in self.intents:
            await self._commit(self._note(Entry(DROPPED, inference_id)))

    def state(self, serial: int) -> State:
        return replace(self.base, serial=serial, endpoints=dict(self.endpoints), intents=dict(self.intents))

    async def _commit(self, mine: int) -> None:
        async with self._lock:
            while self._written < mine:
                await self._write()

    async def _write(self) -> None:
        serial = self.base.serial + 1
        journal, snapshot = self.backend.journal(self.token)
        if self.token is None or journal > max(snapshot, 256 * 1024):
            count = len(self._queue)
            self.token = await self.backend.write(self.state(serial), self.token)
        else:
            count = min(len(self._queue), self.JOURNAL_BATCH)
            self.token = await self.backend.append(self._queue[:count], self.state(serial), self.token)
        del self._queue[:count]
        self.base = replace(self.base, serial=serial)
        self._written += count

    async def close(self) -> None:
        """Store what is noted, and fold the journal into a snapshot: the next reader reads one."""
        await self._commit(self._noted)
        async with self._lock:
            if self.token is not None and self.backend.journal(self.token)[0] > 0:
                self.base = replace(self.base, serial=self.base.serial + 1)
                self.token = await self.backend.write(self.state(self.base.serial), self.token)


# -- executing a plan --------------------------------------------------------------------------


class Applier:
    """Sends each change's requests, in the order its action gives, and records the outcome."""

    def __init__(
        self,
        es: Elasticsearch,
        writer: StateWriter,
        secrets: Mapping[str, Mapping[str, Secret]],
        reporter: Reporter,
        options: ApplyOptions,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.es = es
        self.writer = writer
        self.secrets = secrets
        self.reporter = reporter
        self.options = options
        self.sleep = sleep
        self.result = Result()
        self._limit = asyncio.Semaphore(max(1, options.parallelism))

    async def apply(self, plan: Plan) -> Result:
        changes = [c for c in plan.changes if c.action is not Action.NO_OP]
        self.reporter.begin([Planned(c.inference_id, c.action.value, self._waits(c)) for c in changes])
        removing = [c for c in changes if c.action in (Action.DELETE, Action.REPLACE)]
        deleted = await self._gather(self._delete, removing)
        later = [
            c
            for c in changes
            if c.action not in (Action.DELETE, Action.REPLACE)
            or (c.action is Action.REPLACE and c.inference_id in deleted)
        ]
        for change in changes:
            if change.action is Action.REPLACE and change.inference_id not in deleted:
                self._outcome(change, "skipped", "its delete failed")
        waiting = await self._gather(self._put, later)
        if self.options.wait:
            await self._wait([c for c in later if c.inference_id in waiting and c.wait])
        return self.result

    def _waits(self, change: Change) -> float | None:
        """How long apply will wait for the change's deployment; None when it will not."""
        if not (self.options.wait and change.wait) or change.action not in (
            Action.CREATE,
            Action.REPLACE,
            Action.UPDATE,
        ):
            return None
        return change.wait_timeout or self.options.wait_timeout

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
        # Built here or by the client, a detail may hold server text: redacted alike (DESIGN §9).
        detail = self.es.redact(detail) if detail is not None else None
        self.result.outcomes.append(
            Outcome(change.inference_id, action or change.action.value, status, detail)
        )
        self.reporter.action(
            change.inference_id,
            action or change.action.value,
            status,
            **({"detail": detail} if detail else {}),
        )

    async def _send(self, change: Change, request: Request, **options: Any) -> Response:
        """One of the change's requests, its secret references replaced by their values."""
        return await self.es.request(
            request.method,
            request.path,
            params=dict(request.query) or None,
            body=self._body(change, request),
            **options,
        )

    def _body(self, change: Change, request: Request) -> dict[str, Any] | None:
        if request.body is None:
            return None
        body = dict(request.body)
        if isinstance(body.get("service_settings"), Mapping):
            secrets = self.secrets.get(change.inference_id, {})
            present = {p: s for p, s in secrets.items() if _has_path(body["service_settings"], p)}
            revealed = {path: secret.reveal() for path, secret in present.items()}
            body["service_settings"] = views.with_secrets(body["service_settings"], revealed)
        return body

    # -- deletes (and the delete half of replaces): the change's first request -----------------

    async def _delete(self, change: Change) -> bool:
        await self.writer.intend(change.inference_id, "delete")
        try:
            async with self._limit:  # the parallelism bounds requests to the cluster, not state writes
                self.reporter.started(change.inference_id, "delete")
                await self._send(change, change.requests[0], ok=(404,), idempotent=True)
        except ElasticsearchError as error:
            self._outcome(change, "failed", error.describe(), "delete")
            if isinstance(error, ApiError):  # answered, so not deleted; otherwise the next run reads back
                await self.writer.drop(change.inference_id)
            return False
        await self.writer.forget(change.inference_id)
        if change.action is Action.DELETE:
            self._outcome(change, "done")
        return True

    # -- the rest: creates and updates (requests), reads, adoptions and forgets (state only) ---

    async def _put(self, change: Change) -> bool:
        """Carry out one change; True when there is a deployment to wait for."""
        if change.action is Action.FORGET:
            await self.writer.forget(change.inference_id)
            self._outcome(change, "done")
            return False
        if _sends(change):  # recorded before the request: a run killed meanwhile is settled next time
            await self.writer.intend(change.inference_id, "put", self._record(change, None))
        try:
            async with self._limit:
                self.reporter.started(change.inference_id, change.action.value)
                echo, waiting = await self._echo(change)
        except ElasticsearchError as error:
            self._outcome(change, "failed", error.describe())
            if not await self._record_if_present(change) and isinstance(error, ApiError):
                await self.writer.drop(change.inference_id)
            return False
        await self.writer.put(change.inference_id, self._record(change, echo))
        self._outcome(change, "done")
        return waiting

    async def _echo(self, change: Change) -> tuple[Mapping[str, Any], bool]:
        """What the cluster holds once the change is made, and whether to wait for it."""
        if change.action in (Action.READ, Action.ADOPT):
            return change.before or {}, False
        if change.action is Action.UPDATE:
            return await self._update(change), True
        return await self._create(change, change.requests[-1]), True

    def _record(
        self, change: Change, echo: Mapping[str, Any] | None, *, tainted: bool = False
    ) -> EndpointRecord:
        """The state's record of the endpoint as the cluster echoes it; with no echo, the record
        an intent carries (`applied` left empty until it is read back)."""
        previous = self.writer.endpoints.get(change.inference_id)
        if change.action is Action.READ and previous is not None:
            return replace(previous, applied=views.live_view(echo or {}), applied_at=now_iso())
        secrets = self.secrets.get(change.inference_id, {})
        salt = self.writer.base.salt
        return views.applied_record(change, echo, secrets, salt, now_iso(), tainted=tainted)

    async def _create(self, change: Change, put: Request) -> Mapping[str, Any]:
        """PUT the endpoint; a lost answer or an 'already exists' is settled by reading it back."""
        try:
            response = await self._send(change, put, ok=(408,))
        except TransportError as error:
            if not error.maybe_applied:
                raise
            return await self._settle(change, error)
        except ApiError as error:
            if error.status == 400 and ("already exists" in error.reason or "must be unique" in error.reason):
                return await self._settle(change, error)
            raise
        if response.status == 408:  # the deployment keeps starting: wait for it below
            echo = await self.es.endpoint(change.inference_id)
            if echo is None:
                raise ApiError(put.method, put.path, 408, None, "timed out and not stored")
            return echo
        created: Mapping[str, Any] = response.body
        return created

    async def _settle(self, change: Change, cause: ElasticsearchError) -> Mapping[str, Any]:
        """A write whose answer was lost (or a create refused as existing) succeeded if the endpoint
        now reads back as what was asked; otherwise the original error stands."""
        echo = await self.es.endpoint(change.inference_id)
        if echo is not None:
            want = views.requested_view(change)
            have = views.live_view(echo)
            skip = views.dynamic_paths(want) | views.dynamic_paths(have)
            if not views.differences(want, have, owned=set(), skip=skip, ignore=()):
                self.reporter.action(
                    change.inference_id, change.action.value, "settled", detail=cause.describe()
                )
                return echo
        raise cause

    async def _update(self, change: Change) -> Mapping[str, Any]:
        if not change.requests:  # nothing the server needs to change: only the state moves
            return change.before or {}
        try:
            response = await self._send(change, change.requests[0])
        except TransportError as error:
            if not error.maybe_applied:
                raise
            return await self._settle(change, error)
        echo: Mapping[str, Any] = response.body
        return echo

    async def _record_if_present(self, change: Change) -> bool:
        """A failed create may still have stored the endpoint: record it, tainted, to replace later.
        True when it did (or may have: it could not be read back)."""
        if change.action not in (Action.CREATE, Action.REPLACE):
            return False
        try:
            echo = await self.es.endpoint(change.inference_id)
        except ElasticsearchError:
            return True
        if echo is not None:
            await self.writer.put(change.inference_id, self._record(change, echo, tainted=True))
        return echo is not None

    # -- waiting -------------------------------------------------------------------------------

    async def _wait(self, changes: Sequence[Change]) -> None:
        if not changes:
            return
        by_id = {c.inference_id: c for c in changes}

        async def settled(status: DeploymentStatus) -> None:
            # Recorded at the poll that saw it, not after the others: an apply stopped while it
            # still waits for them keeps the taint, and the next plan replaces the endpoint.
            if status.outcome == "done":
                return
            change = by_id[status.inference_id]
            self._outcome(change, "failed", status.failure(), "wait")
            record = self.writer.endpoints.get(change.inference_id)
            if record is not None:
                await self.writer.put(change.inference_id, replace(record, tainted=True))

        await wait_for_deployments(
            self.es,
            {
                c.inference_id: (
                    c.deployment_id or c.inference_id,
                    c.wait_timeout or self.options.wait_timeout,
                )
                for c in changes
            },
            self.reporter,
            self.options.poll_interval,
            self.sleep,
            on_done=settled,
        )


def _sends(change: Change) -> bool:
    """Whether carrying out the change (past any delete) sends a request that writes the endpoint."""
    return change.action in (Action.CREATE, Action.REPLACE) or (
        change.action is Action.UPDATE and bool(change.requests)
    )


def _has_path(settings: Mapping[str, Any], path: str) -> bool:
    top, _, inner = path.partition(".")
    value = settings.get(top)
    return top in settings and (not inner or (isinstance(value, Mapping) and inner in value))


# -- waiting for deployments (also the `wait` command) -----------------------------------------


async def wait_for_deployments(
    es: Elasticsearch,
    pending: Mapping[str, tuple[str, float]],
    reporter: Reporter,
    interval: float,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    *,
    on_done: Callable[[DeploymentStatus], Awaitable[None]] | None = None,
) -> dict[str, DeploymentStatus]:
    """Poll every pending deployment with one stats request per interval until each is done,
    failed or past its deadline. `pending` maps endpoint id to (deployment id, timeout seconds);
    `on_done` is awaited with each deployment's final status at the poll that settles it."""
    started = time.monotonic()
    results: dict[str, DeploymentStatus] = {}
    while True:
        open_ids = [i for i in pending if i not in results]
        stats = await es.deployment_stats([pending[i][0] for i in open_ids])
        elapsed = time.monotonic() - started
        shown: list[DeploymentStatus] = []
        settled: list[DeploymentStatus] = []
        for inference_id in pending:
            if inference_id in results:
                shown.append(results[inference_id])
                continue
            deployment_id, timeout = pending[inference_id]
            outcome, count, target, state, reason = catalog.deployment_health(stats.get(deployment_id))
            reason = es.redact(reason) if reason else reason  # server text, shown and logged
            if outcome == "waiting" and elapsed >= timeout:
                outcome = "timed-out"
            status = DeploymentStatus(
                inference_id, deployment_id, count, target, state, reason, elapsed, outcome
            )
            if outcome != "waiting":
                results[inference_id] = status
                settled.append(status)
            shown.append(status)
        reporter.poll(shown)
        if on_done is not None:
            for status in settled:
                await on_done(status)
        if len(results) == len(pending):
            return results
        await sleep(interval)
