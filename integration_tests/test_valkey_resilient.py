"""ResilientStateStore over ValkeyStateStore with a real server that is stopped and restarted."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis
from valkey_server import ServerProcess

from scheduler import (
    ExecutionGuardError,
    ExecutionGuardErrorKind,
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
from scheduler.events import StoreDegraded, StoreRecovered
from scheduler.testing import FakeClock, RecordingObserver

pytestmark = pytest.mark.valkey

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def state(count: int) -> JobState:
    return JobState(job_id="job", trigger_count=count, next_run_at=T0 + timedelta(seconds=count))


async def test_degrades_on_outage_and_writes_back_on_recovery(private_server: ServerProcess) -> None:
    clock = FakeClock(T0, auto_advance=False)
    events = RecordingObserver()
    store = ValkeyStateStore.resilient(private_server.url, clock=clock, observer=events.on_event, probe_interval=5)
    try:
        await store.save(state(1))
        assert not store.is_degraded

        private_server.stop()
        await store.save(state(2))  # the primary is down: recorded in the mirror
        assert store.is_degraded
        assert await store.load("job") == state(2)
        await store.save(state(3))
        clock.advance(timedelta(seconds=6))  # the background probe finds the server still down
        await store.save(state(4))
        assert [type(e) for e in events] == [StoreDegraded]
        assert "Connection" in events.of_type(StoreDegraded)[0].error

        private_server.start()  # empty again: persistence is off
        await store.save(state(5))  # probe not due yet: still from the mirror
        assert store.is_degraded
        clock.advance(timedelta(seconds=12))  # the background probe writes back
        deadline = asyncio.get_running_loop().time() + 5
        while store.is_degraded:
            assert asyncio.get_running_loop().time() < deadline, "no recovery"
            await asyncio.sleep(0.01)
        assert await store.load("job") == state(5)
        recovered = events.of_type(StoreRecovered)
        assert len(recovered) == 1
        assert recovered[0].written_back == 1
        async with Redis.from_url(private_server.url) as raw:
            stored = await raw.get("scheduler:valkey:job-state:job")
        assert JobState.model_validate_json(stored) == state(5)
    finally:
        await store.aclose()


async def test_plain_store_raises_connection_error_then_reconnects(private_server: ServerProcess) -> None:
    store = ValkeyStateStore(private_server.url)
    try:
        await store.save(state(1))
        private_server.stop()
        with pytest.raises(StoreError) as caught:
            await store.save(state(2))
        assert caught.value.kind is StoreErrorKind.CONNECTION
        private_server.start()
        await store.save(state(3))  # the dead pooled connection is replaced transparently
        assert await store.load("job") == state(3)
    finally:
        await store.aclose()


async def test_guard_connection_error_then_reconnects_and_reloads_scripts(private_server: ServerProcess) -> None:
    guard = ValkeyExecutionGuard(private_server.url)
    at = T0
    try:
        assert await guard.acquire(ExecutionSlot("job", "r", GuardScope.OCCURRENCE, at)) is not None
        private_server.stop()
        with pytest.raises(ExecutionGuardError) as caught:
            await guard.acquire(ExecutionSlot("job", "r", GuardScope.OCCURRENCE, at + timedelta(seconds=1)))
        assert caught.value.kind is ExecutionGuardErrorKind.CONNECTION
        private_server.start()  # a new server has no cached scripts: EVALSHA falls back to LOAD
        lease = await guard.acquire(ExecutionSlot("job", "r", GuardScope.OCCURRENCE, at + timedelta(seconds=2)))
        assert lease is not None
        assert await guard.renew(lease) is True
    finally:
        await guard.aclose()


async def test_a_slow_first_load_does_not_stop_a_fast_job(private_server: ServerProcess) -> None:
    """The scheduler's budget at a 50 ms interval is 50 ms (40 ms for the primary's calls); the
    first load, which cannot fall back to memory, gets the store's own 4 s instead."""
    starts: list[int] = []

    async def task(ctx: TaskContext) -> None:
        starts.append(ctx.run.trigger_count)

    store = ValkeyStateStore.resilient(private_server.url, probe_interval=0.5)
    every = Interval(timedelta(milliseconds=50))
    job = Job("slow-start", every, task, max_runs=3, missed_run_policy=MissedRunPolicy.REPLAY_ALL)
    runner = asyncio.create_task(Scheduler(store=store).run(job))
    try:
        private_server.freeze()  # hangs rather than refusing: the first load waits for it
        await asyncio.sleep(0.3)
        assert not runner.done()
        private_server.thaw()
        report = await asyncio.wait_for(runner, 10)
        assert report.stop_reason is SchedulerStopReason.TERMINAL
        assert starts == [1, 2, 3]
        assert not store.is_degraded
    finally:
        private_server.thaw()
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await store.aclose()
