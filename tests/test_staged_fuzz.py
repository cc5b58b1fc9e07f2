"""Outcomes carried by the next save, over random policies, controls, guards and conflicting
writers: every consumed occurrence is in the ledger once, and each run is reported complete
once, after its outcome is stored."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from scheduler import (
    InMemoryStateStore,
    Interval,
    Job,
    JobState,
    JobTimeWindow,
    LeaseLostPolicy,
    MissedRunPolicy,
    OverlapPolicy,
    Scheduler,
    SchedulerConfig,
    TaskContext,
    TerminalStatePolicy,
)
from scheduler.events import RunCompleted, RunStarted, SchedulerEvent
from scheduler.testing import FakeClock, RecordingObserver

from .conftest import T0
from .helpers import poke
from .test_guard_policies import FakeGuard
from .test_ledger import S, assert_consistent, everything, run_until


class ContendedStore(InMemoryStateStore):
    """Saves suspend (or not), and another writer sometimes saves just before ours.

    Never twice in a row: a save that loses twice gives its outcome up by design.
    """

    def __init__(self, rng: random.Random, suspends: bool, conflicts: float) -> None:
        super().__init__()
        self.rng, self.suspends, self.conflicts = rng, suspends, conflicts
        self.just_conflicted = False

    async def _other_writer(self, job_id: str) -> None:
        if self.suspends:
            await asyncio.sleep(0)
        stored = self.snapshot().get(job_id)
        if stored is None or self.just_conflicted or self.rng.random() >= self.conflicts:
            self.just_conflicted = False
            return
        self.just_conflicted = True
        assert await super().save_if(
            stored.rescheduled(stored.next_run_at, stored.schedule_fingerprint), stored.revision
        )

    async def save_if(self, state: JobState, expected_revision: int) -> bool:
        await self._other_writer(state.job_id)
        return await super().save_if(state, expected_revision)

    async def save_with_ledger(self, state: JobState, entries: Any, **options: Any) -> bool:
        await self._other_writer(state.job_id)
        return await super().save_with_ledger(state, entries, **options)


@pytest.mark.parametrize("seed", range(120))
async def test_outcomes_are_stored_and_reported_once(seed: int) -> None:
    rng = random.Random(seed)
    clock = FakeClock(T0)
    store = ContendedStore(rng, rng.random() < 0.5, rng.choice([0.0, 0.05, 0.1]))
    durations = [rng.choice([0, 0, 3, 12, 25]) for _ in range(200)]
    count = 0

    async def task(ctx: TaskContext) -> None:
        nonlocal count
        count += 1
        seconds = durations[count % len(durations)]
        if seconds:
            await clock.sleep_until(clock.now() + seconds * S)
        else:  # ends without suspending, possibly with the next occurrences already due
            clock.advance(rng.choice([0, 11, 25]) * S)
        if count % 4 == 0:
            raise RuntimeError("every fourth run fails")

    job = Job(
        "fuzz",
        Interval(10),
        task,
        missed_run_policy=rng.choice(list(MissedRunPolicy)),
        overlap_policy=rng.choice(list(OverlapPolicy)),
        time_window=rng.choice([None, JobTimeWindow(segments=[("00:00:30", "00:02:00")])]),
        max_runs=rng.choice([None, 3, 8]),
    )
    guard = None
    if rng.random() < 0.4:
        guard = FakeGuard(clock, ttl=30 * S, renew_every=5 * S)
        guard.renew_results = [rng.choice([True, True, True, False]) for _ in range(50)]
    config = SchedulerConfig(
        catch_up_window=rng.choice([None, 25.0]),
        resume_interrupted=rng.random() < 0.3,
        lease_lost_policy=rng.choice(list(LeaseLostPolicy)),
        terminal_state_policy=rng.choice(list(TerminalStatePolicy)),
    )
    for _ in range(rng.randint(1, 3)):
        recorder = RecordingObserver()
        stored_runs: list[int] = []  # runs_started in the store as each RunCompleted is emitted

        def when_completed(event: SchedulerEvent, stored_runs: list[int] = stored_runs) -> None:
            if isinstance(event, RunCompleted):
                stored = store.snapshot().get("fuzz")
                stored_runs.append(0 if stored is None else stored.runs_started)

        extra: dict[str, Any] = {} if guard is None else {"guard": guard}
        scheduler = Scheduler(config, store=store, clock=clock, observer=[recorder, when_completed], **extra)
        control, handle = rng.random(), scheduler.handle()

        poker = asyncio.create_task(poke(clock, handle, clock.now() + rng.randint(5, 60) * S, control, cancels=True))
        async with asyncio.timeout(20):  # a bound on a loop left asleep, not a wait for a state
            report = await run_until(
                scheduler, job, clock, clock.now() + rng.randint(20, 120) * S, rng.choice([None, 0.0, 5.0])
            )
        poker.cancel()

        completed = [e.trigger_count for e in recorder.events if isinstance(e, RunCompleted)]
        assert sorted(completed) == sorted(r.trigger_count for r in report.history)
        assert stored_runs == sorted(stored_runs)  # each reported once its outcome is stored
        first: dict[tuple[type, int], int] = {}
        for i, event in enumerate(recorder.events):
            if isinstance(event, RunStarted | RunCompleted):
                first.setdefault((type(event), event.trigger_count), i)
        for trigger_count in completed:
            started = first.get((RunStarted, trigger_count))
            assert started is None or started < first[(RunCompleted, trigger_count)]
        clock.advance(rng.randint(0, 200) * S)  # downtime
    state = await store.load("fuzz")
    if state is not None and config.terminal_state_policy is TerminalStatePolicy.RETAIN:
        assert_consistent(await everything(store, "fuzz"), state)
