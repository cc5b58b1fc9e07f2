"""The execution guard wired through the loop, with an in-process fake guard."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from scheduler import (
    ExecutionGuardError,
    ExecutionGuardErrorKind,
    ExecutionLease,
    ExecutionSlot,
    GuardErrorPolicy,
    GuardScope,
    InMemoryStateStore,
    Interval,
    Job,
    JobState,
    LeaseLostPolicy,
    NoopExecutionGuard,
    RunSkipReason,
    RunStatus,
    Scheduler,
    SchedulerConfig,
    SchedulerStopReason,
    StoreError,
    StoreErrorKind,
    StoreOperation,
    TaskContext,
)
from scheduler._guard import lease_timing
from scheduler.events import (
    ExecutionGuardAcquired,
    ExecutionGuardContended,
    ExecutionGuardLost,
    ExecutionGuardRenewed,
    ExecutionGuardRenewFailed,
    SchedulerStopped,
)
from scheduler.testing import FakeClock, RecordingObserver, check_execution_guard

from .conftest import T0
from .helpers import recorder_task

S = timedelta(seconds=1)


class FakeGuard:
    """An exclusive in-memory guard with switchable failures (for policy tests)."""

    def __init__(
        self, clock: FakeClock | None = None, ttl: timedelta = 30 * S, renew_every: timedelta = 10 * S
    ) -> None:
        self.clock = clock
        self.ttl, self.renew_every = ttl, renew_every
        self.held: dict[str, str] = {}
        self.done: set[str] = set()
        self.fence = 0
        self.fail_acquire = False
        self.renew_results: list[bool | Exception] = []
        self.released: list[str] = []

    def _key(self, resource: str, scope: GuardScope, at: datetime) -> str:
        return f"{resource}:resource" if scope is GuardScope.RESOURCE else f"{resource}:{at.isoformat()}"

    async def acquire(self, slot: ExecutionSlot) -> ExecutionLease | None:
        if self.fail_acquire:
            raise ExecutionGuardError(ExecutionGuardErrorKind.CONNECTION, "guard down")
        key = self._key(slot.resource_id, slot.scope, slot.scheduled_at)
        resource_lock = f"{slot.resource_id}:resource"
        busy = key in self.held or key in self.done or resource_lock in self.held
        if slot.scope is GuardScope.RESOURCE:
            busy = busy or any(k.startswith(f"{slot.resource_id}:") for k in self.held)
        if busy:
            return None
        self.fence += 1
        token = f"t{self.fence}"
        self.held[key] = token
        expires = None if self.clock is None else self.clock.now() + self.ttl
        return ExecutionLease(
            slot.job_id, slot.resource_id, slot.scope, slot.scheduled_at, token, key, self.fence, expires
        )

    async def renew(self, lease: ExecutionLease) -> bool:
        if self.renew_results:
            result = self.renew_results.pop(0)
            if isinstance(result, Exception):
                raise result
            return result
        return self.held.get(lease.key) == lease.token

    async def release(self, lease: ExecutionLease) -> None:
        if self.held.get(lease.key) == lease.token:
            del self.held[lease.key]
            if lease.scope is GuardScope.OCCURRENCE:
                self.done.add(lease.key)
            self.released.append(lease.key)

    def renew_interval(self, lease: ExecutionLease) -> timedelta | None:
        return self.renew_every


def test_fake_guard_passes_the_contract() -> None:
    """The fake guard used below satisfies the guard contract (so the suite checks something real)."""
    check_execution_guard(FakeGuard)


def test_noop_guard_passes_the_non_exclusive_contract() -> None:
    """NoopExecutionGuard satisfies the protocol shape (it always grants)."""
    check_execution_guard(NoopExecutionGuard, exclusive=False)


def test_contract_suite_rejects_a_broken_guard() -> None:
    """check_execution_guard fails for a guard that grants the same occurrence twice."""
    with pytest.raises(AssertionError, match="contended"):
        check_execution_guard(NoopExecutionGuard)


async def test_guard_events_and_fencing_token(clock: FakeClock, recorder: RecordingObserver) -> None:
    """A guarded run acquires, passes the fencing token to the task, and releases."""
    log: list[TaskContext] = []
    guard = FakeGuard(clock)
    await Scheduler(clock=clock, guard=guard, observer=recorder).run(
        Job("g", Interval(10), recorder_task(log), max_runs=2)
    )
    assert [c.run.fencing_token for c in log] == [1, 2]
    names = [n for n in recorder.names() if n.startswith("ExecutionGuard")]
    assert names == ["ExecutionGuardAcquired", "ExecutionGuardReleased"] * 2
    acquired = recorder.of_type(ExecutionGuardAcquired)[0]
    assert (acquired.resource_id, acquired.scope, acquired.fencing_token) == ("g", GuardScope.OCCURRENCE, 1)


async def test_two_schedulers_one_occurrence_runs_once(clock: FakeClock) -> None:
    """Two schedulers sharing a guard run each occurrence once; the other is contended."""
    guard = FakeGuard(clock)
    ran: list[str] = []

    def task(name: str):  # type: ignore[no-untyped-def]
        async def run(ctx: TaskContext) -> None:
            ran.append(name)

        return run

    a = Scheduler(clock=clock, guard=guard).run(Job("same", Interval(10), task("a"), max_runs=3))
    b = Scheduler(clock=clock, guard=guard).run(Job("same", Interval(10), task("b"), max_runs=3))
    reports = await asyncio.gather(a, b)
    assert len(ran) == 3
    assert sum(r.skipped.get(RunSkipReason.CONTENDED, 0) for r in reports) == 3


async def test_contended_occurrence_is_reported(clock: FakeClock, recorder: RecordingObserver) -> None:
    """An occurrence held elsewhere is skipped with reason contended and an event."""
    guard = FakeGuard(clock)
    guard.done.add(f"c:{(T0 + 10 * S).isoformat()}")
    report = await Scheduler(clock=clock, guard=guard, observer=recorder).run(
        Job("c", Interval(10), recorder_task([]), max_runs=2)
    )
    assert report.skipped == {RunSkipReason.CONTENDED: 1}
    assert len(recorder.of_type(ExecutionGuardContended)) == 1
    assert len(report.history) == 1


async def test_resource_scope_uses_the_resource_id(clock: FakeClock) -> None:
    """guard_scope RESOURCE and resource_id reach the guard slot."""
    guard = FakeGuard(clock)
    seen: list[ExecutionSlot] = []
    original = guard.acquire

    async def spy(slot: ExecutionSlot) -> ExecutionLease | None:
        seen.append(slot)
        return await original(slot)

    guard.acquire = spy  # type: ignore[method-assign]
    job = Job("r", Interval(10), recorder_task([]), max_runs=1, guard_scope=GuardScope.RESOURCE, resource_id="db")
    await Scheduler(clock=clock, guard=guard).run(job)
    assert [(s.resource_id, s.scope) for s in seen] == [("db", GuardScope.RESOURCE)]


@pytest.mark.parametrize("policy", list(GuardErrorPolicy))
async def test_guard_error_policies(clock: FakeClock, recorder: RecordingObserver, policy: GuardErrorPolicy) -> None:
    """Guard errors at acquire: FAIL is fatal, SKIP skips (guard_unavailable), RUN runs without a lease."""
    guard = FakeGuard(clock)
    guard.fail_acquire = True
    log: list[TaskContext] = []
    scheduler = Scheduler(SchedulerConfig(guard_error_policy=policy), clock=clock, guard=guard, observer=recorder)
    job = Job("e", Interval(10), recorder_task(log), max_runs=2)
    if policy is GuardErrorPolicy.FAIL:
        with pytest.raises(ExecutionGuardError):
            await scheduler.run(job)
        assert recorder.of_type(SchedulerStopped)[-1].reason is SchedulerStopReason.ERROR
        assert log == []
    elif policy is GuardErrorPolicy.SKIP:
        report = await scheduler.run(job)
        assert report.skipped == {RunSkipReason.GUARD_UNAVAILABLE: 2}
        assert log == []
    else:
        report = await scheduler.run(job)
        assert len(log) == 2
        assert all(c.run.fencing_token is None for c in log)
        assert all(e.without_lease for e in recorder.of_type(ExecutionGuardAcquired))


def _long_task(clock: FakeClock, seconds: int, started: list[datetime]):  # type: ignore[no-untyped-def]
    async def task(ctx: TaskContext) -> None:
        started.append(ctx.run.scheduled_at)
        await clock.sleep_until(clock.now() + seconds * S)

    return task


@pytest.mark.parametrize("policy", list(LeaseLostPolicy))
async def test_lease_lost_policies(clock: FakeClock, recorder: RecordingObserver, policy: LeaseLostPolicy) -> None:
    """A lost lease: SHUTDOWN lets the run finish then stops; CANCEL_RUN cancels it; CONTINUE reports only."""
    guard = FakeGuard(clock)
    guard.renew_results = [False]
    started: list[datetime] = []
    scheduler = Scheduler(SchedulerConfig(lease_lost_policy=policy), clock=clock, guard=guard, observer=recorder)
    report = await scheduler.run(Job("l", Interval(60), _long_task(clock, 25, started), max_runs=2))
    assert len(recorder.of_type(ExecutionGuardLost)) == 1
    if policy is LeaseLostPolicy.SHUTDOWN:
        assert report.stop_reason is SchedulerStopReason.LEASE_LOST
        assert [r.status for r in report.history] == [RunStatus.SUCCESS]
    elif policy is LeaseLostPolicy.CANCEL_RUN:
        assert report.stop_reason is SchedulerStopReason.TERMINAL
        assert [r.status for r in report.history] == [RunStatus.CANCELLED, RunStatus.SUCCESS]
        assert report.history[0].finished_at - report.history[0].started_at == 10 * S
    else:
        assert report.stop_reason is SchedulerStopReason.TERMINAL
        assert [r.status for r in report.history] == [RunStatus.SUCCESS, RunStatus.SUCCESS]


async def test_renewal_errors_are_retried_until_expiry(clock: FakeClock, recorder: RecordingObserver) -> None:
    """A failed renewal followed by a successful one is not a lost lease."""
    guard = FakeGuard(clock)
    guard.renew_results = [ExecutionGuardError(ExecutionGuardErrorKind.CONNECTION, "blip"), True]
    report = await Scheduler(clock=clock, guard=guard, observer=recorder).run(
        Job("n", Interval(60), _long_task(clock, 25, []), max_runs=1)
    )
    assert len(recorder.of_type(ExecutionGuardRenewFailed)) == 1
    assert len(recorder.of_type(ExecutionGuardRenewed)) >= 1
    assert recorder.of_type(ExecutionGuardLost) == []
    assert [r.status for r in report.history] == [RunStatus.SUCCESS]


async def test_renewal_errors_until_expiry_lose_the_lease(clock: FakeClock, recorder: RecordingObserver) -> None:
    """Renewal calls that keep failing lose the lease before it expires (at expiry minus the safety margin)."""
    guard = FakeGuard(clock, ttl=20 * S)
    guard.renew_results = [ExecutionGuardError(ExecutionGuardErrorKind.CONNECTION, "down")] * 50
    report = await Scheduler(clock=clock, guard=guard, observer=recorder).run(
        Job("x", Interval(60), _long_task(clock, 60, []), max_runs=1)
    )
    lost = recorder.of_type(ExecutionGuardLost)
    assert len(lost) == 1
    expires_at = T0 + 60 * S + 20 * S
    margin = lease_timing(20 * S, guard.renew_every).safety_margin
    assert lost[0].at == expires_at - margin < expires_at
    assert report.stop_reason is SchedulerStopReason.LEASE_LOST


async def test_cancel_releases_the_lease(clock: FakeClock) -> None:
    """cancel() releases the lease of the cancelled run."""
    guard = FakeGuard(clock)
    started = asyncio.Event()
    scheduler = Scheduler(clock=clock, guard=guard)

    async def hang(ctx: TaskContext) -> None:
        started.set()
        await asyncio.sleep(3600)

    task = asyncio.create_task(scheduler.run(Job("k", Interval(10), hang)))
    await asyncio.wait_for(started.wait(), 5)
    scheduler.handle().cancel()
    await asyncio.wait_for(task, 5)
    assert guard.held == {}
    assert len(guard.released) == 1


async def test_release_is_never_for_a_foreign_token() -> None:
    """Releasing with a foreign token leaves the holder's lease in place."""
    guard = FakeGuard()
    lease = await guard.acquire(ExecutionSlot("j", "j", GuardScope.OCCURRENCE, T0))
    assert lease is not None
    await guard.release(replace(lease, token="other"))
    assert await guard.renew(lease) is True


