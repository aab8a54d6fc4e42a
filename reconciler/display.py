"""How the commands show their reports: one view per output form (human, JSON, Markdown), picked once.

A view turns a workflow's report into the text for stdout: `render` draws plans and drift findings
for people, the reports' own `to_json()` are the JSON forms. What goes to stderr (validation
problems, failures) comes back as messages, which the command line prints or logs as JSON events.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import time

from rich.console import Console
from rich.table import Table

from reconciler import render
from reconciler.manifests import Validation
from reconciler.plan import Plan
from reconciler.reports import (
    ApplyReport,
    DriftReport,
    ImportReport,
    StatusReport,
    ValidateReport,
    WaitReport,
)
from reconciler.state import LockInfo, State

Message = tuple[str, str]  # (level, text), for stderr

_STATUS_COLUMNS = ("endpoint", "task type", "service", "model", "managed", "allocation", "state", "drifted")


class HumanView:
    """For a terminal or a log: plans with Terraform-like symbols, the status as a table."""

    def __init__(self, color: bool = False) -> None:
        self.color = color

    def plan(self, planned: Plan) -> str:
        return render.human(planned, color=self.color)

    def drift(self, report: DriftReport) -> str:
        return render.drift_human(report.findings, report.checked, report.known)

    def status(self, report: StatusReport) -> str:
        table = Table(box=None)
        for column in _STATUS_COLUMNS:
            table.add_column(column)
        for row in report.rows:
            allocation = row.allocation
            table.add_row(
                row.inference_id,
                str(row.task_type),
                str(row.service),
                str(row.model_id or ""),
                "yes" if row.managed else ("preconfigured" if row.preconfigured else "no"),
                f"{allocation.count}/{allocation.target}" if allocation else "",
                allocation.state if allocation else "",
                "yes" if row.drifted else "",
            )
        terminal = sys.stdout.isatty()
        out = io.StringIO()
        # Drawn as it would be on stdout: its width on a terminal, wide enough not to wrap in a pipe.
        width = shutil.get_terminal_size().columns if terminal else 200
        Console(file=out, force_terminal=terminal, no_color=not self.color, width=width).print(table)
        return out.getvalue()

    def validated(self, report: ValidateReport) -> str:
        """validate's stdout: each error, or that the manifests are valid."""
        validation, version = report.validation, report.version
        if validation.errors:
            return "".join(f"{problem}\n" for problem in validation.errors)
        return (
            f"{len(validation.endpoints)} endpoint(s) in {validation.files} file(s) are valid for "
            f"Elasticsearch {version.major}.{version.minor}.\n"
        )

    def applied(self, report: ApplyReport) -> str:
        """The summary of an apply, then what the plan made again after it says."""
        counts = report.result.counts() if report.result is not None else {}
        text = (
            f"Apply finished: {counts.get('done', 0)} done, {counts.get('failed', 0)} failed, "
            f"{counts.get('skipped', 0)} skipped.\n"
        )
        after = report.after_plan
        if after is not None and after.has_changes:
            return text + "The cluster still differs from the manifests:\n" + self.plan(after)
        return text + ("The cluster matches the manifests.\n" if after is not None else "")

    def waited(self, report: WaitReport) -> str:
        return "".join(f"{s.inference_id}: {s.allocation()} fully allocated\n" for s in report.done)

    def imported(self, report: ImportReport) -> str:
        """Each file written; then that nothing is managed yet: plan shows them, apply records them."""
        lines = "".join(
            f"wrote {path}" + (f" (set {', '.join(references)})" if references else "") + "\n"
            for path, references in report.written
        )
        return lines + (
            f"{len(report.written)} manifest(s) written; the state is unchanged. `reconciler plan` shows "
            "them as adopt (or update, for a secret the state cannot know); `apply` records them.\n"
        )

    def state_listing(self, state: State | None, lock: LockInfo | None, name: str) -> str:
        """`state list`: the managed endpoints the state records, and its lock."""
        if state is None:
            return f"No state in {name}.\n"
        lines = [
            f"{name}: lineage {state.lineage}, serial {state.serial}, {len(state.endpoints)} endpoint(s)"
        ]
        for inference_id, record in sorted(state.endpoints.items()):
            flags = " tainted" if record.tainted else ""
            lines.append(
                f"  {inference_id}  [{record.task_type}, {record.service}]  applied {record.applied_at}{flags}"
            )
        if lock is not None:
            lines.append(("expired " if lock.expired(time.time()) else "") + lock.describe())
        return "\n".join(lines) + "\n"


class MarkdownView(HumanView):
    """For pull-request comments."""

    def plan(self, planned: Plan) -> str:
        return render.markdown(planned)

    def drift(self, report: DriftReport) -> str:
        return render.drift_markdown(report.findings, report.checked, report.known)


class JsonView(HumanView):
    """Exactly one JSON document on stdout (DESIGN.md §8)."""

    def plan(self, planned: Plan) -> str:
        return planned.dumps()

    def drift(self, report: DriftReport) -> str:
        return json.dumps(report.to_json(), indent=2) + "\n"

    def status(self, report: StatusReport) -> str:
        return json.dumps(report.to_json(), indent=2) + "\n"


View = HumanView  # every view has the human one's methods


def pick(color: bool, *, as_json: bool = False, as_markdown: bool = False) -> View:
    """The view for a command's --json / --markdown flags (--json wins)."""
    if as_json:
        return JsonView(color)
    return MarkdownView(color) if as_markdown else HumanView(color)


# -- messages for stderr -----------------------------------------------------------------------


def validation_messages(validation: Validation) -> list[Message]:
    """Manifest warnings, then errors, as file:line: field.path: message."""
    warnings = [
        ("warning", f"{w.file}:{w.line}: {w.path}: warning: {w.message}") for w in validation.warnings
    ]
    return warnings + [("error", str(problem)) for problem in validation.errors]


def validate_messages(report: ValidateReport) -> list[Message]:
    """validate's stderr: the warnings, then how many errors (the errors themselves go to stdout)."""
    validation, version = report.validation, report.version
    messages = [m for m in validation_messages(validation) if m[0] == "warning"]
    if validation.errors:
        line = f"{version.major}.{version.minor}"
        summary = f"{len(validation.errors)} error(s) in {validation.files} file(s) (Elasticsearch {line})."
        messages.append(("error", summary))
    return messages


def apply_failures(report: ApplyReport) -> list[Message]:
    failed = report.result.failed if report.result is not None else []
    return [("error", f"Failed: {f.inference_id} ({f.action}): {f.detail}") for f in failed]


def wait_failures(report: WaitReport) -> list[Message]:
    return [("error", f"Failed: {s.inference_id}: {s.failure()}") for s in report.failed]
