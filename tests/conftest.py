"""Shared fixtures: the emulator in-process (httpx ASGI transport) and on a real socket."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.emulator import Emulator, EmulatorConfig
from tests import openapi

VERSIONS = ("8.19.3", "9.0.4", "9.5.0")


@dataclass
class Es:
    """An in-process emulator and a client whose every exchange is checked against the spec."""

    emulator: Emulator
    client: httpx.AsyncClient
    version: str
    checked: list[str] = field(default_factory=list)

    @property
    def cluster(self) -> Any:
        return self.emulator.cluster

    async def request(self, method: str, path: str, *, json: Any = None, **kwargs: Any) -> httpx.Response:
        response = await self.client.request(method, path, json=json, **kwargs)
        if method != "HEAD" and response.content:
            self._check(method, response)
        return response

    def _check(self, method: str, response: httpx.Response) -> None:
        path = response.request.url.path
        if not (path == "/" or path.startswith(("/_inference", "/_ml/trained_models"))):
            return
        body = response.json()
        if response.status_code >= 400 and not isinstance(body.get("error"), dict):
            return  # routing errors have Elasticsearch's flat body, which the spec does not describe
        errors = openapi.response_errors(self.version, method, path, response.status_code, body)
        assert not errors, f"{method} {path} -> {response.status_code} breaks the spec: {errors}"
        self.checked.append(f"{method} {path}")

    async def get(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("GET", path, **kw)

    async def put(self, path: str, json: Any = None, **kw: Any) -> httpx.Response:
        return await self.request("PUT", path, json=json, **kw)

    async def delete(self, path: str, **kw: Any) -> httpx.Response:
        return await self.request("DELETE", path, **kw)


EsFactory = Callable[..., Any]


@pytest.fixture
async def make_es() -> AsyncIterator[Callable[..., Any]]:
    """Build in-process emulators: `await make_es(version="8.19.3", deploy_seconds=0, ...)`."""
    clients: list[httpx.AsyncClient] = []

    async def build(version: str = "9.5.0", **options: Any) -> Es:
        options.setdefault("deploy_seconds", 0.0)
        emulator = Emulator(EmulatorConfig(version=version, **options))
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator), base_url="http://es")
        clients.append(client)
        return Es(emulator, client, version)

    yield build
    for client in clients:
        await client.aclose()


@pytest.fixture(params=VERSIONS)
async def es(request: pytest.FixtureRequest, make_es: Callable[..., Any]) -> Es:
    """One emulator per supported version line."""
    result: Es = await make_es(version=request.param)
    return result


@pytest.fixture
async def es9(make_es: Callable[..., Any]) -> Es:
    result: Es = await make_es()
    return result


@dataclass
class Served:
    """`reconciler emulator` running in a subprocess on a real socket."""

    url: str
    process: subprocess.Popen[str]


def start_emulator(*args: str, env: dict[str, str] | None = None) -> Served:
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"listening on (http://\S+)", line)
    if match is None:
        process.kill()
        _, err = process.communicate(timeout=10)
        raise RuntimeError(f"the emulator did not start: {line!r} {err}")
    return Served(match[1], process)


def stop_emulator(served: Served) -> str:
    """Stop the emulator; returns what it wrote to stderr."""
    served.process.terminate()
    try:
        _, err = served.process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        served.process.kill()
        _, err = served.process.communicate()
    return err


@pytest.fixture
def serve_emulator() -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(*args: str) -> Served:
        served = start_emulator(*args)
        started.append(served)
        return served

    yield start
    for served in started:
        stop_emulator(served)


# -- canary secrets ----------------------------------------------------------------------------

# Tests pass secrets whose values contain "canary" through every command; none may ever reach what
# a test prints or logs. This hook fails any test whose captured stdout, stderr or log holds one.
CANARY_MARK = "canary"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report = outcome.get_result()
    leaked = [t for t, content in report.sections if t.endswith(report.when) and CANARY_MARK in content]
    if leaked:
        report.outcome = "failed"
        report.longrepr = f"a canary secret appeared in {', '.join(leaked)}"


@pytest.fixture
def make_tool(tmp_path: Path, serve_emulator: Callable[..., Served]) -> Callable[..., Any]:
    """`make_tool(*emulator_options, version="9.5.0", state="")`: a project and the CLI, pointed at a
    fresh emulator over a real socket (deployments take 0.2 s; injected 429s ask for no wait)."""
    from tests.e2e import Tool

    count = iter(range(1, 1000))

    def build(*options: str, version: str = "9.5.0", state: str = "") -> Tool:
        served = serve_emulator(
            "--version", version, "--deploy-seconds", "0.2", "--retry-after", "0", *options
        )
        return Tool(served.url, tmp_path / f"project{next(count)}", state=state)

    return build
