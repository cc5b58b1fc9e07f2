"""Loading a job's state at the start of a run: new, restored, reconciled or repaired."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ._enums import StateLoadSource, TriggerSource
from ._execution import Trigger
from ._job import Job
from ._ledger import LedgerEntry, LedgerFate
from ._persist import Persistence
from ._records import record
from ._schedules import AtTimes, Interval
from ._spec import interval_anchor, schedule_spec
from ._state import JobState, OpenRun
from .events import SchedulerEvent, StateLoaded, StateReconciled, StateRepaired


@record
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


def describe(job: Job, zone: ZoneInfo, stored: dict[str, Any] | None, next_run_at: datetime | None) -> dict[str, Any]:
    """The job's ``schedule_spec`` (an interval keeps its stored anchor while still on it)."""
    schedule = job.schedule
    anchor = None
    if isinstance(schedule, Interval):
        anchor = interval_anchor(stored, next_run_at, schedule.every.total_seconds())
    return schedule_spec(
        schedule, zone, window=job.time_window, missed_run_policy=job.missed_run_policy.value, anchor=anchor
    )


def new_state(job: Job, zone: ZoneInfo, now: datetime) -> JobState:
    first = None if job.max_runs == 0 else job.schedule.first(now, zone)
    return JobState.initial(
        job.job_id,
        next_run_at=first,
        schedule_fingerprint=job.schedule.fingerprint(zone),
        schedule_spec=describe(job, zone, None, first),
    )


def process_gone(instance: str) -> bool:
    """Whether the process named ``host:pid`` cannot be running anymore.

    Known only for this host: the pid is ours (we are its restart, e.g. pid 1 in a container)
    or no such process exists. A process on another host may still be running its run.
    """
    host, _, pid_text = instance.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, under another user
        return False
    return False


def _interrupted(runs: tuple[OpenRun, ...], resumed: datetime | None) -> tuple[OpenRun, ...]:
    """Open runs whose process died (the one about to be resumed is not: it will report)."""
    return tuple(r for r in runs if r.occurrence != resumed and process_gone(r.instance))


async def _settle(
    persistence: Persistence, state: JobState, gone: tuple[OpenRun, ...], ledger: bool
) -> tuple[JobState, list[LedgerEntry] | None]:
    """Settle the open runs of dead processes: INTERRUPTED, unless the ledger already says more.

    A run skipped just before its process died may have its skip entry in the ledger while
    the state still lists it as open (the skip is saved with the next save): that entry is
    the occurrence's, and its skip is counted instead.
    """
    entries: list[LedgerEntry] = []
    interrupted: list[OpenRun] = []
    for run in gone:
        known = None
        if ledger:
            found = await persistence.entries_at(run.occurrence)
            known = next((e for e in found if e.count == 1 and e.source is run.source and e.reason), None)
        if known is not None and known.reason is not None:
            state = state.settled(run.occurrence).skipped(known.reason, 1, run.occurrence)
        else:
            interrupted.append(run)
            entries.append(_interrupted_entry(state.job_id, run))
    state = state.interrupted_runs(tuple(interrupted))
    return state, entries if ledger else None


def _interrupted_entry(job_id: str, run: OpenRun) -> LedgerEntry:
    return LedgerEntry(
        job_id=job_id,
        scheduled_at=run.occurrence,
        fate=LedgerFate.INTERRUPTED,
        source=run.source,
        catch_up=run.catch_up,
        instance=run.instance,
    )


async def load_state(
    persistence: Persistence,
    job: Job,
    zone: ZoneInfo,
    now: datetime,
    emit: Callable[[SchedulerEvent], None],
    *,
    resume_interrupted: bool,
    ledger: bool = False,
) -> Loaded:
    """Load (or create) the state, emit StateLoaded/Reconciled/Repaired, and save once if changed.

    Open runs left by a process that died are settled as interrupted (with ``ledger``, an
    ``INTERRUPTED`` entry each, written by the same save).
    """
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
    spec = describe(job, zone, state.schedule_spec, state.next_run_at)
    if spec != state.schedule_spec:
        state = state.described(spec)
    entries: list[LedgerEntry] | None = None
    if state.open_runs:
        gone = _interrupted(state.open_runs, None if resume is None else resume.scheduled_at)
        if gone:
            state, entries = await _settle(persistence, state, gone, ledger)
    if state != stored:
        committed = await persistence.commit(state, entries)
        if committed is None:  # another replica saved meanwhile: start from its document
            return await load_state(
                persistence, job, zone, now, emit, resume_interrupted=resume_interrupted, ledger=ledger
            )
        state = committed
    emit(
        StateLoaded(
            job_id=job.job_id, at=now, source=source, trigger_count=state.trigger_count, next_run_at=state.next_run_at
        )
    )
    return Loaded(state, resume)
