"""How apply and wait tell their progress: one Reporter interface, for a terminal or for a log.

The applier calls the interface as it goes: `begin` with what it will do, `started` as each
endpoint's first request is sent (not when its answer comes: a create of a deployment blocks for
up to 30 s), `action` with each outcome, `poll` with each round of deployment stats, and `stopped`
when a signal ends the run. `Progress` keeps, per endpoint, its step (creating, waiting x/y
allocated, done, failed), since when, and the time left before its wait's timeout; both reporters
draw from it.

- `TerminalReporter` (stderr is a terminal, console logs): a live table from the first request,
  redrawn four times a second, with an overall n/m; failures are printed above it.
- `LogReporter` (anywhere else): lines in Terraform's manner (`e5: still waiting, 1/2 allocated
  [30s elapsed, 1170s left]`), one per step and one per endpoint still in flight every `interval`
  seconds, failures at error level. `--log-format json` makes each a JSON event (`action` per
  outcome, `wait` per endpoint per poll, `started`, `still`), each with its readable `message`.

`configure_logging` says where the events go and how a line reads.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

INTERVAL_VARIABLE = "RECONCILER_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 10.0  # Terraform's "Still creating... [10s elapsed]"


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

    def failure(self) -> str:
        """Why a deployment that failed or timed out is not done, for people."""
        what = "failed" if self.outcome == "failed" else f"did not finish within {self.elapsed:.0f}s"
        reason = f": {self.reason}" if self.reason else ""
        return f"deployment {self.deployment_id} {what} (allocation {self.allocation()}, state {self.state}){reason}"


@dataclass(frozen=True)
class Planned:
    """One endpoint an apply will act on; `timeout`: how long its deployment is waited for (None: no wait)."""

    inference_id: str
    action: str
    timeout: float | None = None


class Reporter(Protocol):
    def begin(self, planned: Sequence[Planned]) -> None: ...

    def started(self, inference_id: str, action: str) -> None: ...

    def action(self, inference_id: str, action: str, outcome: str, **details: Any) -> None: ...

    def poll(self, statuses: Sequence[DeploymentStatus]) -> None: ...

    def stopped(self, reason: str) -> None: ...

    def close(self) -> None: ...


# -- what each endpoint is doing ---------------------------------------------------------------

_DOING = {"create": "creating", "replace": "creating", "update": "updating", "delete": "deleting"}
_DONE = {
    "create": "created",
    "replace": "replaced",
    "update": "updated",
    "delete": "deleted",
    "read": "read",
    "adopt": "adopted",
    "forget": "forgotten",
}
SETTLED = ("done", "failed", "skipped")


@dataclass
class Step:
    """One endpoint's progress; times are the clock's (monotonic seconds)."""

    inference_id: str
    action: str
    timeout: float | None = None
    phase: str = "not started"  # not started | creating | updating | deleting | recording | waiting | done | failed | skipped
    started: float | None = None
    waiting_since: float | None = None
    finished: float | None = None
    allocation: str | None = None
    detail: str | None = None
    told: float = 0.0  # when a line last told about it

    @property
    def settled(self) -> bool:
        return self.phase in SETTLED

    @property
    def in_flight(self) -> bool:
        return self.started is not None and not self.settled

    def elapsed(self, now: float) -> float:
        return ((self.finished or now) - self.started) if self.started is not None else 0.0

    def left(self, now: float) -> float | None:
        """Seconds left before the wait's timeout, while waiting."""
        if self.phase != "waiting" or self.timeout is None or self.waiting_since is None:
            return None
        return max(0.0, self.timeout - (now - self.waiting_since))

    def describe(self, now: float) -> str:
        """`creating [4s elapsed]`, `waiting, 1/2 allocated [30s elapsed, 1170s left]`, `done [35s]`."""
        if self.phase == "waiting":
            left = self.left(now)
            times = f"{self.elapsed(now):.0f}s elapsed" + (f", {left:.0f}s left" if left is not None else "")
            what = (
                f"waiting, {self.allocation} allocated" if self.allocation else "waiting for its deployment"
            )
            return f"{what} [{times}]"
        if self.phase in ("done", "failed", "skipped"):
            allocated = f", {self.allocation} allocated" if self.allocation and self.phase == "done" else ""
            why = f": {self.detail}" if self.detail and self.phase != "done" else ""
            return f"{self.phase}{allocated}{why} [{self.elapsed(now):.0f}s]"
        if self.started is None:
            return "not started"
        return f"{self.phase} [{self.elapsed(now):.0f}s elapsed]"


