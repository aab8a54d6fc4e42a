"""Smoke tests of `reconciler emulator` on a real socket, as users and the tool's own tests meet it."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Served, start_emulator, stop_emulator
from tests.test_emulator_inference import CLAUDE

ELSER: dict[str, Any] = {
    "service": "elasticsearch",
    "service_settings": {"model_id": ".elser_model_2", "num_threads": 1, "num_allocations": 2},
}


def test_serves_the_apis_on_a_socket(serve_emulator: Callable[..., Served]) -> None:
    served = serve_emulator("--version", "8.19.3", "--deploy-seconds", "0.2")
    with httpx.Client(base_url=served.url) as client:
        root = client.get("/")
        assert root.json()["version"]["number"] == "8.19.3"
        assert root.headers["x-elastic-product"] == "Elasticsearch"
        assert client.put("/_inference/completion/c", json=CLAUDE).status_code == 200
        assert client.put("/_inference/sparse_embedding/e", json=ELSER).status_code == 200
        stats = client.get("/_ml/trained_models/e/_stats").json()
        assert stats["trained_model_stats"][0]["deployment_stats"]["deployment_id"] == "e"
        assert client.get("/_emulator/requests").json()["by_method"] == {"GET": 2, "PUT": 2}


def test_lost_responses_drop_the_connection_after_applying_the_write(
    serve_emulator: Callable[..., Served],
) -> None:
    served = serve_emulator("--lost-response-rate", "1")
    with httpx.Client(base_url=served.url) as client:
        with pytest.raises(httpx.TransportError):
            client.put("/_inference/completion/c", json=CLAUDE)
        # Reads are never lost, and the write was applied.
        assert client.get("/_inference/c").status_code == 200


def test_api_key_option(serve_emulator: Callable[..., Served]) -> None:
    served = serve_emulator("--api-key", "dGVzdDprZXk=")
    assert httpx.get(served.url).status_code == 401
    assert httpx.get(served.url, headers={"Authorization": "ApiKey dGVzdDprZXk="}).status_code == 200


def test_data_dir_survives_a_restart(tmp_path: Path) -> None:
    first = start_emulator("--data-dir", str(tmp_path))
    try:
        assert httpx.put(f"{first.url}/_inference/completion/c", json=CLAUDE).status_code == 200
        uuid = httpx.get(first.url).json()["cluster_uuid"]
    finally:
        stop_emulator(first)
    second = start_emulator("--data-dir", str(tmp_path))
    try:
        assert httpx.get(f"{second.url}/_inference/c").status_code == 200
        assert httpx.get(second.url).json()["cluster_uuid"] == uuid
    finally:
        stop_emulator(second)


def test_an_unsupported_version_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "reconciler", "emulator", "--version", "8.15.0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1  # a usage error (DESIGN §4: 2 means changes or drift)
    text = " ".join(re.sub("[│╭╮╰╯─]", " ", result.stderr).split())  # the usage error is drawn in a box
    assert "8.16.x to 8.19.x and 9.0.x to 9.5.x, not 8.15.0" in text


def test_the_listening_socket_lets_asyncio_disable_nagle() -> None:
    # asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP; a bare socket() has 0
    # and cost 40 ms per request on kept-alive connections (delayed ACK).
    from reconciler.emulator.server import listening_socket

    with listening_socket("127.0.0.1", 0) as sock:
        assert sock.proto == socket.IPPROTO_TCP


def test_the_socket_accepts_connections_before_the_address_is_printed() -> None:
    """`serve` prints the address once `listening_socket` returns: a script that connects the moment
    it reads that line must wait in the backlog until uvicorn accepts, not be refused."""
    from reconciler.emulator.server import listening_socket

    sock = listening_socket("127.0.0.1", 0)
    try:
        socket.create_connection(sock.getsockname()[:2], timeout=5).close()
    finally:
        sock.close()
