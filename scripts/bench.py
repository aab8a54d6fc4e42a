"""`make bench`: the figures that matter, each beside a baseline measured in the same run.

- validate: 1,000 manifests (the example manifests, renamed) through `reconciler validate`'s
  loader, beside a bare YAML parse of the same files (target: under 1 s);
- the emulator, over a real socket: reading N endpoints with one list call versus one GET per
  endpoint, and the stats of D deployments with one batched call versus one call per deployment.
Later issues add plan, apply and wait rows to the same table.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import yaml

from reconciler.catalog import Version
from reconciler.manifests import load

MANIFESTS = 1000
ENDPOINTS = 1000
DEPLOYMENTS = 200
EXAMPLES = Path(__file__).resolve().parents[1] / "manifests"
PLACEHOLDERS = {"ANTHROPIC_API_KEY": "x", "OPENAI_API_KEY": "x", "COHERE_API_KEY": "x"}

Row = tuple[str, float, str, float | None]


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def best_of(runs: int, action: Callable[[], object]) -> float:
    return min(timed(action) for _ in range(runs))


def validate_rows() -> list[Row]:
    texts = [p.read_text() for p in sorted(EXAMPLES.glob("*.yaml"))]
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for i in range(MANIFESTS):
            text = re.sub(r"inference_id: (\S+)", rf"inference_id: \1-{i}", texts[i % len(texts)])
            (root / f"m{i:04}.yaml").write_text(text)
        result = load(root, Version(9, 5), PLACEHOLDERS)
        if not result.ok or len(result.endpoints) != MANIFESTS:
            raise SystemExit(f"the benchmark manifests do not validate: {result.errors[:3]}")
        validate = best_of(3, lambda: load(root, Version(9, 5), PLACEHOLDERS))
        parse = best_of(3, lambda: [yaml.safe_load(p.read_text()) for p in sorted(root.glob("*.yaml"))])
    return [(f"validate {MANIFESTS} manifests", validate, "yaml.safe_load of the files", parse)]


def emulator_rows() -> list[Row]:
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "emulator", "--port", "0", "--deploy-seconds", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    rows: list[Row] = []
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
            rows.append((f"emulator: create {ENDPOINTS} endpoints (a PUT each)", create, "", None))
            listed = best_of(3, lambda: es.get("/_inference/_all").raise_for_status())
            one_by_one = timed(
                lambda: [es.get(f"/_inference/bench-{i}").raise_for_status() for i in range(ENDPOINTS)]
            )
            rows.append(
                (
                    f"emulator: read {ENDPOINTS} endpoints, 1 list call",
                    listed,
                    f"{ENDPOINTS} GETs by id",
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
            batched = best_of(3, lambda: es.get(f"/_ml/trained_models/{ids}/_stats").raise_for_status())
            single = timed(
                lambda: [es.get(f"/_ml/trained_models/dep-{i}/_stats") for i in range(DEPLOYMENTS)]
            )
            rows.append(
                (
                    f"emulator: stats of {DEPLOYMENTS} deployments, 1 call",
                    batched,
                    f"{DEPLOYMENTS} calls",
                    single,
                )
            )
    finally:
        process.terminate()
        process.wait(timeout=10)
    return rows


def main() -> int:
    rows = validate_rows() + emulator_rows()
    print(f"| {'measure':<48} | {'time':>9} | {'baseline':<28} | {'time':>9} | {'ratio':>6} |")
    print(f"|{'-' * 50}|{'-' * 11}|{'-' * 30}|{'-' * 11}|{'-' * 8}|")
    for name, value, baseline, base_value in rows:
        base = f"{base_value * 1000:7.1f}ms" if base_value is not None else ""
        ratio = f"{base_value / value:5.1f}x" if base_value else ""
        print(f"| {name:<48} | {value * 1000:7.1f}ms | {baseline:<28} | {base:>9} | {ratio:>6} |")
    print("\nratio = baseline time / time: how many times faster than the baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
