"""An outcome staged for the next save is saved once, with its ledger entry once, whatever that save does."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from scheduler import (
    InMemoryStateStore,
    Interval,
    Job,
    JobState,
    LedgerFate,
    MissedRunPolicy,
    OverlapPolicy,
    Scheduler,
    SchedulerConfig,
    StoreError,
    StoreErrorKind,
    StoreOperation,
    TaskContext,
)
from scheduler.events import RunCompleted, RunStarted, TriggerEmitted
from scheduler.testing import FakeClock, RecordingObserver

from .conftest import T0
from .helpers import sleeper
from .test_ledger import assert_consistent


class LandsThenTimesOut(InMemoryStateStore):
    """The save consuming occurrence ``at`` lands, but its answer never comes back (a timeout)."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def _maybe_fail(self, state: JobState, saved: bool) -> bool:
        if saved and state.trigger_count == self.at:
            self.at = -1
            raise StoreError(StoreErrorKind.CONNECTION, StoreOperation.SAVE, state.job_id, "no answer within 1s")
        return saved

    async def save_if(self, state: JobState, expected_revision: int) -> bool:
        return self._maybe_fail(state, await super().save_if(state, expected_revision))

    async def save_with_ledger(self, state: JobState, entries: Any, **options: Any) -> bool:
        return self._maybe_fail(state, await super().save_with_ledger(state, entries, **options))


async def test_an_outcome_whose_carrying_save_landed_unanswered_is_not_saved_twice() -> None:
    clock, store = FakeClock(), LandsThenTimesOut(at=2)

    async def task(ctx: TaskContext) -> None:
        clock.advance(timedelta(seconds=2))  # the next occurrence is due at once: its save carries this outcome

    job = Job("busy", Interval(1), task, max_runs=4, missed_run_policy=MissedRunPolicy.REPLAY_ALL)
    with pytest.raises(StoreError):
        await Scheduler(SchedulerConfig(), store=store, clock=clock).run(job)

    stored = store.snapshot()["busy"]
    entries = await store.history("busy")
    assert stored.runs_started == 1
    assert [e.fate for e in entries] == [LedgerFate.SUCCESS]  # run 1, once


class YieldingStore(InMemoryStateStore):
    """Each save suspends once, as a networked or threaded store's does."""

    async def save_if(self, state: JobState, expected_revision: int) -> bool:
        await asyncio.sleep(0)
        return await super().save_if(state, expected_revision)

    async def save_with_ledger(self, state: JobState, entries: Any, **options: Any) -> bool:
        await asyncio.sleep(0)
        return await super().save_with_ledger(state, entries, **options)


async def test_a_run_is_reported_complete_before_the_queued_run_starts() -> None:
    clock, store, observer = FakeClock(), YieldingStore(), RecordingObserver()
    job = Job("q", Interval(10), sleeper(clock, 15), max_runs=2, overlap_policy=OverlapPolicy.QUEUE_ONE)
    await Scheduler(SchedulerConfig(), store=store, clock=clock, observer=observer).run(job)

    order = [
        (type(e).__name__, e.trigger_count)
        for e in observer.events
        if isinstance(e, (TriggerEmitted, RunStarted, RunCompleted))
    ]
    assert order == [
        ("TriggerEmitted", 1),
        ("RunStarted", 1),
        ("TriggerEmitted", 2),  # queued behind run 1
        ("RunCompleted", 1),
        ("RunStarted", 2),
        ("RunCompleted", 2),
    ]


class LandsThenHangs(InMemoryStateStore):
    """The save consuming occurrence ``at`` lands, then its answer never comes."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at
        self.hanging = asyncio.Event()

    async def _maybe_hang(self, state: JobState, saved: bool) -> bool:
        if saved and state.trigger_count == self.at:
            self.at = -1
            self.hanging.set()
            await asyncio.Event().wait()
        return saved

    async def save_if(self, state: JobState, expected_revision: int) -> bool:
        return await self._maybe_hang(state, await super().save_if(state, expected_revision))

    async def save_with_ledger(self, state: JobState, entries: Any, **options: Any) -> bool:
        return await self._maybe_hang(state, await super().save_with_ledger(state, entries, **options))


async def test_an_outcome_whose_carrying_save_was_cancelled_after_landing_is_not_saved_twice() -> None:
    clock, store = FakeClock(), LandsThenHangs(at=2)

    async def task(ctx: TaskContext) -> None:
        clock.advance(timedelta(seconds=2))

    job = Job("busy", Interval(1), task, max_runs=4, missed_run_policy=MissedRunPolicy.REPLAY_ALL)
    running = asyncio.create_task(Scheduler(SchedulerConfig(), store=store, clock=clock).run(job))
    async with asyncio.timeout(10):  # a bound on a failure, not a wait for a state
        await store.hanging.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running

    stored = store.snapshot()["busy"]
    assert stored.runs_started == 1
    assert [e.fate for e in await store.history("busy")] == [LedgerFate.SUCCESS]  # run 1, once


class RefusesOnce(InMemoryStateStore):
    """The first save consuming occurrence ``at`` or later fails before anything is written (a
    refused call)."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def _maybe_refuse(self, state: JobState) -> None:
        if 0 < self.at <= state.trigger_count:
            self.at = -1
            raise StoreError(StoreErrorKind.CONNECTION, StoreOperation.SAVE, state.job_id, "connection refused")

    async def save_if(self, state: JobState, expected_revision: int) -> bool:
        self._maybe_refuse(state)
        return await super().save_if(state, expected_revision)

    async def save_with_ledger(self, state: JobState, entries: Any, **options: Any) -> bool:
        self._maybe_refuse(state)
        return await super().save_with_ledger(state, entries, **options)


async def test_an_outcome_given_up_with_its_failed_save_is_not_stored_by_a_later_save() -> None:
    """Run 1 is still going when run 2 ends; the save that would carry run 2's outcome fails
    unwritten; the scheduler stops and saves cancelled run 1 on its way out. That save must not
    count run 2 without its ledger entry: run 2 stays open (interrupted on the next start)."""
    clock, store = FakeClock(), RefusesOnce(at=3)

    async def task(ctx: TaskContext) -> None:
        if ctx.run.trigger_count == 1:
            await clock.sleep_until(clock.now() + timedelta(hours=1))
        else:
            clock.advance(timedelta(seconds=2))  # occurrence 3 is due at once: its save carries run 2

    job = Job("parallel", Interval(1), task, max_runs=10, overlap_policy=OverlapPolicy.ALLOW_PARALLEL)
    with pytest.raises(StoreError):
        await Scheduler(SchedulerConfig(), store=store, clock=clock).run(job)

    stored = store.snapshot()["parallel"]
    assert stored.runs_started == 0  # nothing was saved after the failed save
    assert [run.occurrence for run in stored.open_runs] == [T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)]

    # The next start records both as interrupted: each occurrence in the ledger exactly once.
    restarted = Job("parallel", Interval(1), task, max_runs=2, overlap_policy=OverlapPolicy.ALLOW_PARALLEL)
    report = await Scheduler(SchedulerConfig(), store=store, clock=clock).run(restarted)
    entries = await store.history("parallel")
    assert [e.fate for e in entries] == [LedgerFate.INTERRUPTED, LedgerFate.INTERRUPTED]
    assert_consistent(entries, report.state)
