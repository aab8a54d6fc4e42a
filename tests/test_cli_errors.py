"""What the command line refuses: one `Error:` line on stderr naming the problem, exit 1, no traceback.

Options that could only fail later (a plan or state file that cannot be written, a malformed URL,
a CA certificate that cannot be read, a bad workspace, emulator settings out of range, a busy port)
are refused before anything runs; a TLS failure fails at once, without retries; a mistyped flag
exits 1, never 2 (which means changes or drift, DESIGN.md §4); and no secret the run knows shows in
an error, even when the server echoes the request.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from reconciler.state import EndpointRecord, State
from tests.e2e import Run, Tool
from tests.test_client import (
    API_KEY,
    KEY_PART,
    CountingServer,
    assert_no_canary,
    self_signed,
    tls_refusing,
)

__all__ = ["self_signed", "tls_refusing"]  # fixtures, used by name

UNREACHABLE = "http://127.0.0.1:9"  # never contacted: the options are refused first


def assert_one_error_line(run: Run, *named: str) -> None:
    assert run.code == 1, run
    assert "Traceback" not in run.stderr, run
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run
    assert lines[0].startswith("Error: "), run
    for text in named:
        assert text in lines[0], run


@pytest.fixture
def tool(tmp_path: Path) -> Tool:
    return Tool(UNREACHABLE, tmp_path)


@pytest.fixture
def folders(tmp_path: Path) -> None:
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "not.pem").write_text("not a certificate\n")


CASES = {
    "plan --out into a missing folder": (["plan", "--out", "{root}/missing/plan.json"], ["--out", "does not exist"]),
    "plan --out onto a folder": (["plan", "--out", "{root}/a-folder"], ["--out", "is a folder"]),
    "--state file: into a missing folder": (["status", "--state", "file:{root}/missing/s.json"], ["--state", "does not exist"]),
    "--state file: onto a folder": (["status", "--state", "file:{root}/a-folder"], ["--state", "is a folder"]),
    "--state neither cluster nor file:": (["status", "--state", "s3:bucket"], ["--state", "cluster or file:PATH"]),
    "--url without ://": (["status", "--url", "http//x"], ["--url http//x", "no http://"]),
    "--url ftp://": (["status", "--url", "ftp://x"], ["--url ftp://x", "scheme ftp://"]),
    "--url port out of range": (["status", "--url", "http://:99999"], ["--url", "the port is not a number"]),
    "--ca-cert missing": (["status", "--ca-cert", "{root}/missing.pem"], ["--ca-cert", "No such file"]),
    "--ca-cert not a certificate": (["status", "--ca-cert", "{root}/not.pem"], ["--ca-cert", "not a PEM"]),
    "--ca-cert a folder": (["status", "--ca-cert", "{root}/a-folder"], ["--ca-cert"]),
    "--cloud-id not base64": (["status", "--url", "", "--cloud-id", "n:%%%"], ["--cloud-id", "not an Elastic Cloud ID"]),
    "--cloud-id beside --url": (["status", "--cloud-id", "n:aC5leGFtcGxlJHU="], ["--url or --cloud-id, not both"]),
    "--api-key ID: without KEY": (["status", "--api-key", "an-id:"], ["--api-key", "both parts"]),
    "--ca-data not PEM": (["status", "--ca-data", "nothing"], ["--ca-data", "not PEM"]),
    "--ca-fingerprint not SHA-256": (["status", "--url", "https://x", "--ca-fingerprint", "ab:cd"], ["--ca-fingerprint", "64 hex digits"]),
    "--ca-cert and --insecure": (["status", "--ca-cert", "{root}/not.pem", "--insecure"], ["one way to trust"]),
    "--client-cert missing": (["status", "--client-cert", "{root}/missing.pem"], ["--client-cert", "No such file"]),
    "--client-key alone": (["status", "--client-key", "{root}/not.pem"], ["--client-key needs --client-cert"]),
    "--request-timeout not a duration": (["status", "--request-timeout", "soon"], ["--request-timeout soon"]),
    "--header without a colon": (["status", "--header", "X-Token canary-hdr"], ["--header", "'Name: value'"]),
    "--password alone": (["status", "--password", "canary-pw"], ["--password needs --username"]),
    "--workspace a/b": (["status", "--workspace", "a/b"], ["--workspace 'a/b'"]),
    "--workspace empty": (["status", "--workspace", ""], ["--workspace ''"]),
    "--workspace with a space": (["state", "list", "--workspace", "a b"], ["--workspace 'a b'"]),
    # The host cannot be bound: were the check missing, the emulator would fail, not serve.
    "emulator --fault-rate 7": (["emulator", "--host", "192.0.2.1", "--fault-rate", "7"], ["--fault-rate 7", "0 to 1"]),
    "emulator --lost-response-rate -1": (["emulator", "--host", "192.0.2.1", "--lost-response-rate", "-1"], ["--lost-response-rate -1"]),
    "emulator --latency-ms -1": (["emulator", "--host", "192.0.2.1", "--latency-ms", "-1"], ["--latency-ms -1", "0 or more"]),
    "emulator --deploy-seconds -1": (["emulator", "--host", "192.0.2.1", "--deploy-seconds", "-1"], ["--deploy-seconds -1"]),
    "emulator --port 99999": (["emulator", "--host", "192.0.2.1", "--port", "99999"], ["--port 99999"]),
}  # fmt: skip


@pytest.mark.usefixtures("folders")
@pytest.mark.parametrize(("args", "named"), CASES.values(), ids=CASES.keys())
def test_a_refused_option_is_one_error_line(tool: Tool, args: list[str], named: list[str]) -> None:
    run = tool(*(arg.format(root=tool.root) for arg in args))
    assert_one_error_line(run, *named)


@pytest.mark.parametrize(
    "args",
    [
        ["plan", "--no-such-flag"],
        ["no-such-command"],
        ["state", "show"],
        ["apply", "--parallelism", "0"],
        ["plan", "--json", "--markdown"],  # refused by the command itself
        ["status", "--log-format", "xml"],
    ],
)
def test_a_usage_error_exits_1_not_2(tool: Tool, args: list[str]) -> None:
    run = tool(*args)
    assert run.code == 1, run
    assert "Error:" in run.stderr
    assert "Traceback" not in run.stderr


def test_an_emulator_on_a_busy_port_is_one_error_line(tool: Tool) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        run = tool.process("emulator", "--port", str(port), timeout=60)
    assert_one_error_line(run, f"cannot listen on 127.0.0.1:{port}")


def test_a_tls_failure_is_one_error_line_after_one_attempt(
    tmp_path: Path, tls_refusing: CountingServer
) -> None:
    run = Tool(f"https://127.0.0.1:{tls_refusing.port}", tmp_path)("status")
    assert_one_error_line(run, "TLS failed")
    assert tls_refusing.accepted == 1


# -- no secret in what the command line shows, when the server echoes the request --------------


class Echo(BaseHTTPRequestHandler):
    """Every request answered 500, its reason echoing the request line, every header and the body
    (also used by tests/test_connection_canary.py)."""

    def _echo(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        headers = "; ".join(f"{k}: {v}" for k, v in self.headers.items())
        reason = f"{self.command} {self.path} [{headers}] {body}"
        payload = json.dumps({"error": {"type": "echo_exception", "reason": reason}}).encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _echo  # noqa: N815

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def echo_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_an_echoed_api_key_never_shows(tmp_path: Path, echo_url: str, log_format: str) -> None:
    tool = Tool(echo_url, tmp_path)
    run = tool("status", "--log-format", log_format, env={"ELASTICSEARCH_API_KEY": API_KEY})
    assert run.code == 1, run
    assert "(sensitive)" in run.stderr, run  # the server did echo it
    assert_no_canary(run.stdout, run.stderr)
    assert KEY_PART not in run.stderr
    assert "Traceback" not in run.stderr


def test_state_show_names_the_endpoint(tmp_path: Path) -> None:
    record = EndpointRecord("completion", "anthropic", {"service": "anthropic"}, {"service": "anthropic"})
    state = State.new("default").with_endpoint("a", record)
    (tmp_path / "state.json").write_text(state.dumps())
    run = Tool(UNREACHABLE, tmp_path)("state", "show", "a")
    assert run.code == 0, run
    shown = json.loads(run.stdout)
    assert next(iter(shown)) == "inference_id"
    assert shown == {"inference_id": "a", **record.to_json()}
