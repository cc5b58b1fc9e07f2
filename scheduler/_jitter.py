"""Start jitter: a per-occurrence delay in ``[0, jitter)``, the same in every replica.

The delay is a pure function of the job id and the occurrence, through a keyed-free stable
hash (blake2b), never Python's ``hash()`` (salted per process): replicas of one job, and a
restarted process, all choose the same delay for the same occurrence.
"""

from __future__ import annotations

import itertools
import warnings
from datetime import UTC, datetime, timedelta

from ._errors import InvalidJobError, InvalidJobKind
from ._schedules import AtTimes, Interval, Schedule
from ._time import bounded_duration, require_aware

#: A 64-bit hash gives 2**64 evenly spaced fractions of the jitter: uniform to far below 1 µs.
_SPACE = 2**64


def jitter_delay(job_id: str, scheduled_at: datetime, jitter: timedelta) -> timedelta:
    """The start delay of occurrence ``scheduled_at`` of ``job_id``: uniform over ``[0, jitter)``.

    Whole microseconds; ``timedelta(0)`` when ``jitter`` is zero.
    """
    if jitter <= timedelta(0):
        return timedelta(0)
    instant = require_aware(scheduled_at, "scheduled_at").astimezone(UTC)
    key = f"{job_id}\x00{instant.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}".encode("utf-8", "surrogatepass")
    import hashlib  # here: only jobs with a jitter need it, and it costs more to import than the rest

    fraction = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")
    micros = jitter // timedelta(microseconds=1)
    return timedelta(microseconds=micros * fraction // _SPACE)


def check_jitter(value: timedelta | float, schedule: Schedule) -> timedelta:
    """Validate ``Job(jitter=...)``: >= 0, shorter than an Interval's period.

    For a cron there is no single period; a jitter longer than the shortest gap between its
    next occurrences gets a warning (occurrences may then start out of order), not an error.
    """
    jitter = bounded_duration(value, "jitter")
    if jitter == timedelta(0):
        return jitter
    if isinstance(schedule, Interval):
        if jitter >= schedule.every:
            raise InvalidJobError(
                InvalidJobKind.OTHER, f"jitter {jitter} must be shorter than the interval {schedule.every}"
            )
    elif not isinstance(schedule, AtTimes):
        sample = schedule.preview(50, after=datetime(2001, 1, 1, tzinfo=UTC))
        gaps = [b - a for a, b in itertools.pairwise(sample)]
        if gaps and jitter >= min(gaps):
            warnings.warn(
                f"jitter {jitter} is not shorter than the shortest gap {min(gaps)} between occurrences "
                f"of {schedule!r}: a delayed start may reach the next occurrence",
                UserWarning,
                stacklevel=4,
            )
    return jitter
