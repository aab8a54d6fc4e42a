"""Environments at work: `--env NAME` resolved to a target, `--all-envs` run concurrently, envs compared.

`--env NAME` picks an environment of the project file (`reconciler.project`): its connection (read
from the variables it names), state, workspace, expected version and overlay replace the options'.
`plan --all-envs` and `drift --all-envs` run every environment at once in one event loop, each
under its own timeout, so a cluster that is down or slow is reported as such without holding up
the others; their reports are combined into one output and one exit code (1 if any failed, else 2
if any has changes or drift, else 0). `render` and `diff-envs` show an environment's desired
manifests and how two environments' differ, with secrets as the references written.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler import catalog, display, overlays, project, workflows
from reconciler.client import Elasticsearch
from reconciler.connection import Connection
from reconciler.manifests_yaml import Document, ManifestError, dump_manifest
from reconciler.options import COMMON
from reconciler.options import state as checked_state
from reconciler.options import workspace as checked_workspace
from reconciler.plan import Action, Plan, flatten
from reconciler.reports import DriftReport, PlanReport, WorkflowError
from reconciler.sensitive import REDACTED, is_single_reference
from reconciler.storage import Backend

# -- one environment -----------------------------------------------------------------------------


def chosen(values: dict[str, Any], environ: Mapping[str, str]) -> project.Environment | None:
    """Pop `env` and `project` from a cluster command's option values; with --env, the environment's
    connection, state and workspace replace the options' (ValueError naming what is wrong)."""
    name, path = values.pop("env", None), values.pop("project", None)
    if not name:
        return None
    environment = project.load(Path(path or project.DEFAULT_FILE)).environment(name)
    values.update(_connection_values(environment, environ))
    values["state"], values["workspace"] = environment.state, environment.workspace
    return environment


# The options that are not the connection's: the rest go to `Connection.from_options`.
_NOT_CONNECTION = {"state", "workspace", "log_format", "no_color", "env", "project"}


def _connection_values(environment: project.Environment, environ: Mapping[str, str]) -> dict[str, Any]:
    found = environment.connection_values(environ)
    # The project's connection is the whole connection: no address or credential of the shell slips in.
    return {
        "url": found.get("url"),
        "cloud_id": found.get("cloud_id"),
        "api_key": found.get("api_key"),
        "username": None,
        "password": None,
        "bearer_token": None,
    }


def target(
    environment: project.Environment,
    values: Mapping[str, Any],
    environ: Mapping[str, str],
    shared: overlays.Shared | None = None,
) -> workflows.Target:
    """The target of one environment; the other connection options (TLS, headers) as given."""
    connection = {k: v for k, v in values.items() if k in COMMON and k not in _NOT_CONNECTION}
    connection |= _connection_values(environment, environ)
    workspace = checked_workspace(environment.workspace)
    state = checked_state(environment.state, workspace)
    return workflows.Target(Connection.from_options(**connection), state, workspace, environment, shared)


def manifests_of(environment: project.Environment) -> overlays.Layers:
    return overlays.Layers(environment.base, environment.overlay, environment.name)


# -- every environment at once -------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One environment's run: its report, or why it has none (unreachable, timed out, refused)."""

    environment: str
    report: PlanReport | DriftReport | None
    error: str | None = None
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.report is None else self.report.exit_code

    @property
    def plan(self) -> Plan | None:
        return self.report.plan if isinstance(self.report, PlanReport) else None

    def destroys(self) -> int:
        changes = self.plan.changes if self.plan is not None else ()
        return sum(c.action in (Action.DELETE, Action.REPLACE) for c in changes)


Work = Callable[[workflows.Target], Callable[[Elasticsearch, Backend], Awaitable[PlanReport | DriftReport]]]


