"""`make bench`: the figures that matter, each beside a baseline measured in the same run.

Today it measures the emulator the tool's benchmarks will run against, over a real socket:
reading N endpoints with one list call versus one GET per endpoint, and reading the stats of D
deployments with one batched call versus one call per deployment. Later issues add validate,
plan, apply and wait rows to the same table.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable

import httpx

ENDPOINTS = 1000
DEPLOYMENTS = 200


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> int:
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "emulator", "--port", "0", "--deploy-seconds", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    rows: list[tuple[str, str, float, str, float]] = []
    try:
        assert process.stdout is not None
        url = re.search(r"http://\S+", process.stdout.readline())
        assert url is not None
        with httpx.Client(base_url=url[0], timeout=60) as es:
            body = {
                "service": "anthropic",
                "service_settings": {"api_key": "bench", "model_id": "claude-3-5-sonnet-20240620"},
                "task_settings": {"max_tokens": 16},
            }
            create = timed(
                lambda: [es.put(f"/_inference/completion/bench-{i}", json=body) for i in range(ENDPOINTS)]
            )
            rows.append((f"create {ENDPOINTS} endpoints (PUT each)", "", create, "", 0.0))
            listed = timed(lambda: es.get("/_inference/_all").raise_for_status())
            one_by_one = timed(
                lambda: [es.get(f"/_inference/bench-{i}").raise_for_status() for i in range(ENDPOINTS)]
            )
            rows.append(
                (
                    f"read {ENDPOINTS} endpoints: 1 list call",
                    f"{ENDPOINTS} GETs by id",
                    listed,
                    "",
                    one_by_one,
                )
            )
            e5 = {
                "service": "elasticsearch",
                "service_settings": {
                    "model_id": ".multilingual-e5-small",
                    "num_threads": 1,
                    "num_allocations": 1,
                },
            }
            for i in range(DEPLOYMENTS):
                es.put(f"/_inference/text_embedding/dep-{i}", json=e5).raise_for_status()
            ids = ",".join(f"dep-{i}" for i in range(DEPLOYMENTS))
            batched = timed(lambda: es.get(f"/_ml/trained_models/{ids}/_stats").raise_for_status())
            single = timed(
                lambda: [es.get(f"/_ml/trained_models/dep-{i}/_stats") for i in range(DEPLOYMENTS)]
            )
            rows.append(
                (
                    f"stats of {DEPLOYMENTS} deployments: 1 batched call",
                    f"{DEPLOYMENTS} calls",
                    batched,
                    "",
                    single,
                )
            )
    finally:
        process.terminate()
        process.wait(timeout=10)

    print(f"{'measure':<50} {'time':>10} {'baseline':<22} {'time':>10} {'ratio':>8}")
    for name, baseline, value, _, base_value in rows:
        ratio = f"{base_value / value:7.1f}x" if base_value else ""
        base_time = f"{base_value * 1000:8.1f}ms" if base_value else ""
        print(f"{name:<50} {value * 1000:8.1f}ms {baseline:<22} {base_time:>10} {ratio:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
