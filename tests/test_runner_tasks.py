"""Task kinds, outcomes, timeouts and retries."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta

import pytest

from scheduler import (
    Interval,
    Job,
    MissedRunPolicy,
    RetryPolicy,
    RunStatus,
    Scheduler,
    SchedulerConfig,
    SchedulerStopReason,
    Task,
    TaskContext,
)
from scheduler.events import RunRetrying, RunStarted
from scheduler.testing import FakeClock, RecordingObserver

from .conftest import T0

S = timedelta(seconds=1)


async def test_async_task_receives_context(clock: FakeClock) -> None:
    """An async task gets a TaskContext with the run facts and the job's deps object."""
    deps = object()
    seen: list[TaskContext] = []

    async def task(ctx: TaskContext) -> None:
        seen.append(ctx)

    await Scheduler(SchedulerConfig(timezone="Europe/Paris"), clock=clock).run(
        Job("a", Interval(5), task, max_runs=2, deps=deps)
    )
    assert [c.deps for c in seen] == [deps, deps]
    run = seen[0].run
    assert (run.job_id, run.scheduled_at, run.attempt, run.trigger_count, run.catch_up) == (
        "a",
        T0 + 5 * S,
        1,
        1,
        False,
    )
    assert run.timezone.key == "Europe/Paris"
    assert run.source.value == "scheduled"
    assert run.fencing_token is None
    assert run.resumed is False


async def test_sync_task_runs_on_the_loop(clock: FakeClock) -> None:
    """Task.from_sync runs inline on the event loop thread."""
    threads: list[int] = []
    await Scheduler(clock=clock).run(
        Job("s", Interval(5), Task.from_sync(lambda ctx: threads.append(threading.get_ident())), max_runs=2)
    )
    assert threads == [threading.get_ident()] * 2


async def test_blocking_task_runs_in_a_thread() -> None:
    """Task.from_blocking (and a bare plain function) runs in a worker thread."""
    threads: list[int] = []

    def work(ctx: TaskContext) -> None:
        time.sleep(0.01)
        threads.append(threading.get_ident())

    # Every occurrence runs, one after the other, however slowly a loaded machine starts them.
    job = Job("b", Interval(0.02), work, max_runs=2, missed_run_policy=MissedRunPolicy.REPLAY_ALL)
    report = await Scheduler().run(job)
    assert len(threads) == 2
    assert threading.get_ident() not in threads
    assert [r.status for r in report.history] == [RunStatus.SUCCESS] * 2


def test_bare_callables_are_classified() -> None:
    """A coroutine function becomes an async task; another callable a blocking one."""

    async def coro(ctx: TaskContext) -> None:
        return None

    assert Job("x", Interval(1), coro).task.kind.value == "async"
    assert Job("x", Interval(1), lambda ctx: None).task.kind.value == "blocking"


async def test_failure_records_error_and_continues(clock: FakeClock) -> None:
    """An exception fails the run (not the scheduler): status FAILED, error 'Type: message'."""
    calls = 0

    async def task(ctx: TaskContext) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("boom")

    report = await Scheduler(clock=clock).run(Job("f", Interval(5), task, max_runs=2))
    assert [(r.status, r.error) for r in report.history] == [
        (RunStatus.FAILED, "ValueError: boom"),
        (RunStatus.SUCCESS, None),
    ]
    assert report.state.last_error is None
    assert report.state.consecutive_failures == 0
    assert report.state.last_success_at is not None


async def test_consecutive_failures_are_counted(clock: FakeClock) -> None:
    """last_error and consecutive_failures reflect the latest failures."""

    async def task(ctx: TaskContext) -> None:
        raise RuntimeError(f"run {ctx.run.trigger_count}")

    report = await Scheduler(clock=clock).run(Job("f", Interval(5), task, max_runs=3))
    assert report.state.consecutive_failures == 3
    assert report.state.last_error == "RuntimeError: run 3"
    assert report.state.last_status is RunStatus.FAILED
    assert report.state.last_success_at is None


async def test_timeout_marks_timed_out() -> None:
    """A run exceeding its timeout is TIMED_OUT (measured in real elapsed time)."""

    async def slow(ctx: TaskContext) -> None:
        await asyncio.sleep(5)

    report = await Scheduler().run(Job("t", Interval(0.01), slow, max_runs=1, timeout=0.05))
    assert report.history[0].status is RunStatus.TIMED_OUT
    assert "timed out" in (report.history[0].error or "")


