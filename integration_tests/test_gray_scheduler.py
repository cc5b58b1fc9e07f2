"""Gray failures at the library level: Schedulers on real Valkey servers frozen with SIGSTOP.

The tasks record their own runs (the oracle); assertions never rely on the scheduler's records
for "ran once". Times are real (SystemClock) because the faults are real.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pytest
from redis.asyncio import Redis
from valkey_server import ServerProcess, find_server_binary

from scheduler import (
    GuardErrorPolicy,
    Interval,
    Job,
    JobState,
    LeaseLostPolicy,
    MissedRunPolicy,
    RunSkipReason,
    Scheduler,
    SchedulerConfig,
    SystemClock,
    TaskContext,
    ValkeyExecutionGuard,
    ValkeyStateStore,
)
from scheduler._guard import ExecutionLease, ExecutionSlot
from scheduler._resilient import ResilientStateStore
from scheduler.events import (
    ExecutionGuardLost,
    RunSkipped,
    SchedulerEvent,
    StoreDegraded,
    StoreRecovered,
)

pytestmark = pytest.mark.valkey

CLOCK = SystemClock()
PERIOD = timedelta(milliseconds=200)


async def until(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Poll ``condition`` on the event loop until it holds (AssertionError after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass(frozen=True)
class Run:
    scheduled_at: datetime
    replica: str
    fencing_token: int | None
    started: datetime
    trigger_count: int


@dataclass
class Oracle:
    """What the tasks themselves record, one ``Run`` per run."""

    runs: list[Run] = field(default_factory=list)

    def task(self, replica: str, work: float = 0.05) -> Callable[[TaskContext], object]:
        async def run(ctx: TaskContext) -> None:
            r = ctx.run
            self.runs.append(Run(r.scheduled_at, replica, r.fencing_token, CLOCK.now(), r.trigger_count))
            await asyncio.sleep(work)

        return run

    def ran(self, at: datetime) -> list[str]:
        return [run.replica for run in self.runs if run.scheduled_at == at]

    def duplicates(self) -> dict[datetime, int]:
        counts = Counter(run.scheduled_at for run in self.runs)
        return {at: n for at, n in counts.items() if n > 1}


async def stored_count(client: Redis, job_id: str) -> int | None:
    store = ValkeyStateStore(client=client)
    state = await store.load(job_id)
    return None if state is None else state.trigger_count


@contextlib.asynccontextmanager
async def running(schedulers: list[tuple[Scheduler, Job]]) -> AsyncIterator[list[asyncio.Task[object]]]:
    tasks: list[asyncio.Task[object]] = [asyncio.create_task(s.run(j)) for s, j in schedulers]
    try:
        yield tasks
    finally:
        for scheduler, _ in schedulers:
            scheduler.handle().shutdown()
        done, _ = await asyncio.wait(tasks, timeout=15)
        for task in tasks:
            if task not in done:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# -- a pause between the pre-run save and the acquire ------------------------------------------


class SlowAcquire:
    """The real guard, whose ``pause_at``-th acquire first sleeps ``pause`` seconds.

    Stands for a replica frozen after it saved the consumed occurrence and before it asked
    for the lease (a GC pause, a suspended VM).
    """

    def __init__(self, guard: ValkeyExecutionGuard, pause: float, pause_at: int) -> None:
        self.guard, self.pause, self.pause_at = guard, pause, pause_at
        self.calls = 0
        self.paused_slot: datetime | None = None
        self.resumed = False

    async def acquire(self, slot: ExecutionSlot) -> ExecutionLease | None:
        self.calls += 1
        if self.calls == self.pause_at:
            self.paused_slot = slot.scheduled_at
            await asyncio.sleep(self.pause)
            self.resumed = True
        return await self.guard.acquire(slot)

    async def renew(self, lease: ExecutionLease) -> bool:
        return await self.guard.renew(lease)

    async def release(self, lease: ExecutionLease) -> bool | None:
        return await self.guard.release(lease)

    def renew_interval(self, lease: ExecutionLease) -> timedelta | None:
        return self.guard.renew_interval(lease)


class AheadClock:
    """Real time, ``ahead`` in advance: this replica decides first, so it is the one that
    consumes each occurrence while it is healthy (clocks of real replicas differ too)."""

    def __init__(self, ahead: timedelta) -> None:
        self.ahead = ahead

    def now(self) -> datetime:
        return CLOCK.now() + self.ahead

    async def sleep_until(self, instant: datetime) -> None:
        await CLOCK.sleep_until(instant - self.ahead)


@pytest.mark.parametrize("missed", [MissedRunPolicy.CATCH_UP_ONCE, MissedRunPolicy.REPLAY_ALL])
async def test_a_pause_between_the_pre_run_save_and_the_acquire_runs_the_occurrence_once(
    valkey_url: str, client: Redis, missed: MissedRunPolicy
) -> None:
    job_id = f"gap-{uuid.uuid4().hex[:10]}"
    oracle = Oracle()
    ttl, renew = timedelta(seconds=3), timedelta(seconds=1)
    stores = [ValkeyStateStore(valkey_url) for _ in range(3)]
    guards = [ValkeyExecutionGuard(valkey_url, ttl=ttl, renew_interval=renew) for _ in range(3)]
    slow = SlowAcquire(guards[0], pause=ttl.total_seconds() + 1, pause_at=2)
    schedulers = []
    for i in range(3):
        # The paused replica's acquire must not hit its own deadline: the pause is the fault.
        config = SchedulerConfig(call_timeout=timedelta(seconds=10)) if i == 0 else SchedulerConfig()
        guard = slow if i == 0 else guards[i]
        job = Job(job_id, Interval(PERIOD), oracle.task(f"r{i}"), missed_run_policy=missed)
        clock = AheadClock(timedelta(milliseconds=50)) if i == 0 else CLOCK
        schedulers.append((Scheduler(config, stores[i], guard=guard, clock=clock), job))
    counts: list[int] = []
    try:
        async with running(schedulers):
            deadline = time.monotonic() + 15
            while not slow.resumed:
                assert time.monotonic() < deadline, "the paused replica never resumed"
                count = await stored_count(client, job_id)
                if count is not None:
                    counts.append(count)
                await asyncio.sleep(0.02)
            paused = slow.paused_slot
            await until(lambda: bool(oracle.ran(paused)), "the paused occurrence to run")
            await until(lambda: len(oracle.runs) >= 25, "more runs after the pause")
            counts.append(await stored_count(client, job_id) or 0)
    finally:
        for store in stores:
            await store.aclose()
        for guard in guards:
            await guard.aclose()
    assert oracle.duplicates() == {}
    assert oracle.ran(paused) == ["r0"]
    assert counts == sorted(counts)
    late = next(run for run in oracle.runs if run.scheduled_at == paused)
    assert late.started - paused > ttl  # it really ran after the pause, once


# -- a guard frozen during a run -----------------------------------------------------------------


class RecordingGuard:
    """The real guard; remembers when each renewal call that succeeded started."""

    def __init__(self, guard: ValkeyExecutionGuard) -> None:
        self.guard = guard
        self.leases: list[ExecutionLease] = []
        self.renewed: dict[str, datetime] = {}

    async def acquire(self, slot: ExecutionSlot) -> ExecutionLease | None:
        lease = await self.guard.acquire(slot)
        if lease is not None:
            self.leases.append(lease)
        return lease

    async def renew(self, lease: ExecutionLease) -> bool:
        started = CLOCK.now()
        held = await self.guard.renew(lease)
        if held:
            self.renewed[lease.token] = started
        return held

    async def release(self, lease: ExecutionLease) -> bool | None:
        return await self.guard.release(lease)

    def renew_interval(self, lease: ExecutionLease) -> timedelta | None:
        return self.guard.renew_interval(lease)

    def earliest_expiry(self, lease: ExecutionLease) -> datetime:
        """The soonest the server can let the lease go: the server starts the TTL on receipt,
        after the local time the acquire or the last successful renewal started."""
        assert lease.expires_at is not None
        renewed = self.renewed.get(lease.token)
        return lease.expires_at if renewed is None else max(lease.expires_at, renewed + self.guard.ttl)


async def lease_loss_is_reported_before_expiry(
    store_url: str, ttl: timedelta, renew: timedelta, phases: list[float]
) -> list[float]:
    """For each phase (seconds after a successful renewal): freeze the guard's server during a
    run, wait for ExecutionGuardLost, thaw. Returns how long before the expiry each loss came."""
    binary = find_server_binary()
    assert binary is not None
    events: list[SchedulerEvent] = []
    margins: list[float] = []
    with ServerProcess(binary) as guard_server:
        guard = RecordingGuard(ValkeyExecutionGuard(guard_server.url, ttl=ttl, renew_interval=renew))
        store = ValkeyStateStore(store_url)
        config = SchedulerConfig(lease_lost_policy=LeaseLostPolicy.CANCEL_RUN, guard_error_policy=GuardErrorPolicy.SKIP)
        forever = asyncio.Event()

        async def hold(ctx: TaskContext) -> None:
            await forever.wait()  # runs until the loss of its lease cancels it

        job = Job(f"lost-{uuid.uuid4().hex[:10]}", Interval(PERIOD), hold)
        scheduler = Scheduler(config, store, guard=guard, observer=events.append)
        try:
            async with running([(scheduler, job)]):
                for phase in phases:
                    margins.append(await freeze_during_a_run(guard, guard_server, events, phase))
        finally:
            await store.aclose()
            await guard.guard.aclose()
    return margins


async def freeze_during_a_run(
    guard: RecordingGuard, server: ServerProcess, events: list[SchedulerEvent], phase: float
) -> float:
    """Freeze the guard's server ``phase`` s after a renewal of the next lease; seconds from
    the ExecutionGuardLost event to the earliest moment the server could expire the lease."""
    ttl = guard.guard.ttl.total_seconds()
    seen = len(guard.leases)
    await until(lambda: len(guard.leases) > seen, "a run with a lease", ttl * 2)
    lease = guard.leases[-1]
    await until(lambda: lease.token in guard.renewed, "a renewal", ttl)
    await asyncio.sleep(phase)  # where in the renewal cycle the freeze falls

    def lost() -> list[ExecutionGuardLost]:
        return [e for e in events if isinstance(e, ExecutionGuardLost) and e.key == lease.key]

    server.freeze()
    try:
        await until(lambda: bool(lost()), "the loss of the lease", ttl + 5)
    finally:
        server.thaw()
    return (guard.earliest_expiry(lease) - lost()[0].at).total_seconds()


async def test_a_frozen_guard_is_given_up_before_the_lease_expires(valkey_url: str) -> None:
    ttl = timedelta(seconds=3)
    margins = await lease_loss_is_reported_before_expiry(valkey_url, ttl, timedelta(seconds=1), [0.1, 0.6])
    print(f"lease given up {margins} s before expiry (TTL 3 s, renew 1 s)")
    assert len(margins) == 2
    assert all(0 < margin < 1.0 for margin in margins), margins  # before expiry, not absurdly early


@pytest.mark.chaos
@pytest.mark.timeout(180)
async def test_a_frozen_guard_with_the_cli_defaults_is_given_up_before_the_lease_expires(valkey_url: str) -> None:
    margins = await lease_loss_is_reported_before_expiry(
        valkey_url, timedelta(seconds=30), timedelta(seconds=10), [2.0, 7.0]
    )
    print(f"lease given up {margins} s before expiry (TTL 30 s, renew 10 s)")
    assert len(margins) == 2
    assert all(0 < margin < 6.0 for margin in margins), margins


# -- calls that time out and are applied later ---------------------------------------------------


class FreezeOnSave:
    """The real Valkey store; when armed, its next conditional save first freezes the server.

    So the save (and then the acquire and its fence increment) is surely sent on an open
    connection and left in flight: the frozen server queues it and applies it when it resumes.
    """

    def __init__(self, store: ValkeyStateStore, server: ServerProcess) -> None:
        self.store, self.server = store, server
        self.armed = False
        self.frozen_at: datetime | None = None

    async def load(self, job_id: str) -> JobState | None:
        return await self.store.load(job_id)

    async def save(self, state: JobState) -> None:
        await self.store.save(state)

    async def save_if(self, state: JobState, expected_revision: int) -> bool:
        if self.armed:
            self.armed = False
            self.frozen_at = CLOCK.now()
            self.server.freeze()
        return await self.store.save_if(state, expected_revision)

    async def create(self, state: JobState) -> JobState:
        return await self.store.create(state)

    async def delete(self, job_id: str) -> None:
        await self.store.delete(job_id)

    async def aclose(self) -> None:
        await self.store.aclose()


async def test_calls_timed_out_on_a_frozen_server_and_applied_after_it_resumes_cause_no_duplicate(
    private_server: ServerProcess,
) -> None:
    """Two replicas, store and guard on one server, frozen while a pre-run save, an acquire and
    its fence increment are in flight; they are applied when the server resumes."""
    url = private_server.url
    job_id = f"late-{uuid.uuid4().hex[:10]}"
    oracle = Oracle()
    events: list[SchedulerEvent] = []
    primaries = [FreezeOnSave(ValkeyStateStore(url), private_server) for _ in "ab"]
    stores = [ResilientStateStore(p, probe_interval=timedelta(milliseconds=500)) for p in primaries]
    guards = [ValkeyExecutionGuard(url, ttl=timedelta(seconds=3), renew_interval=timedelta(seconds=1)) for _ in "ab"]
    config = SchedulerConfig(guard_error_policy=GuardErrorPolicy.SKIP)
    schedulers = [
        (
            Scheduler(config, stores[i], guard=guards[i], observer=events.append),
            Job(job_id, Interval(PERIOD), oracle.task(n)),
        )
        for i, n in enumerate("ab")
    ]

    def unavailable() -> int:
        return sum(isinstance(e, RunSkipped) and e.reason is RunSkipReason.GUARD_UNAVAILABLE for e in events)

    try:
        async with running(schedulers):
            await until(lambda: len(oracle.runs) >= 5, "the first runs")
            for primary in primaries:
                primary.armed = True
            await until(lambda: any(p.frozen_at for p in primaries), "the freeze")
            try:
                await until(lambda: unavailable() >= 3, "acquires timing out on the frozen server")
            finally:
                private_server.thaw()
            frozen_at = min(p.frozen_at for p in primaries if p.frozen_at is not None)
            thawed_at = CLOCK.now()
            await until(lambda: sum(isinstance(e, StoreRecovered) for e in events) == 2, "both stores to recover")
            recovered = len(oracle.runs)
            await until(lambda: len(oracle.runs) >= recovered + 10, "runs after the recovery")
    finally:
        fence_client = Redis.from_url(url)
        fence = int(await fence_client.get(guards[0].keys(job_id)[2]) or 0)
        await fence_client.aclose()
        for store in stores:
            await store.aclose()
        for guard in guards:
            await guard.aclose()
    assert oracle.duplicates() == {}
    assert any(isinstance(e, StoreDegraded) for e in events)
    # An acquire that reached the frozen server is applied when it resumes: its fence increment
    # exists, yet no run used that token. Whether one reached it (rather than timing out while
    # a fresh connection was still being set up) is a race, so only the safety side is asserted:
    # every run's token is its own, and the counter is never behind the tokens handed out.
    tokens = [run.fencing_token for run in oracle.runs]
    assert len(tokens) == len(set(tokens))
    assert fence >= len(tokens), (fence, tokens)
    print(f"fence counter {fence}, tokens used {len(tokens)}: {fence - len(tokens)} applied late, unused")
    # No lost occurrence outside the outage: every occurrence due from the first run to the
    # last ran, except those that fell due while the server was frozen (or just before).
    runs = sorted(run.scheduled_at for run in oracle.runs)
    expected, at = [], runs[0]
    while at <= runs[-1]:
        expected.append(at)
        at += PERIOD
    missing = [at for at in expected if at not in set(runs)]
    outside = [at for at in missing if not frozen_at - PERIOD * 2 <= at <= thawed_at + PERIOD * 2]
    assert outside == [], (missing, frozen_at, thawed_at)


# -- the resilient store keeps the cadence -------------------------------------------------------


async def cadence_through_a_freeze(server: ServerProcess, freeze_seconds: float) -> None:
    period = timedelta(milliseconds=100)
    job_id = f"cadence-{uuid.uuid4().hex[:10]}"
    events: list[SchedulerEvent] = []
    oracle = Oracle()
    store = ResilientStateStore(ValkeyStateStore(server.url), probe_interval=timedelta(milliseconds=500))
    config = SchedulerConfig()
    scheduler = Scheduler(config, store, observer=events.append)
    job = Job(job_id, Interval(period), oracle.task("solo", work=0.01))
    lags: list[float] = []
    ticking = True

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while ticking:
            before = loop.time()
            await asyncio.sleep(0.01)
            lags.append(loop.time() - before - 0.01)

    client = Redis.from_url(server.url)
    tick = asyncio.create_task(ticker())
    try:
        async with running([(scheduler, job)]):
            await until(lambda: len(oracle.runs) >= 15, "the first runs")  # a second of cadence before
            frozen_at = CLOCK.now()
            server.freeze()
            try:
                await asyncio.sleep(freeze_seconds)  # the outage lasts this long
            finally:
                server.thaw()
            thawed_at = CLOCK.now()
            await until(lambda: any(isinstance(e, StoreRecovered) for e in events), "the recovery", 10)
            ran = len(oracle.runs)
            await until(lambda: len(oracle.runs) >= ran + 5, "runs after the recovery")
            latest = oracle.runs[-1].trigger_count
            await until_stored(client, job_id, latest)
    finally:
        ticking = False
        await tick
        await client.aclose()
        await store.aclose()
    window_start, window_end = frozen_at - timedelta(seconds=1), thawed_at
    expected = int((window_end - window_start) / period)
    on_time = [
        run
        for run in oracle.runs
        if window_start <= run.scheduled_at <= window_end and run.started - run.scheduled_at <= config.misfire_grace
    ]
    print(
        f"freeze {freeze_seconds:g} s: {len(on_time)} of {expected} occurrences on time, "
        f"max loop lag {max(lags) * 1000:.0f} ms"
    )
    assert len(on_time) >= 0.95 * expected, (len(on_time), expected)
    assert any(isinstance(e, StoreDegraded) for e in events)
    budget = 0.05  # the default call budget at a 100 ms period
    assert max(lags) < budget + 0.1, max(lags)


async def until_stored(client: Redis, job_id: str, at_least: int) -> None:
    """Poll Valkey until the stored trigger_count reaches ``at_least`` (the write-back happened)."""
    deadline = time.monotonic() + 10
    while (await stored_count(client, job_id) or 0) < at_least:
        assert time.monotonic() < deadline, "the state was not written back"
        await asyncio.sleep(0.05)


async def test_a_five_second_freeze_keeps_the_cadence_with_the_resilient_store(private_server: ServerProcess) -> None:
    await cadence_through_a_freeze(private_server, 5)


@pytest.mark.chaos
@pytest.mark.timeout(180)
async def test_a_forty_second_freeze_keeps_the_cadence_with_the_resilient_store(private_server: ServerProcess) -> None:
    await cadence_through_a_freeze(private_server, 40)
