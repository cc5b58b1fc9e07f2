"""Loading a job's state at the start of a run: new, restored, reconciled or repaired."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from ._enums import StateLoadSource, TriggerSource
from ._execution import Trigger
from ._schedules import AtTimes, Interval
from ._state import JobState
from .events import SchedulerEvent, StateLoaded, StateReconciled, StateRepaired

if TYPE_CHECKING:
    from ._runner import _Session


def _recomputed_next(session: _Session, state: JobState, now: datetime) -> datetime | None:
    """Where a changed schedule picks up: after the last run for explicit times, else from now."""
    schedule, zone = session.job.schedule, session.config.timezone
    if isinstance(schedule, AtTimes) and state.last_run_at is not None:
        return schedule.next_after(state.last_run_at, zone)
    return schedule.first(now, zone)


def _finished(session: _Session, state: JobState) -> bool:
    max_runs = session.job.max_runs
    return max_runs is not None and state.trigger_count >= max_runs


async def load_state(session: _Session) -> tuple[JobState, Trigger | None]:
    """Load (or create) the state, emit StateLoaded/Reconciled/Repaired, and save once if changed."""
    job, config, clock = session.job, session.config, session.clock
    emit: Callable[[SchedulerEvent], None] = session.emit
    fingerprint = job.schedule.fingerprint(config.timezone)
    now = clock.now()
    stored = await session.store.load(job.job_id)
    if stored is None:
        first = None if job.max_runs == 0 else job.schedule.first(now, config.timezone)
        state = JobState(job_id=job.job_id, next_run_at=first, schedule_fingerprint=fingerprint)
        create = getattr(session.store, "create", None)
        if not callable(create):
            await session.store.save(state)
        else:
            # Instances starting together must agree on one first occurrence (an interval is
            # anchored to "now"): whoever creates the state first wins, the others adopt it.
            created: JobState = await create(state)
            if created != state:
                stored = created
        if stored is None:
            emit(StateLoaded(job_id=job.job_id, at=now, source=StateLoadSource.NEW, trigger_count=0, next_run_at=first))
            return state, None

    state, source = stored, StateLoadSource.RESTORED
    if stored.schedule_fingerprint is None:
        # A reference-format document: it predates fingerprints, so adopt the current one.
        state = state.model_copy(update={"schedule_fingerprint": fingerprint})
    elif stored.schedule_fingerprint != fingerprint and not _finished(session, stored):
        new_next = _recomputed_next(session, stored, now)
        state = state.model_copy(update={"schedule_fingerprint": fingerprint, "next_run_at": new_next})
        emit(StateReconciled(job_id=job.job_id, at=now, previous_next_run_at=stored.next_run_at, next_run_at=new_next))
    if isinstance(job.schedule, Interval) and state.next_run_at is None and not _finished(session, state):
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
        state = state.model_copy(update={"next_run_at": repaired})
        source = StateLoadSource.REPAIRED
    resumed: Trigger | None = None
    if config.resume_interrupted and state.in_flight is not None:
        flight = state.in_flight
        resumed = Trigger(flight.occurrence, True, state.trigger_count, TriggerSource.SCHEDULED, resumed=True)
    if state != stored:
        await session.store.save(state)
    emit(
        StateLoaded(
            job_id=job.job_id, at=now, source=source, trigger_count=state.trigger_count, next_run_at=state.next_run_at
        )
    )
    return state, resumed
