"""ResilientStateStore over a frozen (SIGSTOPped) Valkey: every call within budget, write-back after."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from valkey_server import ServerProcess

from scheduler import JobState, SystemClock, ValkeyStateStore
from scheduler._resilient import ResilientStateStore
from scheduler._store import StoreAttachment
from scheduler.events import SchedulerEvent, StoreDegraded, StoreRecovered

pytestmark = pytest.mark.valkey

PERIOD = 0.1
BUDGET = timedelta(seconds=0.5)


async def run_through_a_freeze(server: ServerProcess, freeze_seconds: float) -> None:
    events: list[SchedulerEvent] = []
    store = ResilientStateStore(ValkeyStateStore(server.url), probe_interval=timedelta(seconds=1))
    detach = store.attach(StoreAttachment(events=events.append, clock=SystemClock(), call_timeout=BUDGET))
    latencies: list[float] = []
    state = await store.load("freeze") or JobState(job_id="freeze")

    async def tick(count: int) -> None:
        nonlocal state
        started = time.monotonic()
        state = state.model_copy(update={"trigger_count": count})
        assert await store.save_if(state, state.revision)
        state = state.with_revision(state.revision + 1)
        latencies.append(time.monotonic() - started)

    try:
        count = 0
        for _ in range(5):
            count += 1
            await tick(count)
        server.freeze()
        frozen_until = time.monotonic() + freeze_seconds
        while time.monotonic() < frozen_until:
            count += 1
            await tick(count)
            await asyncio.sleep(PERIOD)
        assert store.is_degraded
        server.thaw()
        deadline = time.monotonic() + 10
        while store.is_degraded:
            assert time.monotonic() < deadline, "never recovered"
            count += 1
            await tick(count)
            await asyncio.sleep(PERIOD)
        for _ in range(3):
            count += 1
            await tick(count)
        worst = max(latencies)
        print(f"freeze {freeze_seconds:g} s: {len(latencies)} saves, max latency {worst * 1000:.0f} ms")
        assert worst < BUDGET.total_seconds(), worst
        assert [type(e) for e in events] == [StoreDegraded, StoreRecovered]
        fresh = ValkeyStateStore(server.url)
        try:
            stored = await fresh.load("freeze")
        finally:
            await fresh.aclose()
        assert stored is not None
        assert stored.trigger_count == count  # written back, then kept in step
    finally:
        server.thaw()
        detach()
        await store.aclose()


async def test_a_five_second_freeze(private_server: ServerProcess) -> None:
    await run_through_a_freeze(private_server, 5)


@pytest.mark.chaos
@pytest.mark.timeout(120)
async def test_a_forty_second_freeze(private_server: ServerProcess) -> None:
    await run_through_a_freeze(private_server, 40)
