"""Helpers for end-to-end tests: the `reconciler` CLI against an emulator on a real socket."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import structlog
import typer
from typer.testing import CliRunner

from reconciler.cli import app

# The click command `reconciler` runs, built once: typer builds it anew on every CliRunner.invoke.
COMMAND = typer.main.get_command(app)
# Requests of the tests themselves: one client (so one TLS context, though every URL is http),
# no kept-alive connections (so none is left open to an emulator that has stopped).
HTTP = httpx.Client(timeout=30, limits=httpx.Limits(max_keepalive_connections=0))


REPO = Path(__file__).resolve().parents[1]
SECRETS = {
    "ANTHROPIC_API_KEY": "sk-ant-e2e",
    "OPENAI_API_KEY": "sk-openai-e2e",
    "COHERE_API_KEY": "cohere-e2e",
}


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return f"exit {self.code}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


@dataclass
class Tool:
    """A project folder (manifests, state) and the CLI pointed at one emulator."""

    url: str
    root: Path
    state: str = ""
    env: dict[str, str] = field(default_factory=lambda: dict(SECRETS))
    # Indices this test created through `es` or seen in a request log it cleared (for the reset of
    # a shared emulator).
    indices: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.manifests.mkdir(parents=True, exist_ok=True)
        if not self.state:
            self.state = f"file:{self.root / 'state.json'}"

    @property
    def manifests(self) -> Path:
        return self.root / "manifests"

    def write(self, name: str, text: str) -> None:
        (self.manifests / name).write_text(text)

    def remove(self, name: str) -> None:
        (self.manifests / name).unlink()

    def use_examples(self) -> None:
        for path in (REPO / "manifests").glob("*.yaml"):
            shutil.copy(path, self.manifests / path.name)

    def _environment(self, env: dict[str, str] | None) -> dict[str, str]:
        return {
            **self.env,
            **(env or {}),
            "ELASTICSEARCH_URL": self.url,
            "RECONCILER_STATE": self.state,
            "RECONCILER_MANIFESTS": str(self.manifests),
            "RECONCILER_POLL_INTERVAL": "0.05",
            "NO_COLOR": "1",
        }

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Run:
        """Run the CLI in this process (fast); stdout and stderr are kept apart. What
        `CliRunner().invoke(app, ...)` does, with the command built once."""
        with CliRunner().isolation(env=self._environment(env)) as (stdout, stderr, _):
            try:
                COMMAND.main(args=list(args), prog_name="reconciler")
                code = 0
            except SystemExit as exit_:
                code = 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 1
                if not isinstance(exit_.code, int | None):
                    sys.stdout.write(f"{exit_.code}\n")
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                # The CLI points structlog at this run's stderr, closed on return: a later test
                # that logs in-process (the applier's LogReporter) would write to a closed file.
                structlog.reset_defaults()
            return Run(code, stdout.getvalue().decode(), stderr.getvalue().decode())

    def process(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Run:
        """Run `python -m reconciler` as a user would."""
        result = subprocess.run(
            [sys.executable, "-m", "reconciler", *args],
            env={**os.environ, **self._environment(env)},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Run(result.returncode, result.stdout, result.stderr)

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "reconciler", *args],
            env={**os.environ, **self._environment(env)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    # -- looking at the emulator directly ------------------------------------------------------

    def es(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        first = path.split("/")[1]
        if method in ("PUT", "POST") and first[:1] not in ("", "_"):
            self.indices.add(first)
        return HTTP.request(method, self.url + path, **kwargs)

    def live_ids(self) -> set[str]:
        return {
            e["inference_id"]
            for e in self.es("GET", "/_inference").json()["endpoints"]
            if not e["inference_id"].startswith(".")
        }

    def requests(self) -> dict[str, Any]:
        counted: dict[str, Any] = self.es("GET", "/_emulator/requests").json()
        return counted

    def reset_requests(self) -> None:
        from tests.conftest import index_names

        self.indices |= index_names(self.requests())
        self.es("DELETE", "/_emulator/requests")

    def writes(self) -> int:
        return sum(n for m, n in self.requests()["by_method"].items() if m in ("PUT", "POST", "DELETE"))


def plan_json(tool: Tool, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    run = tool("plan", "--json", *args, env=env)
    assert run.code in (0, 1), run
    result: dict[str, Any] = run.json()
    return result


def saved_plan(tool: Tool, max_tokens: int = 100, *, applied_first: bool = True) -> Path:
    """Endpoint `a` applied (unless not applied_first), its manifest changed, the plan saved for apply."""
    if applied_first:
        tool.write("a.yaml", anthropic("a"))
        assert tool("apply", "--auto-approve").code == 0
    tool.write("a.yaml", anthropic("a", max_tokens=max_tokens))
    saved = tool.root / "plan.json"
    assert tool("plan", "--out", str(saved)).code == 0
    return saved


def actions(plan: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    """{inference_id: (action, reason)} of the changes that are not no-ops."""
    return {c["inference_id"]: (c["action"], c["reason"]) for c in plan["changes"] if c["action"] != "no-op"}


CLAUDE = """\
inference_id: claude
task_type: completion
service: anthropic
service_settings:
  api_key: ${ANTHROPIC_API_KEY}
  model_id: claude-3-5-sonnet-20240620
  rate_limit: {requests_per_minute: 50}
task_settings:
  max_tokens: 1024
  temperature: 0.7
"""

E5 = """\
inference_id: e5
task_type: text_embedding
service: elasticsearch
service_settings:
  model_id: .multilingual-e5-small
  num_threads: 1
  num_allocations: 2
"""


def anthropic(inference_id: str, **task: Any) -> str:
    settings = {"max_tokens": 64, **task}
    body = ", ".join(f"{k}: {v}" for k, v in settings.items())
    return (
        f"inference_id: {inference_id}\ntask_type: completion\nservice: anthropic\n"
        f"service_settings: {{api_key: '${{ANTHROPIC_API_KEY}}', model_id: claude-3-5-sonnet-20240620}}\n"
        f"task_settings: {{{body}}}\n"
    )


MakeTool = Callable[..., Tool]  # the conftest fixture `make_tool`