class FailingSaveStore(InMemoryStateStore):
    """Creates the new state (``create``), then fails every save."""

    def __init__(self) -> None:
        super().__init__()
        self.saves = 0

    async def save(self, state: JobState) -> None:
        self.saves += 1
        raise StoreError(StoreErrorKind.CONNECTION, StoreOperation.SAVE, state.job_id, "down")

    async def save_if(self, state: JobState, expected_revision: int) -> bool:
        await self.save(state)
        return True


async def test_failed_save_before_dispatch_releases_the_lease(clock: FakeClock, recorder: RecordingObserver) -> None:
    """If the save that precedes a run fails, the run never starts and the lease acquired alongside is released."""
    guard = FakeGuard(clock)
    log: list[TaskContext] = []
    with pytest.raises(StoreError):
        await Scheduler(store=FailingSaveStore(), clock=clock, guard=guard, observer=recorder).run(
            Job("fs", Interval(10), recorder_task(log), max_runs=3)
        )
    assert log == []
    assert guard.held == {}
    assert recorder.of_type(SchedulerStopped)[-1].reason is SchedulerStopReason.ERROR


async def test_acquire_waits_for_the_pre_run_save(clock: FakeClock) -> None:
    """With a real guard, the lease is asked for only once the consuming save has succeeded.

    Another replica could otherwise hold the lease of an occurrence this one never consumed.
    """
    in_flight: list[str] = []
    overlapped: list[bool] = []

    class SlowStore(InMemoryStateStore):
        async def save_if(self, state: JobState, expected_revision: int) -> bool:
            in_flight.append("save")
            await asyncio.sleep(0.01)
            in_flight.remove("save")
            return await super().save_if(state, expected_revision)

    class SlowGuard(FakeGuard):
        async def acquire(self, slot: ExecutionSlot) -> ExecutionLease | None:
            overlapped.append("save" in in_flight)
            await asyncio.sleep(0.01)
            return await super().acquire(slot)

    await Scheduler(store=SlowStore(), clock=clock, guard=SlowGuard(clock)).run(
        Job("ov", Interval(10), recorder_task([]), max_runs=2)
    )
    assert overlapped == [False, False]


async def test_replace_with_resource_scope_really_replaces(clock: FakeClock) -> None:
    """REPLACE releases the replaced run's RESOURCE lease before acquiring for the new run."""
    guard = FakeGuard(clock)
    job = Job(
        "rs", Interval(10), _long_task(clock, 15, []), max_runs=2, overlap_policy="replace", guard_scope="resource"
    )
    report = await Scheduler(clock=clock, guard=guard).run(job)
    assert [r.status for r in report.history] == [RunStatus.CANCELLED, RunStatus.SUCCESS]
    assert report.skipped == {}


def test_lease_timing_follows_the_renewal_interval() -> None:
    from scheduler._guard import lease_timing

    cli_default = lease_timing(timedelta(seconds=30), timedelta(seconds=10))
    assert (cli_default.renew_call_timeout, cli_default.safety_margin) == (timedelta(seconds=5),) * 2
    short = lease_timing(timedelta(seconds=3), timedelta(seconds=1))
    assert (short.renew_call_timeout, short.safety_margin) == (timedelta(seconds=0.5),) * 2
    long = lease_timing(timedelta(minutes=10), timedelta(minutes=2))
    assert (long.renew_call_timeout, long.safety_margin) == (timedelta(seconds=5), timedelta(minutes=1))
