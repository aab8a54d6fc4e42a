"""`make demo`: validate the example manifests, then show the embedded emulator at work.

It validates `manifests/` with placeholder secrets (the emulator calls no provider), starts
`reconciler emulator` on a free port, creates an Anthropic completion endpoint and an ELSER endpoint
with adaptive allocations, follows the ELSER deployment until it is fully allocated, and shows that
the API key never comes back. (The plan/apply flow replaces the second half once those commands
exist.)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import httpx

PLACEHOLDER_KEY = "sk-ant-demo-placeholder"  # a stand-in: the emulator never calls Anthropic
PLACEHOLDERS = {"ANTHROPIC_API_KEY": PLACEHOLDER_KEY, "OPENAI_API_KEY": "sk-demo", "COHERE_API_KEY": "demo"}


def show(title: str, response: httpx.Response) -> None:
    print(f"\n$ {response.request.method} {response.request.url.path}  ->  {response.status_code}")
    print(f"# {title}")
    print(json.dumps(response.json(), indent=2)[:1500])


def main() -> int:
    print("$ reconciler validate --manifests manifests")
    validated = subprocess.run(
        [sys.executable, "-m", "reconciler", "validate", "--manifests", "manifests"],
        env={**os.environ, **PLACEHOLDERS},
        check=False,
    )
    if validated.returncode != 0:
        return validated.returncode
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "emulator", "--port", "0", "--deploy-seconds", "3"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        print(line.strip())
        url = re.search(r"http://\S+", line)
        if url is None:
            return 1
        with httpx.Client(base_url=url[0], timeout=30) as es:
            show("the root document", es.get("/?pretty=false"))
            show(
                "an Anthropic completion endpoint (the server fills in rate_limit; the api_key is never returned)",
                es.put(
                    "/_inference/completion/anthropic-completion",
                    json={
                        "service": "anthropic",
                        "service_settings": {
                            "api_key": PLACEHOLDER_KEY,
                            "model_id": "claude-3-5-sonnet-20240620",
                        },
                        "task_settings": {"max_tokens": 1024},
                    },
                ),
            )
            show(
                "an ELSER endpoint: the PUT returns once the first allocation has started",
                es.put(
                    "/_inference/sparse_embedding/elser-adaptive",
                    json={
                        "service": "elasticsearch",
                        "service_settings": {
                            "model_id": ".elser_model_2",
                            "num_threads": 1,
                            "adaptive_allocations": {
                                "enabled": True,
                                "min_number_of_allocations": 2,
                                "max_number_of_allocations": 4,
                            },
                        },
                    },
                ),
            )
            print("\n# waiting for allocation_count == target_allocation_count and state fully_allocated")
            while True:
                stats = es.get("/_ml/trained_models/elser-adaptive/_stats").json()
                status = stats["trained_model_stats"][0]["deployment_stats"]["allocation_status"]
                print(
                    f"  elser-adaptive  {status['allocation_count']}/{status['target_allocation_count']}  {status['state']}"
                )
                if status["state"] == "fully_allocated":
                    break
                time.sleep(0.5)
            everything = es.get("/_inference").text
            print(f"\nThe API key appears in GET /_inference: {PLACEHOLDER_KEY in everything}")
    finally:
        process.terminate()
        process.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
