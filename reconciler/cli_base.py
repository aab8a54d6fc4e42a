"""The command line's plumbing: the command group's habits, and typer options made from tables.

`Commands` is the group every command hangs from: a usage error (a mistyped flag) exits 1, never
click's 2, which means changes or drift (DESIGN.md §4); and its command list shows each command's
whole first sentence, wrapped, where click would cut it at the terminal's width. Help shows a word
for an option's value (`--out FILE`, `--parallelism N`), none after a flag, and is wrapped at
spaces only, so that no option name is split across lines. `table` and
`with_options` turn the option tables of `reconciler.options` into typer parameters, handed to a
command packed into one value.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import types
import typing
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Annotated, Any, TypeVar

import typer
from typer._click import _textwrap
from typer._click.core import Command, Context  # typer's own copy of click
from typer._click.exceptions import UsageError
from typer._click.formatting import HelpFormatter
from typer.core import TyperGroup, TyperOption

from reconciler import options

# Help text is wrapped at spaces only: click's wrapper also breaks after hyphens, which splits option
# names (`--all-` / `envs`) and words (`trained-` / `model`) across lines, and no option of click
# turns that off. Its wrapper class (typer's copy) splits words with this pattern: the stdlib's
# pattern for spaces only, which textwrap itself uses under break_on_hyphens=False.
_textwrap.TextWrapper.wordsep_re = _textwrap.TextWrapper.wordsep_simple_re

_METAVARS = {"int": "N", "float": "NUMBER", "path": "PATH"}  # by typer's name of the type

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R")


def run_async(work: Coroutine[Any, Any, R]) -> R:
    """`asyncio.run`, with the result kept out of the main task. When asyncio.run puts back the
    SIGINT handler, `signal` builds the repr of the one it replaces, which holds the main task and
    so its result: a whole report, 70 ms for ten plans of 200 endpoints (CPython 3.11 and 3.12;
    3.13's `signal` no longer looks up a handler that is not a number)."""
    import asyncio  # here, not at the top: 30 ms that `--help` should not pay

    found: list[R] = []

    async def main() -> None:
        found.append(await work)

    asyncio.run(main())
    return found[0]


Table = dict[str, tuple[Any, Any]]  # parameter name: (annotation, default)


class Commands(TyperGroup):
    """The commands; a usage error exits 1, and the list of commands is not cut short."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: Context | None = None, **extra: Any
    ) -> Context:
        with usage_exits_1():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: Context) -> Any:
        with usage_exits_1():
            return super().invoke(ctx)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        """The command, each of its options that takes a value shown with a word for it (typer
        would write its type, `<str>` or `<float range>`); a flag shows none."""
        command = super().get_command(ctx, cmd_name)
        for param in command.params if command is not None else ():
            if isinstance(param, TyperOption) and not param.is_flag and param.metavar is None:
                param.metavar = _METAVARS.get(param.display_type(ctx).strip("<>").split()[0], "TEXT")
        return command

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1000)))  # the first sentence
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@contextlib.contextmanager
def usage_exits_1() -> Iterator[None]:
    try:
        yield
    except UsageError as error:
        error.exit_code = 1
        raise


def _option(default: Any, help: str, *flags: str, kind: Any = None, **extra: Any) -> tuple[Any, Any]:
    """A row of an options table: the annotation typer reads (the default's type unless given)."""
    return Annotated[kind or type(default), typer.Option(*flags, help=help, **extra)], default


def table(rows: Mapping[str, options.Row]) -> Table:
    """An options table from the rows `reconciler.options` declares."""
    return {
        name: _option(row.default, row.help, *row.flags, kind=row.kind, **row.extra)
        for name, row in rows.items()
    }


def with_options(table: Table, name: str, pack: Callable[[dict[str, Any]], Any]) -> Callable[[F], F]:
    """Give a command the options of `table`; it receives them packed into its parameter `name`."""

    def decorate(func: F) -> F:
        signature = inspect.signature(func)
        own = [p for n, p in signature.parameters.items() if n != name]
        # Only the command's own annotations are evaluated: the packed one may be a type-checking name.
        shown = types.SimpleNamespace(__annotations__={p.name: func.__annotations__[p.name] for p in own})
        module = typing.cast(types.FunctionType, func).__globals__
        hints = typing.get_type_hints(shown, globalns=module, include_extras=True)
        own = [p.replace(annotation=hints[p.name]) for p in own]
        extra = [
            inspect.Parameter(option, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
            for option, (annotation, default) in table.items()
        ]

        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            packed = pack({option: kwargs.pop(option) for option in table})
            return func(**{name: packed}, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=[*own, *extra])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in [*own, *extra]}
        return wrapper  # type: ignore[return-value]

    return decorate
