"""ResilientStateStore over a fake primary that fails on demand."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from scheduler import (
    InMemoryStateStore,
    Interval,
    Job,
    JobState,
    ResilientStateStore,
    Scheduler,
    StoreError,
    StoreErrorKind,
    StoreOperation,
    TaskContext,
)
from scheduler.events import SchedulerEvent, StoreDegraded, StoreRecovered
from scheduler.testing import FakeClock, RecordingObserver, check_state_store

from .conftest import T0

S = timedelta(seconds=1)


class FlakyStore(InMemoryStateStore):
    """An in-memory store that raises CONNECTION (or DATA) errors while ``down`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.kind = StoreErrorKind.CONNECTION
        self.calls = 0

    def _check(self, op: StoreOperation, job_id: str) -> None:
        self.calls += 1
        if self.down:
            raise StoreError(self.kind, op, job_id, "primary unavailable")

    async def load(self, job_id: str) -> JobState | None:
        self._check(StoreOperation.LOAD, job_id)
        return await super().load(job_id)

    async def save(self, state: JobState) -> None:
        self._check(StoreOperation.SAVE, state.job_id)
        await super().save(state)

    async def save_if(self, state: JobState, expected_revision: int) -> bool:
        self._check(StoreOperation.SAVE, state.job_id)
        return await super().save_if(state, expected_revision)

    async def create(self, state: JobState) -> JobState:
        self._check(StoreOperation.SAVE, state.job_id)
        return await super().create(state)

    async def delete(self, job_id: str) -> None:
        self._check(StoreOperation.DELETE, job_id)
        await super().delete(job_id)


async def settle(store: ResilientStateStore, clock: FakeClock) -> None:
    """Let the background probe run after the clock moved (a few loop turns, bounded)."""
    for _ in range(100):
        if not store.is_degraded:
            return
        await asyncio.sleep(0)


def test_resilient_store_passes_the_contract() -> None:
    """ResilientStateStore over a healthy primary satisfies the store contract."""
    check_state_store(lambda: ResilientStateStore(InMemoryStateStore()))


async def test_degrades_records_and_recovers(clock: FakeClock) -> None:
    """On CONNECTION errors it serves from the mirror; a background probe writes back."""
    clock.auto_advance = False
    primary = FlakyStore()
    events: list[SchedulerEvent] = []
    store = ResilientStateStore(primary, probe_interval=5 * S, clock=clock, observer=events.append)
    await store.save(JobState(job_id="j", trigger_count=1))
    primary.down = True
    await store.save(JobState(job_id="j", trigger_count=2))
    assert store.is_degraded
    assert (await store.load("j")).trigger_count == 2  # type: ignore[union-attr]
    assert [type(e) for e in events] == [StoreDegraded]
    assert events[0].operation is StoreOperation.SAVE  # type: ignore[attr-defined]
    primary.down = False
    await store.save(JobState(job_id="j", trigger_count=3))  # before probe_interval: still mirrored
    assert store.is_degraded
    assert (await primary.load("j")).trigger_count == 1  # type: ignore[union-attr]
    clock.advance(5 * S)
    await settle(store, clock)
    assert not store.is_degraded
    assert (await store.load("j")).trigger_count == 3  # type: ignore[union-attr]
    assert (await primary.load("j")).trigger_count == 3  # type: ignore[union-attr]
    recovered = [e for e in events if isinstance(e, StoreRecovered)]
    assert [e.written_back for e in recovered] == [1]
    await store.aclose()


async def test_scheduler_calls_never_probe(clock: FakeClock) -> None:
    """While degraded, calls are served from memory; only the background task tries the primary."""
    clock.auto_advance = False
    primary = FlakyStore()
    store = ResilientStateStore(primary, probe_interval=5 * S, clock=clock)
    primary.down = True
    await store.save(JobState(job_id="p"))
    calls = primary.calls
    for count in range(10):
        await store.save(JobState(job_id="p", trigger_count=count))
        await store.load("p")
    assert primary.calls == calls
    clock.advance(5 * S)
    for _ in range(20):
        await asyncio.sleep(0)
    assert primary.calls == calls + 1  # one probe, still down
    assert store.is_degraded
    await store.aclose()


async def test_primary_newer_state_is_not_overwritten(clock: FakeClock) -> None:
    """A primary state with a higher trigger_count (another instance) wins over the mirror."""
    clock.auto_advance = False
    primary = FlakyStore()
    store = ResilientStateStore(primary, probe_interval=S, clock=clock)
    await store.save(JobState(job_id="n", trigger_count=1))
    primary.down = True
    await store.save(JobState(job_id="n", trigger_count=2))
    primary.down = False
    await InMemoryStateStore.save(primary, JobState(job_id="n", trigger_count=9))
    clock.advance(S)
    await settle(store, clock)
    adopted = await store.load("n")
    assert adopted is not None
    assert adopted.trigger_count == 9


async def test_revisions_stay_consistent_across_an_outage(clock: FakeClock) -> None:
    """A caller's conditional saves keep working after the write-back, and conflicts still show."""
    clock.auto_advance = False
    primary = FlakyStore()
    store = ResilientStateStore(primary, probe_interval=S, clock=clock)
    assert await store.save_if(JobState(job_id="r", trigger_count=1), 0)
    primary.down = True
    assert await store.save_if(JobState(job_id="r", trigger_count=2), 1)  # degrades, recorded
    assert await store.save_if(JobState(job_id="r", trigger_count=3), 2)
    assert not await store.save_if(JobState(job_id="r", trigger_count=9), 1)  # stale, even in memory
    primary.down = False
    clock.advance(S)
    await settle(store, clock)
    assert not store.is_degraded
    assert (await primary.load("r")).trigger_count == 3  # type: ignore[union-attr]
    assert await store.save_if(JobState(job_id="r", trigger_count=4), 3)  # the caller's numbering holds
    assert (await primary.load("r")).trigger_count == 4  # type: ignore[union-attr]
    assert not await store.save_if(JobState(job_id="r", trigger_count=9), 3)
    loaded = await store.load("r")
    assert loaded is not None
    assert (loaded.trigger_count, loaded.revision) == (4, 4)


async def test_a_late_applied_save_does_not_block_the_write_back(clock: FakeClock) -> None:
    """A timed-out save the primary applied anyway: the write-back reloads and goes over it."""
    clock.auto_advance = False
    primary = FlakyStore()
    store = ResilientStateStore(primary, probe_interval=S, clock=clock)
    assert await store.save_if(JobState(job_id="l", trigger_count=1), 0)
    primary.down = True
    assert await store.save_if(JobState(job_id="l", trigger_count=2), 1)
    assert await store.save_if(JobState(job_id="l", trigger_count=3), 2)
    primary.down = False
    await InMemoryStateStore.save_if(primary, JobState(job_id="l", trigger_count=2), 1)  # applied late
    clock.advance(S)
    await settle(store, clock)
    assert (await primary.load("l")).trigger_count == 3  # type: ignore[union-attr]


async def test_a_first_load_is_never_answered_from_memory(clock: FakeClock) -> None:
    primary = FlakyStore()
    primary.down = True
    store = ResilientStateStore(primary, clock=clock)
    with pytest.raises(StoreError) as caught:
        await store.load("never-seen")
    assert caught.value.kind is StoreErrorKind.CONNECTION
    assert not store.is_degraded


async def test_a_hung_primary_call_degrades_within_the_budget(clock: FakeClock) -> None:
    """A primary call that does not answer counts as a connection error after 0.8 x call_timeout."""
    from scheduler._store import StoreAttachment

    class HungStore(FlakyStore):
        async def save_if(self, state: JobState, expected_revision: int) -> bool:
            if self.down:
                await asyncio.Event().wait()
            return await super().save_if(state, expected_revision)

    primary = HungStore()
    store = ResilientStateStore(primary, clock=clock)
    events: list[SchedulerEvent] = []
    detach = store.attach(StoreAttachment(events=events.append, clock=clock, call_timeout=timedelta(seconds=0.05)))
    assert await store.save_if(JobState(job_id="h"), 0)
    primary.down = True
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await store.save_if(JobState(job_id="h", trigger_count=1), 1)
    assert loop.time() - started < 0.5
    assert store.is_degraded
    assert "within 0.04 s" in events[0].error  # type: ignore[attr-defined]
    detach()
    assert store._probe is None
    await store.aclose()


async def test_a_first_load_gets_the_stores_own_budget(clock: FakeClock) -> None:
    """A first load has no fallback: a slow one (a connection being opened) may take the
    constructor's budget; a later slow load of the same job degrades within the scheduler's."""
    from scheduler._store import StoreAttachment

    class SlowLoads(FlakyStore):
        async def load(self, job_id: str) -> JobState | None:
            await asyncio.sleep(0.1)
            return await super().load(job_id)

    store = ResilientStateStore(SlowLoads(), clock=clock, call_timeout=timedelta(seconds=1))
    events: list[SchedulerEvent] = []
    store.attach(StoreAttachment(events=events.append, clock=clock, call_timeout=timedelta(seconds=0.05)))
    assert await store.load("slow") is None  # 0.1 s: more than 0.04 s, less than 0.8 s
    assert not store.is_degraded
    assert await store.load("slow") is None  # known now: served from memory after 0.04 s
    assert store.is_degraded
    assert "within 0.04 s" in events[0].error  # type: ignore[attr-defined]
    await store.aclose()


async def test_deletes_during_outage_are_replayed(clock: FakeClock) -> None:
    """A delete recorded while degraded reaches the primary on recovery."""
    clock.auto_advance = False
    primary = FlakyStore()
    store = ResilientStateStore(primary, probe_interval=S, clock=clock)
    await store.save(JobState(job_id="d"))
    primary.down = True
    await store.delete("d")
    primary.down = False
    clock.advance(S)
    await settle(store, clock)
    assert await primary.load("d") is None


async def test_data_errors_are_never_masked(clock: FakeClock) -> None:
    """A DATA error from the primary propagates instead of degrading."""
    primary = FlakyStore()
    primary.kind = StoreErrorKind.DATA
    primary.down = True
    store = ResilientStateStore(primary, clock=clock)
    with pytest.raises(StoreError) as info:
        await store.load("x")
    assert info.value.kind is StoreErrorKind.DATA
    assert not store.is_degraded


async def test_scheduler_keeps_running_through_an_outage(clock: FakeClock, recorder: RecordingObserver) -> None:
    """A job on a resilient store keeps its cadence while the primary is down and resyncs after."""
    primary = FlakyStore()
    store = ResilientStateStore(primary, probe_interval=5 * S)
    runs: list[int] = []

    async def task(ctx: TaskContext) -> None:
        runs.append(ctx.run.trigger_count)
        primary.down = 2 <= ctx.run.trigger_count < 6

    report = await Scheduler(store=store, clock=clock, observer=recorder).run(Job("o", Interval(2), task, max_runs=10))
    assert runs == list(range(1, 11))
    assert [type(e).__name__ for e in recorder.events if isinstance(e, StoreDegraded | StoreRecovered)] == [
        "StoreDegraded",
        "StoreRecovered",
    ]
    stored = await primary.load("o")
    assert stored is not None
    assert stored.with_revision(0) == report.state.with_revision(0)
    assert report.state.trigger_count == 10
    assert report.state.last_run_at > T0  # type: ignore[operator]
