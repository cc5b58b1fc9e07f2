"""The data of one ``Scheduler.run`` call, in one place.

Only the run loop (``_runner._Loop``) assigns these fields; its collaborators (persistence,
lease broker, executions, state loading) take explicit inputs and return what happened.
A test checks that no other module assigns them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from ._enums import RunSkipReason, SchedulerStopReason
from ._execution import Execution, Outcome, Trigger
from ._ledger import LedgerEntry
from ._state import JobState, RunRecord


@dataclass(slots=True, eq=False)
class Session:
    """Mutable state of a running job: the stored state plus what lives only in this process."""

    state: JobState
    history: deque[RunRecord]
    #: Runs in progress, by the task that runs each.
    active: dict[asyncio.Task[Outcome], Execution] = field(default_factory=dict)
    #: The one trigger kept by QUEUE_ONE (also a trigger held while paused).
    queued: Trigger | None = None
    #: The interrupted occurrence to run first (``resume_interrupted``).
    resume_first: Trigger | None = None
    #: Manual triggers not yet handled.
    manual: int = 0
    paused: bool = False
    cancel_requested: bool = False
    stop_reason: SchedulerStopReason | None = None
    grace_deadline: datetime | None = None
    skipped: dict[RunSkipReason, int] = field(default_factory=dict)
    last_skip: RunSkipReason | None = None
    #: Skips applied to ``state`` since its last save (occurrence, reason): carried by the
    #: next save, re-applied to a document adopted after a conflict, flushed at stop.
    unsaved_skips: list[tuple[datetime, RunSkipReason]] = field(default_factory=list)
    #: Outcomes applied to ``state`` but not saved yet: the next save carries them (usually
    #: the one consuming the next occurrence) with their ledger entries, a document adopted
    #: after a conflict gets them again, and the step that applied them saves them if nothing
    #: else did. Each is reported (``RunCompleted``) once saved.
    unsaved_runs: list[RunRecord] = field(default_factory=list)
    unsaved_entries: list[LedgerEntry] = field(default_factory=list)
    #: A save carrying outcomes failed, and whether it was written is unknown: ``state`` may
    #: count runs whose ledger entries were never written, so nothing more is saved from it.
    in_doubt: bool = False
