"""The re-check of a saved plan before apply sends anything: a plan file is untrusted (DESIGN §9).

A plan travels between CI jobs as a file that whoever reaches the artifact may edit. Before any
request, `violations` checks again, from the state, the live cluster and the plan's own desired
bodies, every invariant the planner enforces, and names each one the plan breaks:

- ownership: a change touches an id of the state, or one the plan gives a desired body; never a
  `.`-prefixed id; an endpoint the cluster has and the state does not manage only through a change
  built from a desired body (an adoption, update or replace);
- `prevent_destroy`: no delete or replace of an endpoint whose state record or desired lifecycle
  sets it (the plan's lifecycle cannot lift the state's);
- what is sent is what `show` displays: each change is rebuilt with the planner's own functions
  from its desired body, the live endpoint, the state's record and the server's version; its
  action must be the one the planner makes of them (a replace may also be forced), and its
  requests, `after`, `diff`, `replace_paths` and `desired` exactly the rebuilt ones; a DELETE has
  `force=true` only when the change lists references;
- secrets: each `secrets` entry names a secret field of the catalog for that service, task type
  and version, and no other value of a desired or request body is a `${...}` reference
  (placeholders inside a longer string, such as a `custom` template's `${input}`, are the server's).

No-op changes send nothing and are not stale-checked, so they are held to ownership, secrets and
"no requests" only. Pure: no I/O. `workflows.apply` refuses the whole plan unless the list is empty.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from reconciler import catalog, planner
from reconciler.catalog import Kind, Version
from reconciler.model import Desired, Lifecycle, Source
from reconciler.plan import Action, Change, Plan, PlanFormatError, Request
from reconciler.sensitive import Secret, is_single_reference
from reconciler.state import EndpointRecord, State
from reconciler.views import fingerprint

# The actions of a change that carries a desired body, and of one that does not.
_WITH_DESIRED = frozenset({Action.CREATE, Action.UPDATE, Action.REPLACE, Action.ADOPT, Action.NO_OP})
_WITHOUT_DESIRED = frozenset({Action.DELETE, Action.FORGET, Action.READ, Action.NO_OP})


class UntrustedPlanError(PlanFormatError):
    """A saved plan that breaks an invariant of the planner: it is refused whole."""


def check(
    planned: Plan,
    endpoints: Mapping[str, Mapping[str, Any]],
    version: Version,
    state: State | None,
    *,
    signed: bool = False,
) -> None:
    """Raise UntrustedPlanError naming every violation of the saved plan; return when there is none.
    `signed`: its signature was verified, so references in non-secret fields are the reviewed ones."""
    found = violations(planned, endpoints, version, state, signed=signed)
    if found:
        raise UntrustedPlanError(
            "the saved plan is not one this tool makes from the state, the cluster and its own desired "
            "configuration; nothing was applied:\n" + "\n".join(f"- {v}" for v in found)
        )


def violations(
    planned: Plan,
    endpoints: Mapping[str, Mapping[str, Any]],
    version: Version,
    state: State | None,
    *,
    signed: bool = False,
) -> list[str]:
    """Every invariant the plan breaks, one message per violation (ids, paths, never a value)."""
    records = state.endpoints if state is not None else {}
    found: list[str] = []
    seen: set[str] = set()
    unmanaged = {u.inference_id for u in planned.unmanaged if isinstance(u.inference_id, str)}
    for change in planned.changes:
        name = change.inference_id
        if not isinstance(name, str):
            found.append("a change whose inference_id is not a string")
            continue
        if name in seen:
            found.append(f"{name}: the plan has more than one change for it")
        if name in unmanaged:
            found.append(f"{name}: the plan lists it as unmanaged (not to be touched) and changes it")
        seen.add(name)
        try:
            problems = _change(change, endpoints.get(name), records.get(name), version, signed)
        except (KeyError, TypeError, ValueError, AttributeError) as error:  # an edit the format allows
            problems = [f"the change is malformed ({type(error).__name__})"]
        found += [f"{name}: {problem}" for problem in problems]
    return found


def _change(
    change: Change,
    live: Mapping[str, Any] | None,
    record: EndpointRecord | None,
    version: Version,
    signed: bool,
) -> list[str]:
    owned = _ownership(change, record)
    if owned:
        return owned
    problems = _prevent_destroy(change, record)
    problems += _secrets(change, version, record, signed)
    problems += _stray_references(change)
    if change.desired is None:
        problems += _without_desired(change, live)
    else:
        problems += _with_desired(change, live, record, version)
    return problems


# -- ownership and prevent_destroy -------------------------------------------------------------


def _ownership(change: Change, record: EndpointRecord | None) -> list[str]:
    if change.inference_id.startswith("."):
        return [f"{_a(change.action)} of a preconfigured endpoint ('.' id): the tool never touches those"]
    if not catalog.valid_inference_id(change.inference_id):
        return ["not a valid inference id"]
    if record is None and change.desired is None:
        return [
            f"{_a(change.action)} of an endpoint that is neither in the state nor given a desired "
            "body by the plan: the tool does not manage it"
        ]
    return []


def _prevent_destroy(change: Change, record: EndpointRecord | None) -> list[str]:
    if change.action not in (Action.DELETE, Action.REPLACE):
        return []
    if record is not None and record.lifecycle.get("prevent_destroy"):
        where = "the state's record"
    elif change.lifecycle.get("prevent_destroy"):
        where = "the plan's desired lifecycle"
    else:
        return []
    return [f"lifecycle.prevent_destroy ({where}) forbids this {change.action.value}"]


# -- secrets -----------------------------------------------------------------------------------


def _secrets(change: Change, version: Version, record: EndpointRecord | None, signed: bool) -> list[str]:
    """Secrets only at the service's secret fields, each one `${...}` reference. A reference in a
    non-secret field (a manifest may put one anywhere, DESIGN §9) is let through only from a signed
    plan or where the state already holds a digest for that path: an unsigned plan could otherwise
    send any CI variable to the cluster as, say, a model id."""
    if not change.secrets:
        return []
    service = catalog.SERVICES.get(str((change.desired or {}).get("service")))
    if change.desired is None or service is None:
        return ["it lists secrets but has no desired body of a known service"]
    fields = {f.name: f for f in service.settings(change.task_type, version) if f.secret}
    problems = []
    for path, planned in sorted(change.secrets.items()):
        top, _, inner = path.partition(".")
        spec = fields.get(top)
        known = record is not None and path in record.secret_digests
        if (spec is None or (inner and spec.kind is not Kind.MAP)) and not (signed or known):
            problems.append(
                f"secrets: service_settings.{path} is not a secret field of {service.name} "
                f"{change.task_type} on {version} (a referenced value there needs a signed plan: "
                "set RECONCILER_PLAN_KEY for plan and apply)"
            )
        elif spec is None and "${" not in planned.reference:
            problems.append(f"secrets: service_settings.{path} holds no ${{...}} reference")
        elif spec is not None and not is_single_reference(planned.reference):
            problems.append(f"secrets: service_settings.{path} is not given as one ${{...}} reference")
    return problems


def _a(action: Action) -> str:
    """`a delete`, `an update`."""
    return ("an " if action.value[0] in "aeiou" else "a ") + action.value


def _stray_references(change: Change) -> list[str]:
    """A value that is a `${...}` reference anywhere but at a path `secrets` lists (with that reference)."""
    listed = {f"service_settings.{path}": s.reference for path, s in change.secrets.items()}
    bodies: list[tuple[str, Any]] = [("the desired body", change.desired)]
    bodies += [(f"request {i} ({r.line()})", r.body) for i, r in enumerate(change.requests, 1)]
    problems = []
    for where, body in bodies:
        for path, value in _strings(body, ""):
            if is_single_reference(value) and listed.get(path) != value:
                problems.append(f"{where}: {path} is a ${{...}} reference that `secrets` does not list")
    return problems


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


# -- changes without a desired body: delete, forget, read (and no-op) ------------------------


def _without_desired(change: Change, live: Mapping[str, Any] | None) -> list[str]:
    action = change.action
    if action not in _WITHOUT_DESIRED:
        return [f"{_a(action)} needs a desired body, and the plan gives none"]
    if action is Action.DELETE:
        if live is None:
            return ["a delete of an endpoint the cluster does not have"]
        problems = _requests(
            change, (planner.delete_request(change.inference_id, str(live.get("task_type"))),)
        )
        if (change.task_type, change.service) != (live.get("task_type"), live.get("service")):
            problems.append("its task_type or service is not the live endpoint's")
        return problems
    if action is Action.FORGET and live is not None:
        return ["a forget of an endpoint the cluster still has"]
    if action is Action.READ and live is None:
        return ["a read of an endpoint the cluster does not have"]
    problems = _requests(change, ())
    if action is Action.READ and fingerprint(change.before) != fingerprint(live):
        problems.append("its `before` is not the live endpoint")
    return problems


# -- changes with a desired body: rebuilt with the planner's own functions -------------------


def _with_desired(
    change: Change, live: Mapping[str, Any] | None, record: EndpointRecord | None, version: Version
) -> list[str]:
    if change.action not in _WITH_DESIRED:
        return [f"{_a(change.action)} of an endpoint the plan still wants (it gives it a desired body)"]
    try:
        desired = _desired(change, version)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        return [f"its desired body is not one the planner makes ({type(error).__name__})"]
    if change.action is Action.NO_OP:  # sends nothing; not stale-checked, so not rebuilt
        return _requests(change, ())
    template = planner.start(change.inference_id, live, desired, desired.lifecycle.model_dump(mode="json"))
    have = template.before
    cause = "forced" if change.action is Action.REPLACE else None  # --replace forces any existing one
    try:
        rebuilt = planner.towards(template, desired, have, record, change.secrets, version, cause)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        return [f"its desired body cannot be planned ({type(error).__name__})"]
    if rebuilt.action is not change.action:
        return [
            f"{_a(change.action)} is not what the planner makes of it from the state and the live "
            f"cluster (it makes {_a(rebuilt.action)})"
        ]
    problems = _requests(change, rebuilt.requests)
    problems += _shown(change, rebuilt)
    if _caused(change.reasons) != _caused(rebuilt.reasons):
        problems.append("its reasons are not the planner's")
    if fingerprint(change.before) != fingerprint(live):
        problems.append("its `before` is not the live endpoint")
    return problems


def _caused(reasons: Sequence[str]) -> list[str]:
    """The reasons but a leading `forced` or `tainted` (a replace is rebuilt as forced)."""
    return list(reasons[1:] if reasons and reasons[0] in ("forced", "tainted") else reasons)


def _desired(change: Change, version: Version) -> Desired:
    """The manifest's endpoint as the plan's desired body (the PUT body, secrets as references) says."""
    body = change.desired or {}
    service = catalog.SERVICES[str(body["service"])]
    settings = {
        k: v for k, v in dict(body["service_settings"]).items() if k not in catalog.SECRET_FIELD_NAMES
    }
    task = body.get("task_settings")
    chunking = body.get("chunking_settings")
    return Desired(
        inference_id=change.inference_id,
        task_type=change.task_type,
        service=service.stored_name(version),
        written_service=service.name,
        service_settings=settings,
        secrets={path: Secret("") for path in change.secrets},  # values are not needed to build requests
        secret_references={path: s.reference for path, s in change.secrets.items()},
        task_settings=dict(task) if task is not None else None,
        chunking_settings=dict(chunking) if chunking is not None else None,
        lifecycle=Lifecycle.model_validate(dict(change.lifecycle)),
        wait_timeout=change.wait_timeout,
        source=Source("(saved plan)", 0),
    )


def _requests(change: Change, rebuilt: Sequence[Request]) -> list[str]:
    """The change's requests must be the rebuilt ones; a DELETE is forced iff the change lists references."""
    expected = [planner.forced(r) if change.referenced else r for r in rebuilt]
    if _same([r.to_json() for r in change.requests], [r.to_json() for r in expected]):
        return []
    planned = ", ".join(r.line() for r in change.requests) or "none"
    wanted = ", ".join(r.line() for r in expected) or "none"
    detail = " (their bodies differ)" if planned == wanted else ""
    return [
        f"its requests are not the ones the planner builds from its desired body and the live endpoint"
        f"{detail}: the plan has {planned}; the planner builds {wanted}"
    ]


def _shown(change: Change, rebuilt: Change) -> list[str]:
    """What `show` displays of the change (and apply records) must be what was rebuilt."""
    fields = {
        "task_type": (change.task_type, rebuilt.task_type),
        "service": (change.service, rebuilt.service),
        "desired": (change.desired, rebuilt.desired),
        "after": (change.after, rebuilt.after),
        "diff": (
            [(d.path, d.before, d.after) for d in change.diff],
            [(d.path, d.before, d.after) for d in rebuilt.diff],
        ),
        "replace_paths": (list(change.replace_paths), list(rebuilt.replace_paths)),
        "wait": (change.wait, rebuilt.wait),
        "deployment_id": (change.deployment_id, rebuilt.deployment_id),
    }
    return [
        f"its `{name}` is not what the planner makes of its desired body and the live endpoint"
        for name, (planned, wanted) in fields.items()
        if not _same(planned, wanted)
    ]


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON (tuples and lists alike; 1 and 1.0 apart, as the server tells them)."""
    return json.dumps(a, sort_keys=True, default=repr) == json.dumps(b, sort_keys=True, default=repr)