async def test_task_raising_timeout_error_is_a_failure() -> None:
    """A TimeoutError raised by the task itself (not our timeout) is FAILED."""

    async def task(ctx: TaskContext) -> None:
        raise TimeoutError("upstream")

    report = await Scheduler().run(Job("t", Interval(0.01), task, max_runs=1, timeout=5))
    assert report.history[0].status is RunStatus.FAILED


async def test_retries_with_exponential_backoff(clock: FakeClock, recorder: RecordingObserver) -> None:
    """Failed attempts of the same occurrence are retried after 1 s, 2 s, then succeed."""
    attempts: list[tuple[int, object]] = []

    async def task(ctx: TaskContext) -> None:
        attempts.append((ctx.run.attempt, clock.now() - T0))
        if ctx.run.attempt < 3:
            raise ConnectionError("flaky")

    retry = RetryPolicy(max_attempts=3, initial_backoff=S, multiplier=2.0, jitter=0.0)
    report = await Scheduler(clock=clock, observer=recorder).run(Job("r", Interval(60), task, max_runs=1, retry=retry))
    assert attempts == [(1, 60 * S), (2, 61 * S), (3, 63 * S)]
    assert [(e.attempt, e.delay) for e in recorder.of_type(RunRetrying)] == [(2, S), (3, 2 * S)]
    assert [e.attempt for e in recorder.of_type(RunStarted)] == [1, 2, 3]
    record = report.history[0]
    assert (record.status, record.attempts, record.scheduled_at) == (RunStatus.SUCCESS, 3, T0 + 60 * S)


async def test_retries_exhausted_keep_last_error(clock: FakeClock) -> None:
    """When every attempt fails the run is FAILED with the last error and the attempt count."""

    async def task(ctx: TaskContext) -> None:
        raise ValueError(f"attempt {ctx.run.attempt}")

    retry = RetryPolicy(max_attempts=2, initial_backoff=S, jitter=0.0)
    report = await Scheduler(clock=clock).run(Job("r", Interval(60), task, max_runs=1, retry=retry))
    assert (report.history[0].attempts, report.history[0].error) == (2, "ValueError: attempt 2")


def test_backoff_is_capped_and_jittered() -> None:
    """Backoff grows by the multiplier, is capped at max_backoff, and jitter stays within bounds."""
    policy = RetryPolicy(initial_backoff=S, max_backoff=5 * S, multiplier=3.0, jitter=0.0)
    assert [policy.backoff(n) for n in (1, 2, 3)] == [S, 3 * S, 5 * S]
    jittered = RetryPolicy(initial_backoff=10 * S, jitter=0.1)
    assert all(9 * S <= jittered.backoff(1) <= 11 * S for _ in range(200))


async def test_keyboard_interrupt_is_not_swallowed(clock: FakeClock) -> None:
    """A BaseException that is not an Exception stops the scheduler and propagates."""

    async def task(ctx: TaskContext) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await Scheduler(clock=clock).run(Job("k", Interval(5), task, max_runs=3))


def test_run_sync_wraps_run() -> None:
    """run_sync runs the job to completion from synchronous code."""
    # Every occurrence runs even if a loaded machine stalls past the next one (real time here).
    job = Job("sync", Interval(0.01), lambda ctx: None, max_runs=2, missed_run_policy=MissedRunPolicy.REPLAY_ALL)
    report = Scheduler().run_sync(job)
    assert len(report.history) == 2
    assert report.stop_reason is SchedulerStopReason.TERMINAL


async def test_concurrent_run_is_rejected(clock: FakeClock) -> None:
    """A second concurrent run() on one Scheduler raises RuntimeError; sequential reuse works."""
    scheduler = Scheduler(clock=clock)

    async def task(ctx: TaskContext) -> None:
        with pytest.raises(RuntimeError):
            await scheduler.run(Job("other", Interval(1), task, max_runs=1))

    await scheduler.run(Job("one", Interval(1), task, max_runs=1))
    again = await scheduler.run(Job("two", Interval(1), lambda ctx: None, max_runs=1))
    assert len(again.history) == 1


async def test_sub_millisecond_interval_does_not_starve_the_loop() -> None:
    """At a 1 µs interval with the default policies the loop keeps yielding: runs happen and it stops."""
    ran = 0

    async def task(ctx: TaskContext) -> None:
        nonlocal ran
        ran += 1

    report = await asyncio.wait_for(
        Scheduler().run(Job("fast", Interval(timedelta(microseconds=1)), task, max_runs=2000)), 20
    )
    assert report.state.trigger_count == 2000
    assert ran >= 1
    assert ran + sum(report.skipped.values()) == 2000  # every consumed occurrence ran or was skipped
