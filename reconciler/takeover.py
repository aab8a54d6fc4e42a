"""The takeover guard: a workspace does not act on an endpoint that another workspace's state on
the same cluster manages, unless `--allow-takeover` says so.

Two workspaces whose manifests name the same id would fight over it, each apply undoing the
other's. `plan` warns of each such endpoint its changes would create, update, replace, delete or
adopt; `apply` refuses them without the flag, and `apply PLANFILE` checks again with the flag the
saved plan carries (`allow_takeover`), since another workspace may have applied meanwhile.

Only the cluster state backend can tell (`Backend.others`): its state documents live in the
cluster itself. A `file:` state records no cluster — other workspaces' files beside it may be for
other clusters — so it is not checked.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from reconciler.plan import Action, Plan
from reconciler.storage import Backend

TOUCHING = (Action.CREATE, Action.UPDATE, Action.REPLACE, Action.DELETE, Action.ADOPT)


async def other_workspaces(backend: Backend) -> dict[str, tuple[str, ...]]:
    """Each endpoint id that another workspace's state on this cluster manages, and which ones."""
    found: dict[str, tuple[str, ...]] = {}
    for name, state in sorted((await backend.others()).items()):
        for inference_id in state.endpoints:
            found[inference_id] = (*found.get(inference_id, ()), name)
    return found


def conflicts(plan: Plan, managed: Mapping[str, Sequence[str]]) -> list[str]:
    """`ID (action) is managed by workspace W` for each change that would act on another's endpoint."""
    return [
        f"{c.inference_id} ({c.action.value}) is managed by workspace {', '.join(managed[c.inference_id])} "
        "on this cluster"
        for c in plan.changes
        if c.action in TOUCHING and managed.get(c.inference_id)
    ]


def guarded(plan: Plan, managed: Mapping[str, Sequence[str]], workspace: str, allowed: bool) -> Plan:
    """The plan stamped with its workspace and `allow_takeover`, a warning per takeover."""
    told = "allowed by --allow-takeover" if allowed else "apply refuses it without --allow-takeover"
    warnings = tuple(f"takeover: {line}: {told}" for line in conflicts(plan, managed))
    return dataclasses.replace(
        plan,
        state={**plan.state, "workspace": workspace},
        warnings=(*plan.warnings, *warnings),
        allow_takeover=allowed,
    )


def refused(plan: Plan, managed: Mapping[str, Sequence[str]]) -> str | None:
    """Why apply refuses this plan (takeovers it does not allow), or None."""
    found = [] if plan.allow_takeover else conflicts(plan, managed)
    if not found:
        return None
    return (
        "; ".join(found) + ": apply refuses to take over another workspace's endpoints without "
        "--allow-takeover (plan again with it, or have the other workspace give them up with `state rm`)"
    )
