"""The command line: parses options, runs a workflow, renders its report and exits with its code.

The workflows (`reconciler.workflows`) do the work; each command builds their inputs, picks the
view once (human, JSON or Markdown) and renders what comes back. Modules are imported inside the
commands, and typer's rich help is off, so that `reconciler --help` stays fast.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from reconciler import __version__, cli_envs
from reconciler import options as cli_options
from reconciler.cli_base import Commands, run_async, table, with_options

if TYPE_CHECKING:
    from reconciler.client import Elasticsearch
    from reconciler.display import View
    from reconciler.progress import Reporter
    from reconciler.reports import PlanReport
    from reconciler.session import Planning
    from reconciler.storage import Backend
    from reconciler.workflows import Confirm, Target


app = typer.Typer(
    name="reconciler",
    cls=Commands,
    help="Keep the inference endpoints of an Elasticsearch cluster equal to a folder of YAML manifests.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},  # completion stays on: typer loads it anyway
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: importing rich's help formatting costs more than the rest
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"reconciler {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the tool's version."),
    ] = False,
) -> None:
    """Keep the inference endpoints of an Elasticsearch cluster equal to a folder of YAML manifests."""
    _LOGGING["format"] = "console"  # until a command's --log-format says otherwise


# -- options declared as tables (made typer options by reconciler.cli_base) ----------------------

T = TypeVar("T")


_EMULATOR = table(cli_options.EMULATOR)


@app.command()
@with_options(_EMULATOR, "options", dict)
def emulator(options: dict[str, Any]) -> None:
    """Serve an emulated Elasticsearch cluster (the inference, trained-model, ingest and document APIs)."""
    _checked(cli_options.check_emulator, options)  # first: it refuses an install without [emulator]
    from reconciler.emulator import EmulatorConfig, serve
    from reconciler.emulator.server import ListenError

    host, port = options.pop("host"), options.pop("port")
    options["fail_models"] = tuple(options["fail_models"] or ())
    specs = (spec.partition(":") for spec in options["trained_models"] or ())
    options["trained_models"] = tuple((model, task or "text_embedding") for model, _, task in specs)
    config = EmulatorConfig(**options)
    try:
        config.parsed_version()
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--version") from None
    try:
        serve(config, host, port)
    except ListenError as error:
        _refuse(error)


ManifestsOption = Annotated[
    Path,
    typer.Option(
        "--manifests", envvar="RECONCILER_MANIFESTS", metavar="DIR", help="The manifests, read recursively."
    ),
]
VersionOption = Annotated[
    str,
    typer.Option(
        "--es-version",
        metavar="VERSION",
        help="Elasticsearch version to validate for: 8.16 to 8.19, 9.0 to 9.5 (default).",
    ),
]
Offline = Annotated[bool, typer.Option("--offline", help="Resolve no reference, check only its syntax.")]


@app.command()
@cli_envs.extended
def validate(
    manifests: ManifestsOption = Path("manifests"),
    es_version: VersionOption = "9.5",
    offline: Offline = False,
) -> None:
    """Check the manifests without a cluster, reporting every error as file:line: field.path: message."""
    from reconciler import display
    from reconciler import offline as offline_validation

    try:
        report = offline_validation.validate(manifests, es_version, os.environ, offline=offline)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--es-version") from None
    _tell(display.validate_messages(report))
    typer.echo(display.HumanView().validated(report), nl=False)
    raise typer.Exit(report.exit_code)


@app.command()
@cli_envs.extended
def schema() -> None:
    """Print the JSON Schema of the manifest format, for editors (yaml-language-server)."""
    import json

    from reconciler.model import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


# -- options shared by the commands that talk to a cluster --------------------------------------


@dataclass(frozen=True)
class Common:
    """The connection, state and output options of a cluster command."""

    target: Target
    color: bool


_COMMON = table(cli_options.COMMON)


def _common(values: dict[str, Any]) -> Common:
    from reconciler.client import Connection
    from reconciler.progress import configure_logging
    from reconciler.workflows import Target

    log_format, no_color = values.pop("log_format"), values.pop("no_color")
    if log_format not in ("console", "json"):
        raise typer.BadParameter("console or json", param_hint="--log-format")
    _LOGGING["format"] = log_format
    configure_logging(log_format)
    workspace = _checked(cli_options.workspace, values.pop("workspace"))
    state = _checked(cli_options.state, values.pop("state"), workspace)
    connection = _checked(Connection.from_options, **values)
    colour = cli_options.color(no_color, os.environ, sys.stdout.isatty())
    return Common(Target(connection, state, workspace), colour)


cluster_command = with_options(_COMMON, "common", cli_envs.environment_first(_common))
"""Give a command the shared options; it receives them as `common: Common`."""


_PLANNING = table(cli_options.PLANNING)


def _planning(values: dict[str, Any]) -> Planning:
    from reconciler.planner import Options
    from reconciler.session import Planning

    targets, replaced = frozenset(values["target"] or ()), frozenset(values["replace"] or ())
    options = Options(targets, replaced, values["refresh_only"], values["destroy"])
    return Planning(options, values["allow_referenced"], values["allow_takeover"])


planning_options = with_options(_PLANNING, "planning", _planning)


# -- output, and running a workflow -----------------------------------------------------------

_LOGGING = {"format": "console"}


def _tell(messages: Iterable[tuple[str, str]]) -> None:
    """(level, message)s for the user on stderr: plain text, or JSON events under --log-format json."""
    for level, message in messages:
        if _LOGGING["format"] == "json":
            import structlog  # only for JSON logs: 80 ms that validate, a pre-commit hook, would pay

            getattr(structlog.get_logger("reconciler"), level)("message", message=message)
        else:
            typer.echo(message, err=True)


def _view(color: bool, as_json: bool = False, as_markdown: bool = False) -> View:
    from reconciler import display

    if as_json and as_markdown:
        raise typer.BadParameter("choose one of --json and --markdown")
    return display.pick(color, as_json=as_json, as_markdown=as_markdown)


def _reporter(common: Common) -> contextlib.closing[Reporter]:
    """Progress of actions and waits, closed after the run: a live table on a terminal, else log lines."""
    from reconciler.progress import reporter

    return contextlib.closing(_checked(reporter, sys.stderr.isatty(), common.color))


def _refuse(error: object) -> NoReturn:
    """One `Error:` line on stderr, exit 1: for what the options or the machine refuse."""
    _tell([("error", f"Error: {error}")])
    raise typer.Exit(1)


def _checked(check: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """check(*args, **kwargs), its ValueError (an option refused, named) shown as one line."""
    try:
        return check(*args, **kwargs)
    except ValueError as error:
        _refuse(error)


@contextlib.contextmanager
def _stopped() -> Iterator[None]:
    """What stops a workflow becomes its message on stderr and exit code 1."""
    from reconciler.reports import WorkflowError

    try:
        yield
    except WorkflowError as error:
        _tell([("error", f"Error: {error}")])
        raise typer.Exit(error.exit_code) from None


def _run(common: Common, work: Callable[[Elasticsearch, Backend], Awaitable[T]], parallelism: int = 8) -> T:
    """Run the work on the command's cluster and state."""
    from reconciler.workflows import run

    with _stopped():
        return run_async(run(common.target, work, parallelism))