async def across(
    proj: project.Project,
    work: Work,
    values: Mapping[str, Any],
    environ: Mapping[str, str],
    seconds: float,
) -> list[Outcome]:
    """Run `work` on every environment concurrently, each bounded by `seconds`; the base manifests
    are read once, and each base document validated once per version."""
    shared = overlays.Shared()

    async def one(environment: project.Environment) -> Outcome:
        started = time.monotonic()
        try:
            where = target(environment, values, environ, shared)
            report = await asyncio.wait_for(workflows.run(where, work(where)), seconds)
        except TimeoutError:
            return Outcome(
                environment.name, None, f"no answer within {seconds:g}s", time.monotonic() - started
            )
        except (WorkflowError, ValueError, OSError) as error:  # this environment's failure only
            return Outcome(environment.name, None, str(error), time.monotonic() - started)
        return Outcome(environment.name, report, None, time.monotonic() - started)

    return list(await asyncio.gather(*(one(e) for e in proj.environments.values())))


def exit_code(outcomes: Sequence[Outcome]) -> int:
    """1 if any environment failed, else 2 if any has changes (or drift), else 0."""
    codes = {o.exit_code for o in outcomes}
    return 1 if 1 in codes else 2 if 2 in codes else 0


def _order(outcomes: Sequence[Outcome]) -> list[Outcome]:
    """Failures, then destructive changes, then other changes, then none; else as written."""

    def rank(outcome: Outcome) -> int:
        if outcome.exit_code == 1:
            return 0
        if outcome.destroys():
            return 1
        has_changes = outcome.plan.has_changes if outcome.plan is not None else outcome.exit_code == 2
        return 2 if has_changes else 3

    return sorted(outcomes, key=rank)


def _headline(outcome: Outcome) -> str:
    if outcome.report is None:
        return f"{outcome.environment}: FAILED ({outcome.error})"
    if isinstance(outcome.report, DriftReport):
        found = len(outcome.report.findings)
        return f"{outcome.environment}: " + (f"{found} drift finding(s)" if found else "no drift")
    if outcome.plan is None:
        errors = len(outcome.report.validation.errors)
        return f"{outcome.environment}: FAILED ({errors} manifest error(s))"
    summary = outcome.plan.summary()
    shown = [f"{n} {k.replace('_', '-')}" for k, n in summary.items() if n and k != "no_op"]
    return f"{outcome.environment}: " + (", ".join(shown) if shown else "no changes")


def _body(outcome: Outcome, view: display.View) -> str:
    if outcome.report is None:
        return f"Error: {outcome.error}\n"
    if isinstance(outcome.report, DriftReport):
        return view.drift(outcome.report)
    if outcome.plan is None:
        return "".join(
            f"{message}\n" for _, message in display.validation_messages(outcome.report.validation)
        )
    return view.plan(outcome.plan)


def human(outcomes: Sequence[Outcome], view: display.View) -> str:
    """Each environment under a heading, in the order written, then a one-line summary of each."""
    parts = [f"=== {_headline(o)} ===\n{_body(o, view)}" for o in outcomes]
    summary = "".join(f"  {_headline(o)}\n" for o in _order(outcomes))
    return "\n".join(parts) + f"\nEnvironments ({len(outcomes)}):\n{summary}"


def markdown(outcomes: Sequence[Outcome], view: display.View, what: str) -> str:
    """A section per environment: failures first, then destructive changes, then the rest."""
    lines = [f"# {what}: {len(outcomes)} environments", ""]
    lines += [f"- **{_headline(o)}**" for o in _order(outcomes)]
    for outcome in _order(outcomes):
        warning = " :warning: destroys or replaces" if outcome.destroys() else ""
        lines += ["", f"## {outcome.environment}{warning}", "", _body(outcome, view).rstrip("\n")]
    return "\n".join(lines) + "\n"


def as_json(outcomes: Sequence[Outcome], what: str) -> str:
    """One document: each environment's plan (or drift report), or its error; the combined code."""
    entries = []
    for outcome in outcomes:
        entry: dict[str, Any] = {
            "environment": outcome.environment,
            "exit_code": outcome.exit_code,
            "seconds": round(outcome.seconds, 3),
        }
        if outcome.report is None:
            entry["error"] = outcome.error
        elif isinstance(outcome.report, DriftReport):
            entry["drift"] = outcome.report.to_json()
        elif outcome.plan is None:
            entry["errors"] = [str(e) for e in outcome.report.validation.errors]
        else:
            entry[what] = outcome.plan.to_json()
        entries.append(entry)
    return json.dumps({"environments": entries, "exit_code": exit_code(outcomes)}, indent=2) + "\n"


