"""The run loop's ledger entries and skip events, built from its own values (no checks needed)."""

from __future__ import annotations

from datetime import datetime

from ._decide import Drop
from ._enums import RunSkipReason
from ._execution import Execution, Trigger
from ._ledger import MAX_ERROR_CHARS, RUN_FATES, LedgerEntry, LedgerFate, build_entry
from ._state import OpenRun, RunRecord
from .events import RunCompleted, RunSkipped, RunsMissed

#: Drops whose occurrences were late (as opposed to superseded or refused).
_LATE = (RunSkipReason.MISSED, RunSkipReason.COALESCED)


def open_run(trigger: Trigger, instance: str) -> OpenRun:
    """The marker of a consumed occurrence about to run, saved with its consumption."""
    return OpenRun.trusted(trigger.scheduled_at, instance, trigger.trigger_count, trigger.source, trigger.catch_up)


def drop_entry(job_id: str, drop: Drop, instance: str) -> LedgerEntry:
    return LedgerEntry.trusted(
        job_id=job_id,
        scheduled_at=drop.first,
        fate=LedgerFate.SKIPPED if drop.count == 1 else LedgerFate.MISSED,
        reason=drop.reason,
        count=drop.count,
        last_scheduled_at=drop.last,
        catch_up=drop.reason in _LATE,
        instance=instance,
    )


def skip_entry(job_id: str, trigger: Trigger, reason: RunSkipReason, instance: str) -> LedgerEntry:
    return LedgerEntry.trusted(
        job_id=job_id,
        scheduled_at=trigger.scheduled_at,
        fate=LedgerFate.SKIPPED,
        reason=reason,
        source=trigger.source,
        catch_up=trigger.catch_up,
        instance=instance,
    )


def run_entry(job_id: str, record: RunRecord, execution: Execution, instance: str) -> LedgerEntry:
    lease = execution.lease
    error = record.error
    return build_entry(
        job_id,
        record.scheduled_at,
        RUN_FATES[record.status],
        None,  # reason
        1,  # count
        record.scheduled_at,  # last_scheduled_at
        record.source,
        record.catch_up,
        record.started_at,
        record.finished_at,
        record.attempts,
        error if error is None or len(error) <= MAX_ERROR_CHARS else error[:MAX_ERROR_CHARS],
        execution.exit_code,
        None if lease is None else lease.fencing_token,
        instance,
    )


def skip_event(job_id: str, at: datetime, trigger: Trigger, reason: RunSkipReason) -> RunSkipped:
    return RunSkipped(
        job_id=job_id,
        at=at,
        scheduled_at=trigger.scheduled_at,
        catch_up=trigger.catch_up,
        trigger_count=trigger.trigger_count,
        reason=reason,
    )


def completed_event(job_id: str, at: datetime, record: RunRecord) -> RunCompleted:
    return RunCompleted(
        job_id=job_id,
        at=at,
        scheduled_at=record.scheduled_at,
        catch_up=record.catch_up,
        trigger_count=record.trigger_count,
        status=record.status,
        error=record.error,
        attempts=record.attempts,
        started_at=record.started_at,
    )


def drop_event(job_id: str, at: datetime, drop: Drop, trigger_count: int) -> RunSkipped | RunsMissed:
    """One dropped occurrence is a ``RunSkipped``; several are one ``RunsMissed``."""
    if drop.count == 1:
        return RunSkipped(
            job_id=job_id,
            at=at,
            scheduled_at=drop.first,
            catch_up=drop.reason in _LATE,
            trigger_count=trigger_count,
            reason=drop.reason,
        )
    return RunsMissed(
        job_id=job_id,
        at=at,
        count=drop.count,
        first_scheduled_at=drop.first,
        last_scheduled_at=drop.last,
        reason=drop.reason,
    )
