"""How apply and wait tell their progress: one Reporter interface, for a terminal or for a log pipeline.

`LogReporter` writes one structured event per action and per wait poll (`--log-format json` makes
them JSON lines); `TerminalReporter` adds a live table of the deployments being waited for, with
allocation x/y and elapsed time. The applier only ever calls the interface; `configure_logging`
says where the events go.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from rich.console import Console
from rich.live import Live
from rich.table import Table


@dataclass(frozen=True)
class DeploymentStatus:
    """One waited-for deployment at one poll."""

    inference_id: str
    deployment_id: str
    allocations: int
    target: int
    state: str
    reason: str | None
    elapsed: float
    outcome: str  # waiting | done | failed | timed-out

    def allocation(self) -> str:
        return f"{self.allocations}/{self.target}"


class Reporter(Protocol):
    def action(self, inference_id: str, action: str, outcome: str, **details: Any) -> None: ...

    def poll(self, statuses: Sequence[DeploymentStatus]) -> None: ...

    def close(self) -> None: ...


class LogReporter:
    """Structured log lines on stderr: what a log pipeline indexes."""

    def __init__(self) -> None:
        self.log = structlog.get_logger("reconciler")

    def action(self, inference_id: str, action: str, outcome: str, **details: Any) -> None:
        self.log.info("action", inference_id=inference_id, action=action, outcome=outcome, **details)

    def poll(self, statuses: Sequence[DeploymentStatus]) -> None:
        for status in statuses:
            self.log.info(
                "wait",
                inference_id=status.inference_id,
                deployment_id=status.deployment_id,
                allocation=status.allocation(),
                state=status.state,
                outcome=status.outcome,
                elapsed=round(status.elapsed, 1),
                reason=status.reason,
            )

    def close(self) -> None:
        return None


class TerminalReporter(LogReporter):
    """On a terminal: actions as log lines, waits as a live table redrawn at each poll."""

    def __init__(self, color: bool) -> None:
        super().__init__()
        self.console = Console(file=sys.stderr, no_color=not color, highlight=False)
        self.live: Live | None = None

    def poll(self, statuses: Sequence[DeploymentStatus]) -> None:
        table = Table(title="Waiting for trained-model deployments", title_justify="left")
        for column in ("endpoint", "allocation", "state", "elapsed", "status"):
            table.add_column(column)
        for status in statuses:
            table.add_row(
                status.inference_id,
                status.allocation(),
                status.state,
                f"{status.elapsed:.0f}s",
                status.outcome if status.reason is None else f"{status.outcome}: {status.reason}",
            )
        if self.live is None:
            self.live = Live(table, console=self.console, refresh_per_second=4, transient=False)
            self.live.start()
        else:
            self.live.update(table)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def reporter(terminal: bool, color: bool) -> Reporter:
    return TerminalReporter(color) if terminal else LogReporter()


def configure_logging(log_format: str) -> None:
    """Where the structured events go: stderr, as console lines or as JSON lines (`--log-format`)."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        # The stream is looked up per logger: a replaced sys.stderr (tests, embedding) is followed.
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
