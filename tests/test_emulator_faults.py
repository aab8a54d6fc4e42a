"""Fault injection and request accounting (point 9), in-process; lost responses need a socket (see test_emulator_socket)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import Es
from tests.test_emulator_inference import CLAUDE


async def _statuses(es: Es, n: int) -> list[int]:
    return [(await es.client.get("/_inference")).status_code for _ in range(n)]


async def test_faults_are_429_with_retry_after_or_503_and_apply_nothing(make_es: Any) -> None:
    es = await make_es(fault_rate=1.0, retry_after=2)
    seen = set()
    for i in range(20):
        response = await es.client.put(f"/_inference/completion/c{i}", json=CLAUDE)
        seen.add(response.status_code)
        body = response.json()
        assert body["status"] == response.status_code
        if response.status_code == 429:
            assert response.headers["retry-after"] == "2"
            assert body["error"]["type"] == "es_rejected_execution_exception"
        else:
            assert response.status_code == 503
        assert response.headers["x-elastic-product"] == "Elasticsearch"
    assert seen == {429, 503}
    assert not [e for e in es.cluster.endpoints if e.startswith("c")]


async def test_faults_are_seeded_and_repeatable(make_es: Any) -> None:
    runs = []
    for _ in range(2):
        es = await make_es(fault_rate=0.3, fault_seed=42)
        runs.append(await _statuses(es, 50))
    assert runs[0] == runs[1]
    assert 5 <= sum(s != 200 for s in runs[0]) <= 25
    other = await make_es(fault_rate=0.3, fault_seed=7)
    assert await _statuses(other, 50) != runs[0]


async def test_faults_can_be_changed_at_run_time(es9: Es) -> None:
    assert (await es9.client.put("/_emulator/faults", json={"fault_rate": 1.0})).status_code == 200
    assert (await es9.client.get("/")).status_code in (429, 503)
    await es9.client.put("/_emulator/faults", json={"fault_rate": 0})
    assert (await es9.client.get("/")).status_code == 200


async def test_latency_is_added_to_every_request(make_es: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def recording_sleep(seconds: float) -> None:
        slept.append(seconds)
        await real_sleep(0)

    es = await make_es(latency_ms=50)
    monkeypatch.setattr(asyncio, "sleep", recording_sleep)
    await es.client.get("/_inference")
    await es.client.get("/")
    assert slept == [0.05, 0.05]


async def test_requests_are_counted_by_method_and_path(es9: Es) -> None:
    await es9.client.get("/")
    await es9.client.put("/_inference/completion/c", json=CLAUDE)
    await es9.client.get("/_inference/c")
    await es9.client.get("/_inference/c")
    assert es9.emulator.requests.total() == 4
    assert es9.emulator.requests.writes() == 1
    assert es9.emulator.requests.total("GET", "/_inference") == 2
    counted = (await es9.client.get("/_emulator/requests")).json()  # the control API is not counted
    assert counted["total"] == 4
    assert counted["by_method"] == {"GET": 3, "PUT": 1}
    assert {"method": "GET", "path": "/_inference/c", "count": 2} in counted["requests"]
    await es9.client.delete("/_emulator/requests")
    assert es9.emulator.requests.total() == 0


async def test_clock_can_be_advanced(es9: Es) -> None:
    before = es9.cluster.now()
    body = (await es9.client.post("/_emulator/clock/_advance", json={"seconds": 100})).json()
    assert body["now"] >= before + 100
