"""Loading a job's state at the start of a run: new, restored, reconciled or repaired."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from ._enums import StateLoadSource, TriggerSource
from ._execution import Trigger
from ._job import Job
from ._persist import Persistence
from ._schedules import AtTimes, Interval
from ._state import JobState
from .events import SchedulerEvent, StateLoaded, StateReconciled, StateRepaired


@dataclass(frozen=True, slots=True)
class Loaded:
    """The state to start from, and the interrupted occurrence to run first (if any)."""

    state: JobState
    resume: Trigger | None


def _finished(job: Job, state: JobState) -> bool:
    return job.max_runs is not None and state.trigger_count >= job.max_runs


def _recomputed_next(job: Job, zone: ZoneInfo, state: JobState, now: datetime) -> datetime | None:
    """Where a changed schedule picks up: after the last run for explicit times, else from now."""
    if isinstance(job.schedule, AtTimes) and state.last_run_at is not None:
        return job.schedule.next_after(state.last_run_at, zone)
    return job.schedule.first(now, zone)


def new_state(job: Job, zone: ZoneInfo, now: datetime) -> JobState:
    first = None if job.max_runs == 0 else job.schedule.first(now, zone)
    return JobState(job_id=job.job_id, next_run_at=first, schedule_fingerprint=job.schedule.fingerprint(zone))


async def load_state(
    persistence: Persistence,
    job: Job,
    zone: ZoneInfo,
    now: datetime,
    emit: Callable[[SchedulerEvent], None],
    *,
    resume_interrupted: bool,
) -> Loaded:
    """Load (or create) the state, emit StateLoaded/Reconciled/Repaired, and save once if changed."""
    stored = await persistence.load()
    if stored is None:
        state = new_state(job, zone, now)
        # Instances starting together must agree on one first occurrence (an interval is
        # anchored to "now"): whoever creates the state first wins, the others adopt it.
        created = await persistence.create(state)
        if created == state:  # ours (equality ignores the revision)
            emit(
                StateLoaded(
                    job_id=job.job_id,
                    at=now,
                    source=StateLoadSource.NEW,
                    trigger_count=0,
                    next_run_at=state.next_run_at,
                )
            )
            return Loaded(created, None)
        stored = created

    fingerprint = job.schedule.fingerprint(zone)
    state, source = stored, StateLoadSource.RESTORED
    if stored.schedule_fingerprint is None:
        # A reference-format document: it predates fingerprints, so adopt the current one.
        state = state.rescheduled(state.next_run_at, fingerprint)
    elif stored.schedule_fingerprint != fingerprint and not _finished(job, stored):
        new_next = _recomputed_next(job, zone, stored, now)
        state = state.rescheduled(new_next, fingerprint)
        emit(StateReconciled(job_id=job.job_id, at=now, previous_next_run_at=stored.next_run_at, next_run_at=new_next))
    if isinstance(job.schedule, Interval) and state.next_run_at is None and not _finished(job, state):
        repaired = now + job.schedule.every
        emit(
            StateRepaired(
                job_id=job.job_id,
                at=now,
                trigger_count=state.trigger_count,
                previous_next_run_at=None,
                repaired_next_run_at=repaired,
            )
        )
        state = state.rescheduled(repaired, state.schedule_fingerprint)
        source = StateLoadSource.REPAIRED
    resume: Trigger | None = None
    if resume_interrupted and state.in_flight is not None:
        flight = state.in_flight
        resume = Trigger(flight.occurrence, True, state.trigger_count, TriggerSource.SCHEDULED, resumed=True)
    if state != stored:
        # Several changes may have advanced the revision: the stored document is one behind.
        committed = await persistence.commit(state.with_revision(stored.revision + 1))
        if committed is None:  # another replica saved meanwhile: start from its document
            return await load_state(persistence, job, zone, now, emit, resume_interrupted=resume_interrupted)
        state = committed
    emit(
        StateLoaded(
            job_id=job.job_id, at=now, source=source, trigger_count=state.trigger_count, next_run_at=state.next_run_at
        )
    )
    return Loaded(state, resume)
