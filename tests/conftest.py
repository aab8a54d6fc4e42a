"""Shared fixtures: the emulator in-process (httpx ASGI transport) and on a real socket."""

from __future__ import annotations

import contextlib
import os
import re
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import settings

from reconciler.emulator import Emulator, EmulatorConfig
from tests import openapi

# One version per behaviour line: 8.16 (no PUT timeout, no chat_completion), 8.19, 9.0, 9.5.
VERSIONS = ("8.16.2", "8.19.3", "9.0.4", "9.5.0")

# -- hypothesis profiles -----------------------------------------------------------------------
# `dev` (the default) explores new examples on every run; `ci` (loaded when CI is set, as CI
# runs do) tests the same examples every time, so that a red build is reproducible and the
# suite's duration does not depend on luck. Tests set no max_examples of their own: the
# profile decides how many (each example runs an in-process emulator; 25 keep the two property
# files near 10 s of CPU).
settings.register_profile("dev", max_examples=25, deadline=None)
settings.register_profile(
    "ci", max_examples=25, deadline=None, derandomize=True, database=None, print_blob=True
)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def wait_until(
    predicate: Callable[[], Any], timeout: float = 30, *, what: str = "", interval: float = 0.01
) -> Any:
    """Poll `predicate` until it returns something truthy, and return that; fail after `timeout`
    seconds naming `what` was awaited (the timeout only bounds a hang: nothing is timed)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            pytest.fail(f"waited {timeout} s for {what or getattr(predicate, '__name__', 'a condition')}")
        time.sleep(interval)


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


def start_emulator(*args: str, env: dict[str, str] | None = None, log: Path | None = None) -> Served:
    """`reconciler emulator --port 0 ARGS`; its stderr goes to `log` if given (an emulator that lives
    long must not block on a full pipe), else to a pipe that `stop_emulator` reads."""
    with contextlib.ExitStack() as files:
        stderr = subprocess.PIPE if log is None else files.enter_context(log.open("a"))
        process = subprocess.Popen(
            [sys.executable, "-m", "reconciler", "emulator", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, **(env or {})},
        )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"listening on (http://\S+)", line)
    if match is None:
        process.kill()
        _, err = process.communicate(timeout=10)
        raise RuntimeError(f"the emulator did not start: {line!r} {err or (log and log.read_text())}")
    return Served(match[1], process)


def stop_emulator(served: Served) -> str:
    """Stop the emulator; returns what it wrote to stderr."""
    served.process.terminate()
    try:
        _, err = served.process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        served.process.kill()
        _, err = served.process.communicate()
    return err or ""


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


# -- emulators shared between end-to-end tests -------------------------------------------------

# The options the control API can set back, their command-line defaults, and where they go.
_FAULTS = {
    "--latency-ms": "latency_ms",
    "--fault-rate": "fault_rate",
    "--fault-seed": "seed",
    "--lost-response-rate": "lost_response_rate",
    "--retry-after": "retry_after",
}
_FAULT_DEFAULTS = {
    "latency_ms": 0.0,
    "fault_rate": 0.0,
    "seed": 0,
    "lost_response_rate": 0.0,
    "retry_after": 1.0,
}
_ML = {
    "--deploy-seconds": "deploy_seconds",
    "--ml-capacity": "capacity",
    "--ml-scale-up-seconds": "scale_up_seconds",
}
_ML_DEFAULTS: dict[str, Any] = {"deploy_seconds": 5.0, "capacity": None, "scale_up_seconds": None}


def _initial(options: tuple[str, ...], names: dict[str, str], defaults: dict[str, Any]) -> dict[str, Any]:
    values = dict(defaults)
    for flag, name in names.items():
        if flag in options:
            text = options[len(options) - 1 - options[::-1].index(flag) + 1]  # the last one wins
            values[name] = int(text) if name in ("seed", "capacity") else float(text)
    return values


def index_names(requests: dict[str, Any]) -> set[str]:
    """The indices the requests of an emulator's request log may have created."""
    return {
        r["path"].split("/")[1]
        for r in requests["requests"]
        if r["method"] in ("PUT", "POST") and r["path"].split("/")[1][:1] not in ("", "_")
    }


# Every emulator URL is http: a TLS context is never used, and building one costs 40 ms of CPU.
CONTROL_TLS = ssl.create_default_context()


