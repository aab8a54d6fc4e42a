"""Views of an endpoint in the form the server echoes it, and how two views compare.

Three views meet in the planner: what a manifest asks for as the server will store it
(`expected_view`: the catalog fills in the defaults the server adds), what GET /_inference returns
(`live_view`), and the state's record of the last apply. `differences` and `moved` compare them
path by path, blind to what the server moves by itself (`dynamic_paths`); `fingerprint` digests a
live endpoint for the stale check of saved plans; `applied_record` is the state's record of an
apply; `drift` lists where the cluster moved away from the last apply. Pure: no I/O.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from reconciler import catalog
from reconciler.catalog import Version
from reconciler.model import Desired
from reconciler.plan import Change, DiffEntry, Finding, flatten
from reconciler.sensitive import REDACTED, Secret, digest, masked
from reconciler.state import EndpointRecord, State

ABSENT = object()


def with_secrets(settings: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
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
    settings = with_secrets(desired.service_settings, dict.fromkeys(desired.secrets, REDACTED))
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


def fingerprint(live: Mapping[str, Any] | None) -> str | None:
    """A digest of a live endpoint, blind to what the server moves by itself (saved plans compare it)."""
    if live is None:
        return None
    view = live_view(live)
    for path in dynamic_paths(view):
        section, _, key = path.partition(".")
        view[section].pop(key, None)
    text = _CANONICAL.encode(view)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:32]


# json.dumps' canonical form, its encoder made once: a plan takes a fingerprint per endpoint. A
# view read from JSON has no cycle to look for.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), check_circular=False)


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
            found.append(shown(DiffEntry(path, before, after)))
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


def shown(entry: DiffEntry) -> DiffEntry:
    """A diff entry as plans carry it: an absent side is None."""
    return DiffEntry(
        entry.path,
        None if entry.before is ABSENT else entry.before,
        None if entry.after is ABSENT else entry.after,
    )


# -- what the state records after an apply -----------------------------------------------------


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


def applied_record(
    change: Change,
    echo: Mapping[str, Any] | None,
    secrets: Mapping[str, Secret],
    salt: str,
    applied_at: str,
    *,
    tainted: bool = False,
) -> EndpointRecord:
    """The state's record of an endpoint a change created or updated, as the cluster echoes it: a
    value from a reference that it echoes is masked (DESIGN §9). With no echo, `applied` is left
    empty: the record an intent carries until it is read back."""
    digests = {path: digest(secret, salt) for path, secret in secrets.items()}
    applied: dict[str, Any] = {}
    if echo is not None:
        applied = live_view(echo)
        applied["service_settings"] = masked(applied["service_settings"], digests, salt)
    return EndpointRecord(
        task_type=change.task_type,
        service=change.service,
        requested=requested_view(change),
        applied=applied,
        secret_digests=digests,
        lifecycle=dict(change.lifecycle),
        applied_at=applied_at,
        tainted=tainted,
    )


# -- drift -------------------------------------------------------------------------------------


def drift(live: Mapping[str, Mapping[str, Any]], state: State) -> list[Finding]:
    """Every path of every managed endpoint where the cluster differs from the last applied echo."""
    findings = []
    for inference_id, record in sorted(state.endpoints.items()):
        current = live.get(inference_id)
        if current is None:
            findings.append(_finding(inference_id, "", record.applied, None, "removed"))
            continue
        for found in moved(
            record.applied, live_view(current), tuple(record.lifecycle.get("ignore_changes", ()))
        ):
            kind = "added" if found.before is ABSENT else "removed" if found.after is ABSENT else "changed"
            entry = shown(found)
            findings.append(_finding(inference_id, entry.path, entry.before, entry.after, kind))
    return findings


def _finding(inference_id: str, path: str, applied: Any, live: Any, kind: str) -> Finding:
    # Stable for the same endpoint, path and live value: a repeated run tells known drift from new.
    key = json.dumps([inference_id, path, live], sort_keys=True)
    return Finding(
        "drift-" + hashlib.sha256(key.encode()).hexdigest()[:16], inference_id, path, applied, live, kind
    )
