"""Plans and drift reports for people: the terminal form and the Markdown form for pull requests.

Both are rendered from the same values the JSON form serialises (`Plan`, drift `Finding`s), so
the JSON stays the contract. Secrets arrive already redacted; nothing here sees a secret value.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from reconciler.plan import Action, Change, Finding, Plan, flatten
from reconciler.sensitive import REDACTED, REDACTED_CHANGED

MARKDOWN_LIMIT = 60_000
_COLORS = {"+": "32", "~": "33", "-": "31", "-/+": "35", "<=": "36", "=": "36", "-=": "36"}
_VERBS = {
    Action.CREATE: "will be created",
    Action.UPDATE: "will be updated in place",
    Action.REPLACE: "must be replaced",
    Action.DELETE: "will be deleted",
    Action.READ: "will be read into the state",
    Action.ADOPT: "will be recorded in the state (nothing is sent)",
    Action.FORGET: "will be dropped from the state (nothing is sent)",
}


def _value(value: Any) -> str:
    return value if value in (REDACTED, REDACTED_CHANGED) else json.dumps(value)


# Destructive first: a reviewer must see what is lost before what is added (issue 10).
_DESTRUCTIVE = (Action.DELETE, Action.REPLACE)
_PAST = {Action.DELETE: "to delete", Action.REPLACE: "to replace"}
_ORDER = (
    Action.DELETE,
    Action.REPLACE,
    Action.CREATE,
    Action.UPDATE,
    Action.READ,
    Action.ADOPT,
    Action.FORGET,
)


def ordered(plan: Plan) -> list[Change]:
    """The changes that do something, deletes and replaces first, each group in plan order."""
    changing = [c for c in plan.changes if c.action is not Action.NO_OP]
    return sorted(changing, key=lambda c: _ORDER.index(c.action))


def summary_line(plan: Plan) -> str:
    counts = plan.summary()
    if not plan.has_changes:
        return "No changes. The cluster matches the manifests."
    state_only = "".join(f", {counts[k]} to {k}" for k in ("adopt", "forget") if counts[k])
    if counts["read"] and not any(counts[k] for k in ("create", "update", "replace", "delete")):
        return f"Refresh: {counts['read']} to read into the state{state_only}."
    return (
        f"Plan: {counts['create']} to create, {counts['update']} to update, "
        f"{counts['replace']} to replace, {counts['delete']} to delete{state_only}."
    )


def summary_rows(plan: Plan) -> list[tuple[str, str, int]]:
    """(symbol, action, count) per action the plan takes, in review order: the summary table."""
    counts = plan.summary()
    return [(a.symbol, a.value, counts[a.value]) for a in _ORDER if counts[a.value]]


def where(plan: Plan) -> str:
    """Which environment, workspace's state and cluster the plan is for: host only (never credentials),
    the cluster's name and uuid when GET / gave them, its version, the state's serial."""
    cluster, state = plan.cluster, plan.state
    url = urlsplit(str(cluster.get("url") or ""))
    host = url.hostname or "?"
    host = f"[{host}]" if ":" in host else host
    if url.port:
        host += f":{url.port}"
    names = [str(cluster[k]) for k in ("cluster_name", "cluster_uuid") if cluster.get(k)]
    named = f" ({' / '.join(names)})" if names else ""
    workspace = f"workspace {state['workspace']}, " if state.get("workspace") else ""
    environment = f"environment {plan.environment}, " if plan.environment else ""
    return (
        f"{environment}{workspace}cluster {host}{named}, "
        f"Elasticsearch {cluster.get('version', '?')}, state serial {state.get('serial')}"
    )


def server_filled(change: Change) -> frozenset[str]:
    """Paths of the planned endpoint that the manifest leaves out and the server fills with its
    default (the catalog's): `after` is the endpoint as the server will store it, `desired` the
    body as written. Empty when the plan carries no desired body (nothing to tell them apart)."""
    if change.desired is None or change.after is None:
        return frozenset()
    asked = flatten(change.desired)
    filled = set()
    for path in flatten(change.after):
        if path in ("task_type", "service") or path in asked:
            continue
        # A secret's inner key is asked for when its parent is (a `${...}` object).
        if any(path.startswith(a + ".") or a.startswith(path + ".") for a in asked):
            continue
        filled.add(path)
    return frozenset(filled)


def change_lines(change: Change) -> list[str]:
    """The field-level lines of one change, Terraform-style; `(default)` marks what the server fills."""
    lines = []
    defaults = server_filled(change)

    def mark(path: str) -> str:
        return "  (default)" if path in defaults else ""

    if change.action is Action.CREATE and change.after is not None:
        for path, value in sorted(flatten(change.after).items()):
            if path not in ("task_type", "service"):
                lines.append(f"+ {path} = {_value(value)}{mark(path)}")
    for entry in change.diff:
        marker = "  # forces replacement" if entry.path in change.replace_paths else ""
        if entry.before is None:
            lines.append(f"+ {entry.path} = {_value(entry.after)}{mark(entry.path)}{marker}")
        elif entry.after is None:
            lines.append(f"- {entry.path} = {_value(entry.before)}{marker}")
        else:
            lines.append(
                f"~ {entry.path}: {_value(entry.before)} -> {_value(entry.after)}{mark(entry.path)}{marker}"
            )
    for kind in ("pipelines", "indexes"):
        if change.references.get(kind):
            lines.append(f"! used by {kind}: {', '.join(change.references[kind])}")
    # What apply sends, exactly (secrets as their references): the plan is the whole contract.
    for request in change.requests:
        body = f" {json.dumps(request.body, separators=(',', ':'))}" if request.body is not None else ""
        lines.append(f"> {request.line()}{body}")
    return lines


def human(plan: Plan, *, color: bool = False) -> str:
    def paint(symbol: str, text: str) -> str:
        return f"\x1b[{_COLORS[symbol]}m{text}\x1b[0m" if color and symbol in _COLORS else text

    out: list[str] = [f"Plan for {where(plan)}.\n"]
    changing = ordered(plan)
    if changing:
        out.append("reconciler will perform these actions:\n")
    for change in changing:
        symbol = change.action.symbol
        why = ", ".join(change.reasons)
        out.append(f"  # {change.inference_id} {_VERBS[change.action]} ({why})")
        out.append(
            paint(symbol, f"{symbol:>3} {change.inference_id}") + f"  [{change.task_type}, {change.service}]"
        )
        for line in change_lines(change):
            out.append(paint(line[0], f"      {line}"))
        out.append("")
    if plan.unmanaged:
        preconfigured = sum(u.preconfigured for u in plan.unmanaged)
        out.append(
            f"{len(plan.unmanaged)} live endpoint(s) are not managed here ({preconfigured} preconfigured) and will not be touched."
        )
    out += [f"Warning: {w}" for w in plan.warnings]
    out += [paint("-", f"Error: {e}") for e in plan.errors]
    if changing:
        out.append("  ".join(paint(s, f"{s} {a}: {n}") for s, a, n in summary_rows(plan)))
    out.append(summary_line(plan))
    return "\n".join(out) + "\n"


def markdown(plan: Plan, *, limit: int = MARKDOWN_LIMIT) -> str:
    """For a pull-request comment, never over `limit`: the summary, the workspace and cluster, a
    table per action, then each change folded — deletes and replaces first. Those are never cut:
    each one that does not fit folded is still named on a line of its own; only the other changes
    are cut to fit (a count of the rest points to the plan file)."""
    head = [f"### reconciler plan\n\n**{summary_line(plan)}**\n", f"Plan for {where(plan)}.\n"]
    rows = summary_rows(plan)
    if rows:
        head.append(
            "| action | count |\n|---|---:|\n" + "".join(f"| `{s}` {a} | {n} |\n" for s, a, n in rows)
        )
    if plan.errors:
        head.append("**This plan cannot be applied:**\n" + "".join(f"- {e}\n" for e in plan.errors))
    if plan.warnings:
        head.append("".join(f"> ⚠️ {w}\n" for w in plan.warnings))
    if plan.unmanaged:
        head.append(f"{len(plan.unmanaged)} live endpoint(s) are not managed here and will not be touched.\n")
    changing = ordered(plan)
    destructive = [c for c in changing if c.action in _DESTRUCTIVE]
    rest = changing[len(destructive) :]
    text = "\n".join(head)
    reserve = 400  # room for the closing lines
    if destructive:
        text += f"\n#### Deletes and replaces ({len(destructive)})\n"
        text = _destructive(text, destructive, limit - reserve)
    if rest:
        text += f"\n#### Other changes ({len(rest)})\n"
        for index, change in enumerate(rest):
            block = _markdown_change(change)
            if len(text) + len(block) + reserve > limit:
                return (
                    text
                    + f"\n…and {len(rest) - index} more change(s): see the plan file (JSON) for all of them.\n"
                )
            text += block
    return text


def _destructive(text: str, changes: Sequence[Change], limit: int) -> str:
    """Each delete and replace folded while the names of the rest still fit after it; then the
    rest named, per action. Only a plan whose names alone overflow a comment says how many it
    left out."""
    names = [f"`{c.inference_id}`, " for c in changes]
    named = sum(len(name) for name in names) + 100
    for index, change in enumerate(changes):
        named -= len(names[index])
        block = _markdown_change(change)
        if len(text) + len(block) + named > limit:
            break
        text += block
    else:
        return text
    left = list(changes[index:])
    for action in _DESTRUCTIVE:
        these = [c for c in left if c.action is action]
        if not these:
            continue
        text += f"\n**Also {_PAST[action]}** ({len(these)}): "
        for shown, change in enumerate(these):
            name = f"`{change.inference_id}`"
            if len(text) + len(name) + 2 > limit:
                missing = len(left) - left.index(change)  # `left` is in _DESTRUCTIVE order
                return (
                    text
                    + f"\n\n**…and {missing} more delete(s) and replace(s) than one comment can name: see the plan file.**\n"
                )
            text += name + (", " if shown < len(these) - 1 else "\n")
    return text


def _markdown_change(change: Change) -> str:
    why = ", ".join(change.reasons)
    lines = change_lines(change)
    body = "\n".join(lines) if lines else "(no field changes)"
    forced = f"\n\nReplaced because of: `{'`, `'.join(change.replace_paths)}`" if change.replace_paths else ""
    return (
        f"\n<details><summary><code>{change.action.symbol}</code> <b>{change.inference_id}</b> "
        f"{_VERBS[change.action]} ({why})</summary>\n\n```diff\n{body}\n```{forced}\n</details>\n"
    )


# -- drift -------------------------------------------------------------------------------------


def drift_human(findings: Sequence[Finding], checked: int, known: frozenset[str] = frozenset()) -> str:
    if not findings:
        return f"No drift: the {checked} managed endpoint(s) match what was last applied.\n"
    lines = [
        f"drift: {f.inference_id}: {f.path or '(the endpoint)'} {f.kind}: applied {_value(f.applied)}, "
        f"live {_value(f.live)}{' (known)' if f.id in known else ''}"
        for f in findings
    ]
    return "\n".join(lines) + f"\n{_drift_summary(findings, checked, known)}.\n"


def drift_markdown(findings: Sequence[Finding], checked: int, known: frozenset[str] = frozenset()) -> str:
    if not findings:
        return f"### reconciler drift\n\n**No drift** on {checked} managed endpoint(s).\n"
    rows = "".join(
        f"| `{f.inference_id}` | `{f.path or '(endpoint)'}` | {f.kind} | `{_value(f.applied)}` | `{_value(f.live)}` "
        f"| {'known' if f.id in known else '**new**'} |\n"
        for f in findings
    )
    return (
        f"### reconciler drift\n\n**{_drift_summary(findings, checked, known)}**\n\n"
        "| endpoint | path | kind | applied | live | |\n|---|---|---|---|---|---|\n" + rows
    )


def _drift_summary(findings: Sequence[Finding], checked: int, known: frozenset[str]) -> str:
    drifted = len({f.inference_id for f in findings})
    new = sum(f.id not in known for f in findings)
    return f"{len(findings)} finding(s) on {drifted} of {checked} endpoint(s), {new} new"
