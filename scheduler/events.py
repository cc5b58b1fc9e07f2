"""Events the scheduler reports to observers: frozen, past-tense, each with ``job_id`` and ``at``.

``at`` comes from the scheduler's clock. Observers receive every event in order; an observer
that raises is logged and ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ._enums import (
    GuardScope,
    RunSkipReason,
    RunStatus,
    SchedulerStopReason,
    StateLoadSource,
    TriggerSource,
)
from ._errors import StoreOperation
from ._time import format_utc

__all__ = [
    "ExecutionGuardAcquired",
    "ExecutionGuardContended",
    "ExecutionGuardLost",
    "ExecutionGuardReleaseFailed",
    "ExecutionGuardReleased",
    "ExecutionGuardRenewFailed",
    "ExecutionGuardRenewed",
    "RunCompleted",
    "RunRetrying",
    "RunSkipped",
    "RunStarted",
    "RunsMissed",
    "SchedulerEvent",
    "SchedulerPaused",
    "SchedulerResumed",
    "SchedulerStopped",
    "StateLoaded",
    "StateConflict",
    "StateReconciled",
    "StateRepaired",
    "StoreDegraded",
    "StoreRecovered",
    "TerminalStateDeleted",
    "TriggerEmitted",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerEvent:
    """Base of every event."""

    job_id: str
    at: datetime

    @property
    def name(self) -> str:
        return type(self).__name__

    def fields(self) -> dict[str, Any]:
        """The event's fields as JSON-ready values (instants as RFC 3339, enums as values)."""
        out: dict[str, Any] = {}
        for key in self.__dataclass_fields__:
            value = getattr(self, key)
            if isinstance(value, datetime):
                value = format_utc(value)
            elif isinstance(value, timedelta):
                value = value.total_seconds()
            elif hasattr(value, "value"):
                value = value.value
            out[key] = value
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class StateLoaded(SchedulerEvent):
    source: StateLoadSource
    trigger_count: int
    next_run_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StateRepaired(SchedulerEvent):
    trigger_count: int
    previous_next_run_at: datetime | None
    repaired_next_run_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StateReconciled(SchedulerEvent):
    previous_next_run_at: datetime | None
    next_run_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StateConflict(SchedulerEvent):
    """Another process changed the stored state since this one last read it.

    The scheduler adopted the stored document (``trigger_count`` and ``next_run_at`` are its
    values; None when it was deleted) and decided again. ``during`` names the write that was
    refused: ``consume`` (before a run), ``complete`` (a run's outcome) or ``manual``.
    """

    during: str
    trigger_count: int | None
    next_run_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TriggerEmitted(SchedulerEvent):
    """An occurrence (or a manual trigger) is about to start; ``delay`` is its start jitter."""

    scheduled_at: datetime
    catch_up: bool
    trigger_count: int
    source: TriggerSource
    delay: timedelta = timedelta(0)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted(SchedulerEvent):
    scheduled_at: datetime
    catch_up: bool
    trigger_count: int
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRetrying(SchedulerEvent):
    scheduled_at: datetime
    attempt: int
    delay: timedelta
    error: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunCompleted(SchedulerEvent):
    scheduled_at: datetime
    catch_up: bool
    trigger_count: int
    status: RunStatus
    error: str | None
    attempts: int
    started_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSkipped(SchedulerEvent):
    scheduled_at: datetime
    catch_up: bool
    trigger_count: int
    reason: RunSkipReason


@dataclass(frozen=True, slots=True, kw_only=True)
class RunsMissed(SchedulerEvent):
    """Many consumed occurrences dropped at once (after downtime), reported as one event."""

    count: int
    first_scheduled_at: datetime
    last_scheduled_at: datetime
    reason: RunSkipReason


@dataclass(frozen=True, slots=True, kw_only=True)
class _GuardEvent(SchedulerEvent):
    resource_id: str
    scope: GuardScope
    scheduled_at: datetime
    key: str | None = None
    fencing_token: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionGuardAcquired(_GuardEvent):
    """``key`` is None when the guard failed and the run went ahead without a lease."""

    without_lease: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionGuardContended(_GuardEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionGuardRenewed(_GuardEvent):
    renewal_count: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionGuardRenewFailed(_GuardEvent):
    failed_renewal_count: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionGuardLost(_GuardEvent):
    renewal_count: int = 0
    failed_renewal_count: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionGuardReleased(_GuardEvent):
    renewal_count: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionGuardReleaseFailed(_GuardEvent):
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreDegraded(SchedulerEvent):
    operation: StoreOperation
    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreRecovered(SchedulerEvent):
    written_back: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TerminalStateDeleted(SchedulerEvent):
    trigger_count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerPaused(SchedulerEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerResumed(SchedulerEvent):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerStopped(SchedulerEvent):
    reason: SchedulerStopReason
    trigger_count: int
