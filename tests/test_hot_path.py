"""The run loop's shortcuts give what the general code gives: same records, contexts, events, logs."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from scheduler import (
    InMemoryStateStore,
    Interval,
    Job,
    JobState,
    LedgerFate,
    MissedRunPolicy,
    RetryPolicy,
    Scheduler,
    SchedulerConfig,
    TaskContext,
)
from scheduler._slots import slot_filler
from scheduler.events import RunCompleted, StateConflict
from scheduler.testing import FakeClock, RecordingObserver


@dataclass(frozen=True, slots=True)
class Awkward:
    instance: int
    cls: str
    set_instance: float = 1.0
    extra: list[int] = field(default_factory=list)


def test_slot_filler_builds_what_the_constructor_builds_whatever_the_field_names() -> None:
    build = slot_filler(Awkward)

    built = build(1, "a", 2.0, [3])

    assert built == Awkward(1, "a", 2.0, [3])
    assert type(built) is Awkward
    with pytest.raises(AttributeError):
        built.instance = 2  # type: ignore[misc]  # still frozen


def test_slot_filler_refuses_a_class_without_slots() -> None:
    @dataclass(frozen=True)
    class Plain:
        x: int

    with pytest.raises(TypeError, match="Plain is not a slotted dataclass"):
        slot_filler(Plain)


class Failure(Exception):
    returncode = 3


OUTCOMES: dict[str, BaseException | None] = {
    "success": None,
    "failure with an exit code": Failure("exit 3"),
    "a TimeoutError of the task's own": TimeoutError("slow backend"),
}


async def _run(clock: FakeClock, raised: BaseException | None, one_attempt_policy: bool) -> dict[str, Any]:
    """One run, through the plain path (no retry policy) or the general one (a policy of one attempt)."""
    contexts: list[TaskContext] = []

    async def task(ctx: TaskContext) -> None:
        contexts.append(ctx)
        if raised is not None:
            raise raised

    store, observer = InMemoryStateStore(), RecordingObserver()
    retry = RetryPolicy(max_attempts=1) if one_attempt_policy else None
    job = Job("same", Interval(5), task, max_runs=2, retry=retry)
    report = await Scheduler(SchedulerConfig(), store=store, clock=clock, observer=observer).run(job)
    ledger = await store.history("same")
    return {
        "records": report.history,
        "contexts": [c.run for c in contexts],
        "events": [type(e).__name__ for e in observer.events],
        "ledger": [(e.fate, e.error, e.exit_code, e.attempts) for e in ledger],
        "state": report.state.model_dump(exclude={"revision"}),
    }


@pytest.mark.parametrize("raised", list(OUTCOMES.values()), ids=list(OUTCOMES))
async def test_a_plain_run_matches_the_general_path(raised: BaseException | None, caplog: Any) -> None:
    caplog.set_level(logging.ERROR, logger="scheduler")
    plain = await _run(FakeClock(), raised, one_attempt_policy=False)
    plain_logs = [r.getMessage() for r in caplog.records]
    caplog.clear()
    general = await _run(FakeClock(), raised, one_attempt_policy=True)

    assert plain == general
    assert plain_logs == [r.getMessage() for r in caplog.records]


class SaveCountingStore(InMemoryStateStore):
    """Counts saves; a subclass, so the loop goes through the store's coroutines."""

    def __init__(self) -> None:
        super().__init__()
        self.saves: list[int] = []  # the trigger count of each saved state

    async def save_if(self, state: JobState, expected_revision: int) -> bool:
        self.saves.append(state.trigger_count)
        return await super().save_if(state, expected_revision)

    async def save_with_ledger(self, state: JobState, entries: Any, **options: Any) -> bool:
        self.saves.append(state.trigger_count)
        return await super().save_with_ledger(state, entries, **options)


async def test_at_saturation_an_outcome_rides_with_the_save_that_consumes_the_next_occurrence() -> None:
    clock, store = FakeClock(), SaveCountingStore()
    stored_at_completion: list[tuple[int, int]] = []

    async def task(ctx: TaskContext) -> None:
        clock.advance(timedelta(seconds=2))  # each run outlasts the interval: the next one is due at once

    def observer(event: Any) -> None:
        if isinstance(event, RunCompleted):  # reported once saved, with its ledger entry
            state = store.snapshot()["busy"]
            stored_at_completion.append((state.runs_started, len(store._ledger["busy"])))

    job = Job("busy", Interval(1), task, max_runs=4, missed_run_policy=MissedRunPolicy.REPLAY_ALL)
    report = await Scheduler(SchedulerConfig(), store=store, clock=clock, observer=observer).run(job)

    # Consuming run n carries the outcome of run n - 1; the last outcome is saved alone.
    assert store.saves == [1, 2, 3, 4, 4]
    assert report.state.runs_started == 4
    assert report.state.open_runs == ()
    assert [e.fate for e in await store.history("busy")] == [LedgerFate.SUCCESS] * 4
    assert stored_at_completion == [(1, 1), (2, 2), (3, 3), (4, 4)]


async def test_an_outcome_staged_for_the_next_save_survives_a_conflict_on_that_save() -> None:
    clock, store = FakeClock(), InMemoryStateStore()
    ran: list[int] = []

    async def task(ctx: TaskContext) -> None:
        ran.append(ctx.run.trigger_count)
        clock.advance(timedelta(seconds=2))
        if ctx.run.trigger_count == 1:  # another writer saves while run 1 runs: consuming run 2 conflicts
            stored = await store.load("busy")
            assert stored is not None
            assert await store.save_if(stored.rescheduled(stored.next_run_at, "other"), stored.revision)

    observer = RecordingObserver()
    job = Job("busy", Interval(1), task, max_runs=3, missed_run_policy=MissedRunPolicy.REPLAY_ALL)
    report = await Scheduler(SchedulerConfig(), store=store, clock=clock, observer=observer).run(job)

    assert [e.during for e in observer.events if isinstance(e, StateConflict)] == ["consume"]
    assert ran == [1, 2, 3]
    assert report.state.runs_started == 3
    assert report.state.open_runs == ()
    assert report.state.schedule_fingerprint == "other"  # the other writer's document, ours merged in
    entries = sorted((e.scheduled_at, e.fate) for e in await store.history("busy"))
    assert entries == [(r.scheduled_at, LedgerFate.SUCCESS) for r in report.history]
