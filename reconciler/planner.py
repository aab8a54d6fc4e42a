"""The planner: a pure function from (desired, live, prior state, options) to a Plan.

No I/O, no clock. It compares three views of each endpoint, all in the form the server echoes:

- expected: what the manifest asks for, as the server would store it (the service catalog fills in
  the defaults the server adds: rate_limit, chunking, task settings defaults, `elser` as
  `elasticsearch`);
- live: what GET /_inference returns now;
- the state's record: what was requested and what the server echoed at the last apply.

What will change is expected versus live. Live keys the manifest never set are the server's
(measured dimensions, default similarity, a num_allocations that adaptive allocations move) and
never count, unless the manifest set them at the last apply and no longer does: removing a key is a
real change. Reasons tell a manifest change (expected versus what was requested) from drift (live
versus what was applied). A change is an in-place update only when the catalog says `_update` can
change every changed path on the server's version, and the update would not reset the endpoint's
chunking (C5); otherwise it is a replace, and the paths that force it are named.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

from reconciler import catalog, updates
from reconciler.catalog import Version
from reconciler.model import Desired
from reconciler.plan import (
    Action,
    Change,
    DiffEntry,
    Plan,
    PlannedSecret,
    Request,
    Unmanaged,
    flatten,
)
from reconciler.sensitive import REDACTED, REDACTED_CHANGED, digest
from reconciler.state import EndpointRecord, State
from reconciler.views import (
    differences,
    dynamic_paths,
    expected_view,
    fingerprint,
    ignored,
    live_view,
    moved,
    shown,
    with_secrets,
)


@dataclass(frozen=True)
class Live:
    """The cluster as read: endpoints by id, and deployment stats by deployment id."""

    endpoints: Mapping[str, Mapping[str, Any]]
    version: Version
    deployments: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    cluster: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Derived:
    """What the planner takes from a manifest alone, on a version: the endpoint as the server will
    echo it (`views.expected_view`), the PUT that creates it, and its lifecycle options."""

    want: dict[str, Any]
    shown: dict[str, Any]  # `want` with (sensitive) at each secret path: a plan's `after`
    put: Request
    lifecycle: dict[str, Any]


# Derived per (manifest, version), for plans that share manifests: the environments of `plan
# --all-envs` share most of their base (`overlays.Shared.planned`). Each Desired is kept beside
# what was derived from it, so that its id stays its own.
Memo = dict[tuple[int, Version], tuple[Desired, Derived]]


def derive(desired: Desired, version: Version, memo: Memo | None = None) -> Derived:
    key = (id(desired), version)
    if memo is not None and key in memo:
        return memo[key][1]
    want = expected_view(desired, version)
    shown = {
        **want,
        "service_settings": with_secrets(want["service_settings"], dict.fromkeys(desired.secrets, REDACTED)),
    }
    made = Derived(want, shown, _put(desired, version), desired.lifecycle.model_dump(mode="json"))
    if memo is not None:
        memo[key] = (desired, made)
    return made


@dataclass(frozen=True)
class Options:
    targets: frozenset[str] = frozenset()
    replace: frozenset[str] = frozenset()
    refresh_only: bool = False
    destroy: bool = False


# -- planning ----------------------------------------------------------------------------------


def plan(
    desired: Sequence[Desired],
    live: Live,
    prior: State | None,
    options: Options = Options(),
    memo: Memo | None = None,
) -> Plan:
    """The changes that make the cluster match the manifests (or, with refresh_only, the state the
    cluster); `memo` keeps what is derived from each manifest across plans that share them."""
    state = prior or State("", 0, "default", "")
    wanted = {d.inference_id: d for d in desired}
    managed = sorted(set(wanted) | set(state.endpoints))
    errors: list[str] = []
    for target in sorted(options.targets | options.replace):
        if target not in managed:
            errors.append(
                f"{target}: --target/--replace names an endpoint that is neither in the manifests nor in the state"
            )
    changes = []
    for inference_id in managed:
        if options.targets and inference_id not in options.targets and inference_id not in options.replace:
            continue
        found = wanted.get(inference_id)
        derived = derive(found, live.version, memo) if found is not None else None
        change = _plan_one(
            inference_id, found, derived, live.endpoints.get(inference_id), state, live, options
        )
        if change is not None:
            changes.append(change)
    errors += _prevent_destroy_errors(changes, wanted)
    known = set(managed)
    unmanaged = tuple(
        Unmanaged(
            e["inference_id"], e.get("task_type", ""), e.get("service", ""), e["inference_id"].startswith(".")
        )
        for i, e in sorted(live.endpoints.items())
        if i not in known
    )
    return Plan(
        cluster=dict(live.cluster),
        state={"lineage": state.lineage or None, "serial": state.serial},
        changes=tuple(changes),
        unmanaged=unmanaged,
        errors=tuple(errors),
        warnings=tuple(_warnings(desired)),
    )


def _plan_one(
    inference_id: str,
    desired: Desired | None,
    derived: Derived | None,
    live: Mapping[str, Any] | None,
    state: State,
    cluster: Live,
    options: Options,
) -> Change | None:
    record = state.endpoints.get(inference_id)
    lifecycle = derived.lifecycle if derived is not None else dict(record.lifecycle) if record else {}
    template = start(inference_id, live, desired or record, lifecycle)
    have = template.before
    if have is None and record is not None and (desired is None or options.refresh_only or options.destroy):
        # Gone from the cluster and not to be created: the state lets go of it.
        reasons = (
            ("missing-from-cluster",)
            if desired is not None
            else ("missing-from-cluster", "removed-from-manifests")
        )
        return replace(template, action=Action.FORGET, reasons=reasons)
    if options.refresh_only:
        return _refresh(template, desired, record) if have is not None and record is not None else None
    if options.destroy or desired is None:
        if have is None or record is None:
            # Destroy deletes only what the state manages: a live endpoint that only a manifest
            # names was never applied by this workspace (a normal plan would adopt it).
            return None
        reason = "destroy" if options.destroy else "removed-from-manifests"
        return replace(
            template,
            action=Action.DELETE,
            reasons=(reason,),
            requests=(delete_request(template.inference_id, template.live_task_type),),
        )
    secrets = _planned_secrets(desired, state)
    cause = _cause(desired, record, cluster, options)
    return towards(template, desired, have, record, secrets, cluster.version, cause, derived)


def start(
    inference_id: str,
    live: Mapping[str, Any] | None,
    known: Desired | EndpointRecord | None,
    lifecycle: Mapping[str, Any],
) -> Change:
    """The no-op every change of an endpoint starts from: the live view it was planned against (and
    its fingerprint), and the task type and service it has live, else as known from the manifest or
    the state. The re-check of a saved plan (`plancheck`) starts from it too."""
    return Change(
        inference_id=inference_id,
        task_type=(live or {}).get("task_type") or (known.task_type if known else ""),
        service=(live or {}).get("service") or (known.service if known else ""),
        action=Action.NO_OP,
        before=live_view(live) if live is not None else None,
        fingerprint=fingerprint(live),
        lifecycle=lifecycle,
    )


def _cause(desired: Desired, record: EndpointRecord | None, cluster: Live, options: Options) -> str | None:
    """What makes an existing endpoint a replace whatever its diff: --replace, or a failed deployment."""
    if desired.inference_id in options.replace:
        return "forced"
    if record is not None and record.tainted and not _healthy(desired, cluster):
        return "tainted"
    return None


def _refresh(template: Change, desired: Desired | None, record: EndpointRecord) -> Change:
    """--refresh-only: accept the cluster's current values into the state."""
    assert template.before is not None
    drift = [shown(entry) for entry in moved(record.applied, template.before, _ignore(desired, record))]
    if not drift:
        return replace(template, after=template.before)
    return replace(template, action=Action.READ, reasons=("drift",), diff=tuple(drift), after=template.before)


