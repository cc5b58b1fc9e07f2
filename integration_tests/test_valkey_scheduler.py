"""The Scheduler on a real Valkey: store outages (plain and resilient) and round trips per run."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
from redis.asyncio import Connection, Redis
from valkey_server import ServerProcess

from scheduler import (
    ExecutionSlot,
    GuardScope,
    Interval,
    Job,
    JobState,
    MissedRunPolicy,
    Scheduler,
    SchedulerStopReason,
    StoreError,
    StoreErrorKind,
    TaskContext,
    ValkeyExecutionGuard,
    ValkeyStateStore,
)
from scheduler.events import (
    ExecutionGuardReleased,
    SchedulerStopped,
    StoreRecovered,
)
from scheduler.testing import RecordingObserver

pytestmark = pytest.mark.valkey

EVERY = timedelta(milliseconds=100)
#: Upper bound for anything we wait for; generous so a loaded CI machine never flakes.
WAIT = 20.0


async def wait_for(condition: Any, what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_store_outage_with_plain_store_stops_with_store_error(
    private_server: ServerProcess, valkey_url: str, uid: str, caplog: pytest.LogCaptureFixture
) -> None:
    job_id = f"job-{uid}"
    running = asyncio.Event()

    async def task(ctx: TaskContext) -> None:
        running.set()
        await asyncio.sleep(30)  # still running when the store fails: must be cancelled

    store = ValkeyStateStore(private_server.url)
    guard = ValkeyExecutionGuard(valkey_url)  # a healthy guard server: the release must happen
    events = RecordingObserver()
    scheduler = Scheduler(store=store, guard=guard, observer=events)
    runner = asyncio.create_task(scheduler.run(Job(job_id, Interval(EVERY), task)))
    try:
        await asyncio.wait_for(running.wait(), WAIT)
        private_server.stop()  # the next occurrence's save-before-dispatch fails
        with pytest.raises(StoreError) as caught:
            await asyncio.wait_for(runner, WAIT)
        error = caught.value
        assert (error.kind, error.job_id) == (StoreErrorKind.CONNECTION, job_id)
        assert f"scheduler:valkey:job-state:{job_id}" in str(error)
        stopped = events.of_type(SchedulerStopped)
        assert [s.reason for s in stopped] == [SchedulerStopReason.ERROR]
        released = events.of_type(ExecutionGuardReleased)
        assert len(released) == 1
        assert await guard.client.get(released[0].key) is not None  # kept as a completed marker
        assert (await guard.client.get(released[0].key)).startswith(b"done:")
        assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await store.aclose()
        await guard.aclose()


async def test_resilient_store_keeps_cadence_through_an_outage(private_server: ServerProcess, uid: str) -> None:
    job_id = f"job-{uid}"
    starts: list[tuple[datetime, float]] = []

    async def task(ctx: TaskContext) -> None:
        starts.append((ctx.run.scheduled_at, time.monotonic()))
        await asyncio.sleep(0.01)

    store = ValkeyStateStore.resilient(private_server.url, probe_interval=1)
    events = RecordingObserver()
    scheduler = Scheduler(store=store, observer=events)
    job = Job(job_id, Interval(EVERY), task, missed_run_policy=MissedRunPolicy.REPLAY_ALL)
    runner = asyncio.create_task(scheduler.run(job))
    try:
        await wait_for(lambda: len(starts) >= 10, "ten runs before the outage")
        private_server.stop()
        down_at = time.monotonic()
        await asyncio.sleep(5)
        private_server.start()
        up_at = time.monotonic()
        await wait_for(lambda: bool(events.of_type(StoreRecovered)), "StoreRecovered")
        settled = len(starts)
        await wait_for(lambda: len(starts) >= settled + 5, "runs after the recovery")
        scheduler.handle().shutdown()
        report = await asyncio.wait_for(runner, WAIT)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    try:
        names = [n for n in events.names() if n in ("StoreDegraded", "StoreRecovered")]
        assert names == ["StoreDegraded", "StoreRecovered"]
        assert events.of_type(StoreRecovered)[0].written_back >= 1
        # Cadence: every 100 ms occurrence ran, once, in order, also during the outage.
        instants = [s for s, _ in starts]
        assert instants == sorted(set(instants))
        assert all(b - a == EVERY for a, b in pairwise(instants))
        during = [t for _, t in starts if down_at + 0.5 < t < up_at - 0.5]
        assert len(during) >= 30, f"only {len(during)} runs in 4 s of outage"
        assert report.stop_reason is SchedulerStopReason.SHUTDOWN
        # What Valkey holds afterwards is exactly the in-process state.
        assert await store.primary.load(job_id) == report.state
        assert not store.is_degraded
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


async def test_round_trips_per_run(counting_client: Redis, uid: str) -> None:
    store = ValkeyStateStore(client=counting_client)
    guard = ValkeyExecutionGuard(client=counting_client)
    # Warm up: open the connection and load every script, so only steady-state work counts.
    await store.save(await store.load(f"warm-{uid}") or JobState(job_id=f"warm-{uid}"))
    await store.delete(f"warm-{uid}")
    at = datetime(2025, 1, 1, tzinfo=UTC)
    lease = await guard.acquire(ExecutionSlot("warm", f"warm-{uid}", GuardScope.OCCURRENCE, at))
    assert lease is not None
    await guard.renew(lease)
    # The runner overlaps independent calls (save with acquire, release with save), so it uses
    # two pooled connections: open both now, their handshakes are not per-run work.
    await asyncio.gather(guard.renew(lease), store.load(f"warm-{uid}"))
    await guard.release(lease)

    runs = 20

    async def task(ctx: TaskContext) -> None:
        return None

    CountingConnection.sent = 0
    report = await Scheduler(store=store, guard=guard).run(Job(f"job-{uid}", Interval(EVERY), task, max_runs=runs))
    total = CountingConnection.sent
    assert report.stop_reason is SchedulerStopReason.TERMINAL
    assert len(report.history) == runs
    # load (1, legacy GET pipelined) + first save (1) + per run: save before dispatch, acquire,
    # release, save after completion (4). They go out in two concurrent pairs (save with
    # acquire, release with save), so a run waits for 2 round trips, not 4. Renewal adds 1 per
    # renew_interval of run time.
    # Measured: exactly 2 + 4 * runs (82 for 20 runs). A regression shows up here first.
    assert total <= 2 + 4 * runs, f"{total} round trips for {runs} runs"
    print(f"round trips: {total} for {runs} runs ({(total - 2) / runs:g} per run)")
