"""The run ledger on a real Valkey: entries through the scheduler, no extra round trip per run,
a broken ledger key never stops the job, the resilient store buffers through an outage."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Connection, Redis
from redis.crc import key_slot
from valkey_server import ServerProcess

from scheduler import (
    Interval,
    Job,
    JobState,
    JobTimeWindow,
    LedgerFate,
    RunSkipReason,
    Scheduler,
    SchedulerConfig,
    StoreOperation,
    TaskContext,
    ValkeyExecutionGuard,
    ValkeyStateStore,
)
from scheduler.events import StoreDegraded, StoreRecovered
from scheduler.testing import FakeClock, RecordingObserver

pytestmark = pytest.mark.valkey

EVERY = timedelta(milliseconds=50)
WAIT = 20.0


async def wait_for(condition: Any, what: str, timeout: float = WAIT, runner: asyncio.Task[Any] | None = None) -> None:
    """Poll ``condition``; fail at once (with its outcome) if ``runner`` ended first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if runner is not None and runner.done():
            outcome = runner.exception() if not runner.cancelled() else "cancelled"
            raise AssertionError(f"the scheduler ended before {what}: {outcome!r}") from (
                outcome if isinstance(outcome, BaseException) else None
            )
        if time.monotonic() > deadline:
            where = "" if runner is None else "; the scheduler is at:\n" + _stack(runner)
            raise AssertionError(f"timed out waiting for {what}{where}")
        await asyncio.sleep(0.02)


def _stack(task: asyncio.Task[Any]) -> str:
    out = io.StringIO()
    task.print_stack(file=out)
    return out.getvalue()


async def test_ledger_through_the_scheduler(valkey_url: str, uid: str, client: Redis) -> None:
    store = ValkeyStateStore(valkey_url)
    try:
        calls = 0

        async def task(ctx: TaskContext) -> None:
            nonlocal calls
            calls += 1
            if calls == 2:
                raise ValueError("second run fails")

        job = Job(f"job-{uid}", Interval(EVERY), task, max_runs=5)
        report = await Scheduler(store=store).run(job)
        entries = await store.history(job.job_id)
        assert [e.fate for e in entries] == [LedgerFate.SUCCESS] * 3 + [LedgerFate.FAILED, LedgerFate.SUCCESS]
        assert entries[3].error == "ValueError: second run fails"
        assert sum(e.count for e in entries) == report.state.trigger_count == 5
        # The stream sits in the state key's cluster slot and is trimmed approximately.
        assert key_slot(store.ledger_key(job.job_id).encode()) == key_slot(store.key(job.job_id).encode())
        assert await client.type(store.ledger_key(job.job_id)) == b"stream"
    finally:
        await store.aclose()


class CountingConnection(Connection):
    """Counts requests written to the socket: one per command, one per pipeline."""

    sent = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sent += 1
        await super().send_packed_command(command, check_health)


