"""`make bench`: the figures that matter, each beside a baseline measured in the same run.

- validate: 1,000 manifests, beside a bare YAML parse of the same files (target: under 1 s);
- plan: 100, 1,000 and 10,000 applied endpoints, requests and time, beside a tool that would read
  each endpoint with its own GET (targets: the request count does not grow; 10,000 under 3 s);
- apply: 1,000 creates against 10 ms of emulator latency at parallelism 1, 8 and 32, beside the
  ideal N x latency / parallelism (target: within 1.5x of ideal at 8 and 32), and the same at 32
  with no latency: the CPU floor of this machine, which the ideal at 32 can fall below;
- wait: 200 deployments ramping up, stats requests per poll (target: 1);
- the emulator itself: one list call versus a GET per endpoint, one batched stats call versus one
  call per deployment.
Everything runs against `reconciler emulator` on a real socket, started here.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from reconciler.applier import ApplyOptions
from reconciler.catalog import Version
from reconciler.client import Connection, Elasticsearch
from reconciler.manifests import load
from reconciler.progress import DeploymentStatus, LogReporter
from reconciler.session import make_plan
from reconciler.storage import FileBackend
from reconciler.workflows import execute

EXAMPLES = Path(__file__).resolve().parents[1] / "manifests"
PLACEHOLDERS = {"ANTHROPIC_API_KEY": "x", "OPENAI_API_KEY": "x", "COHERE_API_KEY": "x"}
Row = tuple[str, str, str, str, str]  # measure, figure, baseline, baseline figure, ratio
HEADER = "| measure | figure | baseline | baseline figure | ratio |"
VALIDATE_N, PLAN_SIZES, APPLY_N, APPLY_PARALLELISM, WAIT_N = 1000, (100, 1000, 10_000), 1000, (1, 8, 32), 200


# The first column of the table, by section (the README's table shows the same rows).
MEASURES = {
    "validate": [f"validate {VALIDATE_N:,} manifests"],
    "plan": [f"plan {n:,} endpoints (no changes)" for n in PLAN_SIZES],
    "apply": [
        *(f"apply {APPLY_N:,} creates, 10 ms latency, parallelism {p}" for p in APPLY_PARALLELISM),
        f"apply {APPLY_N:,} creates, no latency, parallelism {APPLY_PARALLELISM[-1]}",
    ],
    "wait": [f"wait for {WAIT_N} deployments"],
    "emulator": ["emulator: read 1,000 endpoints, 1 list call"],
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
        self.polls = 0

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
        backend = FileBackend(state_path)
        planned, validation, cluster = await make_plan(es, backend, folder, env=PLACEHOLDERS)
        assert planned is not None, validation.errors[:3]
        options = ApplyOptions(parallelism=parallelism, poll_interval=0.2)
        started = time.perf_counter()
        result = await execute(
            es,
            backend,
            cluster,
            planned,
            env=PLACEHOLDERS,
            reporter=reporter or CountingReporter(),
            options=options,
        )
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


def main() -> int:
    sections: list[tuple[str, Callable[[Path], list[Row]]]] = [
        ("validate", validate_rows),
        ("plan", plan_rows),
        ("apply", apply_rows),
        ("wait", wait_rows),
        ("emulator", lambda _: emulator_rows()),
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
