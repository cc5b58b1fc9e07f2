"""Control through SchedulerHandle: shutdown, cancel, pause/resume, trigger_now, outer cancellation."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest

from scheduler import (
    Interval,
    Job,
    OverlapPolicy,
    RetryPolicy,
    RunSkipReason,
    RunStatus,
    Scheduler,
    SchedulerStopReason,
    TaskContext,
    TriggerSource,
)
from scheduler.events import RunSkipped, SchedulerPaused, SchedulerResumed, SchedulerStopped, TriggerEmitted
from scheduler.testing import FakeClock, RecordingObserver

from .conftest import T0
from .helpers import recorder_task, sleeper

S = timedelta(seconds=1)


async def _run_until(scheduler: Scheduler, job: Job, condition: asyncio.Event) -> asyncio.Task:  # type: ignore[type-arg]
    task = asyncio.create_task(scheduler.run(job))
    await asyncio.wait_for(condition.wait(), 10)
    return task


async def test_shutdown_while_waiting(clock: FakeClock) -> None:
    """shutdown() during the wait between occurrences stops at once with SHUTDOWN."""
    clock = FakeClock(T0, auto_advance=False)
    scheduler = Scheduler(clock=clock)
    task = asyncio.create_task(scheduler.run(Job("w", Interval(3600), recorder_task([]))))
    await clock.settle()
    scheduler.handle().shutdown()
    report = await asyncio.wait_for(task, 5)
    assert report.stop_reason is SchedulerStopReason.SHUTDOWN
    assert report.history == ()
    assert report.state.trigger_count == 0


async def test_shutdown_lets_the_active_run_finish(clock: FakeClock) -> None:
    """shutdown() during a run lets it finish successfully and consumes nothing further."""
    started = asyncio.Event()
    scheduler = Scheduler(clock=clock)

    async def work(ctx: TaskContext) -> None:
        started.set()
        await clock.sleep_until(clock.now() + 30 * S)

    task = await _run_until(scheduler, Job("s", Interval(10), work), started)
    scheduler.handle().shutdown()
    report = await asyncio.wait_for(task, 5)
    assert report.stop_reason is SchedulerStopReason.SHUTDOWN
    assert [r.status for r in report.history] == [RunStatus.SUCCESS]
    assert report.state.trigger_count == 1


async def test_shutdown_grace_cancels_a_long_run(clock: FakeClock) -> None:
    """After the grace period, shutdown() cancels what is still running."""
    started = asyncio.Event()
    scheduler = Scheduler(clock=clock)

    async def work(ctx: TaskContext) -> None:
        started.set()
        await clock.sleep_until(clock.now() + 3600 * S)

    task = await _run_until(scheduler, Job("g", Interval(10), work), started)
    scheduler.handle().shutdown(grace=timedelta(seconds=5))
    report = await asyncio.wait_for(task, 5)
    assert report.stop_reason is SchedulerStopReason.SHUTDOWN
    assert [r.status for r in report.history] == [RunStatus.CANCELLED]
    assert report.history[0].finished_at - report.history[0].started_at == 5 * S


async def test_shutdown_drops_the_queued_trigger() -> None:
    """A queued trigger is dropped at shutdown with reason shutdown."""
    clock = FakeClock(T0, auto_advance=False)
    scheduler = Scheduler(clock=clock)
    job = Job("q", Interval(10), sleeper(clock, 15), overlap_policy=OverlapPolicy.QUEUE_ONE)
    task = asyncio.create_task(scheduler.run(job))
    for _ in range(2):  # 10 s starts a run; 20 s arrives while it runs and is queued
        await clock.settle()
        clock.advance(10 * S)
    await clock.settle()
    scheduler.handle().shutdown()
    await clock.settle()
    clock.advance(10 * S)  # the active run finishes at 25 s
    report = await asyncio.wait_for(task, 5)
    assert report.skipped == {RunSkipReason.SHUTDOWN: 1}
    assert [r.status for r in report.history] == [RunStatus.SUCCESS]


async def _failing_with_long_backoff(clock: FakeClock, scheduler: Scheduler) -> asyncio.Task:  # type: ignore[type-arg]
    """Start a job whose first attempt fails and whose retry waits an hour; return once it waits."""
    failed = asyncio.Event()

    async def work(ctx: TaskContext) -> None:
        failed.set()
        raise ValueError("nope")

    retry = RetryPolicy(max_attempts=5, initial_backoff=timedelta(hours=1), max_backoff=timedelta(hours=1), jitter=0)
    clock.auto_advance = False
    task = asyncio.create_task(scheduler.run(Job("r", Interval(10), work, retry=retry)))
    await clock.settle()
    clock.advance(10 * S)
    await asyncio.wait_for(failed.wait(), 5)
    await clock.settle()
    return task


async def test_shutdown_interrupts_retry_backoff(clock: FakeClock) -> None:
    """A run waiting between retry attempts ends at shutdown with its last failure."""
    scheduler = Scheduler(clock=clock)
    task = await _failing_with_long_backoff(clock, scheduler)
    scheduler.handle().shutdown()
    report = await asyncio.wait_for(task, 5)
    assert [(r.status, r.attempts) for r in report.history] == [(RunStatus.FAILED, 1)]


async def test_cancel_interrupts_the_run(clock: FakeClock, recorder: RecordingObserver) -> None:
    """cancel() cancels the active run (recorded CANCELLED) and stops with CANCELLED."""
    started = asyncio.Event()
    scheduler = Scheduler(clock=clock, observer=recorder)

    async def work(ctx: TaskContext) -> None:
        started.set()
        await asyncio.sleep(3600)

    task = await _run_until(scheduler, Job("c", Interval(10), work), started)
    scheduler.handle().cancel()
    report = await asyncio.wait_for(task, 5)
    assert report.stop_reason is SchedulerStopReason.CANCELLED
    assert [r.status for r in report.history] == [RunStatus.CANCELLED]
    assert report.state.last_status is RunStatus.CANCELLED
    assert recorder.of_type(SchedulerStopped)[-1].reason is SchedulerStopReason.CANCELLED


async def test_cancel_during_retry_wait(clock: FakeClock) -> None:
    """cancel() during a retry backoff ends the run as CANCELLED."""
    scheduler = Scheduler(clock=clock)
    task = await _failing_with_long_backoff(clock, scheduler)
    scheduler.handle().cancel()
    report = await asyncio.wait_for(task, 5)
    assert [r.status for r in report.history] == [RunStatus.CANCELLED]


async def test_cancel_while_waiting(clock: FakeClock) -> None:
    """cancel() between occurrences stops at once with CANCELLED."""
    scheduler = Scheduler(clock=FakeClock(T0, auto_advance=False))
    task = asyncio.create_task(scheduler.run(Job("cw", Interval(60), recorder_task([]))))
    await clock.settle()
    scheduler.handle().cancel()
    assert (await asyncio.wait_for(task, 5)).stop_reason is SchedulerStopReason.CANCELLED


async def test_cancelling_the_awaiting_task_cleans_up_and_reraises(
    clock: FakeClock, recorder: RecordingObserver
) -> None:
    """Cancelling the task awaiting run() cancels active runs, reports CANCELLED, re-raises."""
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def work(ctx: TaskContext) -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = asyncio.create_task(Scheduler(clock=clock, observer=recorder).run(Job("o", Interval(10), work)))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled.is_set()
    assert recorder.of_type(SchedulerStopped)[-1].reason is SchedulerStopReason.CANCELLED


async def test_pause_consumes_as_paused_and_resume_redecides(clock: FakeClock, recorder: RecordingObserver) -> None:
    """While paused due occurrences are consumed as paused; resume() starts deciding again."""
    clock.auto_advance = False
    log: list[TaskContext] = []
    scheduler = Scheduler(clock=clock, observer=recorder)
    handle = scheduler.handle()
    task = asyncio.create_task(scheduler.run(Job("p", Interval(10), recorder_task(log), max_runs=5)))
    await clock.settle()
    handle.pause()
    await clock.settle()
    clock.advance(25 * S)  # occurrences at 10 and 20 fall due while paused
    await clock.settle()
    handle.resume()
    await clock.settle()
    clock.advance(5 * S)  # 30 runs
    await clock.settle()
    handle.shutdown()
    report = await asyncio.wait_for(task, 5)
    assert [c.run.scheduled_at for c in log] == [T0 + 30 * S]
    assert report.skipped == {RunSkipReason.PAUSED: 2}
    assert len(recorder.of_type(SchedulerPaused)) == 1
    assert len(recorder.of_type(SchedulerResumed)) == 1


async def test_trigger_now_runs_once_manually(clock: FakeClock) -> None:
    """trigger_now() runs once now with source MANUAL, counts toward max_runs, keeps the schedule."""
    clock.auto_advance = False
    log: list[TaskContext] = []
    scheduler = Scheduler(clock=clock)
    task = asyncio.create_task(scheduler.run(Job("t", Interval(60), recorder_task(log), max_runs=2)))
    await clock.settle()
    clock.advance(5 * S)
    scheduler.handle().trigger_now()
    await clock.settle()
    assert [(c.run.source, c.run.scheduled_at, c.run.trigger_count) for c in log] == [
        (TriggerSource.MANUAL, T0 + 5 * S, 1)
    ]
    clock.advance(55 * S)
    report = await asyncio.wait_for(task, 5)
    assert [c.run.scheduled_at for c in log] == [T0 + 5 * S, T0 + 60 * S]
    assert report.state.trigger_count == 2
    assert report.stop_reason is SchedulerStopReason.TERMINAL


async def test_trigger_now_while_paused_is_held(clock: FakeClock) -> None:
    """A manual trigger while paused runs only after resume()."""
    clock.auto_advance = False
    log: list[TaskContext] = []
    scheduler = Scheduler(clock=clock)
    handle = scheduler.handle()
    task = asyncio.create_task(scheduler.run(Job("h", Interval(3600), recorder_task(log))))
    handle.pause()
    handle.trigger_now()
    await clock.settle()
    assert log == []
    handle.resume()
    await clock.settle()
    assert [c.run.source for c in log] == [TriggerSource.MANUAL]
    handle.shutdown()
    await asyncio.wait_for(task, 5)


async def test_manual_trigger_skipped_by_overlap_still_counts(clock: FakeClock) -> None:
    """A manual trigger skipped for overlap still counts in trigger_count."""
    started = asyncio.Event()
    scheduler = Scheduler(clock=clock)

    async def work(ctx: TaskContext) -> None:
        started.set()
        await asyncio.sleep(0.05)

    task = await _run_until(scheduler, Job("m", Interval(10), work, max_runs=2), started)
    scheduler.handle().trigger_now()
    report = await asyncio.wait_for(task, 5)
    assert report.skipped == {RunSkipReason.OVERLAP: 1}
    assert report.state.trigger_count == 2


async def test_command_before_run_applies_to_next_run(clock: FakeClock) -> None:
    """A shutdown() given before run() starts stops that run at once."""
    scheduler = Scheduler(clock=clock)
    scheduler.handle().shutdown()
    report = await scheduler.run(Job("b", Interval(10), recorder_task([])))
    assert report.stop_reason is SchedulerStopReason.SHUTDOWN


async def test_finished_run_leaves_no_command_behind(clock: FakeClock) -> None:
    """A command that arrives as a run finishes does not leak into the next run."""
    scheduler = Scheduler(clock=clock)
    first = await scheduler.run(Job("one", Interval(10), recorder_task([]), max_runs=1))
    assert first.stop_reason is SchedulerStopReason.TERMINAL
    second = await scheduler.run(Job("two", Interval(10), recorder_task([]), max_runs=1))
    assert second.stop_reason is SchedulerStopReason.TERMINAL


async def test_handle_works_from_another_thread(clock: FakeClock) -> None:
    """shutdown() called from a foreign thread stops the run."""
    scheduler = Scheduler(clock=FakeClock(T0, auto_advance=False))
    task = asyncio.create_task(scheduler.run(Job("x", Interval(3600), recorder_task([]))))
    await clock.settle()
    thread = threading.Thread(target=scheduler.handle().shutdown)
    thread.start()
    thread.join()
    assert (await asyncio.wait_for(task, 5)).stop_reason is SchedulerStopReason.SHUTDOWN


async def test_replace_cancels_the_active_run(clock: FakeClock) -> None:
    """REPLACE cancels the active run (CANCELLED) and starts the new one."""
    job = Job("rep", Interval(10), sleeper(clock, 15), max_runs=2, overlap_policy=OverlapPolicy.REPLACE)
    report = await Scheduler(clock=clock).run(job)
    assert [(r.scheduled_at - T0, r.status) for r in report.history] == [
        (10 * S, RunStatus.CANCELLED),
        (20 * S, RunStatus.SUCCESS),
    ]


async def test_cancel_does_not_start_the_queued_trigger() -> None:
    """cancel() with a queued trigger drops it (shutdown) instead of starting it."""
    clock = FakeClock(T0, auto_advance=False)
    log: list[TaskContext] = []
    scheduler = Scheduler(clock=clock)

    async def work(ctx: TaskContext) -> None:
        log.append(ctx)
        await asyncio.sleep(3600)

    task = asyncio.create_task(scheduler.run(Job("cq", Interval(10), work, overlap_policy=OverlapPolicy.QUEUE_ONE)))
    for _ in range(2):
        await clock.settle()
        clock.advance(10 * S)
    await clock.settle()
    scheduler.handle().cancel()
    report = await asyncio.wait_for(task, 5)
    assert len(log) == 1
    assert report.skipped == {RunSkipReason.SHUTDOWN: 1}
    assert [r.status for r in report.history] == [RunStatus.CANCELLED]


async def test_queued_trigger_held_while_paused_starts_after_resume() -> None:
    """A trigger queued before pause() is held while paused and started by resume()."""
    clock = FakeClock(T0, auto_advance=False)
    sources: list[TriggerSource] = []
    release = asyncio.Event()

    async def work(ctx: TaskContext) -> None:
        sources.append(ctx.run.source)
        if len(sources) == 1:
            await release.wait()

    recorder = RecordingObserver()
    scheduler = Scheduler(clock=clock, observer=recorder)
    handle = scheduler.handle()
    job = Job("qp", Interval(3600), work, overlap_policy=OverlapPolicy.QUEUE_ONE)
    task = asyncio.create_task(scheduler.run(job))
    await clock.settle()
    clock.advance(3600 * S)
    await clock.settle()
    handle.trigger_now()  # arrives while the first run is active: queued behind it
    await clock.settle()
    assert [e.source for e in recorder.of_type(TriggerEmitted)] == [TriggerSource.SCHEDULED, TriggerSource.MANUAL]
    assert recorder.of_type(RunSkipped) == []  # kept, not skipped
    handle.pause()
    await clock.settle()
    release.set()
    await clock.settle()
    assert sources == [TriggerSource.SCHEDULED]  # paused: the queued trigger waits
    handle.resume()
    await clock.settle()
    assert sources == [TriggerSource.SCHEDULED, TriggerSource.MANUAL]
    handle.shutdown()
    await asyncio.wait_for(task, 5)


async def test_trigger_now_respects_max_runs(clock: FakeClock) -> None:
    """A manual trigger counts toward max_runs; reaching it makes the job terminal, beyond it nothing runs."""
    log: list[TaskContext] = []
    scheduler = Scheduler(clock=clock)
    for _ in range(3):
        scheduler.handle().trigger_now()
    report = await scheduler.run(Job("mx", Interval(timedelta(days=30)), recorder_task(log), max_runs=1))
    assert [c.run.source for c in log] == [TriggerSource.MANUAL]
    assert (report.state.trigger_count, report.state.next_run_at) == (1, None)
    assert report.stop_reason is SchedulerStopReason.TERMINAL
    assert clock.now() < T0 + timedelta(days=1)


async def test_replace_of_a_run_that_has_not_started_yet(clock: FakeClock) -> None:
    """Two manual triggers in a row under REPLACE: the first is cancelled (recorded), the second runs."""
    log: list[TaskContext] = []
    scheduler = Scheduler(clock=clock)
    scheduler.handle().trigger_now()
    scheduler.handle().trigger_now()
    job = Job("rr", Interval(timedelta(days=30)), recorder_task(log), max_runs=2, overlap_policy=OverlapPolicy.REPLACE)
    report = await scheduler.run(job)
    assert [r.status for r in report.history] == [RunStatus.CANCELLED, RunStatus.SUCCESS]
    assert len(log) == 1