# -- plan, show, drift --------------------------------------------------------------------------

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]
AsMarkdown = Annotated[bool, typer.Option("--markdown", help="Print Markdown (pull requests).")]
NoColor = Annotated[bool, typer.Option("--no-color", help=cli_options.NO_COLOR_HELP)]
PlanOut = Annotated[
    Path | None, typer.Option("--out", metavar="FILE", help="Also write the plan (JSON) here, for apply.")
]
Detailed = Annotated[bool, typer.Option("--detailed-exitcode", help="Exit 2 on changes, 0 on none.")]
Known = Annotated[
    Path | None,
    typer.Option(
        "--known", metavar="FILE", help="A previous drift --json output: its findings count as known."
    ),
]


@app.command()
@cli_envs.extended
@cluster_command
@planning_options
def plan(
    common: Common,
    planning: Planning,
    manifests: ManifestsOption = Path("manifests"),
    out: PlanOut = None,
    as_json: AsJson = False,
    as_markdown: AsMarkdown = False,
    detailed_exitcode: Detailed = False,
) -> None:
    """Show what apply would change; takes no lock and writes nothing to the cluster."""
    from reconciler import display, workflows

    view = _view(common.color, as_json, as_markdown)
    if out is not None:
        _checked(cli_options.writable, out, "--out")
    at = common.target  # the manifests and the workspace it plans for
    request = workflows.PlanRequest(at.manifests(manifests), planning, detailed_exitcode, at.workspace)
    report = _run(common, lambda es, backend: workflows.plan(es, backend, request, env=os.environ))
    _tell(display.validation_messages(report.validation))
    if report.plan is None:
        raise typer.Exit(report.exit_code)
    if out is not None:
        with _stopped():
            workflows.save_plan(report.plan, out)
    typer.echo(view.plan(report.plan), nl=False)
    raise typer.Exit(report.exit_code)


