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


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class SchedulerEvent:
    """Base of every event.

    Equality, hash and repr are the ones ``dataclass`` would write for each class (fields in
    order, equal only to the same class), written once here: generating them for every event
    class made importing this module cost several times more.
    """

    job_id: str
    at: datetime

    def _values(self) -> tuple[Any, ...]:
        return tuple([getattr(self, name) for name in self.__dataclass_fields__])

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, SchedulerEvent)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__dataclass_fields__)
        return f"{self.__class__.__qualname__}({shown})"

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


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class StateLoaded(SchedulerEvent):
    """The job's state was read (``RESTORED``), created (``NEW``) or repaired (``REPAIRED``)."""

    source: StateLoadSource
    trigger_count: int
    next_run_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class StateRepaired(SchedulerEvent):
    """An interval job's stored state had no next run though the job is not finished: it runs
    again one interval from now."""

    trigger_count: int
    previous_next_run_at: datetime | None
    repaired_next_run_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class StateReconciled(SchedulerEvent):
    """The schedule changed since the state was saved: the next run follows the new one."""

    previous_next_run_at: datetime | None
    next_run_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class StateConflict(SchedulerEvent):
    """Another process changed the stored state since this one last read it.

    The scheduler adopted the stored document (``trigger_count`` and ``next_run_at`` are its
    values; None when it was deleted) and decided again. ``during`` names the write that was
    refused: ``consume`` (before a run), ``complete`` (a run's outcome) or ``manual``.
    """

    during: str
    trigger_count: int | None
    next_run_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class TriggerEmitted(SchedulerEvent):
    """An occurrence (or a manual trigger) is about to start; ``delay`` is its start jitter."""

    scheduled_at: datetime
    catch_up: bool
    trigger_count: int
    source: TriggerSource
    delay: timedelta = timedelta(0)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class RunStarted(SchedulerEvent):
    """An attempt of a run starts (``attempt`` counts from 1)."""

    scheduled_at: datetime
    catch_up: bool
    trigger_count: int
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class RunRetrying(SchedulerEvent):
    """An attempt failed; the next one starts after ``delay``."""

    scheduled_at: datetime
    attempt: int
    delay: timedelta
    error: str | None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class RunCompleted(SchedulerEvent):
    """A run finished: its status, error and attempts."""

    scheduled_at: datetime
    catch_up: bool
    trigger_count: int
    status: RunStatus
    error: str | None
    attempts: int
    started_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class RunSkipped(SchedulerEvent):
    """A consumed occurrence did not run; ``reason`` says why."""

    scheduled_at: datetime
    catch_up: bool
    trigger_count: int
    reason: RunSkipReason


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class RunsMissed(SchedulerEvent):
    """Many consumed occurrences dropped at once (after downtime), reported as one event."""

    count: int
    first_scheduled_at: datetime
    last_scheduled_at: datetime
    reason: RunSkipReason


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class _GuardEvent(SchedulerEvent):
    """Fields shared by the execution guard's events."""

    resource_id: str
    scope: GuardScope
    scheduled_at: datetime
    key: str | None = None
    fencing_token: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class ExecutionGuardAcquired(_GuardEvent):
    """``key`` is None when the guard failed and the run went ahead without a lease."""

    without_lease: bool = False


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class ExecutionGuardContended(_GuardEvent):
    """Another process holds the lease: this occurrence does not run here."""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class ExecutionGuardRenewed(_GuardEvent):
    """The lease was renewed (``renewal_count`` so far)."""

    renewal_count: int = 0


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class ExecutionGuardRenewFailed(_GuardEvent):
    """A renewal call failed; it is retried while the lease is safely held."""

    failed_renewal_count: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class ExecutionGuardLost(_GuardEvent):
    """The lease can no longer be trusted to be held (expired or taken)."""

    renewal_count: int = 0
    failed_renewal_count: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class ExecutionGuardReleased(_GuardEvent):
    """The lease was released after the run."""

    renewal_count: int = 0


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class ExecutionGuardReleaseFailed(_GuardEvent):
    """The release failed, or the lease was already gone."""

    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class StoreDegraded(SchedulerEvent):
    """A store call failed (``operation``); the job goes on as the store allows."""

    operation: StoreOperation
    error: str


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class StoreRecovered(SchedulerEvent):
    """The primary store answers again; ``written_back`` states were written back to it."""

    written_back: int


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class TerminalStateDeleted(SchedulerEvent):
    """Nothing is left to run and the state was deleted (``terminal_state_policy``)."""

    trigger_count: int


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class SchedulerPaused(SchedulerEvent):
    """``pause()`` took effect."""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class SchedulerResumed(SchedulerEvent):
    """``resume()`` took effect."""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False, repr=False)
class SchedulerStopped(SchedulerEvent):
    """``Scheduler.run`` is about to return; ``reason`` says why."""

    reason: SchedulerStopReason
    trigger_count: int
