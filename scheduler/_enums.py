"""Policy and status enums. Values are lower_snake strings used in JSON, events and the CLI."""

from __future__ import annotations

from enum import StrEnum


class MissedRunPolicy(StrEnum):
    """What to do with occurrences that fell due while the job was not running them."""

    #: Drop every missed occurrence; run the most recent due one only if it is on time.
    SKIP = "skip"
    #: Consume every due occurrence and start one run, stamped with the most recent.
    CATCH_UP_ONCE = "catch_up_once"
    #: Run every due occurrence, oldest first, one at a time unless runs may overlap.
    REPLAY_ALL = "replay_all"


class OverlapPolicy(StrEnum):
    """What to do with a trigger that arrives while a run of the job is active."""

    #: Consume the trigger and skip it (reason ``overlap``).
    FORBID = "forbid"
    #: Keep one pending trigger and start it when the active run ends; skip any further ones.
    QUEUE_ONE = "queue_one"
    #: Start it at once; runs overlap.
    ALLOW_PARALLEL = "allow_parallel"
    #: Cancel the active run (recorded ``cancelled``) and start the new one.
    REPLACE = "replace"


class TerminalStatePolicy(StrEnum):
    """What to do with the stored state once the job has nothing left to run."""

    RETAIN = "retain"
    DELETE = "delete"


class LeaseLostPolicy(StrEnum):
    """What to do when the execution lease of an active run is lost."""

    #: Let the run finish, start nothing new, stop with ``lease_lost``.
    SHUTDOWN = "shutdown"
    #: Cancel the run, keep scheduling.
    CANCEL_RUN = "cancel_run"
    #: Report the event only.
    CONTINUE = "continue"


class GuardErrorPolicy(StrEnum):
    """What to do when the execution guard fails while acquiring a lease."""

    #: Stop the scheduler with the error.
    FAIL = "fail"
    #: Fail closed: skip the occurrence (reason ``guard_unavailable``).
    SKIP = "skip"
    #: Fail open: run without a lease.
    RUN = "run"


class RunStatus(StrEnum):
    """Outcome of a run (after all its attempts)."""

    SUCCESS = "success"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


class RunSkipReason(StrEnum):
    """Why a consumed occurrence did not run."""

    MISSED = "missed"
    COALESCED = "coalesced"
    OUTSIDE_TIME_WINDOW = "outside_time_window"
    OVERLAP = "overlap"
    CONTENDED = "contended"
    GUARD_UNAVAILABLE = "guard_unavailable"
    PAUSED = "paused"
    SHUTDOWN = "shutdown"


class StateLoadSource(StrEnum):
    """Where the state a run started from came from."""

    NEW = "new"
    RESTORED = "restored"
    REPAIRED = "repaired"


class TriggerSource(StrEnum):
    """Whether a run comes from the schedule or from ``trigger_now()``."""

    SCHEDULED = "scheduled"
    MANUAL = "manual"


class GuardScope(StrEnum):
    """What an execution lease excludes."""

    #: Other holders of the same resource and occurrence.
    OCCURRENCE = "occurrence"
    #: Every other run on the resource.
    RESOURCE = "resource"


class SchedulerStopReason(StrEnum):
    """Why ``Scheduler.run`` returned (or raised)."""

    TERMINAL = "terminal"
    SHUTDOWN = "shutdown"
    CANCELLED = "cancelled"
    LEASE_LOST = "lease_lost"
    ERROR = "error"
