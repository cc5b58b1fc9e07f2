"""What one step of the run loop asks for, and the per-call budget of the loop's I/O."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import Enum

from ._config import SchedulerConfig
from ._enums import SchedulerStopReason
from ._job import Job
from ._records import record
from ._schedules import Interval

#: Bounds of the default per-call budget (half the schedule's period, clamped).
MIN_CALL_TIMEOUT = timedelta(milliseconds=50)
MAX_CALL_TIMEOUT = timedelta(seconds=5)


def call_budget(config: SchedulerConfig, job: Job, now: datetime) -> timedelta:
    """How long one store or guard call may take before the loop gives up on it.

    Half the schedule's period (so a hung call costs at most about one occurrence), kept
    between 50 ms and 5 s, unless the configuration sets it.
    """
    if config.call_timeout is not None:
        return config.call_timeout
    schedule, zone = job.schedule, config.timezone
    if isinstance(schedule, Interval):
        period = schedule.every
    else:
        first = schedule.first(now, zone)
        following = None if first is None else schedule.next_after(first, zone)
        period = MAX_CALL_TIMEOUT * 2 if first is None or following is None else following - first
    return min(max(period / 2, MIN_CALL_TIMEOUT), MAX_CALL_TIMEOUT)


@record
class Wait:
    """Sleep until ``deadline`` (None: until woken) or until something wakes the loop."""

    deadline: datetime | None


@record
class Stop:
    """End the run for ``reason``."""

    reason: SchedulerStopReason


@record
class Continue:
    """Decide again at once (``yield_first``: once the runs just started had their first step)."""

    yield_first: bool = False


CONTINUE = Continue()
AFTER_STARTS = Continue(yield_first=True)


class Dispatched(Enum):
    """What became of a trigger handed to ``_Loop.dispatch``."""

    STARTED = "started"
    QUEUED = "queued"
    SKIPPED = "skipped"