def towards(
    template: Change,
    desired: Desired,
    have: Mapping[str, Any] | None,
    record: EndpointRecord | None,
    secrets: Mapping[str, PlannedSecret],
    version: Version,
    cause: str | None = None,
    derived: Derived | None = None,
) -> Change:
    """The change, made from `start`'s no-op, that brings an endpoint of the manifests from `have`
    (None: absent) to `desired`, its secrets as planned; `cause` (`forced`, `tainted`) makes an
    existing endpoint a replace. The re-check of a saved plan (`plancheck`) rebuilds its changes
    with it."""
    service = catalog.SERVICES[desired.written_service]
    derived = derived or derive(desired, version)
    want, put = derived.want, derived.put
    template = _aimed(template, desired, derived, secrets, record if have is not None else None)
    if have is None:
        reason = "missing-from-cluster" if record is not None else "new"
        return replace(template, action=Action.CREATE, reasons=(reason,), requests=(put,))
    diff, reasons = _causes(desired, want, have, record, secrets)
    if cause is not None:
        reasons.insert(0, cause)
    if not reasons:
        return _recorded(template, record)
    blocking = tuple(d.path for d in diff if not updates.updatable(service, desired.task_type, d, version))
    assert put.body is not None
    body = updates.update_body(
        desired, put.body, service, [d.path for d in diff], template.before or {}, version
    )
    # An update that would reset the chunking is a replace (kept under a cause, for plancheck).
    extra: list[str] = []
    paths = blocking
    chunking = want.get("chunking_settings")
    resets = not blocking and body and catalog.update_changes_chunking(chunking, version)
    if resets and not _all_ignored(desired, chunking):
        extra, paths = [UPDATE_RESETS_CHUNKING], ("chunking_settings",)
    if blocking or extra or reasons[0] in ("forced", "tainted"):
        return _replacement(template, [*reasons, *extra], diff, paths, put)
    update = Request("PUT", _endpoint_path(desired.task_type, desired.inference_id) + "/_update", body=body)
    return replace(
        template,
        action=Action.UPDATE,
        reasons=tuple(reasons),
        diff=tuple(diff),
        requests=(update,) if body else (),
    )


