"""The official Python client, 8.19.x and 9.x, works against the emulator unchanged (over a socket)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Served

SCRIPT = Path(__file__).with_name("es_client_script.py")
# `make install` puts the 8.19 client in its own folder: it cannot share the venv with the 9.x one.
ES8_CLIENT = Path(sys.prefix) / "es-client-8"


def run_client(url: str, *, es8: bool) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if es8:
        assert ES8_CLIENT.is_dir(), f"the 8.19 client is missing from {ES8_CLIENT}: run `make install`"
        env["PYTHONPATH"] = str(ES8_CLIENT)
    return subprocess.run(
        [sys.executable, str(SCRIPT), url], capture_output=True, text=True, env=env, timeout=120, check=False
    )


@pytest.mark.parametrize(
    ("server", "es8"),
    [("9.5.0", False), ("9.0.4", False), ("9.5.0", True), ("8.19.3", True)],
    ids=["9x-on-9.5", "9x-on-9.0", "8.19-on-9.5", "8.19-on-8.19"],
)
def test_the_official_client_works_unchanged(
    lend_emulator: Callable[..., Served], server: str, es8: bool
) -> None:
    served = lend_emulator("--version", server, "--deploy-seconds", "0")
    result = run_client(served.url, es8=es8)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["client"].split(".")[0] == ("8" if es8 else "9")
    assert not es8 or seen["client"] == "8.19"
    assert seen["server"] == server
    assert "py-claude" in seen["ids"]
    assert ".elser-2-elasticsearch" in seen["ids"]
    assert seen["allocation"] == {
        "allocation_count": 1,
        "target_allocation_count": 1,
        "state": "fully_allocated",
    }
    assert seen["missing"] == ["NotFoundError", 404]
    assert seen["exists"] == [True, False, False]  # HEAD /{index}/_doc/{id}: 200, 404, 404
    assert "sk-client-canary" not in result.stdout + result.stderr


def test_a_9x_client_is_refused_by_an_8_19_server_as_elasticsearch_refuses_it(
    lend_emulator: Callable[..., Served],
) -> None:
    served = lend_emulator("--version", "8.19.3", "--deploy-seconds", "0")
    result = run_client(served.url, es8=False)
    assert result.returncode == 1
    assert "media_type_header_exception" in result.stderr
    assert "Accept version must be either version 8 or 7, but found 9" in result.stderr
