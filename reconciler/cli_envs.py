"""The command line of environments: `--env`, `--all-envs`, `schema --project`, `render`, `diff-envs`.

The commands of `reconciler.cli` gain these options through `extended` (one decorator line each)
and `environment_first` (around the shared cluster options), so that the project file's
environments reach every command without growing it; `register` adds the two commands of their
own. The work is done by `reconciler.environments`; this module parses options and prints.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
import sys
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from reconciler import options as cli_options
from reconciler.cli_base import run_async

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
Handler = Callable[[Callable[..., Any], dict[str, Any], dict[str, Any]], Any]

EnvOption = Annotated[
    str | None,
    typer.Option(
        "--env",
        envvar="RECONCILER_ENV",
        metavar="NAME",
        help="An environment of the project file (its overlay, version).",
    ),
]
ProjectOption = Annotated[
    Path,
    typer.Option(
        "--project",
        envvar="RECONCILER_PROJECT",
        metavar="FILE",
        help="The project file naming the environments.",
    ),
]
AllEnvs = Annotated[
    bool,
    typer.Option(
        "--all-envs", help="Every environment of the project file, concurrently; one combined output."
    ),
]
EnvTimeout = Annotated[
    float, typer.Option("--env-timeout", min=0.1, help="Seconds each environment may take under --all-envs.")
]
DEFAULT_PROJECT = Path("reconciler.yaml")


def _refuse(message: object) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(1)


def _adding(options: Mapping[str, tuple[Any, Any]], handle: Handler) -> Callable[[F], F]:
    """Give a command more options; `handle(command, its kwargs, the added ones)` runs it."""

    def decorate(func: F) -> F:
        hints = typing.get_type_hints(func, include_extras=True)
        own = [p.replace(annotation=hints[p.name]) for p in inspect.signature(func).parameters.values()]
        extra = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
            for name, (annotation, default) in options.items()
        ]

        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            added = {name: kwargs.pop(name) for name in options}
            return handle(func, kwargs, added)

        parameters = [*own, *extra]
        wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return wrapper  # type: ignore[return-value]

    return decorate


def _project(path: Path) -> Any:
    from reconciler import project

    try:
        return project.load(path)
    except project.ProjectError as error:
        _project_errors(error, path)


def _project_errors(error: Any, path: Path) -> NoReturn:
    """Every problem of the project file, located, then how many: nothing is sent anywhere."""
    for problem in error.errors:
        typer.echo(str(problem), err=True)
    typer.echo(f"{len(error.errors)} error(s) in the project file {path}.", err=True)
    raise typer.Exit(1)


# -- --env on the cluster commands and validate ------------------------------------------------


def environment_first(pack: Callable[[dict[str, Any]], T]) -> Callable[[dict[str, Any]], T]:
    """Around the packing of the cluster options: with --env, the environment's connection, state
    and workspace replace the options' before they are checked, and the target records it."""

    def packed(values: dict[str, Any]) -> T:
        from reconciler import environments, project

        path = Path(values.get("project") or DEFAULT_PROJECT)
        try:
            environment = environments.chosen(values, os.environ)
        except project.ProjectError as error:
            _project_errors(error, path)
        except ValueError as error:
            _refuse(error)
        common = pack(values)
        if environment is None:
            return common
        target = dataclasses.replace(common.target, environment=environment)  # type: ignore[attr-defined]
        return dataclasses.replace(common, target=target)  # type: ignore[type-var]

    return packed


def _validate(command: Callable[..., Any], kwargs: dict[str, Any], added: dict[str, Any]) -> Any:
    if added["env"]:
        from reconciler import environments  # only with --env: validate alone needs no cluster code

        environment = _environment(added["project"], added["env"])
        kwargs["manifests"] = environments.manifests_of(environment)
        kwargs["es_version"] = environment.es_version or kwargs["es_version"]
    return command(**kwargs)


def _environment(path: Path, name: str) -> Any:
    try:
        return _project(path).environment(name)
    except ValueError as error:
        _refuse(error)


def _schema(command: Callable[..., Any], kwargs: dict[str, Any], added: dict[str, Any]) -> Any:
    if not added["project"]:
        return command(**kwargs)
    from reconciler.project import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))
    return None


# -- --all-envs on plan and drift --------------------------------------------------------------


def _planning(values: Mapping[str, Any]) -> Any:
    from reconciler.planner import Options
    from reconciler.session import Planning

    targets, replaced = frozenset(values["target"] or ()), frozenset(values["replace"] or ())
    options = Options(targets, replaced, values["refresh_only"], values["destroy"])
    return Planning(options, values["allow_referenced"], bool(values.get("allow_takeover")))