@dataclass
class Shared:
    """An emulator lent to one test at a time; `reset` gives the next one a cluster as started."""

    served: Served
    options: tuple[str, ...]
    preconfigured: set[str]
    indices: set[str] = field(default_factory=lambda: {"reconciler-state"})

    def reset(self) -> bool:
        """Back to the state after start (endpoints, pipelines, indices, deployments, faults, ML
        settings, request counts); False if something is left that the API cannot remove."""
        with httpx.Client(base_url=self.served.url, timeout=30, verify=CONTROL_TLS) as es:
            es.put("/_emulator/faults", json={**_FAULT_DEFAULTS, "latency_ms": 0}).raise_for_status()
            self.indices |= index_names(es.get("/_emulator/requests").json())
            for endpoint in es.get("/_inference").json()["endpoints"]:
                if endpoint["inference_id"] not in self.preconfigured:
                    es.delete(f"/_inference/{endpoint['inference_id']}", params={"force": "true"})
            for pipeline in es.get("/_ingest/pipeline").json():
                es.delete(f"/_ingest/pipeline/{pipeline}")
            for index in self.indices:
                es.delete(f"/{index}")
            stats = es.get("/_ml/trained_models/_stats").json()["trained_model_stats"]
            clean = (
                {e["inference_id"] for e in es.get("/_inference").json()["endpoints"]} == self.preconfigured
                and es.get("/_ingest/pipeline").json() == {}
                and not any("deployment_stats" in model for model in stats)
                and all(es.head(f"/{index}").status_code == 404 for index in self.indices)
            )
            ml = {
                **_initial(self.options, _ML, _ML_DEFAULTS),
                "autoscaling": "--no-ml-autoscaling" not in self.options,
            }
            es.put("/_emulator/ml", json=ml).raise_for_status()
            es.delete("/_emulator/requests").raise_for_status()
            # Last: a fresh seed replays the fault sequence of a fresh start.
            es.put(
                "/_emulator/faults", json=_initial(self.options, _FAULTS, _FAULT_DEFAULTS)
            ).raise_for_status()
        return clean


class EmulatorPool:
    """Emulators by command-line options, each started once per worker and reset between tests.

    Starting `reconciler emulator` costs about 0.4 s; the end-to-end tests ask for a few dozen,
    mostly with the same options. A lent emulator is reset when it is lent again; one that cannot
    be reset (or that has died) is stopped and replaced by a fresh one."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.free: dict[tuple[str, ...], list[Shared]] = {}
        self.started: list[Served] = []

    def lend(self, *options: str) -> Shared:
        waiting = self.free.setdefault(options, [])
        while waiting:
            shared = waiting.pop()
            if shared.served.process.poll() is None and shared.reset():
                return shared
            stop_emulator(shared.served)
        served = start_emulator(*options, log=self.logs / f"emulator-{len(self.started)}.log")
        self.started.append(served)
        with httpx.Client(base_url=served.url, timeout=30, verify=CONTROL_TLS) as es:
            ids = {e["inference_id"] for e in es.get("/_inference").json()["endpoints"]}
            es.delete("/_emulator/requests").raise_for_status()
        return Shared(served, options, ids)

    def give_back(self, shared: Shared) -> None:
        self.free[shared.options].append(shared)

    def close(self) -> None:
        for served in self.started:
            stop_emulator(served)


@pytest.fixture(scope="session")
def emulator_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorPool]:
    pool = EmulatorPool(tmp_path_factory.mktemp("emulators"))
    yield pool
    pool.close()


@pytest.fixture
def lend_emulator(emulator_pool: EmulatorPool) -> Iterator[Callable[..., Served]]:
    """`lend_emulator(*options)`: `reconciler emulator --port 0 OPTIONS` on a real socket, in the
    state it starts in, for this test only (the pool's, reset; see EmulatorPool)."""
    lent: list[Shared] = []

    def lend(*options: str) -> Served:
        lent.append(emulator_pool.lend(*options))
        return lent[-1].served

    yield lend
    for shared in lent:
        emulator_pool.give_back(shared)


@pytest.fixture
def make_tool(tmp_path: Path, emulator_pool: EmulatorPool) -> Iterator[Callable[..., Any]]:
    """`make_tool(*emulator_options, version="9.5.0", state="")`: a project and the CLI, pointed at an
    emulator of its own over a real socket (deployments take 0.2 s; injected 429s ask for no wait).
    The emulator is shared with later tests of the worker that ask for the same options; each gets
    it reset to its state at start."""
    from tests.e2e import Tool

    count = iter(range(1, 1000))
    lent: list[tuple[Shared, Tool]] = []

    def build(*options: str, version: str = "9.5.0", state: str = "") -> Tool:
        shared = emulator_pool.lend(
            "--version", version, "--deploy-seconds", "0.2", "--retry-after", "0", *options
        )
        tool = Tool(shared.served.url, tmp_path / f"project{next(count)}", state=state)
        lent.append((shared, tool))
        return tool

    yield build
    for shared, tool in lent:
        shared.indices |= tool.indices
        emulator_pool.give_back(shared)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="Rewrite the golden files (tests/planner_cases/*.plan.json) from what the code produces now.",
    )