@pytest.fixture
async def counting_client(valkey_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(valkey_url, connection_class=CountingConnection)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.mark.parametrize("guarded", [False, True], ids=["unguarded", "guarded"])
async def test_the_ledger_adds_no_round_trip_to_a_run(counting_client: Redis, uid: str, guarded: bool) -> None:
    store = ValkeyStateStore(client=counting_client)
    guard = ValkeyExecutionGuard(client=counting_client) if guarded else None
    await store.save(JobState(job_id=f"warm-{uid}"))  # loads the script, opens a connection
    await asyncio.gather(store.load(f"warm-{uid}"), store.load(f"warm-{uid}"))  # a second connection
    runs = 15
    totals = {}
    for limit in (0, 1000):
        job = Job(f"job-{uid}-{limit}", Interval(EVERY), lambda ctx: None, max_runs=runs)
        scheduler = Scheduler(SchedulerConfig(ledger_limit=limit), store=store, guard=guard)
        # Scripts load on first use (the store's create and combined scripts, the guard's):
        # not per-run work, and a test run alone must count the same as one in the suite.
        await scheduler.run(Job(f"warm-{uid}-{limit}", Interval(EVERY), lambda ctx: None, max_runs=1))
        CountingConnection.sent = 0
        report = await scheduler.run(job)
        totals[limit] = CountingConnection.sent
        assert len(report.history) == runs
    entries = await store.history(f"job-{uid}-1000")
    assert len(entries) == runs
    assert totals[1000] == totals[0], f"round trips without/with the ledger: {totals}"
    print(f"round trips for {runs} runs ({'guarded' if guarded else 'unguarded'}): {totals}")


async def test_a_broken_ledger_key_never_stops_the_job(valkey_url: str, uid: str, client: Redis) -> None:
    store = ValkeyStateStore(valkey_url)
    events = RecordingObserver()
    try:
        job = Job(f"job-{uid}", Interval(EVERY), lambda ctx: None, max_runs=4)
        await client.set(store.ledger_key(job.job_id), "not a stream")
        report = await Scheduler(store=store, observer=events).run(job)
        assert report.state.trigger_count == 4
        assert report.state.runs_started == 4
        stored = await store.load(job.job_id)
        assert stored == report.state  # every save landed although each append failed
        degraded = events.of_type(StoreDegraded)
        assert degraded
        assert all(e.operation is StoreOperation.LEDGER for e in degraded)
        assert "WRONGTYPE" in degraded[0].error
    finally:
        await store.aclose()


async def test_window_skips_are_appended_in_the_background(valkey_url: str, uid: str) -> None:
    store = ValkeyStateStore(valkey_url)
    try:
        # Mondays only, and the fake clock stays on a Wednesday: every occurrence is consumed
        # by a save, then skipped.
        window = JobTimeWindow(weekdays=["monday"])
        job = Job(f"job-{uid}", Interval(EVERY), lambda ctx: None, max_runs=3, time_window=window)
        report = await Scheduler(store=store, clock=FakeClock(datetime(2025, 1, 1, tzinfo=UTC))).run(job)
        entries = await store.history(job.job_id)
        assert [e.reason for e in entries] == [RunSkipReason.OUTSIDE_TIME_WINDOW] * 3
        assert report.state.skips == {"outside_time_window": 3}
        assert report.state.open_runs == ()
    finally:
        await store.aclose()


async def test_resilient_store_buffers_the_ledger_through_an_outage(private_server: ServerProcess, uid: str) -> None:
    job_id = f"job-{uid}"
    starts: list[float] = []

    async def task(ctx: TaskContext) -> None:
        starts.append(time.monotonic())

    store = ValkeyStateStore.resilient(private_server.url, probe_interval=0.5)
    events = RecordingObserver()
    scheduler = Scheduler(store=store, observer=events)
    runner = asyncio.create_task(scheduler.run(Job(job_id, Interval(EVERY), task)))
    try:
        await wait_for(lambda: len(starts) >= 5, "runs before the outage", runner=runner)
        private_server.stop()
        outage_runs = len(starts)
        await wait_for(lambda: len(starts) >= outage_runs + 10, "runs during the outage", runner=runner)
        private_server.start()
        await wait_for(lambda: bool(events.of_type(StoreRecovered)), "StoreRecovered", runner=runner)
        settled = len(starts)
        await wait_for(lambda: len(starts) >= settled + 3, "runs after the recovery", runner=runner)
        scheduler.handle().shutdown()
        report = await asyncio.wait_for(runner, WAIT)
        entries = await store.history(job_id, limit=10_000)
        runs = [e for e in entries if e.fate is LedgerFate.SUCCESS]
        # Entries of the outage were buffered and written back; nothing after it is missing.
        assert len(runs) >= len(starts) - outage_runs
        assert len({e.scheduled_at for e in entries}) == len(entries)
        assert report.state.runs_started == len(starts)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await store.aclose()