def _aimed(
    template: Change,
    desired: Desired,
    derived: Derived,
    secrets: Mapping[str, PlannedSecret],
    record: EndpointRecord | None,
) -> Change:
    """`start`'s no-op with what the manifest asks for; `record` only for an endpoint that exists.
    Built anew rather than replaced: a plan makes one per endpoint."""
    deploys = catalog.SERVICES[desired.written_service].deploys_model
    return Change(
        inference_id=template.inference_id,
        task_type=desired.task_type,
        service=desired.service,
        action=Action.NO_OP,
        before=template.before,
        fingerprint=template.fingerprint,
        lifecycle=template.lifecycle,
        after=_redacted(derived, secrets, record, changed=template.before is not None),
        wait=deploys,
        deployment_id=_deployment_of(desired) if deploys else None,
        wait_timeout=desired.wait_timeout,
        desired=derived.put.body,
        secrets=secrets,
    )


# Why a change `_update` makes in place on other versions is a replace on this one; it follows the
# causes among a change's reasons (the primary reason stays the cause). C5: `_update` on 8.16 to
# 9.3 resets chunking_settings to word/250/100: an update would leave the endpoint's chunking
# other than the manifest's (and plan again).
UPDATE_RESETS_CHUNKING = "update-resets-chunking"


def _replacement(
    template: Change, reasons: Sequence[str], diff: Sequence[DiffEntry], paths: tuple[str, ...], put: Request
) -> Change:
    """Delete and create again; `paths` name what forces it."""
    return replace(
        template,
        action=Action.REPLACE,
        reasons=tuple(reasons),
        diff=tuple(diff),
        replace_paths=paths,
        requests=(delete_request(template.inference_id, template.live_task_type), put),
    )


def _all_ignored(desired: Desired, chunking: Mapping[str, Any] | None) -> bool:
    ignore = desired.lifecycle.ignore_changes
    return chunking is not None and all(ignored(f"chunking_settings.{key}", ignore) for key in chunking)


def _causes(
    desired: Desired,
    want: Mapping[str, Any],
    have: Mapping[str, Any],
    record: EndpointRecord | None,
    secrets: Mapping[str, PlannedSecret],
) -> tuple[list[DiffEntry], list[str]]:
    """The field diff (secrets included) from live to desired, and the reasons behind it."""
    ignore = desired.lifecycle.ignore_changes
    secret_diff, secret_reasons = _secret_changes(record, secrets, ignore)
    if want == have:  # the common case: every path equal, nothing for `differences` to find
        return secret_diff, secret_reasons
    requested = record.requested if record is not None else {}
    owned = set(flatten(requested))
    diff = differences(want, have, owned=owned, skip=dynamic_paths(want) | dynamic_paths(have), ignore=ignore)
    reasons: list[str] = []
    if diff:
        if record is None or differences(
            want, requested, owned=owned, skip=dynamic_paths(want), ignore=ignore
        ):
            reasons.append("manifest-changed")
        if record is not None and moved(record.applied, have, ignore):
            reasons.append("drift")
        if not reasons:
            reasons.append("manifest-changed")
    return diff + secret_diff, reasons + secret_reasons


