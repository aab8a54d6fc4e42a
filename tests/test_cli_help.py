"""The command line's habits: `-h`, shell completion, help readable at 80 columns, NO_COLOR, exit 1
on usage errors — checked on every command, so that a new one is checked too.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer._click.core import Command
from typer.core import TyperGroup

from reconciler.options import color
from tests.e2e import COMMAND, MakeTool, Tool

UNREACHABLE = "http://127.0.0.1:9"


def commands(
    command: Command = COMMAND, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Command]]:
    yield path, command
    if isinstance(command, TyperGroup):
        for name in command.list_commands(None):  # type: ignore[arg-type]
            sub = command.get_command(None, name)  # type: ignore[arg-type]
            if sub is not None and not sub.hidden:
                yield from commands(sub, (*path, name))


EVERY = dict(commands())
IDS = [" ".join(path) or "(root)" for path in EVERY]


@pytest.fixture(scope="module")
def helps(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, ...], str]:
    """Each command's --help at 80 columns (COLUMNS, as a terminal of that width sets it)."""
    tool = Tool(UNREACHABLE, tmp_path_factory.mktemp("help"))
    shown = {}
    for path in EVERY:
        run = tool(*path, "--help", env={"COLUMNS": "80"})
        assert run.code == 0, run
        shown[path] = run.stdout
    return shown


@pytest.mark.parametrize("path", list(EVERY), ids=IDS)
def test_help_fits_80_columns_and_names_every_option_whole(
    helps: dict[tuple[str, ...], str], path: tuple[str, ...]
) -> None:
    text = helps[path]
    for line in text.splitlines():
        assert len(line) <= 80, f"{len(line)} columns: {line!r}"
        assert not re.search(r"(^|\s)--?[\w-]*-$", line), f"an option name cut at a hyphen: {line!r}"
    assert "…" not in text, text
    cut = [line for line in text.splitlines() if line.endswith("...") and not line.startswith("Usage:")]
    assert not cut, cut  # nothing cut short (click cuts a command's summary at the width)
    for param in EVERY[path].params:
        if getattr(param, "hidden", False):
            continue
        for name in [*param.opts, *param.secondary_opts] if param.param_type_name == "option" else []:
            assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), f"{name} missing or cut"


@pytest.mark.parametrize("path", list(EVERY), ids=IDS)
def test_a_flag_shows_no_value_and_an_option_a_word(
    helps: dict[tuple[str, ...], str], path: tuple[str, ...]
) -> None:
    text = helps[path]
    terms = [
        re.split(r"\s{2,}", line.strip())[0] for line in text.splitlines() if line.lstrip().startswith("-")
    ]
    assert not [term for term in terms if "<" in term or "[" in term], terms  # `--out FILE`, not `<path>`
    for param in EVERY[path].params:
        if param.param_type_name != "option" or getattr(param, "hidden", False):
            continue
        for name in param.opts:
            row = re.search(rf"^\s+(?:-\w, )?{re.escape(name)}(?: / [\w-]+)?( \S+)?", text, re.M)
            if row is None:
                continue  # shown beside its short form, checked above
            if getattr(param, "is_flag", False):
                assert row[1] is None or not row[1].strip().isupper(), f"{name} is a flag: {row[0]!r}"
            else:  # a word that says what goes there (`--state WHERE`), not typer's type name
                assert row[1] is not None, f"{name} shows no value: {row[0]!r}"
                assert row[1].strip() not in GENERIC, f"{name}: {row[0]!r}"


GENERIC = {"TEXT", "INTEGER", "FLOAT", "PATH", "BOOLEAN"}


@pytest.mark.parametrize("path", list(EVERY), ids=IDS)
def test_dash_h_is_help(helps: dict[tuple[str, ...], str], path: tuple[str, ...], tmp_path: Path) -> None:
    run = Tool(UNREACHABLE, tmp_path)(*path, "-h", env={"COLUMNS": "80"})
    assert run.code == 0, run
    assert run.stdout == helps[path]
    assert "-h, --help" in run.stdout


@pytest.mark.parametrize("path", [p for p in EVERY if p], ids=[i for i in IDS if i != "(root)"])
def test_a_mistyped_flag_exits_1_on_every_command(path: tuple[str, ...], tmp_path: Path) -> None:
    run = Tool(UNREACHABLE, tmp_path)(*path, "--no-such-flag")
    assert run.code == 1, run  # 2 means changes or drift (DESIGN.md §4)
    assert "No such option: --no-such-flag" in run.stderr, run
    assert "Traceback" not in run.stderr


def test_shell_completion_is_offered_and_completes(tmp_path: Path) -> None:
    """What bash asks of the installed command (typer's protocol: the words typed so far)."""
    script = [str(Path(sys.executable).parent / "reconciler")]
    env = {
        **os.environ,
        "_RECONCILER_COMPLETE": "complete_bash",
        "COMP_WORDS": "reconciler pl",
        "COMP_CWORD": "1",
    }
    done = subprocess.run(script, env=env, capture_output=True, text=True, check=False)
    assert "plan" in done.stdout.split(), done
    env |= {"COMP_WORDS": "reconciler plan --ca-f", "COMP_CWORD": "2"}
    done = subprocess.run(script, env=env, capture_output=True, text=True, check=False)
    assert "--ca-fingerprint" in done.stdout.split(), done
    shown = Tool(UNREACHABLE, tmp_path)("--show-completion", "bash")
    assert shown.code == 0, shown
    assert "_RECONCILER_COMPLETE" in shown.stdout, shown


@pytest.mark.parametrize("value", ["1", "x", "true", "false", "no"])
def test_any_no_color_value_means_no_colour(make_tool: MakeTool, value: str) -> None:
    tool = make_tool()
    run = tool("status", env={"NO_COLOR": value})
    assert run.code == 0, run
    assert "\x1b[" not in run.stdout + run.stderr
    assert not color(False, {"NO_COLOR": value}, terminal=True)


def test_an_empty_no_color_leaves_colour_on_a_terminal() -> None:
    """no-color.org: NO_COLOR set to anything but the empty string."""
    assert color(False, {"NO_COLOR": ""}, terminal=True)
    assert color(False, {}, terminal=True)
    assert not color(True, {}, terminal=True)
    assert not color(False, {}, terminal=False)


def test_no_color_x_is_accepted_by_show(tmp_path: Path) -> None:
    run = Tool(UNREACHABLE, tmp_path)("show", str(tmp_path / "missing.json"), env={"NO_COLOR": "x"})
    assert run.code == 1, run  # the missing plan, not the variable
    assert "NO_COLOR" not in run.stderr, run
