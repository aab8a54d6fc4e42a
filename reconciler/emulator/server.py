"""Serve the emulator on a real socket with uvicorn."""

from __future__ import annotations

import socket

import uvicorn

from reconciler.emulator.app import Emulator
from reconciler.emulator.cluster import EmulatorConfig
from reconciler.emulator.eis import preconfigured_ids


class ListenError(Exception):
    """The address cannot be listened on (the port is busy, the host is not this machine's)."""


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket; port 0 picks a free one. ListenError when the address cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and without it
    # Nagle's algorithm and delayed ACKs add 40 ms to every request on a kept-alive connection.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError) as error:
        sock.close()
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise ListenError(f"cannot listen on {host}:{port}: {reason}") from None
    # Listen before the address is printed: a client that connects as soon as it reads the line
    # waits in the backlog until uvicorn accepts, instead of being refused.
    sock.listen(socket.SOMAXCONN)
    return sock


def serve(
    config: EmulatorConfig, host: str = "127.0.0.1", port: int = 9200, *, log_level: str = "warning"
) -> None:
    """Serve until interrupted; the address is printed on stdout once the socket listens."""
    emulator = Emulator(config)
    sock = listening_socket(host, port)
    server = uvicorn.Server(uvicorn.Config(emulator, log_level=log_level, lifespan="on", access_log=False))
    print(
        f"Elasticsearch {config.version} emulator listening on http://{host}:{sock.getsockname()[1]}",
        flush=True,
    )
    if config.eis:
        ids = ", ".join(preconfigured_ids(emulator.cluster.version))
        print(f"EIS is authorised; its preconfigured endpoints: {ids}", flush=True)
    server.run(sockets=[sock])
