"""What a newcomer runs works as shown: the README's walkthrough and `make demo`, each against an
emulator on a real socket, through the installed `reconciler` (the pipeline examples run in
tests/test_examples.py)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BIN = Path(sys.executable).parent  # what `source .venv/bin/activate` puts first on PATH
PLACEHOLDERS = {
    "ANTHROPIC_API_KEY": "sk-ant-placeholder",
    "OPENAI_API_KEY": "sk-placeholder",
    "COHERE_API_KEY": "placeholder",
}


def project(tmp_path: Path) -> Path:
    """A fresh checkout's working directory: the example manifests and the schema they point at."""
    shutil.copytree(REPO / "manifests", tmp_path / "manifests")
    shutil.copy(REPO / "manifest.schema.json", tmp_path)
    return tmp_path


def clean_environment() -> dict[str, str]:
    """The user's environment without anything that would point the tool elsewhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ELASTICSEARCH_", "ES_", "RECONCILER_"))}
    return {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "NO_COLOR": "1", "COLUMNS": "200"}


# Waits shortened, nothing else: deployments allocate in 0.2 s (the emulator's default is 5 s) and
# the tool polls them every 50 ms (its default is 1 s).
DEPLOY_SECONDS = 0.2
FAST_POLLS = {"RECONCILER_POLL_INTERVAL": "0.05"}


def quick_deployments(url: str) -> None:
    """Through the emulator's control API: the emulator runs as the README starts it."""
    httpx.put(f"{url}/_emulator/ml", json={"deploy_seconds": DEPLOY_SECONDS}, timeout=30).raise_for_status()


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


def walkthrough() -> list[tuple[str, str]]:
    """(command, comment) for each line of the README's walkthrough block."""
    block = README.read_text().split("<!-- walkthrough")[1].split("```sh\n")[1].split("```")[0]
    lines = []
    for line in block.splitlines():
        command, _, comment = line.partition("  #")
        lines.append((command.strip(), comment.strip()))
    return lines


def test_the_readme_walkthrough_runs_as_shown(tmp_path: Path) -> None:
    cwd, env = project(tmp_path), clean_environment()
    emulator: subprocess.Popen[str] | None = None
    outputs: dict[str, str] = {}
    try:
        for command, comment in walkthrough():
            words = shlex.split(command)
            if command == "source .venv/bin/activate":
                assert (BIN / "reconciler").exists()
            elif words[:2] == ["reconciler", "emulator"] and words[-1] == "&":
                # The README's port is the tool's default URL; here any free port, named explicitly.
                port = words.index("--port") + 1
                args = [*words[1:port], "0", *words[port + 1 : -1]]
                emulator = subprocess.Popen(
                    [str(BIN / "reconciler"), *args], stdout=subprocess.PIPE, text=True, cwd=cwd, env=env
                )
                assert emulator.stdout is not None
                url = re.search(r"http://\S+", emulator.stdout.readline())
                assert url is not None
                quick_deployments(url[0])
                env.update({"ELASTICSEARCH_URL": url[0], **FAST_POLLS})
            elif words[0] == "export":
                env.update(word.split("=", 1) for word in words[1:])  # type: ignore[misc]
            elif words[0] == "reconciler":
                result = run([str(BIN / "reconciler"), *words[1:]], cwd, env)
                expected = re.search(r"exit (\d)", comment)
                assert result.returncode == int(expected[1] if expected else 0), (command, result)
                outputs[" ".join(words[1:])] = result.stdout
            elif command == "kill %1":
                assert emulator is not None
                emulator.terminate()
                emulator.wait(timeout=10)  # raises if it does not stop
            else:
                pytest.fail(f"the walkthrough has a line this test does not know how to run: {command}")
    finally:
        if emulator is not None:
            if emulator.poll() is None:
                emulator.kill()
                emulator.wait()
            assert emulator.stdout is not None
            emulator.stdout.close()

    ids = {yaml.safe_load(p.read_text())["inference_id"] for p in (REPO / "manifests").glob("*.yaml")}
    assert "Plan: 5 to create" in outputs["plan --out plan.json"]
    assert json.loads((cwd / "plan.json").read_text())["format_version"] == 2
    assert "Apply finished: 5 done, 0 failed, 0 skipped." in outputs["apply plan.json"]
    assert "No changes" in outputs["plan --detailed-exitcode"]
    status = outputs["status"]
    assert all(inference_id in status for inference_id in ids)
    assert re.search(r"elser-sparse.*fully_allocated", status)
    assert re.search(r"e5-multilingual.*2/2", status)
    assert json.loads(outputs["drift --json"])["findings"] == []
    assert "sk-ant-placeholder" not in "".join(outputs.values())


def test_make_demo_tells_the_story() -> None:
    demo = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "demo.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,  # unbuffered: reading the first line leaves the rest to communicate()
        env=clean_environment(),
    )
    try:
        assert demo.stdout is not None
        first = demo.stdout.readline().decode()  # the emulator's address, printed before `validate`
        url = re.search(r"http://\S+", first)
        assert url is not None, first
        quick_deployments(url[0])  # before `apply`, which the demo runs after validate and plan
        rest, err = demo.communicate(timeout=180)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
    result = subprocess.CompletedProcess(demo.args, demo.returncode, first + rest.decode(), err.decode())
    assert result.returncode == 0, result
    steps = re.findall(r"^\$ reconciler (.+)$", result.stdout, re.MULTILINE)
    assert steps == ["validate", "plan", "apply --auto-approve", "plan", "status"]
    assert "Apply finished: 5 done" in result.stdout
    assert "No changes. The cluster matches the manifests." in result.stdout
