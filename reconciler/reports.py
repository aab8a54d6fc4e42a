"""What each workflow returns: a report that owns its exit code (DESIGN.md §4, §8), like black's `Report`.

Exit codes: 0 success; 1 an error (invalid manifests, plan errors, a failed action, a failed or
timed-out wait, an apply that was not confirmed); 2 changes present (`plan --detailed-exitcode`) or
drift found. The JSON forms of `drift --json` and `status --json` are built here, by `to_json()`,
and nowhere else. What stops a workflow before it has a report is a `WorkflowError`, exit code 1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.catalog import Version
from reconciler.manifests import Validation
from reconciler.plan import Finding, Plan

if TYPE_CHECKING:  # annotations only: what shows a report needs neither the applier nor the HTTP client
    from reconciler.applier import Result
    from reconciler.progress import DeploymentStatus


class WorkflowError(Exception):
    """What stopped a workflow before it could report; the message is for the user."""

    exit_code = 1


@dataclass(frozen=True)
class ValidateReport:
    """The manifests checked offline for one Elasticsearch version."""

    validation: Validation
    version: Version

    @property
    def exit_code(self) -> int:
        return 1 if self.validation.errors else 0


@dataclass(frozen=True)
class PlanReport:
    """A plan (None when the manifests are invalid) and the validation it was made from."""

    plan: Plan | None
    validation: Validation
    detailed_exitcode: bool = False

    @property
    def applicable(self) -> bool:
        """Whether apply may go on with this plan: the manifests are valid and the plan has no errors."""
        return self.plan is not None and not self.plan.errors

    @property
    def exit_code(self) -> int:
        """1 for invalid manifests or plan errors; 2 for changes under --detailed-exitcode; else 0."""
        if self.plan is None or self.plan.errors:
            return 1
        return 2 if self.detailed_exitcode and self.plan.has_changes else 0


@dataclass(frozen=True)
class ApplyReport:
    """What apply did; `result` is None when nothing was applied (no plan to apply, or not confirmed)."""

    result: Result | None
    after_plan: Plan | None = None  # planned again after a full apply: empty once converged

    @property
    def exit_code(self) -> int:
        return 1 if self.result is None or self.result.failed else 0


@dataclass(frozen=True)
class DriftReport:
    """Where the cluster moved away from what was last applied."""

    findings: tuple[Finding, ...]
    checked: int
    known: frozenset[str]  # finding ids of a previous report: the others are new
    cluster: Mapping[str, Any]

    @property
    def exit_code(self) -> int:
        return 2 if self.findings else 0

    def to_json(self) -> dict[str, Any]:
        """`drift --json` (DESIGN.md §8)."""
        return {
            "format_version": 1,
            "cluster": dict(self.cluster),
            "findings": [{**f.to_json(), "new": f.id not in self.known} for f in self.findings],
            "summary": {
                "endpoints_checked": self.checked,
                "endpoints_drifted": len({f.inference_id for f in self.findings}),
                "findings": len(self.findings),
                "new_findings": sum(f.id not in self.known for f in self.findings),
            },
        }


@dataclass(frozen=True)
class Allocation:
    count: int
    target: int
    state: str


@dataclass(frozen=True)
class StatusRow:
    """One live endpoint, managed or not; the fields are those of `status --json`, in its order."""

    inference_id: str
    task_type: str | None
    service: str | None
    model_id: str | None
    managed: bool
    preconfigured: bool
    allocation: Allocation | None
    deployment_state: str | None
    drifted: bool


@dataclass(frozen=True)
class StatusReport:
    rows: tuple[StatusRow, ...]

    @property
    def exit_code(self) -> int:
        return 0

    def to_json(self) -> dict[str, Any]:
        """`status --json` (DESIGN.md §8)."""
        return {"endpoints": [dataclasses.asdict(row) for row in self.rows]}


@dataclass(frozen=True)
class WaitReport:
    results: Mapping[str, DeploymentStatus]

    @property
    def done(self) -> list[DeploymentStatus]:
        return [s for s in self.results.values() if s.outcome == "done"]

    @property
    def failed(self) -> list[DeploymentStatus]:
        """Failed or timed out."""
        return [s for s in self.results.values() if s.outcome != "done"]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


@dataclass(frozen=True)
class ImportReport:
    written: Sequence[tuple[Path, list[str]]]  # each manifest, and the variables its secrets need

    @property
    def exit_code(self) -> int:
        return 0