def _recorded(template: Change, record: EndpointRecord | None) -> Change:
    """An endpoint that matches its manifest: a no-op, or an adopt when the state's record of it is
    missing, tainted though healthy again, or holds other lifecycle options."""
    if record is None:
        reasons: tuple[str, ...] = ("not-in-state",)
    elif record.tainted:
        reasons = ("healed",)
    elif dict(record.lifecycle) != dict(template.lifecycle):
        reasons = ("lifecycle-changed",)
    else:
        return template
    return replace(template, action=Action.ADOPT, reasons=reasons, wait=False)


def _endpoint_path(task_type: str, inference_id: str) -> str:
    return f"/_inference/{quote(task_type, safe='')}/{quote(inference_id, safe='')}"


def delete_request(inference_id: str, task_type: str) -> Request:
    """DELETE of the endpoint under the task type it has; `with_references` may add force."""
    return Request("DELETE", _endpoint_path(task_type, inference_id))


def _put(desired: Desired, version: Version) -> Request:
    """The PUT that creates the endpoint, secrets as their references. For a deployment, ask the
    server to wait up to 30 s where it takes `timeout` (8.19 and 9.1+); a 408 means it goes on."""
    deploys = catalog.SERVICES[desired.written_service].deploys_model
    query = {"timeout": "30s"} if deploys and catalog.PUT_TIMEOUT.covers(version) else {}
    return Request(
        "PUT", _endpoint_path(desired.task_type, desired.inference_id), query, _desired_body(desired)
    )


def _deployment_of(desired: Desired) -> str:
    return catalog.deployment_id(
        {"inference_id": desired.inference_id, "service_settings": dict(desired.service_settings)}
    )


def _healthy(desired: Desired, cluster: Live) -> bool:
    stats = cluster.deployments.get(_deployment_of(desired))
    return catalog.deployment_health(stats)[0] == "done"


def _planned_secrets(desired: Desired, state: State) -> dict[str, PlannedSecret]:
    return {
        path: PlannedSecret(desired.secret_references.get(path, ""), digest(secret, state.salt))
        for path, secret in sorted(desired.secrets.items())
    }


def _secret_changes(
    record: EndpointRecord | None,
    secrets: Mapping[str, PlannedSecret],
    ignore: Iterable[str],
) -> tuple[list[DiffEntry], list[str]]:
    known = record.secret_digests if record is not None else {}
    diff, reasons = [], []
    for path, planned in secrets.items():
        full = f"service_settings.{path}"
        if ignored(full, ignore):
            continue
        if path not in known:
            diff.append(DiffEntry(full, REDACTED, REDACTED_CHANGED))
            reasons.append("secret-unknown")
        elif known[path] != planned.digest:
            diff.append(DiffEntry(full, REDACTED, REDACTED_CHANGED))
            reasons.append("secret-rotated")
    return diff, sorted(set(reasons), key=reasons.index)


def _redacted(
    derived: Derived,
    secrets: Mapping[str, PlannedSecret],
    record: EndpointRecord | None,
    *,
    changed: bool,
) -> Mapping[str, Any]:
    """The expected view with each secret per key: (sensitive), or (sensitive, changed) when it
    differs from (or is unknown to) the state on an endpoint that exists."""
    known = record.secret_digests if record is not None else {}
    marks = {
        path: REDACTED_CHANGED if changed and known.get(path) != planned.digest else REDACTED
        for path, planned in secrets.items()
    }
    if REDACTED_CHANGED not in marks.values():
        return derived.shown
    view = derived.want
    return {**view, "service_settings": with_secrets(view["service_settings"], marks)}


def _desired_body(desired: Desired) -> dict[str, Any]:
    """The PUT body as written, secrets as their references."""
    settings = with_secrets(desired.service_settings, desired.secret_references)
    body: dict[str, Any] = {"service": desired.written_service, "service_settings": settings}
    if desired.task_settings:
        body["task_settings"] = dict(desired.task_settings)
    if desired.chunking_settings is not None:
        body["chunking_settings"] = dict(desired.chunking_settings)
    return body