class Progress:
    """Every endpoint of a run and its step. Locked: a live view redraws it from its own thread."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.steps: dict[str, Step] = {}
        self.settled: set[str] = set()  # kept as steps move: counting is O(1) per event, not O(n)
        self.lock = threading.RLock()

    def _noted(self, step: Step) -> Step:
        if step.settled:
            self.settled.add(step.inference_id)
        else:
            self.settled.discard(step.inference_id)
        return step

    def _step(self, inference_id: str, action: str) -> Step:
        if inference_id not in self.steps:
            self.steps[inference_id] = Step(inference_id, action)
        return self.steps[inference_id]

    def begin(self, planned: Sequence[Planned]) -> None:
        with self.lock:
            for item in planned:
                self.steps[item.inference_id] = self._noted(
                    Step(item.inference_id, item.action, item.timeout)
                )

    def started(self, inference_id: str, action: str) -> Step:
        with self.lock:
            step = self._step(inference_id, action)
            step.phase = _DOING.get(action, "recording")
            if step.started is None:  # a replace's create goes on the clock of its delete
                step.started = self.clock()
            step.told = self.clock()
            return self._noted(step)

    def finished(self, inference_id: str, action: str, outcome: str, detail: str | None) -> Step:
        """An outcome the applier reports: a done that a wait follows leaves the step waiting."""
        with self.lock:
            step = self._step(inference_id, action)
            now = self.clock()
            if step.started is None:
                step.started = now
            if outcome == "done" and step.timeout is not None:
                step.phase, step.waiting_since = "waiting", now
            elif outcome in ("skipped", "failed") and step.phase == "failed":
                pass  # told already: a failed wait by its poll, a replace's failed delete first
            elif outcome in SETTLED:
                step.phase, step.finished, step.detail = outcome, now, detail
            step.told = now
            return self._noted(step)

    def polled(self, status: DeploymentStatus) -> tuple[Step, bool]:
        """The step after this poll, and whether it moved (allocation or outcome) since the last."""
        with self.lock:
            step = self._step(status.inference_id, "wait")
            now = self.clock()
            before = (step.phase, step.allocation)
            step.allocation = status.allocation()
            step.waiting_since = now - status.elapsed  # the wait's own clock: its timeout counts from it
            if step.started is None:
                step.started = step.waiting_since
            if status.outcome == "waiting":
                step.phase = "waiting"
            elif status.outcome == "done":
                step.phase, step.finished = "done", now
            else:
                step.phase, step.finished = "failed", now
                what = "timed out" if status.outcome == "timed-out" else "deployment failed"
                step.detail = what + (f" ({status.reason})" if status.reason else "")
            return self._noted(step), (step.phase, step.allocation) != before

    def counts(self) -> tuple[int, int]:
        with self.lock:
            return len(self.settled), len(self.steps)

    def overall(self) -> str:
        settled, total = self.counts()
        return f"{settled} of {total} finished"

    def left_behind(self) -> str:
        """What a stopped run leaves, and how: done, failed, in flight (with its step), not started."""
        with self.lock:
            now = self.clock()
            steps = list(self.steps.values())
            groups = [
                ("done", [s.inference_id for s in steps if s.phase == "done"]),
                ("failed", [s.inference_id for s in steps if s.phase in ("failed", "skipped")]),
                ("in flight", [f"{s.inference_id} ({s.describe(now)})" for s in steps if s.in_flight]),
                ("not started", [s.inference_id for s in steps if s.started is None]),
            ]
        parts = [f"{name}: {', '.join(ids)}" for name, ids in groups if ids]
        return f"{self.overall()}; " + ("; ".join(parts) if parts else "nothing was planned")


def _line(step: Step, outcome: str, action: str, detail: str | None, overall: str) -> str:
    """The line an outcome reads as."""
    if outcome == "done" and step.phase == "waiting":
        timeout = f" (timeout {step.timeout:.0f}s)" if step.timeout is not None else ""
        return f"{step.inference_id}: {_DONE.get(action, action)}, waiting for its deployment{timeout}"
    if outcome == "done":
        return f"{step.inference_id}: {_DONE.get(action, action)} [{step.elapsed(step.finished or 0):.0f}s] ({overall})"
    if outcome == "failed":
        return f"{step.inference_id}: {action} failed: {detail} ({overall})"
    return f"{step.inference_id}: {action} {outcome}" + (f": {detail}" if detail else "")


# -- off a terminal: lines ---------------------------------------------------------------------


class LogReporter:
    """Events on stderr, as readable lines or JSON; `interval` (seconds) > 0 starts a ticker that
    says, that often, what each endpoint still in flight is doing. Close it to stop the ticker."""

    def __init__(
        self,
        interval: float | None = None,
        *,
        every_poll: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = structlog.get_logger("reconciler")
        self.progress = Progress(clock)
        self.interval = interval
        self.every_poll = every_poll  # JSON logs: a `wait` event per endpoint per poll
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def begin(self, planned: Sequence[Planned]) -> None:
        self.progress.begin(planned)
        self._start()

    def _start(self) -> None:
        """The ticker, from the first event of a run (`wait` has no `begin`, only polls)."""
        if self.interval and self._ticker is None and not self._stop.is_set():
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()

    def started(self, inference_id: str, action: str) -> None:
        step = self.progress.started(inference_id, action)
        self.log.info(
            "started", inference_id=inference_id, action=action, message=f"{inference_id}: {step.phase}..."
        )

    def action(self, inference_id: str, action: str, outcome: str, **details: Any) -> None:
        detail = details.get("detail")
        step = self.progress.finished(inference_id, action, outcome, detail)
        if action == "wait" and not self.every_poll:
            return  # the poll that saw the wait fail has told it
        message = _line(step, outcome, action, detail, self.progress.overall())
        emit = self.log.error if outcome == "failed" else self.log.info
        emit("action", inference_id=inference_id, action=action, outcome=outcome, message=message, **details)

    def poll(self, statuses: Sequence[DeploymentStatus]) -> None:
        self._start()
        for status in statuses:
            step, moved = self.progress.polled(status)
            if not (moved or self.every_poll):
                continue
            step.told = self.progress.clock()
            now = step.told
            message = f"{status.inference_id}: {step.describe(now)}"
            if step.settled:
                message += f" ({self.progress.overall()})"
            emit = self.log.error if step.phase == "failed" else self.log.info
            emit(
                "wait",
                inference_id=status.inference_id,
                deployment_id=status.deployment_id,
                allocation=status.allocation(),
                state=status.state,
                outcome=status.outcome,
                elapsed=round(status.elapsed, 1),
                reason=status.reason,
                message=message,
            )

    def still(self) -> None:
        """One line per endpoint in flight that no line told about for `interval` seconds."""
        now = self.progress.clock()
        with self.progress.lock:
            due = [
                s
                for s in self.progress.steps.values()
                if s.in_flight and now - s.told >= (self.interval or 0)
            ]
            for step in due:
                step.told = now
            lines = [(s.inference_id, f"{s.inference_id}: still {s.describe(now)}") for s in due]
        for inference_id, message in lines:
            self.log.info("still", inference_id=inference_id, message=message)

    def _tick(self) -> None:
        while not self._stop.wait(self.interval or DEFAULT_INTERVAL):
            self.still()

    def stopped(self, reason: str) -> None:
        self.close()
        self.log.error("stopped", message=f"{reason} with {self.progress.left_behind()}")

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None


# -- on a terminal: a live table ---------------------------------------------------------------


ROWS = 30  # a live view taller than a terminal scrolls away: the rest are counted in one row


def table(progress: Progress, title: str = "Applying", rows: int = ROWS) -> Table:
    """The live view: each endpoint with its step, elapsed time and time left; n/m in the title.
    Past `rows`, failures and endpoints in flight are shown first and the rest counted."""
    now = progress.clock()
    view = Table(title=f"{title}: {progress.overall()}", title_justify="left")
    for column in ("endpoint", "action", "step", "elapsed", "left"):
        # A failure's full reason is printed above the table: its row keeps to one line.
        view.add_column(column, no_wrap=True, overflow="ellipsis", max_width=60 if column == "step" else None)
    styles = {"done": "green", "failed": "red", "skipped": "yellow", "not started": "dim"}
    with progress.lock:
        steps = list(progress.steps.values())
        if len(steps) > rows:
            first = {"failed": 0, "skipped": 0, "done": 3, "not started": 2}
            steps = sorted(steps, key=lambda s: first.get(s.phase, 1))
        for step in steps[:rows]:
            left = step.left(now)
            view.add_row(
                step.inference_id,
                step.action,
                Text(step.describe(now).split(" [", 1)[0], style=styles.get(step.phase, "")),
                f"{step.elapsed(now):.0f}s" if step.started is not None else "",
                f"{left:.0f}s" if left is not None else "",
            )
        hidden = steps[rows:]
        if hidden:
            done = sum(s.phase == "done" for s in hidden)
            waiting = sum(s.started is None for s in hidden)
            others = len(hidden) - done - waiting
            counted = f"{done} done, {waiting} not started" + (f", {others} in flight" if others else "")
            view.add_row(f"… {len(hidden)} more", "", Text(counted, style="dim"), "", "")
    return view


class _Drawn:
    """Redrawn at each refresh of the Live display: the elapsed times move between events."""

    def __init__(self, progress: Progress, title: str) -> None:
        self.progress, self.title = progress, title

    def __rich__(self) -> Table:
        return table(self.progress, self.title)


class TerminalReporter(LogReporter):
    """On a terminal: the live table from `begin` (or the first poll, for `wait`); failures and
    what a stop left behind are printed above it."""

    def __init__(self, color: bool, console: Console | None = None) -> None:
        super().__init__()
        self.console = console or Console(file=sys.stderr, no_color=not color, highlight=False)
        self.live: Live | None = None

    def _show(self, title: str) -> None:
        if self.live is None:
            drawn = _Drawn(self.progress, title)
            self.live = Live(drawn, console=self.console, refresh_per_second=4, transient=False)
            self.live.start()

    def begin(self, planned: Sequence[Planned]) -> None:
        self.progress.begin(planned)
        if planned:
            self._show("Waiting" if all(p.action == "wait" for p in planned) else "Applying")

    def started(self, inference_id: str, action: str) -> None:
        self.progress.started(inference_id, action)

    def action(self, inference_id: str, action: str, outcome: str, **details: Any) -> None:
        detail = details.get("detail")
        step = self.progress.finished(inference_id, action, outcome, detail)
        if outcome == "failed" and action != "wait":  # a failed wait: its poll printed it
            self.console.print(
                Text(_line(step, outcome, action, detail, self.progress.overall()), style="red")
            )

    def poll(self, statuses: Sequence[DeploymentStatus]) -> None:
        for status in statuses:
            step, moved = self.progress.polled(status)
            if moved and step.phase == "failed":
                self.console.print(
                    Text(f"{status.inference_id}: {step.describe(self.progress.clock())}", style="red")
                )
        self._show("Waiting")

    def stopped(self, reason: str) -> None:
        self.close()
        self.console.print(Text(f"{reason} with {self.progress.left_behind()}", style="red"))

    def close(self) -> None:
        if self.live is not None:
            self.live.refresh()
            self.live.stop()
            self.live = None


def interval_from(env: Mapping[str, str]) -> float:
    """Seconds between `still ...` lines: RECONCILER_PROGRESS_INTERVAL, else 10; ValueError naming it."""
    text = env.get(INTERVAL_VARIABLE)
    if text is None:
        return DEFAULT_INTERVAL
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ValueError(f"{INTERVAL_VARIABLE}={text!r}: expected a positive number of seconds")
    return value


def reporter(terminal: bool, color: bool, env: Mapping[str, str] | None = None) -> Reporter:
    """The live table on a terminal (console logs), else lines (or JSON events) every interval."""
    interval = interval_from(os.environ if env is None else env)
    if terminal and _FORMAT["format"] != "json":
        return TerminalReporter(color)
    return LogReporter(interval, every_poll=_FORMAT["format"] == "json")


_FORMAT = {"format": "console"}


def _readable(_: Any, __: str, event: dict[str, Any]) -> str:
    """A console line: the event's message (or its name and fields), `Error:`/`Warning:` by level."""
    level = event.pop("level", "info")
    event.pop("timestamp", None)
    name = event.pop("event", "")
    message = event.pop("message", None)
    if message is None:
        fields = ", ".join(f"{k}={v}" for k, v in event.items())
        message = f"{name}: {fields}" if fields else str(name)
    prefix = {"error": "Error: ", "critical": "Error: ", "warning": "Warning: "}.get(level, "")
    return f"{prefix}{message}"


def configure_logging(log_format: str) -> None:
    """Where the structured events go: stderr, as readable lines or as JSON lines (`--log-format`)."""
    _FORMAT["format"] = log_format
    renderer: Any = structlog.processors.JSONRenderer() if log_format == "json" else _readable
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
