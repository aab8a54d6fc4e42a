"""Drive the official `elasticsearch` client against an emulator; run by test_es_client in a subprocess.

Usage: python es_client_script.py URL. It prints one JSON document of what it saw, and exits 1 on
the first unexpected answer, so the same script proves both the 8.19 and the 9.x client.
"""

from __future__ import annotations

import json
import sys

from elasticsearch import Elasticsearch


def main(url: str) -> None:
    client = Elasticsearch(url, request_timeout=30)
    seen: dict[str, object] = {
        "client": ".".join(map(str, __import__("elasticsearch").__versionstr__.split(".")[:2]))
    }
    info = client.info()
    seen["server"] = info["version"]["number"]
    assert client.ping()
    created = client.inference.put(
        task_type="completion",
        inference_id="py-claude",
        inference_config={
            "service": "anthropic",
            "service_settings": {"api_key": "sk-client-canary", "model_id": "claude-3-5-sonnet-20240620"},
            "task_settings": {"max_tokens": 1024, "temperature": 0.7},
        },
    )
    assert created["inference_id"] == "py-claude", created
    got = client.inference.get(inference_id="py-claude")
    assert got["endpoints"][0]["task_settings"] == {"max_tokens": 1024, "temperature": 0.7}, got
    everything = client.inference.get()
    seen["ids"] = [e["inference_id"] for e in everything["endpoints"]]
    updated = client.inference.update(
        task_type="completion",
        inference_id="py-claude",
        inference_config={"task_settings": {"max_tokens": 64}},
    )
    assert updated["task_settings"] == {"max_tokens": 64}, updated
    e5 = client.inference.put(
        task_type="text_embedding",
        inference_id="py-e5",
        inference_config={
            "service": "elasticsearch",
            "service_settings": {
                "model_id": ".multilingual-e5-small",
                "num_threads": 1,
                "num_allocations": 1,
            },
        },
    )
    assert e5["service"] == "elasticsearch", e5
    stats = client.ml.get_trained_models_stats(model_id="py-e5")
    seen["allocation"] = stats["trained_model_stats"][0]["deployment_stats"]["allocation_status"]
    dry = client.inference.delete(inference_id="py-claude", dry_run=True)
    assert dry["acknowledged"] is False, dry
    assert client.inference.delete(inference_id="py-claude")["acknowledged"] is True
    try:
        client.inference.get(inference_id="py-claude")
    except Exception as error:
        seen["missing"] = [type(error).__name__, getattr(error, "status_code", None)]
    # Documents, as a state backend keeps them: `exists` is a HEAD of the document.
    client.index(index="py-docs", id="d1", document={"n": 1}, refresh=True)
    seen["exists"] = [
        bool(client.exists(index="py-docs", id="d1")),
        bool(client.exists(index="py-docs", id="d2")),
        bool(client.exists(index="py-nowhere", id="d1")),
    ]
    print(json.dumps(seen))


if __name__ == "__main__":
    main(sys.argv[1])