def _ignore(desired: Desired | None, record: EndpointRecord | None) -> tuple[str, ...]:
    if desired is not None:
        return desired.lifecycle.ignore_changes
    return tuple((record.lifecycle if record is not None else {}).get("ignore_changes", ()))


def _prevent_destroy_errors(changes: Sequence[Change], wanted: Mapping[str, Desired]) -> list[str]:
    errors = []
    for change in changes:
        if change.action in (Action.DELETE, Action.REPLACE) and change.lifecycle.get("prevent_destroy"):
            desired = wanted.get(change.inference_id)
            where = (
                f" ({desired.source.file}:{desired.source.line})"
                if desired is not None
                else " (in the state)"
            )
            errors.append(
                f"{change.inference_id}: lifecycle.prevent_destroy forbids this {change.action.value}{where}"
            )
    return errors


def _warnings(desired: Sequence[Desired]) -> list[str]:
    """Legal but unwise: several endpoints each starting a deployment of the same model."""
    by_model: dict[str, list[str]] = defaultdict(list)
    for d in desired:
        if catalog.SERVICES[d.written_service].deploys_model and not d.service_settings.get("deployment_id"):
            by_model[str(d.service_settings.get("model_id", d.written_service))].append(d.inference_id)
    return [
        f"{', '.join(ids)} each start their own deployment of {model}; every deployment takes ML memory. "
        f"Unless they need separate allocations, let one endpoint own the deployment and point the others at it "
        f"with service_settings.deployment_id: {ids[0]}"
        for model, ids in sorted(by_model.items())
        if len(ids) > 1
    ]


# -- references (read only for the deletes and replaces planned) -------------------------------


def needs_references(planned: Plan) -> list[tuple[str, str]]:
    """(inference_id, live task type) of every planned delete and replace: the only ones to check."""
    return [
        (c.inference_id, c.live_task_type)
        for c in planned.changes
        if c.action in (Action.DELETE, Action.REPLACE)
    ]


def with_references(
    planned: Plan, references: Mapping[str, Mapping[str, Sequence[str]]], allow_referenced: bool
) -> Plan:
    """Attach what uses each endpoint; a referenced delete or replace is an error unless allowed
    (and then its DELETE goes with force=true)."""
    changes: list[Change] = []
    errors: list[str] = []
    for change in planned.changes:
        found = references.get(change.inference_id)
        if found is not None:
            refs = {kind: tuple(found.get(kind, ())) for kind in ("pipelines", "indexes")}
            changes.append(_referenced(replace(change, references=refs), allow_referenced, errors))
        else:
            changes.append(change)
    return replace(planned, changes=tuple(changes), errors=(*planned.errors, *errors))


def _referenced(change: Change, allowed: bool, errors: list[str]) -> Change:
    if not change.referenced:
        return change
    if allowed:
        return replace(change, requests=tuple(forced(r) for r in change.requests))
    uses = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in change.references.items() if names)
    errors.append(
        f"{change.inference_id}: a {change.action.value} of an endpoint in use ({uses}) needs --allow-referenced"
    )
    return change


def forced(request: Request) -> Request:
    """A DELETE that goes through although pipelines or indexes use the endpoint."""
    return (
        replace(request, query={**request.query, "force": "true"}) if request.method == "DELETE" else request
    )


# -- is a saved plan still what the cluster and the state are? -------------------------------


def stale(
    planned: Plan, live: Mapping[str, Mapping[str, Any]], state: State | None, cluster_uuid: str | None
) -> list[str]:
    """What moved since the plan was made; empty when it can be applied as it stands."""
    reasons = []
    if planned.cluster.get("cluster_uuid") not in (None, cluster_uuid):
        reasons.append(
            f"the plan was made for cluster {planned.cluster.get('cluster_uuid')}, not {cluster_uuid}"
        )
    lineage = state.lineage if state is not None else None
    serial = state.serial if state is not None else 0
    if (planned.state.get("lineage"), planned.state.get("serial")) != (lineage, serial):
        reasons.append(
            f"the state moved on since the plan (serial {planned.state.get('serial')} -> {serial})"
        )
    for change in planned.changes:
        if (
            change.action is not Action.NO_OP
            and fingerprint(live.get(change.inference_id)) != change.fingerprint
        ):
            reasons.append(f"{change.inference_id} changed in the cluster since the plan")
    return reasons
