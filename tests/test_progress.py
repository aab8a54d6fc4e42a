"""Progress as people read it: the live table on a terminal, Terraform-like lines anywhere else."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog
from rich.console import Console

from reconciler import progress
from reconciler.progress import DeploymentStatus, LogReporter, Planned, Progress, TerminalReporter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Err:
    """What the events wrote on stderr so far (pytest's capture)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def getvalue(self) -> str:
        return self.capsys.readouterr().err


@pytest.fixture
def stderr(capsys: pytest.CaptureFixture[str]) -> Iterator[Err]:
    progress.configure_logging("console")
    yield Err(capsys)
    progress.configure_logging("console")  # a test may have switched to JSON
    structlog.reset_defaults()


def status(
    allocations: int, elapsed: float, outcome: str = "waiting", reason: str | None = None
) -> DeploymentStatus:
    return DeploymentStatus("e5", "e5", allocations, 2, "started", reason, elapsed, outcome)


def test_lines_off_a_terminal_tell_each_step_and_what_is_still_in_flight(stderr: Err) -> None:
    clock = Clock()
    reporter = LogReporter(30, clock=clock)
    reporter.progress.clock = clock
    reporter.begin([Planned("a", "create"), Planned("e5", "create", 1200), Planned("old", "delete")])
    reporter.started("old", "delete")
    reporter.started("a", "create")
    reporter.started("e5", "create")
    clock.now += 2
    reporter.action("old", "delete", "done")
    reporter.action("a", "create", "done")
    clock.now += 40
    reporter.still()  # the PUT of e5 still blocks
    reporter.action("e5", "create", "done")
    reporter.poll([status(0, 0.0)])
    reporter.poll([status(0, 1.0)])  # nothing moved: no line
    clock.now += 30
    reporter.poll([status(1, 30.0)])
    clock.now += 30
    reporter.still()
    reporter.close()
    lines = stderr.getvalue().splitlines()
    assert lines == [
        "old: deleting...",
        "a: creating...",
        "e5: creating...",
        "old: deleted [2s] (1 of 3 finished)",
        "a: created [2s] (2 of 3 finished)",
        "e5: still creating [42s elapsed]",
        "e5: created, waiting for its deployment (timeout 1200s)",
        "e5: waiting, 0/2 allocated [42s elapsed, 1200s left]",
        "e5: waiting, 1/2 allocated [72s elapsed, 1170s left]",
        "e5: still waiting, 1/2 allocated [102s elapsed, 1140s left]",
    ]


def test_failures_are_errors_and_a_stop_says_what_was_left_how(stderr: Err) -> None:
    clock = Clock()
    reporter = LogReporter(clock=clock)
    reporter.begin([Planned(i, "create", 60 if i == "e5" else None) for i in ("a", "b", "e5", "later")])
    for inference_id in ("a", "b", "e5"):
        reporter.started(inference_id, "create")
    clock.now += 1
    reporter.action("a", "create", "done")
    reporter.action("b", "create", "failed", detail="400 bad request")
    reporter.action("e5", "create", "done")
    reporter.poll([status(1, 5.0)])
    reporter.stopped("apply stopped by SIGTERM")
    lines = stderr.getvalue().splitlines()
    assert "Error: b: create failed: 400 bad request (2 of 4 finished)" in lines
    assert lines[-1] == (
        "Error: apply stopped by SIGTERM with 2 of 4 finished; done: a; failed: b; "
        "in flight: e5 (waiting, 1/2 allocated [1s elapsed, 55s left]); not started: later"
    )


def test_a_timed_out_wait_is_one_error_line(stderr: Err) -> None:
    reporter = LogReporter(clock=Clock())
    reporter.begin([Planned("e5", "create", 3)])
    reporter.started("e5", "create")
    reporter.action("e5", "create", "done")
    reporter.poll([status(1, 3.5, "timed-out", "insufficient processors")])
    reporter.action("e5", "wait", "failed", detail="deployment e5 did not finish within 4s")
    errors = [line for line in stderr.getvalue().splitlines() if line.startswith("Error:")]
    assert errors == ["Error: e5: failed: timed out (insufficient processors) [0s] (1 of 1 finished)"]


def test_json_logs_keep_one_event_per_action_and_poll_with_a_message(stderr: Err) -> None:
    progress.configure_logging("json")
    reporter = progress.reporter(terminal=False, color=False, env={})
    assert isinstance(reporter, LogReporter)
    reporter.begin([Planned("e5", "create", 60)])
    reporter.started("e5", "create")
    reporter.action("e5", "create", "done")
    reporter.poll([status(1, 1.0)])
    reporter.poll([status(1, 2.0)])  # unchanged, still an event: a log pipeline gets every poll
    reporter.close()
    events = [json.loads(line) for line in stderr.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["started", "action", "wait", "wait"]
    assert (events[1]["outcome"], events[1]["inference_id"]) == ("done", "e5")
    assert events[3]["message"] == "e5: waiting, 1/2 allocated [0s elapsed, 58s left]"


def test_the_interval_comes_from_the_environment() -> None:
    assert progress.interval_from({}) == 10.0
    assert progress.interval_from({"RECONCILER_PROGRESS_INTERVAL": "0.5"}) == 0.5
    for bad in ("soon", "0", "-1"):
        with pytest.raises(ValueError, match="RECONCILER_PROGRESS_INTERVAL="):
            progress.interval_from({"RECONCILER_PROGRESS_INTERVAL": bad})


def test_the_live_view_shows_every_endpoint_from_the_first_request() -> None:
    clock = Clock()
    state = Progress(clock)
    state.begin([Planned("a", "create"), Planned("e5", "create", 1200), Planned("b", "update")])
    state.started("e5", "create")
    clock.now += 7
    console = Console(record=True, force_terminal=True, width=100, color_system=None)
    console.print(progress.table(state))
    text = console.export_text()
    assert "Applying: 0 of 3 finished" in text
    assert "│ e5       │ create │ creating    │ 7s " in text
    assert "not started" in text
    state.finished("e5", "create", "done", None)
    state.polled(status(1, 30.0))
    state.finished("a", "create", "failed", "boom")
    console = Console(record=True, force_terminal=True, width=100, color_system=None)
    console.print(progress.table(state))
    text = console.export_text()
    row = next(line for line in text.splitlines() if " e5 " in line)
    assert "waiting, 1/2 allocated" in row
    assert "1170s" in row
    assert "failed: boom" in text
    assert "Applying: 1 of 3 finished" in text


def test_the_terminal_reporter_draws_live_from_begin_and_prints_failures() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, color_system=None)
    reporter = TerminalReporter(False, console)
    reporter.begin([Planned("a", "create")])
    assert reporter.live is not None  # before any answer came back
    reporter.started("a", "create")
    reporter.action("a", "create", "failed", detail="400 bad")
    reporter.close()
    assert "a: create failed: 400 bad (1 of 1 finished)" in out.getvalue()
    assert "Applying: 1 of 1 finished" in out.getvalue()


def test_a_large_apply_shows_failures_and_work_in_flight_first_and_counts_the_rest() -> None:
    state = Progress(Clock())
    state.begin([Planned(f"e{i:03}", "create") for i in range(200)])
    for i in range(150):
        state.started(f"e{i:03}", "create")
        state.finished(f"e{i:03}", "create", "done", None)
    state.started("e170", "create")
    state.finished("e199", "create", "failed", "boom")
    console = Console(record=True, force_terminal=True, width=100, color_system=None)
    console.print(progress.table(state, rows=5))
    lines = console.export_text().splitlines()
    assert "Applying: 151 of 200 finished" in lines[0]
    assert " e199 " in lines[4]
    assert "failed: boom" in lines[4]
    assert " e170 " in lines[5]
    assert "creating" in lines[5]
    assert "… 195 more" in lines[-2]
    assert "150 done, 45 not started" in lines[-2]
