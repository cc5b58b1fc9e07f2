"""ResilientStateStore over a fake primary that fails on demand."""

from __future__ import annotations

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

    async def delete(self, job_id: str) -> None:
        self._check(StoreOperation.DELETE, job_id)
        await super().delete(job_id)


def test_resilient_store_passes_the_contract() -> None:
    """ResilientStateStore over a healthy primary satisfies the store contract."""
    check_state_store(lambda: ResilientStateStore(InMemoryStateStore()))


async def test_degrades_records_and_recovers(clock: FakeClock) -> None:
    """On CONNECTION errors it serves from the mirror, then writes newer states back."""
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
    assert (await store.load("j")).trigger_count == 3  # type: ignore[union-attr]
    assert not store.is_degraded
    assert (await primary.load("j")).trigger_count == 3  # type: ignore[union-attr]
    recovered = [e for e in events if isinstance(e, StoreRecovered)]
    assert [e.written_back for e in recovered] == [1]


async def test_probe_is_rate_limited(clock: FakeClock) -> None:
    """While degraded, the primary is tried at most once per probe_interval."""
    primary = FlakyStore()
    store = ResilientStateStore(primary, probe_interval=5 * S, clock=clock)
    primary.down = True
    await store.save(JobState(job_id="p"))
    calls = primary.calls
    for _ in range(10):
        await store.save(JobState(job_id="p", trigger_count=1))
    assert primary.calls == calls
    clock.advance(5 * S)
    await store.load("p")
    assert primary.calls == calls + 1


async def test_primary_newer_state_is_not_overwritten(clock: FakeClock) -> None:
    """A primary state with a higher trigger_count (another instance) wins over the mirror."""
    primary = FlakyStore()
    store = ResilientStateStore(primary, probe_interval=S, clock=clock)
    primary.down = True
    await store.save(JobState(job_id="n", trigger_count=2))
    primary.down = False
    await InMemoryStateStore.save(primary, JobState(job_id="n", trigger_count=9))
    clock.advance(S)
    assert (await store.load("n")).trigger_count == 9  # type: ignore[union-attr]


async def test_deletes_during_outage_are_replayed(clock: FakeClock) -> None:
    """A delete recorded while degraded reaches the primary on recovery."""
    primary = FlakyStore()
    store = ResilientStateStore(primary, probe_interval=S, clock=clock)
    await store.save(JobState(job_id="d"))
    primary.down = True
    await store.delete("d")
    primary.down = False
    clock.advance(S)
    await store.load("other")
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
