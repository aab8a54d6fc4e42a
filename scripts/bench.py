"""`make bench`: the figures that matter, each beside a baseline measured in the same run.

- validate: 1,000 manifests, beside a bare YAML parse of the same files (target: under 1 s);
- plan: 100, 1,000 and 10,000 applied endpoints, requests and time, beside a tool that would read
  each endpoint with its own GET (targets: the request count does not grow; 10,000 under 3 s);
- apply: 1,000 creates against 10 ms of emulator latency at parallelism 1, 8 and 32, beside the
  ideal N x latency / parallelism (target: within 1.5x of ideal at 8 and 32), and the same at 32
  with no latency: the CPU floor of this machine, which the ideal at 32 can fall below;
- wait: 200 deployments ramping up, stats requests per poll (target: 1);
- state: 500 to 4,000 creates recorded in the cluster state, bytes written to it per endpoint
  (target: within 1.5x of each other) and time, beside the same creates with no state stored;
- the emulator itself: one list call versus a GET per endpoint, one batched stats call versus one
  call per deployment.
- environments: the command `plan --all-envs` over 10 environments of 200 endpoints (20 ms latency)
  and of 20 (200 ms), beside the command `plan --env env0` (target: within 1.5x, the same requests
  per environment), each also as its code path in process; and `validate` of 1,000 manifests
  through a project of 10 environments and an overlay, beside the base alone (target: under 10%
  more).
Everything runs against `reconciler emulator` on a real socket, started here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import yaml

from reconciler import environments, project
from reconciler.applier import ApplyOptions
from reconciler.catalog import Version
from reconciler.client import Connection, Elasticsearch
from reconciler.manifests import load
from reconciler.progress import DeploymentStatus, LogReporter
from reconciler.session import make_plan
from reconciler.storage import STATE_INDEX, ClusterBackend, FileBackend, Snapshot, backend_for
from reconciler.workflows import PlanRequest, Target, execute
from reconciler.workflows import plan as plan_workflow

EXAMPLES = Path(__file__).resolve().parents[1] / "manifests"
PLACEHOLDERS = {"ANTHROPIC_API_KEY": "x", "OPENAI_API_KEY": "x", "COHERE_API_KEY": "x"}
Row = tuple[str, str, str, str, str]  # measure, figure, baseline, baseline figure, ratio
HEADER = "| measure | figure | baseline | baseline figure | ratio |"
VALIDATE_N, PLAN_SIZES, APPLY_N, APPLY_PARALLELISM, WAIT_N = 1000, (100, 1000, 10_000), 1000, (1, 8, 32), 200
STATE_SIZES = (500, 1000, 2000, 4000)  # creates, for the cost of recording them in the state
ENVS, ENV_ENDPOINTS = 10, 200  # environments x endpoints for plan --all-envs


# The first column of the table, by section (the README's table shows the same rows).
MEASURES = {
    "validate": [f"validate {VALIDATE_N:,} manifests"],
    "plan": [f"plan {n:,} endpoints (no changes)" for n in PLAN_SIZES],
    "apply": [
        *(f"apply {APPLY_N:,} creates, 10 ms latency, parallelism {p}" for p in APPLY_PARALLELISM),
        f"apply {APPLY_N:,} creates, no latency, parallelism {APPLY_PARALLELISM[-1]}",
    ],
    "wait": [f"wait for {WAIT_N} deployments"],
    "state": [
        *(f"apply {n:,} creates, cluster state, bytes written to it" for n in STATE_SIZES),
        f"state bytes per endpoint, most vs fewest over {STATE_SIZES[0]:,} to {STATE_SIZES[-1]:,} creates",
    ],
    "emulator": ["emulator: read 1,000 endpoints, 1 list call"],
    "environments": [
        f"`plan --all-envs`, {ENVS} environments x {ENV_ENDPOINTS} endpoints, 20 ms latency",
        "the same, its code path in process (start-up and output aside)",
        "requests per environment, plan --all-envs",
        f"`plan --all-envs`, {ENVS} environments x 20 endpoints, 200 ms latency",
        "the same, its code path in process",
        f"validate {VALIDATE_N:,} manifests with overlays, {ENVS} environments",
    ],
}


@contextmanager
def emulator(*options: str) -> Iterator[str]:
    process = subprocess.Popen(  # noqa: S603 - runs this project's own command
        [sys.executable, "-m", "reconciler", "emulator", "--port", "0", *options],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        found = re.search(r"http://\S+", process.stdout.readline())
        assert found is not None
        yield found[0]
    finally:
        process.terminate()
        process.wait(timeout=10)


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def anthropic(i: int) -> str:
    return (
        f"inference_id: bench-{i}\ntask_type: completion\nservice: anthropic\n"
        "service_settings: {api_key: '${ANTHROPIC_API_KEY}', model_id: claude-3-5-sonnet-20240620}\n"
        "task_settings: {max_tokens: 256}\n"
    )


def write_manifests(folder: Path, n: int, make: Callable[[int], str] = anthropic) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"m{i:05}.yaml").write_text(make(i))


class CountingReporter(LogReporter):
    def __init__(self) -> None:
        super().__init__()
        self.polls = 0

    def started(self, inference_id: str, action: str) -> None:
        return None

    def action(self, inference_id: str, action: str, outcome: str, **details: Any) -> None:
        return None

    def poll(self, statuses: Sequence[DeploymentStatus]) -> None:
        self.polls += 1


async def apply_all(
    url: str, folder: Path, state_path: Path, parallelism: int, reporter: LogReporter | None = None
) -> tuple[Any, float]:
    """Plan and apply the manifests in folder with the library (the workflows' `execute`, unlocked);
    returns the result and the seconds the apply itself took (the plan before it not included)."""
    async with Elasticsearch(Connection(urls=(url,)), max_connections=parallelism + 4) as es:
        options = ApplyOptions(parallelism=parallelism, poll_interval=0.2)
        return await plan_and_execute(
            es, FileBackend(state_path), folder, PLACEHOLDERS, reporter or CountingReporter(), options
        )


async def plan_and_execute(
    es: Elasticsearch,
    backend: Any,
    manifests: Any,
    env: Mapping[str, str],
    reporter: Any,
    options: ApplyOptions,
) -> tuple[Any, float]:
    """Plan the manifests, then carry the plan out as apply does (`execute`, unlocked): the result,
    and the seconds the execution took (the plan before it not included)."""
    planned, validation, cluster = await make_plan(es, backend, manifests, env=env)
    assert planned is not None, validation.errors[:3]
    started = time.perf_counter()
    result = await execute(es, backend, cluster, planned, env=env, reporter=reporter, options=options)
    return result, time.perf_counter() - started


# -- rows --------------------------------------------------------------------------------------


def validate_rows(scratch: Path) -> list[Row]:
    texts = [p.read_text() for p in sorted(EXAMPLES.glob("*.yaml"))]
    folder = scratch / "validate"
    write_manifests(
        folder,
        VALIDATE_N,
        lambda i: re.sub(r"inference_id: (\S+)", rf"inference_id: \1-{i}", texts[i % len(texts)]),
    )
    assert load(folder, Version(9, 5), PLACEHOLDERS).ok
    validate = min(timed(lambda: load(folder, Version(9, 5), PLACEHOLDERS)) for _ in range(3))
    parse = min(
        timed(lambda: [yaml.safe_load(p.read_text()) for p in sorted(folder.glob("*.yaml"))])
        for _ in range(3)
    )
    return [
        (
            MEASURES["validate"][0],
            ms(validate),
            "yaml.safe_load of the same files",
            ms(parse),
            f"{parse / validate:.1f}x faster",
        )
    ]


async def measure_plan(url: str, folder: Path, state_path: Path, n: int) -> tuple[float, int, float, int]:
    """Seconds and requests of a plan, then of reading each endpoint with its own GET."""
    async with Elasticsearch(Connection(urls=(url,))) as es:
        backend = FileBackend(state_path)
        started = time.perf_counter()
        planned, _, _ = await make_plan(es, backend, folder, env=PLACEHOLDERS)
        took = time.perf_counter() - started
        if planned is None or planned.has_changes:
            raise SystemExit("the plan benchmark expected no changes")
        plan_requests = es.requests
        started = time.perf_counter()
        limit = asyncio.Semaphore(32)  # as many in flight as apply's widest row

        async def read(inference_id: str) -> None:
            async with limit:
                await es.endpoint(inference_id)

        await asyncio.gather(*(read(f"bench-{i}") for i in range(n)))
        naive = time.perf_counter() - started
        return took, plan_requests, naive, es.requests - plan_requests + 2  # + GET / and the state


def plan_rows(scratch: Path) -> list[Row]:
    rows: list[Row] = []
    for index, n in enumerate(PLAN_SIZES):
        with emulator("--deploy-seconds", "0") as url:
            folder = scratch / f"plan-{n}"
            write_manifests(folder, n)
            result, _ = asyncio.run(apply_all(url, folder, scratch / f"plan-{n}.json", 64))
            assert not result.failed

            took, requests, naive, naive_requests = asyncio.run(
                measure_plan(url, folder, scratch / f"plan-{n}.json", n)
            )
            rows.append(
                (
                    MEASURES["plan"][index],
                    f"{ms(took)}, {requests} requests",
                    "a GET per endpoint (reading only)",
                    f"{ms(naive)}, {naive_requests} requests",
                    f"{naive / took:.1f}x faster, {naive_requests / requests:.0f}x fewer requests",
                )
            )
    return rows


def apply_rows(scratch: Path) -> list[Row]:
    rows: list[Row] = []
    n, latency = APPLY_N, 0.010
    for index, parallelism in enumerate(APPLY_PARALLELISM):
        with emulator("--latency-ms", "10", "--deploy-seconds", "0") as url:
            folder = scratch / f"apply-{parallelism}"
            write_manifests(folder, n)

            result, took = asyncio.run(
                apply_all(url, folder, scratch / f"apply-{parallelism}.json", parallelism)
            )
            assert not result.failed
            assert len(result.outcomes) == n
            ideal = n * latency / parallelism
            rows.append(
                (
                    MEASURES["apply"][index],
                    ms(took),
                    "ideal N x latency / parallelism",
                    ms(ideal),
                    f"{took / ideal:.2f}x ideal",
                )
            )
    # With no latency at all, the same apply measures what the CPUs allow (tool and emulator share
    # them): the floor under which no parallelism brings the widest row.
    with emulator("--deploy-seconds", "0") as url:
        folder = scratch / "apply-floor"
        write_manifests(folder, n)
        result, floor = asyncio.run(apply_all(url, folder, scratch / "apply-floor.json", parallelism))
        assert not result.failed
    rows.append(
        (
            MEASURES["apply"][-1],
            ms(floor),
            "the 10 ms row at parallelism 32",
            ms(took),
            f"{took / floor:.2f}x this floor",
        )
    )
    return rows


def wait_rows(scratch: Path) -> list[Row]:
    n = WAIT_N
    with emulator("--deploy-seconds", "2") as url:
        folder = scratch / "wait"
        write_manifests(
            folder,
            n,
            lambda i: (
                f"inference_id: dep-{i}\ntask_type: text_embedding\nservice: elasticsearch\n"
                "service_settings: {model_id: .multilingual-e5-small, num_threads: 1, num_allocations: 2}\n"
            ),
        )
        reporter = CountingReporter()
        before = httpx.get(url + "/_emulator/requests").json()
        result, _ = asyncio.run(apply_all(url, folder, scratch / "wait.json", 64, reporter))
        assert not result.failed
        after = httpx.get(url + "/_emulator/requests").json()

        def stats_calls(counted: dict[str, Any]) -> int:
            return sum(r["count"] for r in counted["requests"] if r["path"].startswith("/_ml/trained_models"))

        calls = stats_calls(after) - stats_calls(before) - 1  # minus the plan's read of tainted ones (none)
    calls = max(calls, reporter.polls)
    return [
        (
            MEASURES["wait"][0],
            f"{reporter.polls} polls",
            "stats requests sent",
            f"{calls}",
            f"{calls / max(reporter.polls, 1):.1f} per poll",
        )
    ]


def emulator_rows() -> list[Row]:
    with emulator("--deploy-seconds", "0") as url, httpx.Client(base_url=url, timeout=60) as es:
        body = {
            "service": "anthropic",
            "service_settings": {"api_key": "b", "model_id": "m"},
            "task_settings": {"max_tokens": 16},
        }
        for i in range(1000):
            es.put(f"/_inference/completion/bench-{i}", json=body)
        listed = min(timed(lambda: es.get("/_inference/_all").raise_for_status()) for _ in range(3))
        one_by_one = timed(lambda: [es.get(f"/_inference/bench-{i}") for i in range(1000)])
        return [
            (
                MEASURES["emulator"][0],
                ms(listed),
                "1,000 GETs by id",
                ms(one_by_one),
                f"{one_by_one / listed:.0f}x faster",
            )
        ]


class StateBytes(httpx.AsyncBaseTransport):
    """A plain transport that counts the body bytes of every write to the state index."""

    def __init__(self, connections: int) -> None:
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self.inner = httpx.AsyncHTTPTransport(limits=limits)
        self.written = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method in ("PUT", "POST") and request.url.path.startswith(f"/{STATE_INDEX}/"):
            self.written += len(request.content)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class NoState:
    """The ideal to measure against: a state backend that stores nothing and costs nothing."""

    name = "none"

    async def read(self) -> Snapshot:
        return Snapshot(None, None)

    async def write(self, state: object, token: object) -> object:
        return 0

    async def append(self, entries: object, after: object, token: object) -> object:
        return token

    def journal(self, token: object) -> tuple[int, int]:
        return 0, 0


class Quiet:
    """A reporter that reports nothing: the state rows time the apply, not its logs."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


async def create_all(url: str, folder: Path, stored: bool) -> tuple[float, int]:
    """Plan and apply the creates in folder at parallelism 8 with the cluster state (or none);
    returns the seconds the apply took and the bytes it wrote to the state index."""
    transport = StateBytes(12)
    async with Elasticsearch(Connection(urls=(url,)), transport=transport, max_connections=12) as es:
        backend: Any = ClusterBackend(es, "default") if stored else NoState()
        result, took = await plan_and_execute(es, backend, folder, PLACEHOLDERS, Quiet(), ApplyOptions())
        assert not result.failed, result.failed[:3]
        return took, transport.written


def state_rows(scratch: Path) -> list[Row]:
    """What recording creates in the cluster state costs as N grows: bytes per endpoint (flat: each
    action journals its own entries; the whole state is written only when the journal outgrows it
    and at the end) and time beside the same creates with no state at all, 10 ms of latency."""
    rows: list[Row] = []
    per_endpoint = []
    for index, n in enumerate(STATE_SIZES):
        folder = scratch / f"state-{n}"
        write_manifests(folder, n)
        with emulator("--latency-ms", "10", "--deploy-seconds", "0") as url:
            took, written = asyncio.run(create_all(url, folder, stored=True))
        with emulator("--latency-ms", "10", "--deploy-seconds", "0") as url:
            ideal, _ = asyncio.run(create_all(url, folder, stored=False))
        per_endpoint.append(written / n)
        figure = f"{written / n:,.0f} B per endpoint ({written / 1e6:.1f} MB), {ms(took)}"
        rows.append(
            (MEASURES["state"][index], figure, "no state stored", ms(ideal), f"{took / ideal:.2f}x time")
        )
    spread = max(per_endpoint) / min(per_endpoint)
    most, fewest = f"{max(per_endpoint):,.0f} B", f"{min(per_endpoint):,.0f} B"
    rows.append((MEASURES["state"][-1], most, "the fewest", fewest, f"{spread:.2f}x (target: 1.5x)"))
    return rows


# -- environments (docs/environments.md) ---------------------------------------------------------


def write_project(root: Path, urls: Sequence[str], base: Path, env: dict[str, str]) -> project.Project:
    """A project of len(urls) environments over `base` (states in files), each with an overlay
    that patches 10 endpoints, excludes one and adds one; their URLs' variables go into `env`."""
    lines = [f"manifests: {base.relative_to(root)}", "environments:"]
    for index, url in enumerate(urls):
        name, overlay = f"env{index}", root / f"overlays/env{index}"
        overlay.mkdir(parents=True)
        for i in range(10):
            (overlay / f"p{i}.yaml").write_text(
                f"patch: bench-{i}\ntask_settings: {{max_tokens: {100 + index}}}\n"
            )
        (overlay / "x.yaml").write_text("exclude: [bench-10]\n")
        (overlay / "own.yaml").write_text(anthropic(100_000 + index))
        lines += [f"  {name}:", f"    connection: {{url_env: BENCH_{index}_URL}}"]
        lines += [f"    state: file:{name}.json", f"    overlay: overlays/{name}"]
        env[f"BENCH_{index}_URL"] = url
    (root / "reconciler.yaml").write_text("\n".join(lines) + "\n")
    return project.load(root / "reconciler.yaml")


async def apply_env(target: Target, env: dict[str, str]) -> None:
    """Apply an environment's manifests (the workflows' `execute`, unlocked): its plan is then empty."""
    async with Elasticsearch(target.connection, max_connections=68) as es:
        backend = backend_for(target.state, es, target.workspace)
        options = ApplyOptions(parallelism=64, poll_interval=0.2)
        result, _ = await plan_and_execute(es, backend, target.manifests(Path()), env, Quiet(), options)
        assert not result.failed


async def plan_envs(chosen: project.Project, env: dict[str, str]) -> tuple[float, list[Any]]:
    """`plan --all-envs`'s code path (rendering aside): seconds, and each environment's outcome."""

    def work(target: Target) -> Any:
        request = PlanRequest(target.manifests(Path()), detailed_exitcode=True)
        return lambda es, backend: plan_workflow(es, backend, request, env=env)

    started = time.perf_counter()
    outcomes = await environments.across(chosen, work, {}, env, 120)
    return time.perf_counter() - started, outcomes


def requests_of(url: str, reset: bool = False) -> int:
    count = int(httpx.get(f"{url}/_emulator/requests").json()["total"])
    if reset:
        httpx.delete(f"{url}/_emulator/requests").raise_for_status()
    return count


class EnvRun(NamedTuple):
    """One `plan --all-envs` measure: seconds of the code path in process and of the command, each
    beside one environment's plan alone, and the requests each environment's plan cost."""

    together: float
    alone: float
    command_together: float
    command_alone: float
    requests: list[int]
    requests_alone: int


def command_seconds(root: Path, env: Mapping[str, str], *args: str) -> float:
    """Wall time of `reconciler ARGS` as a user runs it, start-up and output included."""
    started = time.perf_counter()
    subprocess.run(  # noqa: S603 - runs this project's own command
        [sys.executable, "-m", "reconciler", *args], cwd=root, env=env, capture_output=True, check=True
    )
    return time.perf_counter() - started


def all_envs(scratch: Path, endpoints: int, latency_ms: int) -> EnvRun:
    """`plan --all-envs` over ENVS applied environments, and one environment's plan alone."""
    root, env = scratch / f"envs-{endpoints}", dict(PLACEHOLDERS)
    write_manifests(root / "manifests", endpoints)
    with contextlib.ExitStack() as stack:
        options = ("--latency-ms", str(latency_ms), "--deploy-seconds", "0")
        urls = [stack.enter_context(emulator(*options)) for _ in range(ENVS)]
        every = write_project(root, urls, root / "manifests", env)
        for environment in every.environments.values():
            asyncio.run(apply_env(environments.target(environment, {}, env), env))
        for url in urls:
            requests_of(url, reset=True)
        one = dataclasses.replace(every, environments={"env0": every.environments["env0"]})
        alone = min(asyncio.run(plan_envs(one, env))[0] for _ in range(3))
        single = requests_of(urls[0], reset=True) // 3
        runs = [asyncio.run(plan_envs(every, env)) for _ in range(3)]
        assert all(o.exit_code == 0 for _, outcomes in runs for o in outcomes), runs
        counts = [requests_of(url) // 3 for url in urls]
        shell = {**os.environ, **env}
        command_alone, command_together = float("inf"), float("inf")
        for _ in range(5):  # interleaved, so that a busy moment of the machine weighs on both alike
            command_alone = min(command_alone, command_seconds(root, shell, "plan", "--env", "env0"))
            command_together = min(command_together, command_seconds(root, shell, "plan", "--all-envs"))
        together = min(seconds for seconds, _ in runs)
        return EnvRun(together, alone, command_together, command_alone, counts, single)


def environment_rows(scratch: Path) -> list[Row]:
    many, slow = all_envs(scratch, ENV_ENDPOINTS, 20), all_envs(scratch, 20, 200)
    measure = MEASURES["environments"]

    def command_row(name: str, run: EnvRun, target: str = "") -> Row:
        ratio = f"{run.command_together / run.command_alone:.2f}x time{target}"
        return name, ms(run.command_together), "`plan --env env0`, the command", ms(run.command_alone), ratio

    def in_process_row(name: str, run: EnvRun) -> Row:
        ratio = f"{run.together / run.alone:.2f}x time, {ENVS * run.alone / run.together:.1f}x faster than {ENVS} in turn"
        return name, ms(run.together), "one environment's plan alone, in process", ms(run.alone), ratio

    requests = f"{min(many.requests)} to {max(many.requests)}"
    return [
        command_row(measure[0], many, " (target: 1.5x)"),
        in_process_row(measure[1], many),
        (
            measure[2],
            requests,
            "one environment's plan alone",
            str(many.requests_alone),
            f"{max(many.requests) / many.requests_alone:.2f}x",
        ),
        command_row(measure[3], slow),
        in_process_row(measure[4], slow),
        overlay_row(scratch),
    ]


def overlay_row(scratch: Path) -> Row:
    """validate of one environment (the project read, the overlay applied) against the base alone."""
    root, env = scratch / "overlays", dict(PLACEHOLDERS)
    write_manifests(root / "manifests", VALIDATE_N)
    write_project(root, [f"http://env{i}:9200" for i in range(ENVS)], root / "manifests", env)

    def layered() -> None:
        environment = project.load(root / "reconciler.yaml").environment("env3")
        assert load(environments.manifests_of(environment), Version(9, 5), env).ok

    plain, with_overlays = float("inf"), float("inf")
    for _ in range(7):  # interleaved, so that a busy moment of the machine weighs on both alike
        plain = min(plain, timed(lambda: load(root / "manifests", Version(9, 5), env)))
        with_overlays = min(with_overlays, timed(layered))
    overhead = (with_overlays - plain) / plain
    return (
        MEASURES["environments"][5],
        ms(with_overlays),
        "validate of the base manifests alone",
        ms(plain),
        f"{overhead:+.1%} time (target: under 10%)",
    )


def main() -> int:
    sections: list[tuple[str, Callable[[Path], list[Row]]]] = [
        ("validate", validate_rows),
        ("plan", plan_rows),
        ("apply", apply_rows),
        ("wait", wait_rows),
        ("state", state_rows),
        ("emulator", lambda _: emulator_rows()),
        ("environments", environment_rows),
    ]
    wanted = set(sys.argv[1:]) or set(MEASURES)
    if wanted - set(MEASURES):
        raise SystemExit(f"unknown section(s) {sorted(wanted - set(MEASURES))}; choose from {list(MEASURES)}")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as folder:
        for name, build in sections:
            if name in wanted:
                rows += build(Path(folder))
    print(HEADER)
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
