"""Persistence through the loop: save-before-dispatch, restart, repair, reconcile, terminal, resume."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest

from scheduler import (
    AtTimes,
    Cron,
    InMemoryStateStore,
    Interval,
    Job,
    JobState,
    RunStatus,
    Scheduler,
    SchedulerConfig,
    SchedulerStopReason,
    StateLoadSource,
    TaskContext,
    TerminalStatePolicy,
)
from scheduler.events import StateLoaded, StateReconciled, StateRepaired, TerminalStateDeleted
from scheduler.testing import FakeClock, RecordingObserver, check_state_store

from .conftest import T0
from .helpers import recorder_task

S = timedelta(seconds=1)


def test_in_memory_store_passes_the_contract() -> None:
    """InMemoryStateStore satisfies the StateStore contract suite."""
    check_state_store(InMemoryStateStore)


async def test_new_state_is_saved_once(clock: FakeClock, recorder: RecordingObserver) -> None:
    """A job with no stored state starts NEW, with next_run_at the first occurrence."""
    store = InMemoryStateStore()
    await Scheduler(store=store, clock=clock, observer=recorder).run(
        Job("n", Interval(5), recorder_task([]), max_runs=1)
    )
    loaded = recorder.of_type(StateLoaded)[0]
    assert (loaded.source, loaded.trigger_count, loaded.next_run_at) == (StateLoadSource.NEW, 0, T0 + 5 * S)


async def test_state_is_saved_before_dispatch(clock: FakeClock) -> None:
    """When the task starts, the store already holds the advanced state (at-most-once)."""
    store = InMemoryStateStore()
    seen: list[JobState | None] = []

    async def task(ctx: TaskContext) -> None:
        seen.append(await store.load("s"))

    await Scheduler(store=store, clock=clock).run(Job("s", Interval(5), task, max_runs=2))
    assert [(s.trigger_count, s.next_run_at) for s in seen if s] == [(1, T0 + 10 * S), (2, None)]


async def test_restart_resumes_from_next_run_at(clock: FakeClock) -> None:
    """A second Scheduler sharing the store continues from next_run_at and trigger_count."""
    store = InMemoryStateStore()
    log: list[TaskContext] = []
    scheduler = Scheduler(store=store, clock=clock)

    async def task(ctx: TaskContext) -> None:
        log.append(ctx)
        if ctx.run.trigger_count == 2:
            scheduler.handle().shutdown()

    job = Job("r", Interval(10), task, max_runs=4)
    first = await scheduler.run(job)
    assert (first.stop_reason, first.state.trigger_count) == (SchedulerStopReason.SHUTDOWN, 2)
    second = await Scheduler(store=store, clock=clock).run(job)
    assert [c.run.trigger_count for c in log] == [1, 2, 3, 4]
    assert [c.run.scheduled_at for c in log] == [T0 + 10 * S * i for i in range(1, 5)]
    assert second.stop_reason is SchedulerStopReason.TERMINAL


async def test_restart_after_downtime_applies_missed_policy(clock: FakeClock) -> None:
    """Restarting long after next_run_at catches up once (the default policy)."""
    store = InMemoryStateStore()
    await store.save(JobState(job_id="d", trigger_count=3, next_run_at=T0 - timedelta(hours=1)))
    log: list[TaskContext] = []
    await Scheduler(store=store, clock=clock).run(Job("d", Interval(60), recorder_task(log), max_runs=65))
    assert log[0].run.catch_up is True
    assert log[0].run.scheduled_at == T0
    assert log[0].run.trigger_count == 64


async def test_interval_with_lost_next_run_is_repaired(clock: FakeClock, recorder: RecordingObserver) -> None:
    """An unfinished Interval state with next_run_at None is repaired to now + every."""
    store = InMemoryStateStore()
    await store.save(JobState(job_id="i", trigger_count=2, next_run_at=None))
    log: list[TaskContext] = []
    await Scheduler(store=store, clock=clock, observer=recorder).run(
        Job("i", Interval(30), recorder_task(log), max_runs=3)
    )
    repaired = recorder.of_type(StateRepaired)[0]
    assert (repaired.trigger_count, repaired.repaired_next_run_at) == (2, T0 + 30 * S)
    assert recorder.of_type(StateLoaded)[0].source is StateLoadSource.REPAIRED
    assert [c.run.scheduled_at for c in log] == [T0 + 30 * S]


async def test_finished_interval_is_not_repaired(clock: FakeClock) -> None:
    """A state that reached max_runs stays terminal: the job ends at once."""
    store = InMemoryStateStore()
    await store.save(JobState(job_id="f", trigger_count=3, next_run_at=None))
    report = await Scheduler(store=store, clock=clock).run(Job("f", Interval(30), recorder_task([]), max_runs=3))
    assert (report.stop_reason, report.history) == (SchedulerStopReason.TERMINAL, ())


async def test_changed_schedule_is_reconciled(clock: FakeClock, recorder: RecordingObserver) -> None:
    """A stored state from another schedule gets next_run_at recomputed and StateReconciled."""
    store = InMemoryStateStore()
    old = Interval(3600)
    await store.save(
        JobState(
            job_id="c",
            next_run_at=T0 + timedelta(hours=1),
            schedule_fingerprint=old.fingerprint(SchedulerConfig().timezone),
        )
    )
    log: list[TaskContext] = []
    await Scheduler(store=store, clock=clock, observer=recorder).run(
        Job("c", Cron("*/5 * * * *"), recorder_task(log), max_runs=1)
    )
    event = recorder.of_type(StateReconciled)[0]
    assert (event.previous_next_run_at, event.next_run_at) == (T0 + timedelta(hours=1), T0 + timedelta(minutes=5))
    assert log[0].run.scheduled_at == T0 + timedelta(minutes=5)


async def test_reference_format_document_is_adopted(clock: FakeClock, recorder: RecordingObserver) -> None:
    """A six-field reference document (no fingerprint) is restored as is."""
    store = InMemoryStateStore()
    doc = {"job_id": "ref", "trigger_count": 1, "last_run_at": "2024-12-31T23:59:00.000000000Z",
           "last_success_at": None, "next_run_at": "2025-01-01T00:01:00.123456789Z", "last_error": None}  # fmt: skip
    await store.save(JobState.model_validate_json(json.dumps(doc)))
    await Scheduler(store=store, clock=clock, observer=recorder).run(
        Job("ref", Interval(60), recorder_task([]), max_runs=2)
    )
    loaded = recorder.of_type(StateLoaded)[0]
    assert loaded.source is StateLoadSource.RESTORED
    assert loaded.next_run_at == datetime(2025, 1, 1, 0, 1, 0, 123456, tzinfo=UTC)
    assert recorder.of_type(StateReconciled) == []


async def test_delete_policy_removes_terminal_state(clock: FakeClock, recorder: RecordingObserver) -> None:
    """TerminalStatePolicy.DELETE deletes the stored state at the end and says so."""
    store = InMemoryStateStore()
    config = SchedulerConfig(terminal_state_policy=TerminalStatePolicy.DELETE)
    await Scheduler(config, store, clock=clock, observer=recorder).run(
        Job("x", Interval(5), recorder_task([]), max_runs=2)
    )
    assert await store.load("x") is None
    assert recorder.of_type(TerminalStateDeleted)[0].trigger_count == 2


async def test_retain_policy_keeps_terminal_state(clock: FakeClock) -> None:
    """The default RETAIN policy keeps the terminal state (next_run_at None)."""
    store = InMemoryStateStore()
    await Scheduler(store=store, clock=clock).run(Job("k", Interval(5), recorder_task([]), max_runs=1))
    state = await store.load("k")
    assert state is not None
    assert (state.trigger_count, state.next_run_at, state.last_status) == (1, None, RunStatus.SUCCESS)


async def test_terminal_state_exits_at_once(clock: FakeClock) -> None:
    """Running a job whose stored state is terminal ends at once with an empty history."""
    store = InMemoryStateStore()
    job = Job("t", AtTimes([T0 + S]), recorder_task([]))
    await Scheduler(store=store, clock=clock).run(job)
    again = await Scheduler(store=store, clock=clock).run(job)
    assert (again.stop_reason, again.history) == (SchedulerStopReason.TERMINAL, ())


async def test_empty_at_times_is_terminal_without_running(clock: FakeClock) -> None:
    """An empty AtTimes ends Terminal without running."""
    report = await Scheduler(clock=clock).run(Job("e", AtTimes([]), recorder_task([])))
    assert (report.stop_reason, report.history, report.state.next_run_at) == (SchedulerStopReason.TERMINAL, (), None)


async def test_resume_interrupted_reruns_the_in_flight_occurrence(clock: FakeClock) -> None:
    """With resume_interrupted, an occurrence interrupted by a crash runs again first, resumed=True."""
    store = InMemoryStateStore()
    config = SchedulerConfig(resume_interrupted=True)
    started = asyncio.Event()

    async def hang(ctx: TaskContext) -> None:
        started.set()
        await asyncio.sleep(3600)

    crashed = asyncio.create_task(Scheduler(config, store, clock=clock).run(Job("z", Interval(10), hang)))
    await asyncio.wait_for(started.wait(), 5)
    state = await store.load("z")
    assert state is not None
    assert state.in_flight is not None
    assert state.in_flight.occurrence == T0 + 10 * S
    # Simulate a crash: the task dies and nothing is saved afterwards.
    store_copy = InMemoryStateStore()
    await store_copy.save(state)
    crashed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await crashed
    log: list[TaskContext] = []
    report = await Scheduler(config, store_copy, clock=clock).run(
        Job("z", Interval(10), recorder_task(log), max_runs=2)
    )
    assert [(c.run.scheduled_at, c.run.resumed) for c in log] == [(T0 + 10 * S, True), (T0 + 20 * S, False)]
    assert report.state.in_flight is None


async def test_without_resume_interrupted_nothing_is_replayed(clock: FakeClock) -> None:
    """By default (at-most-once) a stored in_flight marker is ignored."""
    store = InMemoryStateStore()
    from scheduler._state import InFlight

    await store.save(JobState(job_id="a", trigger_count=1, next_run_at=T0 + 10 * S,
                              in_flight=InFlight(occurrence=T0, started_at=T0)))  # fmt: skip
    log: list[TaskContext] = []
    await Scheduler(store=store, clock=clock).run(Job("a", Interval(10), recorder_task(log), max_runs=2))
    assert [c.run.scheduled_at for c in log] == [T0 + 10 * S]


def test_job_state_json_round_trip() -> None:
    """JobState serialises timestamps as RFC 3339 UTC with Z and reads them back."""
    state = JobState(job_id="j", trigger_count=2, next_run_at=T0, last_status=RunStatus.FAILED)
    text = state.model_dump_json()
    assert '"next_run_at":"2025-01-01T00:00:00.000000Z"' in text
    assert JobState.model_validate_json(text) == state


def test_job_state_ignores_unknown_fields() -> None:
    """Unknown fields in a stored document are ignored."""
    state = JobState.model_validate_json('{"job_id": "u", "future_field": 1}')
    assert (state.job_id, state.trigger_count, state.next_run_at) == ("u", 0, None)


def test_report_to_dict_is_json_ready(clock: FakeClock) -> None:
    """SchedulerReport.to_dict() serialises with json.dumps and names the stop reason."""
    report = Scheduler(clock=clock).run_sync(Job("p", Interval(5), recorder_task([]), max_runs=2))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["stop_reason"] == "terminal"
    assert [h["status"] for h in data["history"]] == ["success", "success"]
    assert data["state"]["trigger_count"] == 2


async def test_history_is_bounded(clock: FakeClock) -> None:
    """The report keeps only the last history_limit runs, oldest first."""
    report = await Scheduler(SchedulerConfig(history_limit=3), clock=clock).run(
        Job("h", Interval(5), recorder_task([]), max_runs=10)
    )
    assert [r.trigger_count for r in report.history] == [8, 9, 10]


async def test_instances_starting_together_agree_on_the_first_occurrence(recorder: RecordingObserver) -> None:
    """Two instances that find no state at the same moment adopt the state the first one created."""
    from tests.test_guard_policies import FakeGuard

    class SlowLoadStore(InMemoryStateStore):
        async def load(self, job_id: str) -> JobState | None:
            await asyncio.sleep(0)  # both instances read "no state" before either writes
            return await super().load(job_id)

    store, guard = SlowLoadStore(), FakeGuard()
    ran: list[datetime] = []

    async def task(ctx: TaskContext) -> None:
        ran.append(ctx.run.scheduled_at)

    first = Scheduler(store=store, clock=FakeClock(T0), guard=guard, observer=recorder)
    second = Scheduler(store=store, clock=FakeClock(T0 + timedelta(milliseconds=7)), guard=guard, observer=recorder)
    job = Job("twin", Interval(10), task, max_runs=1)
    await asyncio.gather(first.run(job), second.run(job))
    loaded = recorder.of_type(StateLoaded)
    assert sorted(e.source for e in loaded) == [StateLoadSource.NEW, StateLoadSource.RESTORED]
    assert {e.next_run_at for e in loaded} == {T0 + 10 * S}
    assert ran == [T0 + 10 * S]


async def test_create_keeps_an_existing_state() -> None:
    """InMemoryStateStore.create saves only when absent and returns what is stored."""
    store = InMemoryStateStore()
    a, b = JobState(job_id="c", trigger_count=1), JobState(job_id="c", trigger_count=2)
    created = await store.create(a)
    assert created == a
    assert created.revision == 1
    again = await store.create(b)
    assert again == a
    assert again.revision == 1


async def test_skipped_resumed_occurrence_clears_in_flight(clock: FakeClock) -> None:
    """An interrupted occurrence that is skipped on restart (outside the window) is settled, not retried forever."""
    from scheduler import JobTimeWindow, TimeWindowSegment
    from scheduler._state import InFlight

    store = InMemoryStateStore()
    await store.save(JobState(job_id="w", trigger_count=1, next_run_at=T0 + timedelta(hours=1),
                              in_flight=InFlight(occurrence=T0, started_at=T0)))  # fmt: skip
    window = JobTimeWindow(segments=[TimeWindowSegment("12:00", "13:00")])
    job = Job("w", Interval(3600), recorder_task([]), max_runs=1, time_window=window)
    report = await Scheduler(SchedulerConfig(resume_interrupted=True), store, clock=clock).run(job)
    assert report.state.in_flight is None
    assert (await store.load("w")).in_flight is None  # type: ignore[union-attr]