@app.command()
def show(
    planfile: Annotated[Path, typer.Argument(help="A plan saved with plan --out.")],
    as_json: AsJson = False,
    no_color: NoColor = False,
) -> None:
    """Print a saved plan."""
    from reconciler.workflows import load_plan

    view = _view(cli_options.color(no_color, os.environ, sys.stdout.isatty()), as_json)
    with _stopped():
        saved = load_plan(planfile)
    typer.echo(view.plan(saved), nl=False)


@app.command()
@cli_envs.extended
@cluster_command
def drift(
    common: Common, as_json: AsJson = False, as_markdown: AsMarkdown = False, known_file: Known = None
) -> None:
    """Compare the cluster with what was last applied; exit 2 when it has moved away."""
    from reconciler import workflows

    view = _view(common.color, as_json, as_markdown)
    known = frozenset[str]()
    if known_file is not None:
        with _stopped():
            found = workflows.known_findings(known_file)
        if found is None:
            _tell([("warning", f"{known_file}: not found; every finding counts as new")])
        known = found or known
    report = _run(common, lambda es, backend: workflows.drift(es, backend, known))
    typer.echo(view.drift(report), nl=False)
    raise typer.Exit(report.exit_code)


# -- apply and the runbook commands ----------------------------------------------------------

Duration = Annotated[str | None, typer.Option(metavar="DURATION", help="A duration such as 90s, 15m or 1h.")]
SavedPlan = Annotated[Path | None, typer.Argument(help="A plan saved with plan --out: apply exactly that.")]
AutoApprove = Annotated[bool, typer.Option("--auto-approve", help="Do not ask for confirmation.")]
Parallelism = Annotated[int, typer.Option(min=1, metavar="N", help="Endpoints changed at once.")]
NoWait = Annotated[bool, typer.Option("--no-wait", help="Do not wait for trained-model deployments.")]
# Tests and the demo poll deployments more often than a person needs to.
PollInterval = Annotated[
    float, typer.Option(envvar="RECONCILER_POLL_INTERVAL", min=0.01, clamp=True, hidden=True, help="Seconds.")
]


def _seconds(text: str | None, name: str, default: float) -> float:
    from reconciler.model import parse_duration

    if text is None:
        return default
    try:
        return parse_duration(text)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint=name) from None


def _confirm(auto_approve: bool) -> bool:
    """apply's "yes": asked on a terminal; refused when unattended without --auto-approve."""
    if auto_approve:
        return True
    if not sys.stdin.isatty():
        message = "apply without a plan file needs --auto-approve when it does not run on a terminal."
        typer.echo(f"Error: {message}", err=True)
        return False
    answer: str = typer.prompt(
        "Apply these changes? Only 'yes' will be accepted", default="", show_default=False
    )
    if answer.strip() != "yes":
        typer.echo("Apply cancelled.", err=True)
    return answer.strip() == "yes"


def _reviewer(view: View, auto_approve: bool) -> Confirm:
    """Show the plan apply made, then ask for "yes" when it has changes to apply."""
    from reconciler.display import validation_messages

    def review(report: PlanReport) -> bool:
        _tell(validation_messages(report.validation))
        if report.plan is None:
            return False
        typer.echo(view.plan(report.plan), nl=False)
        return report.applicable and (not report.plan.has_changes or _confirm(auto_approve))

    return review


@app.command()
@cluster_command
@planning_options
def apply(
    common: Common,
    planning: Planning,
    planfile: SavedPlan = None,
    manifests: ManifestsOption = Path("manifests"),
    auto_approve: AutoApprove = False,
    parallelism: Parallelism = 8,
    no_wait: NoWait = False,
    wait_timeout: Duration = None,
    lock_timeout: Duration = None,
    poll_interval: PollInterval = 1.0,
) -> None:
    """Make the cluster match the manifests (or the saved plan), and wait for deployments."""
    from reconciler import display, workflows
    from reconciler.applier import ApplyOptions

    view = _view(common.color)
    waiting = _seconds(wait_timeout, "--wait-timeout", 1200.0)
    options = ApplyOptions(parallelism, not no_wait, waiting, poll_interval)
    lock_waiting = _seconds(lock_timeout, "--lock-timeout", 0.0)
    request = workflows.ApplyRequest(
        common.target.manifests(manifests), planfile, planning, options, lock_waiting, common.target.workspace
    )
    review = _reviewer(view, auto_approve)
    with _reporter(common) as reporter:
        work = functools.partial(
            workflows.apply, request=request, confirm=review, reporter=reporter, env=os.environ
        )
        report = _run(common, work, parallelism)
    if report.result is not None:  # else what stopped it was shown with the plan
        _tell(display.apply_failures(report))
        typer.echo(view.applied(report), nl=False)
    raise typer.Exit(report.exit_code)


