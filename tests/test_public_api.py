"""The public surface: names, lazy loading, enums."""

from __future__ import annotations

import subprocess
import sys

import scheduler
from scheduler import MissedRunPolicy, RunSkipReason

EXPECTED = sorted(
    [
        "Scheduler",
        "SchedulerConfig",
        "SchedulerHandle",
        "SchedulerReport",
        "SchedulerStopReason",
        "Job",
        "Task",
        "TaskContext",
        "RunContext",
        "TriggerSource",
        "RetryPolicy",
        "Schedule",
        "Interval",
        "AtTimes",
        "Cron",
        "MissedRunPolicy",
        "OverlapPolicy",
        "TerminalStatePolicy",
        "LeaseLostPolicy",
        "GuardErrorPolicy",
        "JobTimeWindow",
        "TimeWindowSegment",
        "Weekday",
        "JobState",
        "LedgerEntry",
        "LedgerFate",
        "RunLedger",
        "RunRecord",
        "RunStatus",
        "RunSkipReason",
        "StateLoadSource",
        "StateStore",
        "InMemoryStateStore",
        "ResilientStateStore",
        "SqliteStateStore",
        "ValkeyStateStore",
        "ExecutionGuard",
        "NoopExecutionGuard",
        "ExecutionSlot",
        "ExecutionLease",
        "GuardScope",
        "ValkeyExecutionGuard",
        "SchedulerObserver",
        "SchedulerEvent",
        "LogObserver",
        "NoopObserver",
        "HttpPingObserver",
        "SchedulerError",
        "InvalidJobError",
        "InvalidJobKind",
        "StoreError",
        "StoreErrorKind",
        "StoreOperation",
        "ExecutionGuardError",
        "ExecutionGuardErrorKind",
        "Clock",
        "SystemClock",
        "__version__",
    ]
)


def test_all_is_pinned() -> None:
    """__all__ lists exactly the documented public names."""
    assert sorted(scheduler.__all__) == EXPECTED


def test_every_public_name_resolves() -> None:
    """Every name in __all__ can be imported from the root."""
    for name in scheduler.__all__:
        assert getattr(scheduler, name) is not None


def test_import_does_not_pull_optional_dependencies() -> None:
    """`import scheduler` imports neither redis nor prometheus_client, even after using the core."""
    code = (
        "import sys, scheduler; scheduler.Scheduler; scheduler.Cron; scheduler.JobState;"
        "bad = [m for m in ('redis', 'prometheus_client') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


#: Loaded when a Scheduler is built or first runs, or when a zone, a retry or a window needs them.
LOADED_ON_USE = (
    "scheduler._runner",
    "scheduler._execution",
    "scheduler._leasing",
    "scheduler._persist",
    "scheduler._session",
    "scheduler._entries",
    "scheduler._steps",
    "scheduler._loading",
    "scheduler._decide",
    "scheduler._store",
    "scheduler._state",
    "scheduler._config",
    "scheduler._observers",
    "scheduler._window",
    "scheduler.events",
    "zoneinfo",
    "random",
    "pydantic",
)


def test_the_core_api_imports_only_what_a_job_is_built_from() -> None:
    """`from scheduler import Scheduler, Job, Interval, Cron` leaves the run machinery unloaded."""
    code = (
        "import sys, asyncio; before = set(sys.modules);"
        "from scheduler import Scheduler, Job, Interval, Cron;"
        f"print(sorted(set({LOADED_ON_USE!r}) & (set(sys.modules) - before)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_enums_are_lower_snake_strings() -> None:
    """Enum values are the lower_snake names, usable in JSON and on the command line."""
    assert MissedRunPolicy.CATCH_UP_ONCE.value == "catch_up_once"
    assert RunSkipReason.OUTSIDE_TIME_WINDOW == "outside_time_window"


def test_events_module_exports_every_event() -> None:
    """scheduler.events names every documented event class."""
    from scheduler import events

    names = {
        "StateLoaded", "StateRepaired", "StateReconciled", "TriggerEmitted", "RunStarted", "RunRetrying",
        "RunCompleted", "RunSkipped", "RunsMissed", "ExecutionGuardAcquired", "ExecutionGuardContended",
        "ExecutionGuardRenewed", "ExecutionGuardRenewFailed", "ExecutionGuardLost", "ExecutionGuardReleased",
        "ExecutionGuardReleaseFailed", "StoreDegraded", "StoreRecovered", "TerminalStateDeleted",
        "SchedulerPaused", "SchedulerResumed", "SchedulerStopped",
    }  # fmt: skip
    assert names <= set(events.__all__)
    assert all(issubclass(getattr(events, n), events.SchedulerEvent) for n in names)


def test_invalid_job_error_is_a_value_error() -> None:
    """InvalidJobError is both a SchedulerError and a ValueError."""
    assert issubclass(scheduler.InvalidJobError, ValueError)
    assert issubclass(scheduler.InvalidJobError, scheduler.SchedulerError)
    assert issubclass(scheduler.StoreError, scheduler.SchedulerError)
    assert issubclass(scheduler.ExecutionGuardError, scheduler.SchedulerError)


def test_version_is_exposed() -> None:
    """__version__ comes from the installed distribution metadata."""
    assert isinstance(scheduler.__version__, str)
    assert scheduler.__version__
