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
change every changed path on the server's version; otherwise it is a replace, and the paths that
force it are named.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from reconciler import catalog
from reconciler.catalog import Service, Version
from reconciler.model import Desired
from reconciler.plan import (
    REDACTED_CHANGED,
    Action,
    Change,
    DiffEntry,
    Plan,
    PlannedSecret,
    Unmanaged,
)
from reconciler.sensitive import REDACTED, digest
from reconciler.state import EndpointRecord, State

ABSENT = object()


@dataclass(frozen=True)
class Live:
    """The cluster as read: endpoints by id, and deployment stats by deployment id."""

    endpoints: Mapping[str, Mapping[str, Any]]
    version: Version
    deployments: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    cluster: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Options:
    targets: frozenset[str] = frozenset()
    replace: frozenset[str] = frozenset()
    refresh_only: bool = False
    destroy: bool = False


# -- views -------------------------------------------------------------------------------------


def _with_secrets(settings: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of service_settings with each secret path (`key` or `key.inner`) set to its value."""
    out = copy.deepcopy(dict(settings))
    for path, value in values.items():
        top, _, inner = path.partition(".")
        if inner:
            out.setdefault(top, {})[inner] = value
        else:
            out[top] = value
    return out


def expected_view(desired: Desired, version: Version) -> dict[str, Any]:
    """The endpoint as the server will echo it, without secrets (the catalog knows the defaults)."""
    service = catalog.SERVICES[desired.written_service]
    settings = _with_secrets(desired.service_settings, dict.fromkeys(desired.secrets, REDACTED))
    body: dict[str, Any] = {"service_settings": settings, "task_settings": dict(desired.task_settings or {})}
    if desired.chunking_settings is not None:
        body["chunking_settings"] = dict(desired.chunking_settings)
    checked = catalog.check_endpoint(service, desired.task_type, body, version)
    view: dict[str, Any] = {
        "task_type": desired.task_type,
        "service": desired.service,
        "service_settings": dict(checked.service_settings),
    }
    if checked.task_settings:  # the server omits empty task_settings
        view["task_settings"] = dict(checked.task_settings)
    if checked.chunking_settings is not None:
        view["chunking_settings"] = checked.chunking_settings
    return view


def live_view(live: Mapping[str, Any]) -> dict[str, Any]:
    """A live endpoint in the same shape (empty task_settings and older `{}` alike)."""
    view: dict[str, Any] = {
        "task_type": live.get("task_type"),
        "service": live.get("service"),
        "service_settings": dict(live.get("service_settings") or {}),
    }
    if live.get("task_settings"):  # older servers print an empty {}
        view["task_settings"] = dict(live["task_settings"])
    if live.get("chunking_settings") is not None:
        view["chunking_settings"] = live["chunking_settings"]
    return view


def flatten(view: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted leaf paths of a view; lists and empty mappings are leaves."""
    flat: dict[str, Any] = {}
    for key, value in view.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def fingerprint(live: Mapping[str, Any] | None) -> str | None:
    """A digest of a live endpoint, blind to what the server moves by itself (saved plans compare it)."""
    if live is None:
        return None
    view = live_view(live)
    for path in dynamic_paths(view):
        section, _, key = path.partition(".")
        view[section].pop(key, None)
    text = json.dumps(view, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:32]


def dynamic_paths(view: Mapping[str, Any]) -> set[str]:
    """Paths the server moves by itself: num_allocations under adaptive allocations."""
    adaptive = view.get("service_settings", {}).get("adaptive_allocations")
    return (
        {"service_settings.num_allocations"}
        if isinstance(adaptive, Mapping) and adaptive.get("enabled")
        else set()
    )


def ignored(path: str, ignore: Iterable[str]) -> bool:
    return any(path == p or path.startswith(p + ".") for p in ignore)


def differences(
    want: Mapping[str, Any],
    have: Mapping[str, Any],
    *,
    owned: set[str],
    skip: set[str],
    ignore: Iterable[str],
) -> list[DiffEntry]:
    """Paths where `have` differs from `want`: all of want's, and those of have's that are `owned`."""
    flat_want, flat_have = flatten(want), flatten(have)
    found = []
    for path in sorted(set(flat_want) | (set(flat_have) & owned)):
        if path in skip or ignored(path, ignore):
            continue
        before, after = flat_have.get(path, ABSENT), flat_want.get(path, ABSENT)
        if not _equal(before, after):
            found.append(_shown(DiffEntry(path, before, after)))
    return found


def _equal(a: Any, b: Any) -> bool:
    if a is ABSENT or b is ABSENT:
        return a is b
    return a == b or json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def moved(applied: Mapping[str, Any], have: Mapping[str, Any], ignore: Iterable[str]) -> list[DiffEntry]:
    """Where the cluster moved away from the last applied echo: before is the applied value, after
    the live one (ABSENT where a side lacks the path). Values the server moves by itself and ignored
    paths are left out. Drift findings, the `drift` reason and --refresh-only all read this."""
    flat_applied, flat_live = flatten(applied), flatten(have)
    skip = dynamic_paths(applied) | dynamic_paths(have)
    found = []
    for path in sorted(set(flat_applied) | set(flat_live)):
        before, after = flat_applied.get(path, ABSENT), flat_live.get(path, ABSENT)
        if path not in skip and not ignored(path, ignore) and not _equal(before, after):
            found.append(DiffEntry(path, before, after))
    return found


def _shown(entry: DiffEntry) -> DiffEntry:
    """A diff entry as plans carry it: an absent side is None."""
    return DiffEntry(
        entry.path,
        None if entry.before is ABSENT else entry.before,
        None if entry.after is ABSENT else entry.after,
    )


# -- planning ----------------------------------------------------------------------------------


def plan(desired: Sequence[Desired], live: Live, prior: State | None, options: Options = Options()) -> Plan:
    """The changes that make the cluster match the manifests (or, with refresh_only, the state the cluster)."""
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
        change = _plan_one(
            inference_id, wanted.get(inference_id), live.endpoints.get(inference_id), state, live, options
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
    live: Mapping[str, Any] | None,
    state: State,
    cluster: Live,
    options: Options,
) -> Change | None:
    record = state.endpoints.get(inference_id)
    version = cluster.version
    have = live_view(live) if live is not None else None
    known = desired or record
    template = Change(
        inference_id=inference_id,
        task_type=(live or {}).get("task_type") or (known.task_type if known else ""),
        service=(live or {}).get("service") or (known.service if known else ""),
        action=Action.NO_OP,
        before=have,
        fingerprint=fingerprint(live),
        lifecycle=_lifecycle(desired, record),
    )

    if options.refresh_only:
        if have is None or record is None:
            return None
        drift = [_shown(entry) for entry in moved(record.applied, have, _ignore(desired, record))]
        if not drift:
            return replace(template, after=have)
        return replace(template, action=Action.READ, reasons=("drift",), diff=tuple(drift), after=have)

    if options.destroy or desired is None:
        if have is None:
            return None
        reason = "destroy" if options.destroy else "removed-from-manifests"
        return replace(template, action=Action.DELETE, reasons=(reason,))

    want = expected_view(desired, version)
    secrets = _planned_secrets(desired, state)
    template = replace(
        template,
        task_type=desired.task_type,
        service=desired.service,
        after=_redacted(want, secrets, record if have is not None else None, changed=have is not None),
        wait=catalog.SERVICES[desired.written_service].deploys_model,
        wait_timeout=desired.wait_timeout,
        request=_request(desired),
        secrets=secrets,
    )
    if have is None:
        reason = "missing-from-cluster" if record is not None else "new"
        return replace(template, action=Action.CREATE, reasons=(reason,))

    service = catalog.SERVICES[desired.written_service]
    requested = record.requested if record is not None else {}
    owned = set(flatten(requested))
    ignore = desired.lifecycle.ignore_changes
    diff = differences(want, have, owned=owned, skip=dynamic_paths(want) | dynamic_paths(have), ignore=ignore)
    secret_diff, secret_reasons = _secret_changes(record, secrets, ignore)
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
    reasons += secret_reasons
    if inference_id in options.replace:
        reasons.insert(0, "forced")
    elif record is not None and record.tainted and not _healthy(desired, cluster):
        reasons.insert(0, "tainted")
    all_diff = tuple(diff + secret_diff)
    if not reasons:
        return template
    blocking = tuple(d.path for d in diff if not _updatable(service, desired.task_type, d, version))
    action = Action.REPLACE if blocking or reasons[0] in ("forced", "tainted") else Action.UPDATE
    return replace(template, action=action, reasons=tuple(reasons), diff=all_diff, replace_paths=blocking)


def _updatable(service: Service, task_type: str, entry: DiffEntry, version: Version) -> bool:
    if entry.path in ("task_type", "service"):
        return False
    if (
        entry.after is None
        and entry.path.startswith("task_settings.")
        and service.task_settings_update == "merge"
    ):
        return False  # a merging _update cannot remove a key
    return catalog.updatable_in_place(service, task_type, entry.path, version)


def _healthy(desired: Desired, cluster: Live) -> bool:
    deployment_id = desired.service_settings.get("deployment_id") or desired.inference_id
    stats = cluster.deployments.get(str(deployment_id))
    status = (stats or {}).get("allocation_status") or {}
    return (
        stats is not None
        and stats.get("state") != "failed"
        and status.get("state") == "fully_allocated"
        and status.get("allocation_count") == status.get("target_allocation_count")
    )


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
    view: Mapping[str, Any],
    secrets: Mapping[str, PlannedSecret],
    record: EndpointRecord | None,
    *,
    changed: bool,
) -> dict[str, Any]:
    """The expected view with each secret per key: (sensitive), or (sensitive, changed) when it
    differs from (or is unknown to) the state on an endpoint that exists."""
    known = record.secret_digests if record is not None else {}
    marks = {
        path: REDACTED_CHANGED if changed and known.get(path) != planned.digest else REDACTED
        for path, planned in secrets.items()
    }
    return {**view, "service_settings": _with_secrets(view["service_settings"], marks)}


