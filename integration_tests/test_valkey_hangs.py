"""A hung (SIGSTOPped) or restarted server: bounded calls, no blind retry, usable client after."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from redis.asyncio import Redis
from valkey_server import ServerProcess

from scheduler import JobState, StoreError, StoreErrorKind, ValkeyStateStore

pytestmark = pytest.mark.valkey


async def timed_failure(call: object) -> tuple[float, StoreError]:
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        await call  # type: ignore[misc]
    return time.monotonic() - started, caught.value


@pytest.mark.parametrize("timeout", [0.5, 5.0])
async def test_hung_server_fails_a_call_within_its_timeout(private_server: ServerProcess, timeout: float) -> None:
    store = ValkeyStateStore(private_server.url, timeout=timedelta(seconds=timeout))
    try:
        await store.save(JobState(job_id="h"))
        private_server.freeze()
        elapsed, error = await timed_failure(store.save(JobState(job_id="h", trigger_count=1)))
        assert error.kind is StoreErrorKind.CONNECTION
        assert timeout * 0.9 <= elapsed < timeout + 1, elapsed
        elapsed, error = await timed_failure(store.load("h"))  # a fresh connection hangs the same way
        assert error.kind is StoreErrorKind.CONNECTION
        assert elapsed < timeout + 1, elapsed
    finally:
        private_server.thaw()
        await store.aclose()


async def test_a_call_cancelled_by_its_caller_leaves_the_client_usable(private_server: ServerProcess) -> None:
    store = ValkeyStateStore(private_server.url)
    try:
        await store.save(JobState(job_id="c"))
        private_server.freeze()
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await store.save(JobState(job_id="c", trigger_count=1))
        assert time.monotonic() - started < 1
        private_server.thaw()
        await store.save(JobState(job_id="c", trigger_count=2))
        loaded = await store.load("c")
        assert loaded is not None
        assert loaded.trigger_count == 2
    finally:
        private_server.thaw()
        await store.aclose()


async def test_a_restart_costs_no_failed_call(private_server: ServerProcess) -> None:
    """Pooled connections closed by a restart are replaced when the pool hands them out."""
    store = ValkeyStateStore(private_server.url)
    try:
        await asyncio.gather(*(store.save(JobState(job_id=f"r{i}")) for i in range(3)))  # several pooled
        await asyncio.to_thread(private_server.restart)  # the loop runs meanwhile, as in production
        await asyncio.gather(*(store.save(JobState(job_id=f"r{i}", trigger_count=1)) for i in range(3)))
        assert await store.load("r0") == JobState(job_id="r0", trigger_count=1)
    finally:
        await store.aclose()


async def test_a_stopped_server_fails_once_then_the_next_call_works(private_server: ServerProcess) -> None:
    store = ValkeyStateStore(private_server.url)
    try:
        await asyncio.gather(*(store.save(JobState(job_id=f"s{i}")) for i in range(3)))
        private_server.stop()
        _, error = await timed_failure(store.load("s0"))
        assert error.kind is StoreErrorKind.CONNECTION
        private_server.start()
        for i in range(3):
            await store.save(JobState(job_id=f"s{i}", trigger_count=1))
    finally:
        await store.aclose()


async def evalsha_calls(raw: Redis) -> int:
    stats = await raw.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_a_save_applied_late_by_a_frozen_server_never_overwrites_newer_data(
    private_server: ServerProcess,
) -> None:
    """Two conditional saves over revision 1 queue on a frozen server: exactly one applies."""
    a = ValkeyStateStore(private_server.url, timeout=0.3)
    b = ValkeyStateStore(private_server.url, timeout=10)
    raw = Redis.from_url(private_server.url)
    try:
        assert await a.save_if(JobState(job_id="late", trigger_count=1), 0)
        assert await b.save_if(JobState(job_id="late", trigger_count=1), 7) is False  # loads its script
        before = await evalsha_calls(raw)
        private_server.freeze()
        _, error = await timed_failure(a.save_if(JobState(job_id="late", trigger_count=2), 1))  # in flight
        assert error.kind is StoreErrorKind.CONNECTION
        newer = asyncio.create_task(b.save_if(JobState(job_id="late", trigger_count=5), 1))
        await asyncio.sleep(0.05)  # let b's command reach the frozen server's socket
        private_server.thaw()
        b_applied = await newer
        deadline = time.monotonic() + 5
        while await evalsha_calls(raw) < before + 2:  # a's late command has run too
            assert time.monotonic() < deadline, "the late save never reached the server"
            await asyncio.sleep(0.02)
        stored = await b.load("late")
        assert stored is not None
        assert stored.revision == 2  # exactly one of the two applied
        assert stored.trigger_count == (5 if b_applied else 2)
    finally:
        private_server.thaw()
        await raw.aclose()
        await a.aclose()
        await b.aclose()


async def test_guard_release_reports_whether_it_released(private_server: ServerProcess) -> None:
    from datetime import UTC, datetime

    from scheduler import ExecutionSlot, GuardScope, ValkeyExecutionGuard

    guard = ValkeyExecutionGuard(private_server.url, ttl=0.3, renew_interval=0.1)
    at = datetime(2025, 1, 1, tzinfo=UTC)
    try:
        lease = await guard.acquire(ExecutionSlot("g", "g", GuardScope.OCCURRENCE, at))
        assert lease is not None
        assert await guard.release(lease) is True
        assert await guard.release(lease) is True  # a repeated release (after a lost reply) still says so
        expiring = await guard.acquire(ExecutionSlot("g", "g", GuardScope.OCCURRENCE, at.replace(minute=1)))
        assert expiring is not None
        deadline = time.monotonic() + 5
        while await guard.renew(expiring):  # renew reports the expiry: then release must say False
            assert time.monotonic() < deadline
            await guard.client.pexpire(expiring.key, 1)
        assert await guard.release(expiring) is False
    finally:
        await guard.aclose()


async def test_guard_renew_call_respects_its_deadline_on_a_hung_server(private_server: ServerProcess) -> None:
    from datetime import UTC, datetime

    from scheduler import ExecutionGuardError, ExecutionGuardErrorKind, ExecutionSlot, GuardScope, ValkeyExecutionGuard

    guard = ValkeyExecutionGuard(private_server.url, ttl=3, renew_interval=1)
    try:
        lease = await guard.acquire(ExecutionSlot("f", "f", GuardScope.OCCURRENCE, datetime(2025, 1, 1, tzinfo=UTC)))
        assert lease is not None
        private_server.freeze()
        started = time.monotonic()
        with pytest.raises(ExecutionGuardError) as caught:
            await guard.renew(lease)
        elapsed = time.monotonic() - started
        assert caught.value.kind is ExecutionGuardErrorKind.CONNECTION
        assert 0.4 <= elapsed < 0.5 + 0.5, elapsed  # renewal deadline min(1 s / 2, 5 s)
        private_server.thaw()
        assert await guard.renew(lease) is True
    finally:
        private_server.thaw()
        await guard.aclose()


async def test_cancelled_during_a_hung_after_run_call(private_server: ServerProcess) -> None:
    """The scheduler is cancelled while its after-run call (outcome save and lease release in
    one script) hangs on a frozen server. It stops within the guard's call deadline (it waits
    that long for a release of its own); a server back within that deadline gets the release,
    so another replica runs the next occurrence at once instead of after the 30 s TTL."""
    from scheduler import GuardScope, Interval, Job, Scheduler, TaskContext, ValkeyExecutionGuard

    ran, proceed = asyncio.Event(), asyncio.Event()

    async def first(ctx: TaskContext) -> None:
        ran.set()
        await proceed.wait()

    def job(task: Callable[[TaskContext], Awaitable[None]]) -> Job:
        # RESOURCE scope: a lease left behind would block every later occurrence.
        return Job("cancelled", Interval(timedelta(milliseconds=200)), task, guard_scope=GuardScope.RESOURCE)

    def guard_for(store: ValkeyStateStore) -> ValkeyExecutionGuard:
        return ValkeyExecutionGuard(
            store=store, ttl=timedelta(seconds=30), renew_interval=timedelta(seconds=10), timeout=timedelta(seconds=1)
        )

    store = ValkeyStateStore(private_server.url)
    guard = guard_for(store)
    running = asyncio.create_task(Scheduler(store=store, guard=guard).run(job(first)))
    try:
        await asyncio.wait_for(ran.wait(), 5)
        private_server.freeze()
        proceed.set()
        await asyncio.sleep(0.1)  # the after-run script is on its way to the frozen server
        started = time.monotonic()
        running.cancel()
        await asyncio.sleep(0.3)
        private_server.thaw()  # within the release's 1 s deadline
        done, _ = await asyncio.wait({running}, timeout=5)
        assert running in done
        assert running.cancelled()  # an outer cancellation propagates
        assert time.monotonic() - started < 1 + 0.5
    finally:
        private_server.thaw()
        await store.aclose()
        await guard.aclose()

    second_ran = asyncio.Event()

    async def second(ctx: TaskContext) -> None:
        second_ran.set()

    store = ValkeyStateStore(private_server.url)
    guard = guard_for(store)
    scheduler = Scheduler(store=store, guard=guard)
    replica = asyncio.create_task(scheduler.run(job(second)))
    try:
        await asyncio.wait_for(second_ran.wait(), 5)  # not 30 s: the first lease was released
    finally:
        scheduler.handle().shutdown()
        await asyncio.wait_for(replica, 5)
        await store.aclose()
        await guard.aclose()


async def test_cancelled_while_the_server_stays_frozen_returns_within_the_release_deadline(
    private_server: ServerProcess,
) -> None:
    """With the server frozen throughout, a cancelled scheduler gives up its release after the
    guard's call deadline (the lease is then left to its TTL, reported as a failed release)."""
    from scheduler import Interval, Job, Scheduler, TaskContext, ValkeyExecutionGuard
    from scheduler.events import ExecutionGuardReleaseFailed, SchedulerEvent

    ran, proceed = asyncio.Event(), asyncio.Event()
    events: list[SchedulerEvent] = []

    async def task(ctx: TaskContext) -> None:
        ran.set()
        await proceed.wait()

    store = ValkeyStateStore(private_server.url)
    guard = ValkeyExecutionGuard(
        store=store, ttl=timedelta(seconds=30), renew_interval=timedelta(seconds=10), timeout=timedelta(seconds=1)
    )
    scheduler = Scheduler(store=store, guard=guard, observer=events.append)
    running = asyncio.create_task(scheduler.run(Job("frozen", Interval(timedelta(milliseconds=200)), task)))
    try:
        await asyncio.wait_for(ran.wait(), 5)
        private_server.freeze()
        proceed.set()
        await asyncio.sleep(0.1)
        started = time.monotonic()
        running.cancel()
        done, _ = await asyncio.wait({running}, timeout=5)
        assert running in done
        assert running.cancelled()
        assert 0.9 <= time.monotonic() - started < 1 + 0.5
        assert [type(e) for e in events if isinstance(e, ExecutionGuardReleaseFailed)] == [ExecutionGuardReleaseFailed]
    finally:
        private_server.thaw()
        await store.aclose()
        await guard.aclose()