@app.command()
@cluster_command
def status(common: Common, as_json: AsJson = False) -> None:
    """Every live endpoint, managed or not: service, task type, model, allocation x/y and state, drift."""
    from reconciler import workflows

    view = _view(common.color, as_json)
    typer.echo(view.status(_run(common, workflows.status)), nl=False)


WaitIds = Annotated[list[str], typer.Argument(help="Endpoints to wait for.", metavar="ID...")]


@app.command()
@cluster_command
def wait(common: Common, ids: WaitIds, timeout: Duration = None, poll_interval: PollInterval = 1.0) -> None:
    """Wait until these endpoints' deployments are fully allocated; exit 1 on failure or timeout."""
    from reconciler import display, workflows

    seconds = _seconds(timeout, "--timeout", 1200.0)
    with _reporter(common) as reporter:
        work = functools.partial(
            workflows.wait, ids=ids, seconds=seconds, reporter=reporter, poll_interval=poll_interval
        )
        report = _run(common, lambda es, backend: work(es, backend=backend))
    _tell(display.wait_failures(report))
    typer.echo(display.HumanView().waited(report), nl=False)
    raise typer.Exit(report.exit_code)


ImportIds = Annotated[list[str] | None, typer.Argument(help="Live endpoints to import.", metavar="[ID...]")]
ImportAll = Annotated[bool, typer.Option("--all", help="Import every live endpoint not preconfigured.")]
ImportOut = Annotated[
    Path | None, typer.Option("--out", metavar="DIR", help="Where to write them (default: --manifests).")
]


@app.command(name="import")
@cluster_command
def import_(
    common: Common,
    ids: ImportIds = None,
    import_all: ImportAll = False,
    out: ImportOut = None,
    manifests: ManifestsOption = Path("manifests"),
) -> None:
    """Write a manifest per live endpoint (secrets as references); no state: plan shows them as adopt."""
    from reconciler import display, workflows

    if bool(ids) == import_all:
        raise typer.BadParameter("give endpoint ids or --all")
    request = workflows.ImportRequest(tuple(ids or ()), out or manifests, import_all)
    report = _run(common, lambda es, backend: workflows.import_endpoints(es, backend, request))
    typer.echo(display.HumanView().imported(report), nl=False)


state_app = typer.Typer(
    cls=Commands, help="Inspect and repair the state.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(state_app, name="state")
cli_envs.register(app)
EndpointId = Annotated[str, typer.Argument(metavar="ID")]


@state_app.command("list")
@cluster_command
def state_list(common: Common) -> None:
    """The managed endpoints the state records, and its lock."""
    from reconciler import display

    async def read(_: Elasticsearch, backend: Backend) -> str:
        return display.HumanView().state_listing(
            (await backend.read()).state, await backend.current_lock(), backend.name
        )

    typer.echo(_run(common, read), nl=False)


@state_app.command("show")
@cluster_command
def state_show(common: Common, inference_id: EndpointId) -> None:
    """One endpoint's record (secret digests only, never values), as JSON."""
    import json

    from reconciler import workflows

    record = _run(common, lambda _, backend: workflows.record(backend, inference_id))
    typer.echo(json.dumps({"inference_id": inference_id, **record}, indent=2))


@state_app.command("rm")
@cluster_command
def state_rm(common: Common, inference_id: EndpointId, lock_timeout: Duration = None) -> None:
    """Stop managing an endpoint: forget it in the state, leave it in the cluster."""
    from reconciler import workflows

    waiting = _seconds(lock_timeout, "--lock-timeout", 0.0)
    _run(common, lambda _, backend: workflows.forget(backend, inference_id, lock_timeout=waiting))
    typer.echo(f"{inference_id} is no longer managed (it stays in the cluster).")


@state_app.command("unlock")
@cluster_command
def state_unlock(common: Common, lock_id: Annotated[str, typer.Argument(metavar="LOCK_ID")]) -> None:
    """Remove a lock left by a process that died (the id is in the lock-held error)."""
    _run(common, lambda _, backend: backend.unlock(lock_id))
    typer.echo(f"Lock {lock_id} removed.")


def main() -> None:
    app()