# -- what an environment gets, and how two differ -----------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """An environment's manifests as written after its overlay (secrets as references), or errors."""

    documents: tuple[Document, ...]
    errors: tuple[ManifestError, ...]


def rendered(environment: project.Environment) -> Rendered:
    items, _ = overlays.compose(manifests_of(environment))
    errors = tuple(sorted(i for i in items if isinstance(i, ManifestError)))
    return Rendered(tuple(i for i in items if isinstance(i, Document)), errors)


def shown(data: Any) -> Any:
    """A manifest as it may be printed: a secret field's literal value (invalid anyway) masked."""
    if not isinstance(data, dict):
        return data
    settings = data.get("service_settings")
    if not isinstance(settings, dict):
        return data
    masked = {k: _masked(k, v) for k, v in settings.items()}
    return {**data, "service_settings": masked}


def _masked(name: str, value: Any) -> Any:
    if name not in catalog.SECRET_FIELD_NAMES:
        return value
    if isinstance(value, dict):
        return {k: v if isinstance(v, str) and is_single_reference(v) else REDACTED for k, v in value.items()}
    return value if isinstance(value, str) and is_single_reference(value) else REDACTED


def render_text(result: Rendered, environment: str) -> str:
    """YAML documents, each headed by where its values come from."""
    parts = []
    for doc in result.documents:
        sources = sorted({doc.file, *doc.files.values()})
        comment = f"environment {environment}; from {', '.join(sources)}"
        parts.append(dump_manifest(shown(doc.data), comment))
    return "---\n".join(parts)


def _by_id(result: Rendered) -> dict[str, dict[str, Any]]:
    return {i: shown(d.data) for d in result.documents if (i := overlays.id_of(d)) is not None}


def differences(left: Rendered, right: Rendered) -> list[tuple[str, str, Any, Any]]:
    """(inference_id, field path or '', left value, right value) for every difference; an endpoint
    only one side has is one row with the path '' and None on the other side."""
    mine, theirs = _by_id(left), _by_id(right)
    rows: list[tuple[str, str, Any, Any]] = []
    for inference_id in sorted(mine.keys() | theirs.keys()):
        if inference_id not in theirs or inference_id not in mine:
            rows.append((inference_id, "", mine.get(inference_id), theirs.get(inference_id)))
            continue
        a, b = flatten(mine[inference_id]), flatten(theirs[inference_id])
        rows += [
            (inference_id, p, a.get(p), b.get(p)) for p in sorted(a.keys() | b.keys()) if a.get(p) != b.get(p)
        ]
    return rows


def differences_text(rows: Sequence[tuple[str, str, Any, Any]], left: str, right: str) -> str:
    if not rows:
        return f"{left} and {right} want the same endpoints.\n"
    lines = [f"How {right} differs from {left}:"]
    for inference_id, path, a, b in rows:
        if not path:
            lines.append(f"  {inference_id}: only in {left if b is None else right}")
        else:
            lines.append(f"  {inference_id} {path}: {_value(a, left)} -> {_value(b, right)}")
    return "\n".join(lines) + "\n"


def differences_json(rows: Sequence[tuple[str, str, Any, Any]], left: str, right: str) -> str:
    entries = [
        {
            "inference_id": i,
            "path": p or None,
            "left": a,
            "right": b,
            "only_in": None if p else (left if b is None else right),
        }
        for i, p, a, b in rows
    ]
    return json.dumps({"left": left, "right": right, "differences": entries}, indent=2) + "\n"


def _value(value: Any, side: str) -> str:
    return f"(not set in {side})" if value is None else json.dumps(value)
