"""The built wheel, installed in fresh virtual environments as a user's `pip install` would.

No network: the wheel is built from a copy of the sources without build isolation (setuptools is in
the dev extra), and installed with `--no-deps --no-index` into venvs made without the project. Their
dependencies are the dev venv's installed distributions, but only those the wheel's own metadata
asks for: each venv gets a folder of links to that closure (on its path through a `.pth` file). So
a lean install has exactly the runtime dependencies, and an undeclared import fails here.
"""

from __future__ import annotations

import email.parser
import fcntl
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import reconciler
from tests.e2e import REPO, SECRETS

DISTRIBUTION = "es-inference-reconciler"
PLACEHOLDERS = {name: "placeholder" for name in SECRETS}


def _run(
    *args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd, check=False
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built once per test run (the xdist workers share it, under a lock)."""
    shared = tmp_path_factory.getbasetemp().parent / "packaging"
    shared.mkdir(exist_ok=True)
    with (shared / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        built = sorted((shared / "out").glob("*.whl"))
        if not built:
            source = shared / "src"
            shutil.rmtree(source, ignore_errors=True)
            source.mkdir()
            for name in ("pyproject.toml", "README.md"):
                shutil.copy(REPO / name, source / name)
            shutil.copytree(
                REPO / "reconciler", source / "reconciler", ignore=shutil.ignore_patterns("__pycache__")
            )
            result = _run(
                sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                "--no-index", "--wheel-dir", shared / "out", source,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            built = sorted((shared / "out").glob("*.whl"))
    assert len(built) == 1, built
    return built[0]


def _wheel_metadata(wheel: Path) -> tuple[email.message.Message, str, set[str]]:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = next(n for n in names if n.endswith(".dist-info/METADATA")).rsplit("/", 1)[0]
        parsed = email.parser.Parser().parsestr(archive.read(f"{info}/METADATA").decode())
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    return parsed, entry_points, names


def _closure(requirements: list[str], extra: str) -> dict[str, metadata.Distribution]:
    """The installed distributions these requirements need (their markers read with `extra`),
    transitively, with the extras each asks of the next."""
    found: dict[str, metadata.Distribution] = {}
    seen: set[tuple[str, str]] = set()
    todo = [(Requirement(text), extra) for text in requirements]
    while todo:
        requirement, context = todo.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": context}):
            continue
        key = canonicalize_name(requirement.name)
        assert key != DISTRIBUTION, "only the dev extra names the project itself"
        found[key] = dist = metadata.distribution(requirement.name)
        for wanted in ["", *requirement.extras]:
            if (key, wanted) not in seen:
                seen.add((key, wanted))
                todo += [(Requirement(text), wanted) for text in dist.requires or []]
    return found


def _fresh_venv(root: Path, wheel: Path, extra: str) -> Path:
    """A venv with the wheel installed and only the dependencies its metadata names for `extra`."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", root], check=True, timeout=60)
    site = Path(sysconfig.get_path("purelib"))
    dependencies = root / "dependencies"
    dependencies.mkdir()
    parsed, _, _ = _wheel_metadata(wheel)
    for dist in _closure(parsed.get_all("Requires-Dist") or [], extra).values():
        dist_path = Path(str(dist.locate_file(""))).resolve()
        assert dist_path == site.resolve(), f"{dist.name} is not in the dev venv's site-packages"
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops - {"__pycache__"}:
            if (site / top).exists() and not (dependencies / top).exists():
                (dependencies / top).symlink_to(site / top)
    venv_python = root / "bin" / "python"
    purelib = _run(venv_python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").stdout.strip()
    Path(purelib, "dependencies.pth").write_text(f"{dependencies}\n")
    result = _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        venv_python,
        "install",
        "--quiet",
        "--no-deps",
        "--no-index",
        wheel,
    )
    assert result.returncode == 0, result.stderr
    return root / "bin"


