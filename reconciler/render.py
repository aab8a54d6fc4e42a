"""Plans and drift reports for people: the terminal form and the Markdown form for pull requests.

Both are rendered from the same values the JSON form serialises (`Plan`, drift `Finding`s), so
the JSON stays the contract. Secrets arrive already redacted; nothing here sees a secret value.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

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


def change_lines(change: Change) -> list[str]:
    """The field-level lines of one change, Terraform-style."""
    lines = []
    if change.action is Action.CREATE and change.after is not None:
        for path, value in sorted(flatten(change.after).items()):
            if path not in ("task_type", "service"):
                lines.append(f"+ {path} = {_value(value)}")
    for entry in change.diff:
        marker = "  # forces replacement" if entry.path in change.replace_paths else ""
        if entry.before is None:
            lines.append(f"+ {entry.path} = {_value(entry.after)}{marker}")
        elif entry.after is None:
            lines.append(f"- {entry.path} = {_value(entry.before)}{marker}")
        else:
            lines.append(f"~ {entry.path}: {_value(entry.before)} -> {_value(entry.after)}{marker}")
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

    out: list[str] = []
    changing = [c for c in plan.changes if c.action is not Action.NO_OP]
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
    out.append(summary_line(plan))
    return "\n".join(out) + "\n"


def markdown(plan: Plan, *, limit: int = MARKDOWN_LIMIT) -> str:
    """For a pull-request comment: the summary first, each change folded, never over `limit`."""
    head = [f"### reconciler plan\n\n**{summary_line(plan)}**\n"]
    if plan.errors:
        head.append("**This plan cannot be applied:**\n" + "".join(f"- {e}\n" for e in plan.errors))
    if plan.warnings:
        head.append("".join(f"> ⚠️ {w}\n" for w in plan.warnings))
    cluster = plan.cluster
    head.append(
        f"Elasticsearch {cluster.get('version', '?')} at `{cluster.get('url', '?')}` · "
        f"state serial {plan.state.get('serial')} · {len(plan.unmanaged)} unmanaged endpoint(s)\n"
    )
    text = "\n".join(head)
    changing = [c for c in plan.changes if c.action is not Action.NO_OP]
    for index, change in enumerate(changing):
        block = _markdown_change(change)
        tail = f"\n…and {len(changing) - index} more change(s): see the plan file (JSON) for all of them.\n"
        if len(text) + len(block) + len(tail) + 200 > limit:
            return text + tail
        text += block
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
