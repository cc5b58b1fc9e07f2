"""Events, observers and the logging observer."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from scheduler import Interval, Job, LogObserver, NoopObserver, RunStatus, Scheduler, TaskContext
from scheduler.events import RunCompleted, SchedulerEvent, StoreDegraded
from scheduler.testing import FakeClock, RecordingObserver

from .conftest import T0
from .helpers import recorder_task

S = timedelta(seconds=1)


async def test_event_order_for_a_normal_run(clock: FakeClock, recorder: RecordingObserver) -> None:
    """A normal two-run job emits load, then trigger/start/complete per run, then stopped."""
    await Scheduler(clock=clock, observer=recorder).run(Job("o", Interval(5), recorder_task([]), max_runs=2))
    assert recorder.names() == [
        "StateLoaded",
        "TriggerEmitted", "RunStarted", "RunCompleted",
        "TriggerEmitted", "RunStarted", "RunCompleted",
        "SchedulerStopped",
    ]  # fmt: skip
    assert all(e.job_id == "o" for e in recorder.events)
    completed = recorder.of_type(RunCompleted)
    assert [(e.scheduled_at, e.status, e.trigger_count) for e in completed] == [
        (T0 + 5 * S, RunStatus.SUCCESS, 1),
        (T0 + 10 * S, RunStatus.SUCCESS, 2),
    ]
    assert [e.at for e in completed] == [T0 + 5 * S, T0 + 10 * S]


async def test_failing_observer_is_isolated(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    """An observer that raises is logged and ignored; the others still receive every event."""
    good = RecordingObserver()

    def bad(event: SchedulerEvent) -> None:
        raise RuntimeError("observer bug")

    with caplog.at_level(logging.ERROR, logger="scheduler"):
        report = await Scheduler(clock=clock, observer=[bad, good, NoopObserver()]).run(
            Job("i", Interval(5), recorder_task([]), max_runs=1)
        )
    assert [r.status for r in report.history] == [RunStatus.SUCCESS]
    assert "StateLoaded" in good.names()
    assert "observer bug" in caplog.text


async def test_plain_callable_observer(clock: FakeClock) -> None:
    """A plain callable works as an observer."""
    seen: list[str] = []
    await Scheduler(clock=clock, observer=lambda e: seen.append(e.name)).run(
        Job("c", Interval(5), recorder_task([]), max_runs=1)
    )
    assert seen[0] == "StateLoaded"
    assert seen[-1] == "SchedulerStopped"


async def test_log_observer_writes_key_value_lines(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    """LogObserver logs one key=value line per event; failed runs are warnings."""

    async def fail(ctx: TaskContext) -> None:
        raise ValueError("bad input")

    with caplog.at_level(logging.INFO, logger="scheduler"):
        await Scheduler(clock=clock, observer=LogObserver()).run(Job("log", Interval(5), fail, max_runs=1))
    lines = [r for r in caplog.records if r.name == "scheduler" and r.getMessage().startswith("event=")]
    assert lines[0].getMessage().startswith("event=StateLoaded job_id=log source=new")
    completed = [r for r in lines if "event=RunCompleted" in r.getMessage()]
    assert completed[0].levelno == logging.WARNING
    assert 'error="ValueError: bad input"' in completed[0].getMessage()


def test_log_observer_rate_limits_identical_warnings(caplog: pytest.LogCaptureFixture) -> None:
    """Identical warnings within a minute are logged once, then summarised."""
    observer = LogObserver()
    with caplog.at_level(logging.INFO, logger="scheduler"):
        for i in range(5):
            observer.on_event(StoreDegraded(job_id="j", at=T0 + i * S, operation="save", error="down"))  # type: ignore[arg-type]
        observer.on_event(StoreDegraded(job_id="j", at=T0 + 120 * S, operation="save", error="down"))  # type: ignore[arg-type]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "repeated 4 more times" in warnings[1]


def test_event_fields_are_json_ready() -> None:
    """SchedulerEvent.fields() renders instants as RFC 3339 and enums as values."""
    event = RunCompleted(job_id="f", at=T0, scheduled_at=T0, catch_up=False, trigger_count=1,
                         status=RunStatus.FAILED, error="x", attempts=1)  # fmt: skip
    fields = event.fields()
    assert fields["scheduled_at"] == "2025-01-01T00:00:00.000000Z"
    assert fields["status"] == "failed"