async def test_a_busy_job_frozen_under_the_save_carrying_an_outcome_records_each_occurrence_once(
    private_server: ServerProcess,
) -> None:
    """Runs outlast their 20 ms interval, so each outcome rides with the save that consumes the
    next occurrence. The server freezes under one such save: the call times out, the scheduler
    stops with a store error, and the thawed server applies the save late. Nothing is saved
    twice, and a restart records every occurrence in the ledger exactly once."""
    from scheduler import Interval, Job, LedgerFate, MissedRunPolicy, Scheduler, TaskContext

    froze = False

    async def task(ctx: TaskContext) -> None:
        nonlocal froze
        await asyncio.sleep(0.03)
        if ctx.run.trigger_count == 3 and not froze:
            froze = True
            private_server.freeze()  # the save carrying this outcome will hang

    every = Interval(timedelta(milliseconds=20))
    job = Job("busy-frozen", every, task, max_runs=6, missed_run_policy=MissedRunPolicy.REPLAY_ALL)
    store = ValkeyStateStore(private_server.url, timeout=0.3)
    try:
        with pytest.raises(StoreError):
            await Scheduler(store=store).run(job)
        assert froze
    finally:
        private_server.thaw()
        await store.aclose()

    reader = ValkeyStateStore(private_server.url)
    try:
        deadline = time.monotonic() + 5
        while (stored := await reader.load("busy-frozen")) is None or stored.trigger_count < 4:
            assert time.monotonic() < deadline, "the frozen save was never applied"
            await asyncio.sleep(0.02)
        assert stored.runs_started == 3  # runs 1-3, each counted once (3 by the late save)

        report = await Scheduler(store=reader).run(job)  # occurrence 4 never ran: interrupted
        assert report.state.trigger_count == 6
        entries = sorted(await reader.history("busy-frozen"), key=lambda e: e.scheduled_at)
        fates = [e.fate for e in entries]
        assert fates == [LedgerFate.SUCCESS] * 3 + [LedgerFate.INTERRUPTED] + [LedgerFate.SUCCESS] * 2
        assert len({e.scheduled_at for e in entries}) == 6
        assert report.state.runs_started == 5
    finally:
        await reader.aclose()
