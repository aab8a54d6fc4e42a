"""No credential of the new connection options shows, even when the server echoes every header.

The API key given as `id:key` (and so sent encoded), the password of ES_PASSWORD, a header that
carries a credential, a proxy's password: a server that answers each request with an error echoing
all its headers, and a proxy that cannot be reached, must leave none of them in what the command
line prints or logs (the conftest hook also fails the test if a `canary` value is captured).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e import Tool
from tests.test_cli_errors import Echo


@pytest.fixture
def echo_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


CASES = {
    "api key as id:key": ([], {"ES_API_KEY": "key-id:canary-api-secret"}),
    "ES_PASSWORD": ([], {"ES_USERNAME": "ops", "ES_PASSWORD": "canary-es-password"}),
    "credential header": (["--header", "X-Gateway-Token: canary-gateway-token"], {}),
    "authorization header": (["--header", "Authorization: Custom canary-custom-auth"], {}),
}


@pytest.mark.parametrize("log_format", ["console", "json"])
@pytest.mark.parametrize("command", ["status", "plan", "drift"])
@pytest.mark.parametrize(("args", "env"), CASES.values(), ids=CASES.keys())
def test_an_echoed_credential_never_shows(
    tmp_path: Path, echo_url: str, command: str, log_format: str, args: list[str], env: dict[str, str]
) -> None:
    run = Tool(echo_url, tmp_path)(command, "--log-format", log_format, *args, env=env)
    assert run.code == 1, run
    assert "(sensitive)" in run.stderr, run  # the server did echo it
    assert "canary" not in run.stdout + run.stderr
    assert "Traceback" not in run.stderr


def test_a_proxy_password_never_shows(tmp_path: Path) -> None:
    env = {"HTTP_PROXY": "http://user:canary-proxy-password@127.0.0.1:9", "NO_PROXY": ""}
    run = Tool("http://es.example:9200", tmp_path)("status", "--log-format", "json", env=env)
    assert run.code == 1, run
    assert "canary" not in run.stdout + run.stderr
