"""Serve the emulator on a real socket with uvicorn."""

from __future__ import annotations

import socket

import uvicorn

from reconciler.emulator.app import Emulator
from reconciler.emulator.cluster import EmulatorConfig


def serve(
    config: EmulatorConfig, host: str = "127.0.0.1", port: int = 9200, *, log_level: str = "warning"
) -> None:
    """Serve until interrupted. Port 0 picks a free port; the address is printed once listening."""
    emulator = Emulator(config)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(emulator, log_level=log_level, lifespan="on", access_log=False))
    print(
        f"Elasticsearch {config.version} emulator listening on http://{host}:{bound}",
        flush=True,
    )
    server.run(sockets=[sock])
