"""The run ledger, driven through Scheduler.run on a FakeClock: every consumed occurrence once."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import socket
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest

from scheduler import (
    InMemoryStateStore,
    Interval,
    Job,
    JobState,
    JobTimeWindow,
    LedgerEntry,
    LedgerFate,
    MissedRunPolicy,
    OverlapPolicy,
    RunLedger,
    RunSkipReason,
    Scheduler,
    SchedulerConfig,
    SqliteStateStore,
    StoreError,
    StoreErrorKind,
    StoreOperation,
    TaskContext,
)
from scheduler._ledger import LedgerSavingStore
from scheduler._state import OpenRun
from scheduler.events import StoreDegraded
from scheduler.testing import FakeClock, RecordingObserver

from .conftest import T0
from .helpers import poke

S = timedelta(seconds=1)
SKIP_FATES = (LedgerFate.SKIPPED, LedgerFate.MISSED)


async def everything(ledger: RunLedger, job_id: str) -> list[LedgerEntry]:
    return await ledger.history(job_id, limit=1_000_000)


def assert_consistent(entries: Sequence[LedgerEntry], state: JobState) -> None:
    """The invariant: each consumed occurrence exactly once, counts agree, skips have reasons."""
    assert sum(e.count for e in entries) == state.trigger_count
    spans = sorted((e.scheduled_at, e.last_scheduled_at, e.source.value) for e in entries)
    scheduled = [span for span in spans if span[2] == "scheduled"]
    for previous, current in itertools.pairwise(scheduled):
        assert current[0] > previous[1], f"occurrence recorded twice: {previous} and {current}"
    for entry in entries:
        if entry.fate in SKIP_FATES:
            assert entry.reason is not None
        else:
            assert entry.reason is None
    runs = [e for e in entries if e.fate not in (*SKIP_FATES, LedgerFate.INTERRUPTED)]
    assert len(runs) == state.runs_started
    by_reason: dict[str, int] = {}
    for entry in entries:
        if entry.reason is not None:
            by_reason[entry.reason.value] = by_reason.get(entry.reason.value, 0) + entry.count
    assert by_reason == {k: v for k, v in state.skips.items() if v}
    assert sum(1 for e in entries if e.fate is LedgerFate.INTERRUPTED) == state.interrupted
    assert state.open_runs == ()


async def run_until(scheduler: Scheduler, job: Job, clock: FakeClock, until: datetime, grace: float | None) -> Any:
    async def stop() -> None:
        await clock.sleep_until(until)
        scheduler.handle().shutdown(grace)

    stopper = asyncio.create_task(stop())
    try:
        return await scheduler.run(job)
    finally:
        stopper.cancel()


async def test_each_fate_is_recorded_with_its_details(clock: FakeClock) -> None:
    """Window skips, a failure, an overlap and a downtime range each leave the right entry."""
    store = InMemoryStateStore()
    calls = 0

    async def task(ctx: TaskContext) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ValueError("boom")
        if calls == 3:
            await clock.sleep_until(clock.now() + 15 * S)

    window = JobTimeWindow(segments=[("00:00:00", "00:01:00")])
    job = Job("fates", Interval(10), task, time_window=window)
    await run_until(Scheduler(store=store, clock=clock), job, clock, T0 + 75 * S, None)
    clock.advance(timedelta(minutes=5))  # downtime: a range of missed occurrences
    report = await run_until(Scheduler(store=store, clock=clock), job, clock, clock.now() + 5 * S, None)
    entries = await everything(store, "fates")
    fates = {e.fate for e in entries}
    assert {LedgerFate.SUCCESS, LedgerFate.FAILED, LedgerFate.SKIPPED, LedgerFate.MISSED} <= fates
    assert any(e.reason is RunSkipReason.OVERLAP for e in entries)
    failed = next(e for e in entries if e.fate is LedgerFate.FAILED)
    assert failed.error == "ValueError: boom"
    assert failed.attempts == 1
    assert failed.started_at is not None
    assert failed.finished_at is not None
    assert failed.instance == f"{socket.gethostname()}:{os.getpid()}"
    window_skips = [e for e in entries if e.reason is RunSkipReason.OUTSIDE_TIME_WINDOW]
    assert window_skips
    assert all(e.fate is LedgerFate.SKIPPED for e in window_skips)
    ranges = [e for e in entries if e.fate is LedgerFate.MISSED]
    assert len(ranges) == 1
    assert ranges[0].count > 1
    assert ranges[0].reason is RunSkipReason.COALESCED
    assert_consistent(entries, report.state)


async def test_history_filters_work_on_a_real_run(clock: FakeClock) -> None:
    store = InMemoryStateStore()
    job = Job("filters", Interval(10), lambda ctx: None, max_runs=10)
    await Scheduler(store=store, clock=clock).run(job)
    assert len(await store.history("filters")) == 10
    middle = await store.history("filters", before=T0 + 50 * S, after=T0 + 30 * S)
    assert [e.scheduled_at for e in middle] == [T0 + 50 * S, T0 + 40 * S, T0 + 30 * S]
    assert await store.history("filters", fates=[LedgerFate.FAILED]) == []


async def test_ledger_limit_zero_writes_nothing(clock: FakeClock) -> None:
    store = InMemoryStateStore()
    job = Job("off", Interval(10), lambda ctx: None, max_runs=5)
    report = await Scheduler(SchedulerConfig(ledger_limit=0), store=store, clock=clock).run(job)
    assert await store.history("off") == []
    assert report.state.open_runs == ()
    assert report.state.runs_started == 5


async def test_retention_keeps_the_newest_entries(clock: FakeClock) -> None:
    store = InMemoryStateStore()
    job = Job("kept", Interval(10), lambda ctx: None, max_runs=30)
    await Scheduler(SchedulerConfig(ledger_limit=7), store=store, clock=clock).run(job)
    kept = await everything(store, "kept")
    assert [e.scheduled_at for e in kept] == [T0 + (30 - i) * 10 * S for i in range(7)]


def test_ledger_limit_is_validated() -> None:
    with pytest.raises(TypeError, match="ledger_limit"):
        SchedulerConfig(ledger_limit="5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ledger_limit"):
        SchedulerConfig(ledger_limit=-1)


class BrokenLedger(InMemoryStateStore):
    """Saves states, but every ledger write fails."""

    async def append(self, entries: Sequence[LedgerEntry], *, keep: int = 1000) -> None:
        raise StoreError(StoreErrorKind.CONNECTION, StoreOperation.LEDGER, entries[0].job_id, "ledger down")

    async def save_with_ledger(
        self, state: JobState, entries: Sequence[LedgerEntry], *, expected_revision: int | None, keep: int
    ) -> bool:
        if expected_revision is None:
            await self.save(state)
        elif not await self.save_if(state, expected_revision):
            return False
        raise StoreError(StoreErrorKind.UNKNOWN, StoreOperation.LEDGER, state.job_id, "ledger down")


async def test_a_failing_ledger_never_stops_the_job(clock: FakeClock, recorder: RecordingObserver) -> None:
    store = BrokenLedger()
    assert isinstance(store, LedgerSavingStore)
    window = JobTimeWindow(segments=[("00:00:00", "00:00:30")])
    job = Job("broken", Interval(10), lambda ctx: None, max_runs=6, time_window=window)
    report = await Scheduler(store=store, clock=clock, observer=recorder).run(job)
    assert report.state.trigger_count == 6
    assert report.state.runs_started == 2
    degraded = recorder.of_type(StoreDegraded)
    assert degraded
    assert {e.operation for e in degraded} == {StoreOperation.LEDGER}


async def test_sqlite_ledger_through_the_scheduler(clock: FakeClock, tmp_path: Any) -> None:
    store = SqliteStateStore(tmp_path / "state.db")
    try:
        window = JobTimeWindow(segments=[("00:00:00", "00:00:35")])
        job = Job("sql", Interval(10), lambda ctx: None, max_runs=6, time_window=window)
        report = await Scheduler(store=store, clock=clock).run(job)
        entries = await everything(store, "sql")
        assert [e.fate for e in entries] == [LedgerFate.SKIPPED] * 3 + [LedgerFate.SUCCESS] * 3
        assert_consistent(entries, report.state)
    finally:
        await store.aclose()


async def test_restart_after_a_lost_run_records_it_interrupted(clock: FakeClock) -> None:
    """An open run of a dead process (here: this very pid, as after a container restart)."""
    store = InMemoryStateStore()
    job = Job("lost", Interval(10), lambda ctx: None, max_runs=3)
    await Scheduler(store=store, clock=clock).run(job)
    stored = await store.load("lost")
    assert stored is not None
    instance = f"{socket.gethostname()}:{os.getpid()}"
    orphan = OpenRun(occurrence=T0 + 40 * S, instance=instance, trigger_count=4)
    await store.save(stored.consumed(4, T0 + 50 * S).opened(orphan))
    job = Job("lost", Interval(10), lambda ctx: None, max_runs=5)
    report = await Scheduler(store=store, clock=clock).run(job)
    entries = await everything(store, "lost")
    assert [e.fate for e in entries][:2] == [LedgerFate.SUCCESS, LedgerFate.INTERRUPTED]
    assert report.state.interrupted == 1
    assert_consistent(entries, report.state)


MISSED = list(MissedRunPolicy)
OVERLAP = list(OverlapPolicy)


@pytest.mark.parametrize("seed", range(60))
async def test_invariant_over_random_policies_windows_and_downtime(seed: int) -> None:
    """Random policy x overlap x window x catch-up window x run length x downtime x control."""
    rng = random.Random(seed)
    clock = FakeClock(T0)
    store = InMemoryStateStore()
    durations = [rng.choice([0, 3, 12, 25]) for _ in range(200)]
    count = 0

    async def task(ctx: TaskContext) -> None:
        nonlocal count
        count += 1
        await clock.sleep_until(clock.now() + durations[count % len(durations)] * S)
        if count % 4 == 0:
            raise RuntimeError("every fourth run fails")

    window = rng.choice(
        [None, JobTimeWindow(segments=[("00:00:30", "00:02:00")]), JobTimeWindow(segments=[("00:03:00", "00:01:00")])]
    )
    job = Job(
        "inv",
        Interval(10),
        task,
        missed_run_policy=rng.choice(MISSED),
        overlap_policy=rng.choice(OVERLAP),
        time_window=window,
        timeout=rng.choice([None, 20.0]),
    )
    config = SchedulerConfig(catch_up_window=rng.choice([None, 25.0]), misfire_grace=rng.choice([0.0, 1.0, 5.0]))
    for _ in range(rng.randint(1, 3)):
        scheduler = Scheduler(config, store=store, clock=clock)
        handle = scheduler.handle()
        control = rng.random()

        poker = asyncio.create_task(poke(clock, handle, clock.now() + rng.randint(5, 60) * S, control))
        stop_at = clock.now() + rng.randint(20, 120) * S
        await run_until(scheduler, job, clock, stop_at, rng.choice([None, 0.0, 5.0]))
        poker.cancel()
        clock.advance(rng.randint(0, 200) * S)  # downtime
    state = await store.load("inv")
    assert state is not None
    assert_consistent(await everything(store, "inv"), state)


def test_a_trusted_entry_equals_a_checked_one() -> None:
    fields: dict[str, Any] = {
        "job_id": "j",
        "scheduled_at": T0,
        "fate": LedgerFate.MISSED,
        "reason": RunSkipReason.PAUSED,
        "count": 3,
        "last_scheduled_at": T0 + 20 * S,
        "instance": "h:1",
    }
    assert LedgerEntry.trusted(**fields) == LedgerEntry(**fields)
    single = {"job_id": "j", "scheduled_at": T0, "fate": LedgerFate.SUCCESS, "attempts": 1}
    assert LedgerEntry.trusted(**single) == LedgerEntry(**single)


def test_entries_are_checked_when_built_by_hand() -> None:
    with pytest.raises(ValueError, match="aware"):
        LedgerEntry(job_id="j", scheduled_at=T0.replace(tzinfo=None), fate=LedgerFate.SUCCESS)
    with pytest.raises(ValueError, match="reason"):
        LedgerEntry(job_id="j", scheduled_at=T0, fate=LedgerFate.SKIPPED)
    with pytest.raises(ValueError, match="count"):
        LedgerEntry(job_id="j", scheduled_at=T0, fate=LedgerFate.MISSED, reason="missed", count=0)
    with pytest.raises(ValueError, match="before it starts"):
        LedgerEntry(job_id="j", scheduled_at=T0, fate=LedgerFate.SUCCESS, last_scheduled_at=T0 - S)
    long = LedgerEntry(job_id="j", scheduled_at=T0, fate=LedgerFate.FAILED, error="x" * 2000)
    assert long.error is not None
    assert len(long.error) == 500
    entry = LedgerEntry(job_id="j", scheduled_at=T0, fate="skipped", reason="overlap", instance="h:2")
    assert LedgerEntry.from_dict(entry.to_dict()) == entry
