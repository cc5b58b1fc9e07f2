"""scheduler: run ONE scheduled job per process, reliably.

The public API is re-exported here. Names load lazily on first use, so ``import scheduler``
is cheap and never imports ``redis`` or ``prometheus_client``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._clock import Clock, SystemClock
    from ._config import SchedulerConfig
    from ._cron import Cron
    from ._enums import (
        GuardErrorPolicy,
        GuardScope,
        LeaseLostPolicy,
        MissedRunPolicy,
        OverlapPolicy,
        RunSkipReason,
        RunStatus,
        SchedulerStopReason,
        StateLoadSource,
        TerminalStatePolicy,
        TriggerSource,
    )
    from ._errors import (
        ExecutionGuardError,
        ExecutionGuardErrorKind,
        InvalidJobError,
        InvalidJobKind,
        SchedulerError,
        StoreError,
        StoreErrorKind,
        StoreOperation,
    )
    from ._guard import ExecutionGuard, ExecutionLease, ExecutionSlot, NoopExecutionGuard
    from ._handle import SchedulerHandle
    from ._job import Job, RetryPolicy, RunContext, Task, TaskContext
    from ._ledger import LedgerEntry, LedgerFate, RunLedger
    from ._observers import LogObserver, NoopObserver, SchedulerObserver
    from ._ping import HttpPingObserver
    from ._resilient import ResilientStateStore
    from ._scheduler import Scheduler
    from ._schedules import AtTimes, Interval, Schedule
    from ._sqlite import SqliteStateStore
    from ._state import JobState, RunRecord, SchedulerReport
    from ._store import InMemoryStateStore, StateStore
    from ._valkey_guard import ValkeyExecutionGuard
    from ._valkey_store import ValkeyStateStore
    from ._window import JobTimeWindow, TimeWindowSegment, Weekday
    from .events import SchedulerEvent

_SOURCES: dict[str, str] = {
    "Scheduler": "._scheduler",
    "SchedulerHandle": "._handle",
    "SchedulerConfig": "._config",
    "SchedulerReport": "._state",
    "SchedulerStopReason": "._enums",
    "Job": "._job",
    "Task": "._job",
    "TaskContext": "._job",
    "RunContext": "._job",
    "RetryPolicy": "._job",
    "TriggerSource": "._enums",
    "Schedule": "._schedules",
    "Interval": "._schedules",
    "AtTimes": "._schedules",
    "Cron": "._cron",
    "MissedRunPolicy": "._enums",
    "OverlapPolicy": "._enums",
    "TerminalStatePolicy": "._enums",
    "LeaseLostPolicy": "._enums",
    "GuardErrorPolicy": "._enums",
    "JobTimeWindow": "._window",
    "TimeWindowSegment": "._window",
    "Weekday": "._window",
    "JobState": "._state",
    "LedgerEntry": "._ledger",
    "LedgerFate": "._ledger",
    "RunLedger": "._ledger",
    "RunRecord": "._state",
    "RunStatus": "._enums",
    "RunSkipReason": "._enums",
    "StateLoadSource": "._enums",
    "StateStore": "._store",
    "InMemoryStateStore": "._store",
    "ResilientStateStore": "._resilient",
    "SqliteStateStore": "._sqlite",
    "ValkeyStateStore": "._valkey_store",
    "ExecutionGuard": "._guard",
    "NoopExecutionGuard": "._guard",
    "ExecutionSlot": "._guard",
    "ExecutionLease": "._guard",
    "GuardScope": "._enums",
    "ValkeyExecutionGuard": "._valkey_guard",
    "SchedulerObserver": "._observers",
    "SchedulerEvent": ".events",
    "LogObserver": "._observers",
    "NoopObserver": "._observers",
    "HttpPingObserver": "._ping",
    "SchedulerError": "._errors",
    "InvalidJobError": "._errors",
    "InvalidJobKind": "._errors",
    "StoreError": "._errors",
    "StoreErrorKind": "._errors",
    "StoreOperation": "._errors",
    "ExecutionGuardError": "._errors",
    "ExecutionGuardErrorKind": "._errors",
    "Clock": "._clock",
    "SystemClock": "._clock",
}

__all__ = [
    "AtTimes",
    "Clock",
    "Cron",
    "ExecutionGuard",
    "ExecutionGuardError",
    "ExecutionGuardErrorKind",
    "ExecutionLease",
    "ExecutionSlot",
    "GuardErrorPolicy",
    "GuardScope",
    "HttpPingObserver",
    "InMemoryStateStore",
    "Interval",
    "InvalidJobError",
    "InvalidJobKind",
    "Job",
    "JobState",
    "LedgerEntry",
    "LedgerFate",
    "RunLedger",
    "JobTimeWindow",
    "LeaseLostPolicy",
    "LogObserver",
    "MissedRunPolicy",
    "NoopExecutionGuard",
    "NoopObserver",
    "OverlapPolicy",
    "ResilientStateStore",
    "RetryPolicy",
    "RunContext",
    "RunRecord",
    "RunSkipReason",
    "RunStatus",
    "Schedule",
    "Scheduler",
    "SchedulerConfig",
    "SchedulerError",
    "SchedulerEvent",
    "SchedulerHandle",
    "SchedulerObserver",
    "SchedulerReport",
    "SchedulerStopReason",
    "SqliteStateStore",
    "StateLoadSource",
    "StateStore",
    "StoreError",
    "StoreErrorKind",
    "StoreOperation",
    "SystemClock",
    "Task",
    "TaskContext",
    "TerminalStatePolicy",
    "TimeWindowSegment",
    "TriggerSource",
    "ValkeyExecutionGuard",
    "ValkeyStateStore",
    "Weekday",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("scheduler-runner")
        except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
            return "0+unknown"
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module 'scheduler' has no attribute {name!r}")
    value = getattr(importlib.import_module(source, __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
