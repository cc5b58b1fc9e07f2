"""Lease lost mid-run and guard errors at acquire, with the Scheduler on a real Valkey."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.asyncio import Redis
from valkey_server import ServerProcess, free_port

from scheduler import (
    ExecutionGuardError,
    ExecutionGuardErrorKind,
    GuardErrorPolicy,
    Interval,
    Job,
    LeaseLostPolicy,
    RunSkipReason,
    RunStatus,
    Scheduler,
    SchedulerConfig,
    SchedulerStopReason,
    TaskContext,
    ValkeyExecutionGuard,
)
from scheduler.events import (
    ExecutionGuardAcquired,
    ExecutionGuardLost,
    ExecutionGuardReleaseFailed,
    ExecutionGuardRenewFailed,
    SchedulerStopped,
)
from scheduler.testing import RecordingObserver

pytestmark = pytest.mark.valkey

WAIT = 20.0


async def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("policy", list(LeaseLostPolicy))
async def test_lease_stolen_mid_run_applies_lease_lost_policy(
    policy: LeaseLostPolicy, valkey_url: str, client: Redis, uid: str
) -> None:
    first_started = asyncio.Event()
    later_runs: list[int] = []

    async def task(ctx: TaskContext) -> None:
        if ctx.run.trigger_count == 1:
            first_started.set()
            # SHUTDOWN and CONTINUE let the run finish; CANCEL_RUN cancels it long before 1.5 s.
            await asyncio.sleep(30 if policy is LeaseLostPolicy.CANCEL_RUN else 1.5)
        else:
            later_runs.append(ctx.run.trigger_count)

    guard = ValkeyExecutionGuard(valkey_url, ttl=1, renew_interval=0.2)
    events = RecordingObserver()
    scheduler = Scheduler(SchedulerConfig(lease_lost_policy=policy), guard=guard, observer=events)
    runner = asyncio.create_task(scheduler.run(Job(f"job-{uid}", Interval(0.2), task)))
    try:
        await asyncio.wait_for(first_started.wait(), WAIT)
        key = events.of_type(ExecutionGuardAcquired)[0].key
        assert key is not None
        await client.set(key, "thief-token", px=30_000)  # another holder took it over
        await wait_for(lambda: bool(events.of_type(ExecutionGuardLost)), "ExecutionGuardLost")
        if policy is not LeaseLostPolicy.SHUTDOWN:
            await wait_for(lambda: len(later_runs) >= 2, "scheduling to go on after the loss")
            scheduler.handle().shutdown()
        report = await asyncio.wait_for(runner, WAIT)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await guard.aclose()
    lost = events.of_type(ExecutionGuardLost)
    assert len(lost) == 1
    assert lost[0].key == key
    first = report.history[0]
    assert first.trigger_count == 1
    expected_status = RunStatus.CANCELLED if policy is LeaseLostPolicy.CANCEL_RUN else RunStatus.SUCCESS
    assert first.status is expected_status
    if policy is LeaseLostPolicy.SHUTDOWN:
        assert report.stop_reason is SchedulerStopReason.LEASE_LOST
        assert len(report.history) == 1
    else:
        assert report.stop_reason is SchedulerStopReason.SHUTDOWN
        assert all(r.status is RunStatus.SUCCESS for r in report.history[1:])
    assert await client.get(key) == b"thief-token"  # our release never touched the foreign lease


async def test_renewal_errors_are_retried_until_expiry_then_lost(private_server: ServerProcess, uid: str) -> None:
    started = asyncio.Event()

    async def task(ctx: TaskContext) -> None:
        started.set()
        await asyncio.sleep(2.5)

    guard = ValkeyExecutionGuard(private_server.url, ttl=1, renew_interval=0.2)
    events = RecordingObserver()
    scheduler = Scheduler(guard=guard, observer=events)  # lease_lost_policy SHUTDOWN
    runner = asyncio.create_task(scheduler.run(Job(f"job-{uid}", Interval(0.2), task)))
    try:
        await asyncio.wait_for(started.wait(), WAIT)
        private_server.stop()
        report = await asyncio.wait_for(runner, WAIT)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await guard.aclose()
    failed = events.of_type(ExecutionGuardRenewFailed)
    lost = events.of_type(ExecutionGuardLost)
    assert len(failed) >= 2, "a failed renewal is retried, not treated as lost at once"
    assert len(lost) == 1
    assert lost[0].failed_renewal_count >= 2
    assert events.events.index(failed[0]) < events.events.index(lost[0])
    # The loss is declared only once the lease would have expired (ttl after acquiring).
    acquired = events.of_type(ExecutionGuardAcquired)[0]
    assert lost[0].at - acquired.at >= guard.ttl * 0.5
    assert report.stop_reason is SchedulerStopReason.LEASE_LOST
    assert report.history[0].status is RunStatus.SUCCESS
    assert len(events.of_type(ExecutionGuardReleaseFailed)) == 1  # best effort, no exception


@pytest.mark.parametrize("policy", list(GuardErrorPolicy))
async def test_guard_unreachable_at_acquire_applies_guard_error_policy(policy: GuardErrorPolicy, uid: str) -> None:
    tokens: list[int | None] = []

    async def task(ctx: TaskContext) -> None:
        tokens.append(ctx.run.fencing_token)

    guard = ValkeyExecutionGuard(f"redis://user:hunter22@127.0.0.1:{free_port()}/0", connect_timeout=2)
    events = RecordingObserver()
    scheduler = Scheduler(SchedulerConfig(guard_error_policy=policy), guard=guard, observer=events)
    job = Job(f"job-{uid}", Interval(0.1), task, max_runs=3)
    try:
        if policy is GuardErrorPolicy.FAIL:
            with pytest.raises(ExecutionGuardError) as caught:
                await asyncio.wait_for(scheduler.run(job), WAIT)
            assert caught.value.kind is ExecutionGuardErrorKind.CONNECTION
            assert "hunter22" not in str(caught.value)
            assert [s.reason for s in events.of_type(SchedulerStopped)] == [SchedulerStopReason.ERROR]
            assert tokens == []
            return
        report = await asyncio.wait_for(scheduler.run(job), WAIT)
    finally:
        await guard.aclose()
    assert report.stop_reason is SchedulerStopReason.TERMINAL
    if policy is GuardErrorPolicy.SKIP:
        assert report.skipped == {RunSkipReason.GUARD_UNAVAILABLE: 3}
        assert tokens == []
    else:
        assert tokens == [None, None, None]
        acquired = events.of_type(ExecutionGuardAcquired)
        assert [a.without_lease for a in acquired] == [True, True, True]
        assert [r.status for r in report.history] == [RunStatus.SUCCESS] * 3
