"""JobState's typed transitions: each equals pydantic's validated copy, and typos cannot pass."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler import JobState, RunRecord, RunSkipReason, RunStatus, TriggerSource
from scheduler._state import InFlight, OpenRun

T0 = datetime(2025, 1, 1, tzinfo=UTC)
instants = st.integers(min_value=0, max_value=10**6).map(lambda s: T0 + timedelta(seconds=s))
maybe = st.none() | instants
states = st.builds(
    JobState,
    job_id=st.just("j"),
    trigger_count=st.integers(0, 1000),
    last_run_at=maybe,
    last_success_at=maybe,
    next_run_at=maybe,
    last_error=st.none() | st.text(max_size=5),
    last_status=st.none() | st.sampled_from(RunStatus),
    consecutive_failures=st.integers(0, 50),
    schedule_fingerprint=st.none() | st.just("interval:60s"),
    in_flight=st.none() | st.builds(InFlight, occurrence=instants, started_at=instants),
    runs_started=st.integers(0, 100),
    skips=st.dictionaries(st.sampled_from([r.value for r in RunSkipReason]), st.integers(0, 9), max_size=3),
    interrupted=st.integers(0, 5),
    open_runs=st.lists(
        st.builds(OpenRun, occurrence=instants, instance=st.sampled_from(["h:1", "h:2"])), max_size=3
    ).map(tuple),
)
open_runs = st.builds(OpenRun, occurrence=instants, instance=st.just("h:3"), trigger_count=st.integers(0, 9))
records = st.builds(
    RunRecord,
    scheduled_at=instants,
    started_at=instants,
    finished_at=instants,
    catch_up=st.booleans(),
    status=st.sampled_from(RunStatus),
    error=st.none() | st.text(max_size=5),
    attempts=st.integers(1, 3),
    trigger_count=st.integers(1, 100),
    source=st.sampled_from(TriggerSource),
)


def _validated(state: JobState, **update: Any) -> JobState:
    """The slow, checked way: copy, then validate the whole document again."""
    return JobState.model_validate(state.model_copy(update=update).model_dump())


@given(states, st.integers(0, 2000), maybe)
def test_consumed_equals_a_validated_copy(state: JobState, count: int, next_run_at: datetime | None) -> None:
    assert state.consumed(count, next_run_at) == _validated(state, trigger_count=count, next_run_at=next_run_at)


@given(states, maybe)
def test_rescheduled_equals_a_validated_copy(state: JobState, next_run_at: datetime | None) -> None:
    expected = _validated(state, next_run_at=next_run_at, schedule_fingerprint="cron:x")
    assert state.rescheduled(next_run_at, "cron:x") == expected


@given(states, st.none() | st.builds(InFlight, occurrence=instants, started_at=instants))
def test_started_equals_a_validated_copy(state: JobState, flight: InFlight | None) -> None:
    assert state.started(flight) == _validated(state, in_flight=flight)


@given(states, records)
def test_completed_equals_a_validated_copy(state: JobState, record: RunRecord) -> None:
    success = record.status is RunStatus.SUCCESS
    update: dict[str, Any] = {
        "last_run_at": record.started_at if state.last_run_at is None else max(state.last_run_at, record.started_at),
        "last_status": record.status,
        "last_error": None if success else record.error,
        "consecutive_failures": 0 if success else state.consecutive_failures + 1,
    }
    if success:
        update["last_success_at"] = record.finished_at
    if state.in_flight is not None and state.in_flight.occurrence == record.scheduled_at:
        update["in_flight"] = None
    update["runs_started"] = state.runs_started + 1
    update["open_runs"] = _without(state.open_runs, record.scheduled_at)
    assert state.completed(record) == _validated(state, **update)


def _without(runs: tuple[OpenRun, ...], occurrence: datetime) -> tuple[OpenRun, ...]:
    matching = [i for i, r in enumerate(runs) if r.occurrence == occurrence]
    return runs if not matching else runs[: matching[0]] + runs[matching[0] + 1 :]


@given(states, st.sampled_from(RunSkipReason), st.integers(1, 50), instants)
def test_skipped_equals_a_validated_copy(state: JobState, reason: RunSkipReason, count: int, at: datetime) -> None:
    skips = dict(state.skips)
    skips[reason.value] = skips.get(reason.value, 0) + count
    expected = _validated(state, skips=skips, last_skip_at=at, last_skip_reason=reason)
    assert state.skipped(reason, count, at) == expected
    assert state.skips == JobState.model_validate(state.model_dump()).skips  # the original is untouched


@given(states, st.integers(0, 2000), maybe, open_runs)
def test_consumed_with_an_open_run_equals_a_validated_copy(
    state: JobState, count: int, next_run_at: datetime | None, run: OpenRun
) -> None:
    expected = _validated(state, trigger_count=count, next_run_at=next_run_at, open_runs=(*state.open_runs, run))
    assert state.consumed(count, next_run_at, run) == expected


def test_a_trusted_open_run_equals_a_validated_one() -> None:
    run = OpenRun.trusted(T0, "h:1", 3, TriggerSource.MANUAL, True)
    assert run == OpenRun(occurrence=T0, instance="h:1", trigger_count=3, source="manual", catch_up=True)
    assert run.model_dump() == OpenRun.model_validate(run.model_dump()).model_dump()


@given(states, open_runs)
def test_opened_and_settled_equal_validated_copies(state: JobState, run: OpenRun) -> None:
    opened = state.opened(run)
    assert opened == _validated(state, open_runs=(*state.open_runs, run))
    assert opened.settled(run.occurrence) == _validated(opened, open_runs=_without(opened.open_runs, run.occurrence))


@given(states)
def test_interrupted_runs_equals_a_validated_copy(state: JobState) -> None:
    gone = state.open_runs[:1]
    expected = _validated(state, open_runs=state.open_runs[1:], interrupted=state.interrupted + len(gone))
    assert state.interrupted_runs(gone) == expected


@given(states)
def test_described_equals_a_validated_copy(state: JobState) -> None:
    spec = {"kind": "interval", "every_seconds": 60.0, "description": "every 1m"}
    assert state.described(spec) == _validated(state, schedule_spec=spec)


def test_a_misspelt_field_is_an_error() -> None:
    state = JobState(job_id="j")
    with pytest.raises(TypeError, match="in_fligth"):
        state._replace(in_fligth=None)


def test_there_is_no_untyped_evolve() -> None:
    assert not hasattr(JobState, "evolve")


def test_completed_never_moves_last_run_backwards() -> None:
    """A fresher document from another replica keeps its later last_run_at."""
    later = JobState(job_id="j", last_run_at=T0 + timedelta(hours=1))
    record = RunRecord(T0, T0, T0, False, RunStatus.SUCCESS, None, 1, 1, TriggerSource.SCHEDULED)
    assert later.completed(record).last_run_at == T0 + timedelta(hours=1)