def _request(desired: Desired) -> dict[str, Any]:
    """The PUT body as written, secrets as their references."""
    settings = _with_secrets(desired.service_settings, desired.secret_references)
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


def _lifecycle(desired: Desired | None, record: EndpointRecord | None) -> dict[str, Any]:
    if desired is not None:
        return desired.lifecycle.model_dump(mode="json")
    return dict(record.lifecycle) if record is not None else {}


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
    """(inference_id, task_type) of every planned delete and replace: the only ones to check."""
    return [
        (c.inference_id, c.task_type) for c in planned.changes if c.action in (Action.DELETE, Action.REPLACE)
    ]


def with_references(
    planned: Plan, references: Mapping[str, Mapping[str, Sequence[str]]], allow_referenced: bool
) -> Plan:
    """Attach what uses each endpoint; a referenced delete or replace is an error unless allowed."""
    changes = []
    errors = list(planned.errors)
    for change in planned.changes:
        found = references.get(change.inference_id)
        if found is None:
            changes.append(change)
            continue
        refs = {kind: tuple(found.get(kind, ())) for kind in ("pipelines", "indexes")}
        changes.append(replace(change, references=refs))
        if changes[-1].referenced and not allow_referenced:
            uses = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in refs.items() if names)
            errors.append(
                f"{change.inference_id}: a {change.action.value} of an endpoint in use ({uses}) needs --allow-referenced"
            )
    return replace(planned, changes=tuple(changes), errors=tuple(errors))


