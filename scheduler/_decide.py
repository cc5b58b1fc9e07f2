"""Pure decision logic: which due occurrences to consume, which one to run, what to drop.

No asyncio, no I/O, no clock reads: the runner passes ``now`` in. Every function here works
from counts and jumps (``Schedule.due``), so a year of downtime costs the same as a minute.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import Enum
from zoneinfo import ZoneInfo

from ._enums import MissedRunPolicy, OverlapPolicy, RunSkipReason
from ._jitter import jitter_delay
from ._records import record
from ._schedules import Schedule

ONE_MICROSECOND = timedelta(microseconds=1)


@record
class Drop:
    """A run of consecutive consumed occurrences that will not run, for one reason."""

    reason: RunSkipReason
    count: int
    first: datetime
    last: datetime


@record
class Decision:
    """What to do with the occurrences due at ``now``.

    ``consumed`` occurrences leave the schedule (they count toward ``max_runs``); ``run_at``
    is the one to start (None: none), the rest are ``drops``. ``next_run_at`` is the new
    state value (None: nothing left to run).
    """

    consumed: int
    run_at: datetime | None
    catch_up: bool
    drops: tuple[Drop, ...]
    next_run_at: datetime | None


@record
class Policies:
    """The job's settings that decide what runs when."""

    schedule: Schedule
    zone: ZoneInfo
    missed: MissedRunPolicy
    grace: timedelta
    catch_up_window: timedelta | None
    max_runs: int | None
    #: Start jitter: occurrence ``s`` falls due at ``due_time(s)``, up to ``jitter`` later.
    jitter: timedelta = timedelta(0)
    job_id: str = ""


def due_time(p: Policies, scheduled_at: datetime) -> datetime:
    """When occurrence ``scheduled_at`` falls due: itself, or later by its jitter delay."""
    if not p.jitter:
        return scheduled_at
    return scheduled_at + jitter_delay(p.job_id, scheduled_at, p.jitter)


def _last_due(p: Policies, first: datetime, count: int, last: datetime, now: datetime) -> tuple[int, datetime]:
    """Drop the last of ``count`` occurrences when its jitter delay has not run out yet."""
    if count > 1 and due_time(p, last) > now:
        return p.schedule.due(first, last - ONE_MICROSECOND, p.zone)
    return count, last


def _split(p: Policies, first: datetime, count: int, last: datetime, threshold: datetime) -> tuple[int, datetime]:
    """How many of the consumed ``[first..last]`` lie strictly before ``threshold``, and the last of them."""
    if first >= threshold:
        return 0, first
    if last < threshold:
        return count, last
    n, tail = p.schedule.due(first, threshold - ONE_MICROSECOND, p.zone)
    return min(n, count), tail


def _group(p: Policies, reason: RunSkipReason, first: datetime, n: int, last: datetime) -> tuple[Drop, ...]:
    return (Drop(reason, n, first, last),) if n > 0 else ()


def decide(p: Policies, next_run_at: datetime | None, trigger_count: int, now: datetime) -> Decision | None:
    """Consume what is due at ``now``; None when nothing is due yet (or ever again).

    With jitter, the run is judged from its due time: grace and the catch-up window are
    measured from ``now`` less the run's delay (the dropped occurrences use the same shift).
    """
    if next_run_at is None or due_time(p, next_run_at) > now:
        return None
    remaining = None if p.max_runs is None else p.max_runs - trigger_count
    if remaining is not None and remaining <= 0:
        return Decision(0, None, False, (), None)
    first = next_run_at
    if p.missed is MissedRunPolicy.REPLAY_ALL:
        return _replay_one(p, first, remaining, now)
    following = p.schedule.next_after(first, p.zone)
    if following is None or following > now:  # the common, on-time case: one due occurrence
        count, last = 1, first
    else:
        count, last = p.schedule.due(first, now, p.zone)
        if p.jitter:
            count, last = _last_due(p, first, count, last, now)
        following = None
    if remaining is not None and count > remaining:
        count, last = remaining, p.schedule.nth(first, remaining, p.zone)
    if remaining is not None and count >= remaining:
        following = None
    elif following is None or following <= last:
        following = p.schedule.next_after(last, p.zone)
    if p.jitter:
        now = now - jitter_delay(p.job_id, last, p.jitter)
    cutoff = None if p.catch_up_window is None else now - p.catch_up_window
    missed_at = now - p.grace
    if p.missed is MissedRunPolicy.SKIP:
        threshold = missed_at if cutoff is None else max(missed_at, cutoff)
    else:
        threshold = cutoff if cutoff is not None else first
    n_old, old_last = _split(p, first, count, last, threshold)
    if n_old == count:  # everything consumed is dropped
        return Decision(count, None, False, _group(p, RunSkipReason.MISSED, first, count, last), following)
    drops = _group(p, RunSkipReason.MISSED, first, n_old, old_last)
    n_coalesced = count - n_old - 1
    if n_coalesced > 0:
        start = first if n_old == 0 else p.schedule.next_after(old_last, p.zone)
        assert start is not None
        _, before_last = p.schedule.due(first, last - ONE_MICROSECOND, p.zone)
        drops += (Drop(RunSkipReason.COALESCED, n_coalesced, start, before_last),)
    # SKIP only ever runs the on-time occurrence; CATCH_UP_ONCE flags a coalesced or late run.
    catch_up = p.missed is MissedRunPolicy.CATCH_UP_ONCE and (count > 1 or last < missed_at)
    return Decision(count, last, catch_up, drops, following)