@pytest.fixture(scope="module")
def lean(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip install es-inference-reconciler`: the runtime dependencies only."""
    return _fresh_venv(tmp_path_factory.mktemp("lean"), wheel, "")


@pytest.fixture(scope="module")
def with_emulator(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip install 'es-inference-reconciler[emulator]'`."""
    return _fresh_venv(tmp_path_factory.mktemp("emulator"), wheel, "emulator")


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: no PYTHONPATH, none of the dev venv, no secrets."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    return {**{k: os.environ[k] for k in keep if k in os.environ}, "NO_COLOR": "1", **extra}


# -- the wheel's metadata ------------------------------------------------------------------------


def test_the_wheel_is_named_for_the_package_index_and_keeps_the_command(wheel: Path) -> None:
    parsed, entry_points, _ = _wheel_metadata(wheel)
    assert parsed["Name"] == DISTRIBUTION
    assert parsed["Version"] == reconciler.__version__
    assert parsed["Requires-Python"] == ">=3.11"
    assert parsed["License-Expression"] == "Apache-2.0"
    assert "[console_scripts]\nreconciler = reconciler.cli:main" in entry_points
    assert wheel.name.startswith("es_inference_reconciler-")
    assert wheel.name.endswith("-py3-none-any.whl")


def test_the_emulator_server_is_an_extra_and_the_runtime_is_lean(wheel: Path) -> None:
    parsed, _, _ = _wheel_metadata(wheel)
    assert {"emulator", "dev"} <= set(parsed.get_all("Provides-Extra") or [])
    runtime, by_extra = set(), dict[str, set[str]]()
    for text in parsed.get_all("Requires-Dist") or []:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        marker = str(requirement.marker or "")
        if not marker:
            runtime.add(name)
        for extra in ("emulator", "dev"):
            if f'extra == "{extra}"' in marker:
                by_extra.setdefault(extra, set()).add(
                    name + "".join(f"[{e}]" for e in sorted(requirement.extras))
                )
    assert by_extra["emulator"] == {"starlette", "uvicorn"}
    assert not runtime & {"starlette", "uvicorn"}, runtime
    assert f"{DISTRIBUTION}[emulator]" in by_extra["dev"]  # the tests run the emulator


def test_every_file_of_the_package_is_in_the_wheel(wheel: Path) -> None:
    """Subpackages (catalog, emulator) included; the tool reads no data file: its JSON Schema is
    made from the model (`reconciler schema`), its catalog is Python."""
    _, _, names = _wheel_metadata(wheel)
    source = {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "reconciler").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert source <= names, sorted(source - names)
    assert all(n.endswith(".py") for n in source), "a data file: check it is read through importlib.resources"
    assert not [n for n in names if n.startswith(("tests/", "scripts/", "manifests/"))]


# -- installed -------------------------------------------------------------------------------------


def test_the_lean_install_runs_the_command_from_the_wheel(lean: Path) -> None:
    version = _run(lean / "reconciler", "--version", env=_clean_env())
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"reconciler {reconciler.__version__}"
    where = _run(
        lean / "python", "-c", "import reconciler; print(reconciler.__file__)", env=_clean_env(), cwd=lean
    )
    assert where.stdout.strip().startswith(str(lean.parent / "lib")), where  # not the work tree
    missing = _run(lean / "python", "-c", "import starlette", env=_clean_env())
    assert missing.returncode == 1  # lean indeed
    assert "ModuleNotFoundError" in missing.stderr


def test_the_lean_install_validates_the_examples(lean: Path) -> None:
    online = _run(
        lean / "reconciler", "validate", "--manifests", REPO / "manifests", env=_clean_env(**PLACEHOLDERS)
    )
    assert online.returncode == 0, online.stdout + online.stderr
    assert "5 endpoint(s) in 5 file(s) are valid" in online.stdout
    offline = _run(
        lean / "reconciler", "validate", "--offline", "--manifests", REPO / "manifests", env=_clean_env()
    )
    assert offline.returncode == 0, offline.stdout + offline.stderr


def test_the_lean_install_plans_against_a_cluster(
    lean: Path, make_tool: Callable[..., Any], tmp_path: Path
) -> None:
    tool = make_tool()
    tool.use_examples()
    env = _clean_env(
        **PLACEHOLDERS, ELASTICSEARCH_URL=tool.url, RECONCILER_STATE=f"file:{tmp_path / 'state.json'}"
    )
    result = _run(lean / "reconciler", "plan", "--manifests", tool.manifests, "--detailed-exitcode", env=env)
    assert result.returncode == 2, result.stdout + result.stderr  # 2: there are changes to make
    assert "5 to create" in result.stdout


def test_the_emulator_without_its_extra_says_how_to_install_it(lean: Path) -> None:
    helped = _run(lean / "reconciler", "emulator", "--help", env=_clean_env())
    assert helped.returncode == 0, helped.stderr
    assert "--port" in helped.stdout
    refused = _run(lean / "reconciler", "emulator", "--port", "0", env=_clean_env())
    assert refused.returncode == 1
    assert refused.stdout == ""
    assert refused.stderr.strip().splitlines() == [
        "Error: the emulator needs starlette and uvicorn, which this install lacks: "
        f"pip install '{DISTRIBUTION}[emulator]'"
    ]


def test_the_emulator_extra_serves(with_emulator: Path) -> None:
    process = subprocess.Popen(
        [with_emulator / "reconciler", "emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_clean_env(),
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = line.split("listening on ", 1)[1].split()[0]
        answer = _run(
            with_emulator / "python",
            "-c",
            f"import httpx; print(httpx.get({url!r}).json()['version']['number'])",
        )
        assert answer.returncode == 0, answer.stderr
        assert answer.stdout.strip().startswith("9.")
    finally:
        process.terminate()
        process.communicate(timeout=30)


def test_pipx_and_pip_installs_are_documented() -> None:
    readme = (REPO / "README.md").read_text()
    assert f"pipx install {DISTRIBUTION}" in readme
    assert f"pip install '{DISTRIBUTION}[emulator]'" in readme
