"""The documentation is true: every command and flag it shows exists, every manifest it shows is valid,
and the commands the pipeline examples run exist (tests/test_examples.py lints and runs them)."""

from __future__ import annotations

import importlib.util
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from reconciler.catalog import Version
from reconciler.cli import app
from reconciler.manifests import load

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])
GITHUB = REPO / "examples" / "github" / "reconciler.yml"
GITLAB = REPO / "examples" / "gitlab" / ".gitlab-ci.yml"
ROOT = typer.main.get_command(app)


def subcommands(command: Any) -> dict[str, Any]:
    """A group's commands by name ({} for a command); typer's click is its own, so no isinstance."""
    found: dict[str, Any] = getattr(command, "commands", {})
    return found


def code_blocks(text: str, *languages: str) -> Iterator[str]:
    for match in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
        if not languages or match[1] in languages:
            yield match[2]


def inline_code(text: str) -> Iterator[str]:
    prose = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
    yield from re.findall(r"`([^`\n]+)`", prose)


def invocations(snippet: str) -> Iterator[list[str]]:
    """The words after each `reconciler` in a snippet, up to a shell operator or a comment."""
    for line in snippet.splitlines():
        for match in re.finditer(r"(?:^|[\s(])reconciler\s+([^|>;&#\n]*)", line):
            words = match[1].split()
            if words and not words[0].isupper():  # `reconciler COMMAND --help` names no command
                yield words


def resolve(words: list[str]) -> tuple[Any, list[str]]:
    """The (sub)command the words name, and the option words that follow it."""
    command = ROOT
    rest = list(words)
    while subcommands(command) and rest and not rest[0].startswith("-") and rest[0] != "...":
        name = rest.pop(0)
        if "|" in name:  # `state list|show|rm|unlock`
            assert set(name.split("|")) <= set(subcommands(command)), name
            return command, []
        assert name in subcommands(command), f"no command {name!r} in `reconciler {' '.join(words)}`"
        command = subcommands(command)[name]
    return command, [w for w in rest if w.startswith("--")]


def options_of(command: Any) -> set[str]:
    return {name for p in command.params for name in (*p.opts, *p.secondary_opts)} | {"--help"}


def every_command(command: Any = ROOT) -> Iterator[Any]:
    yield command
    for sub in subcommands(command).values():
        yield from every_command(sub)


def shown_invocations() -> list[tuple[str, list[str]]]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for snippet in [*code_blocks(text), *inline_code(text)]:
            found += [(page.name, words) for words in invocations(snippet)]
    for example in (GITHUB, GITLAB):
        found += [(example.name, words) for words in invocations(example.read_text())]
    return found


def test_the_docs_show_many_invocations() -> None:
    shown = shown_invocations()
    assert len(shown) > 30
    assert {words[0] for _, words in shown} >= {"validate", "plan", "apply", "drift", "status", "emulator"}


@pytest.mark.parametrize(
    ("page", "words"), shown_invocations(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_command_and_flag_shown_exists(page: str, words: list[str]) -> None:
    command, flags = resolve(words)
    for flag in flags:
        assert flag.split("=")[0] in options_of(command), f"{page}: `reconciler {' '.join(words)}`: {flag}"


def test_every_flag_in_inline_code_exists() -> None:
    """Flags named on their own (`--allow-referenced`) or after a command (`plan --detailed-exitcode`)."""
    known = {option for command in every_command() for option in options_of(command)}
    for page in PAGES:
        for code in inline_code(page.read_text()):
            words = code.split()
            if re.match(r"--[a-z]", words[0]):
                assert words[0].split("=")[0] in known, f"{page.name}: `{code}`: no command takes it"
            elif words[0] in subcommands(ROOT):
                command, flags = resolve(words)
                assert set(flags) <= options_of(command), f"{page.name}: `{code}`"


def test_every_environment_variable_in_the_connection_table_is_read() -> None:
    envvars: set[str] = set()
    for command in every_command():
        for param in command.params:
            value = getattr(param, "envvar", None)
            envvars.update([value] if isinstance(value, str) else value or [])
    table = (REPO / "docs" / "connecting.md").read_text().split("## Connection options")[1].split("##")[0]
    named = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    assert named
    assert named <= envvars | {"NO_COLOR"}, named - envvars


# -- manifests shown in the docs -------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_manifest_shown_is_valid(page: Path, tmp_path: Path) -> None:
    folder, files = tmp_path / "manifests", tmp_path / "files"
    folder.mkdir()
    files.mkdir()
    env = {}
    count = 0
    for shown in code_blocks(page.read_text(), "yaml"):
        if "inference_id:" not in shown:
            continue
        block = shown
        # Mounted secret files are made here; environment references get placeholders.
        for path in re.findall(r"\$\{file:([^}]+)\}", block):
            local = files / Path(path).name
            local.write_text("placeholder\n")
            block = block.replace(f"${{file:{path}}}", f"${{file:{local}}}")
        env.update({name: "placeholder" for name in re.findall(r"(?<!\$)\$\{([A-Z_][A-Z0-9_]*)\}", block)})
        count += 1
        (folder / f"{count}.yaml").write_text(block)
    loaded = load(folder, Version(9, 5), env)
    assert loaded.ok, "\n".join(str(e) for e in loaded.errors)
    assert len(loaded.endpoints) == count


def test_the_docs_show_a_manifest_per_service_family() -> None:
    shown = (REPO / "docs" / "manifests.md").read_text()
    services = set(re.findall(r"^service: (\w+)$", shown, re.MULTILINE))
    assert services >= {"anthropic", "openai", "elasticsearch", "amazonbedrock", "custom"}


def test_the_readme_example_is_one_of_the_manifests() -> None:
    (block,) = [b for b in code_blocks((REPO / "README.md").read_text(), "yaml") if "inference_id" in b]

    def meaning(text: str) -> Any:
        return yaml.safe_load(text)

    examples = [meaning(p.read_text()) for p in (REPO / "manifests").glob("*.yaml")]
    assert meaning(block) in examples


# -- the performance table ------------------------------------------------------------------


def test_the_readme_performance_table_has_the_rows_make_bench_prints() -> None:
    spec = importlib.util.spec_from_file_location("bench", REPO / "scripts" / "bench.py")
    assert spec is not None
    assert spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    section = (REPO / "README.md").read_text().split("## Performance")[1]
    lines = section[section.index(bench.HEADER) :].split("\n\n")[0].splitlines()
    assert lines[0] == bench.HEADER
    rows = [line.split(" | ")[0].removeprefix("| ") for line in lines[2:]]
    assert rows == [measure for measures in bench.MEASURES.values() for measure in measures]
    assert all(line.count("|") == 6 for line in lines)


def test_shlex_reads_every_example_command() -> None:
    """The commands are plain shell words (no quoting surprises for a copy and paste)."""
    for _, words in shown_invocations():
        assert shlex.split(" ".join(words)) == words


def test_the_emulator_version_table_lists_exactly_the_supported_versions() -> None:
    """docs/emulator.md's "By version" table has one row per minor the catalog supports, in order."""
    from reconciler import catalog

    text = (REPO / "docs" / "emulator.md").read_text()
    section = text.split("## By version", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1].strip() for line in section.splitlines() if re.match(r"\| \d+\.\d+ \|", line)]
    # 8.19 is the last minor of the 8.x line.
    minors = [(8, m) for m in range(20)] + [(9, m) for m in range(40)]
    supported = [f"{major}.{minor}" for major, minor in minors if catalog.supported(Version(major, minor))]
    assert rows == supported