def _replay_one(p: Policies, first: datetime, remaining: int | None, now: datetime) -> Decision:
    """REPLAY_ALL: drop what the catch-up window excludes, then consume the oldest due one."""
    if p.jitter:
        now = now - jitter_delay(p.job_id, first, p.jitter)
    drops: tuple[Drop, ...] = ()
    consumed = 0
    if p.catch_up_window is not None and first < now - p.catch_up_window:
        n, tail = p.schedule.due(first, now - p.catch_up_window - ONE_MICROSECOND, p.zone)
        if remaining is not None and n >= remaining:
            tail = p.schedule.nth(first, remaining, p.zone)
            return Decision(remaining, None, False, (Drop(RunSkipReason.MISSED, remaining, first, tail),), None)
        drops = (Drop(RunSkipReason.MISSED, n, first, tail),)
        consumed = n
        nxt = p.schedule.next_after(tail, p.zone)
        if remaining is not None:
            remaining -= n
        if nxt is None or nxt > now:
            return Decision(consumed, None, False, drops, nxt)
        first = nxt
    exhausted = remaining is not None and remaining <= 1
    following = None if exhausted else p.schedule.next_after(first, p.zone)
    return Decision(consumed + 1, first, first < now - p.grace, drops, following)


def consume_all_due(p: Policies, next_run_at: datetime | None, trigger_count: int, now: datetime) -> Decision | None:
    """Consume every due occurrence without running any (used while paused)."""
    if next_run_at is None or due_time(p, next_run_at) > now:
        return None
    remaining = None if p.max_runs is None else p.max_runs - trigger_count
    if remaining is not None and remaining <= 0:
        return Decision(0, None, False, (), None)
    count, last = p.schedule.due(next_run_at, now, p.zone)
    if p.jitter:
        count, last = _last_due(p, next_run_at, count, last, now)
    if remaining is not None and count >= remaining:
        last = p.schedule.nth(next_run_at, remaining, p.zone)
        return Decision(remaining, None, False, (Drop(RunSkipReason.PAUSED, remaining, next_run_at, last),), None)
    following = p.schedule.next_after(last, p.zone)
    return Decision(count, None, False, (Drop(RunSkipReason.PAUSED, count, next_run_at, last),), following)


class OverlapAction(Enum):
    """What the overlap policy makes of a trigger."""

    START = "start"
    SKIP = "skip"
    QUEUE = "queue"
    REPLACE = "replace"


def on_overlap(policy: OverlapPolicy, active: int, queued: bool) -> OverlapAction:
    """What to do with a trigger, given how many runs are active and whether one is queued."""
    if active == 0 or policy is OverlapPolicy.ALLOW_PARALLEL:
        return OverlapAction.START
    if policy is OverlapPolicy.REPLACE:
        return OverlapAction.REPLACE
    if policy is OverlapPolicy.QUEUE_ONE and not queued:
        return OverlapAction.QUEUE
    return OverlapAction.SKIP