def _across(what: str) -> Handler:
    def handle(command: Callable[..., Any], kwargs: dict[str, Any], added: dict[str, Any]) -> Any:
        if not added["all_envs"]:
            return command(**kwargs)
        if kwargs.get("env"):
            _refuse("give --env or --all-envs, not both")
        if kwargs.get("out") is not None:
            _refuse("--out saves one environment's plan: use --env NAME with it")
        if kwargs.get("known_file") is not None:
            _refuse("--known reads one environment's drift: use --env NAME with it")
        return _run_all(what, kwargs, added["env_timeout"])

    return handle


def _run_all(what: str, kwargs: dict[str, Any], seconds: float) -> NoReturn:
    from reconciler import display, environments, workflows
    from reconciler.progress import configure_logging

    if kwargs["log_format"] not in ("console", "json"):
        _refuse("--log-format: console or json")
    configure_logging(kwargs["log_format"])
    proj = _project(Path(kwargs.get("project") or DEFAULT_PROJECT))
    color = cli_options.color(kwargs["no_color"], os.environ, sys.stdout.isatty())
    if kwargs["as_json"] and kwargs["as_markdown"]:
        _refuse("choose one of --json and --markdown")
    view = display.pick(color, as_markdown=kwargs["as_markdown"])
    if what == "plan":
        planning, detailed = _planning(kwargs), True  # across environments, changes exit 2 (one code for CI)

        def work(target: workflows.Target) -> Any:
            manifests = target.manifests(kwargs["manifests"])
            request = workflows.PlanRequest(manifests, planning, detailed, target.workspace)
            return lambda es, backend: workflows.plan(es, backend, request, env=os.environ)
    else:

        def work(target: workflows.Target) -> Any:
            return workflows.drift

    outcomes = run_async(environments.across(proj, work, kwargs, os.environ, seconds))
    if kwargs["as_json"]:
        typer.echo(environments.as_json(outcomes, what), nl=False)
    elif kwargs["as_markdown"]:
        typer.echo(environments.markdown(outcomes, view, what.capitalize()), nl=False)
    else:
        typer.echo(environments.human(outcomes, view), nl=False)
    raise typer.Exit(environments.exit_code(outcomes))


_EXTENSIONS: dict[str, tuple[dict[str, tuple[Any, Any]], Handler]] = {
    "validate": ({"env": (EnvOption, None), "project": (ProjectOption, DEFAULT_PROJECT)}, _validate),
    "schema": (
        {
            "project": (
                Annotated[bool, typer.Option("--project", help="The project file's schema instead.")],
                False,
            )
        },
        _schema,
    ),
    "plan": ({"all_envs": (AllEnvs, False), "env_timeout": (EnvTimeout, 120.0)}, _across("plan")),
    "drift": ({"all_envs": (AllEnvs, False), "env_timeout": (EnvTimeout, 120.0)}, _across("drift")),
}


def extended(func: F) -> F:
    """The command with its environment options (by its name: validate, schema, plan, drift)."""
    options, handle = _EXTENSIONS[func.__name__]
    return _adding(options, handle)(func)


# -- render and diff-envs ----------------------------------------------------------------------

From = Annotated[str, typer.Argument(metavar="FROM", help="The environment promoted from (such as staging).")]
To = Annotated[str, typer.Argument(metavar="TO", help="The environment promoted to (such as prod).")]


def render(
    env: Annotated[
        str, typer.Option("--env", envvar="RECONCILER_ENV", metavar="NAME", help="The environment to render.")
    ],
    project: ProjectOption = DEFAULT_PROJECT,
) -> None:
    """Print an environment's manifests after its overlay (secrets as references), for review."""
    from reconciler import environments

    result = environments.rendered(_environment(project, env))
    _stop_on(result.errors)
    typer.echo(environments.render_text(result, env), nl=False)


def diff_envs(
    left: From,
    right: To,
    project: ProjectOption = DEFAULT_PROJECT,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Field by field, how two environments' desired endpoints differ (what a promotion changes)."""
    from reconciler import environments

    results = {name: environments.rendered(_environment(project, name)) for name in (left, right)}
    _stop_on([problem for result in results.values() for problem in result.errors])
    rows = environments.differences(results[left], results[right])
    show = environments.differences_json if as_json else environments.differences_text
    typer.echo(show(rows, left, right), nl=False)
    raise typer.Exit(2 if rows else 0)


def _stop_on(errors: typing.Sequence[Any]) -> None:
    """Each located error of the manifests on stderr, then exit 1; nothing when there is none."""
    for problem in errors:
        typer.echo(str(problem), err=True)
    if errors:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add `render` and `diff-envs` to the command line."""
    app.command("render")(render)
    app.command("diff-envs")(diff_envs)