# -- what the state records after an apply -----------------------------------------------------


def applied_record(
    desired: Desired, live: Mapping[str, Any], state: State, version: Version, applied_at: str
) -> EndpointRecord:
    """The state's record of an endpoint just created or updated to match `desired`."""
    return EndpointRecord(
        task_type=desired.task_type,
        service=desired.service,
        requested=expected_view(desired, version),
        applied=live_view(live),
        secret_digests={path: digest(secret, state.salt) for path, secret in desired.secrets.items()},
        lifecycle=desired.lifecycle.model_dump(mode="json"),
        applied_at=applied_at,
    )


# -- drift -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One way the cluster moved away from what was last applied."""

    id: str
    inference_id: str
    path: str
    applied: Any
    live: Any
    kind: str  # changed | removed | added

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def drift(live: Mapping[str, Mapping[str, Any]], state: State) -> list[Finding]:
    """Every path of every managed endpoint where the cluster differs from the last applied echo."""
    findings = []
    for inference_id, record in sorted(state.endpoints.items()):
        current = live.get(inference_id)
        if current is None:
            findings.append(_finding(inference_id, "", record.applied, None, "removed"))
            continue
        for entry in moved(record.applied, live_view(current), _ignore(None, record)):
            kind = "added" if entry.before is ABSENT else "removed" if entry.after is ABSENT else "changed"
            shown = _shown(entry)
            findings.append(_finding(inference_id, entry.path, shown.before, shown.after, kind))
    return findings


def _finding(inference_id: str, path: str, applied: Any, live: Any, kind: str) -> Finding:
    # Stable for the same endpoint, path and live value: a repeated run tells known drift from new.
    key = json.dumps([inference_id, path, live], sort_keys=True)
    return Finding(
        "drift-" + hashlib.sha256(key.encode()).hexdigest()[:16], inference_id, path, applied, live, kind
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
