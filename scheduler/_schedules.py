"""Schedules: immutable, stateless descriptions of when a job's occurrences are.

Progress lives only in ``JobState.next_run_at``; a schedule answers questions about instants.
Every method takes and returns aware UTC datetimes. ``zone`` is the zone the schedule is
evaluated in when it has none of its own (only ``Cron`` cares).
"""

from __future__ import annotations

import bisect
from abc import ABC, abstractmethod
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING

from ._errors import InvalidJobError, InvalidJobKind
from ._time import MAX_DURATION, require_aware, require_int, to_timedelta, to_zone, wrong_type

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

#: Longest interval we accept; beyond this datetime arithmetic overflows within a lifetime.
MAX_INTERVAL = MAX_DURATION
#: Most instants one ``preview`` call lists (a preview is for reading, not for enumeration).
MAX_PREVIEW = 100_000
#: ``preview`` keeps this far from the ends of what ``datetime`` holds, so that converting an
#: instant to any zone cannot overflow.
_EDGE = timedelta(days=2)


class Schedule(ABC):
    """Base of every schedule kind.

    Subclasses answer four questions; the run loop never enumerates occurrences itself, so
    the decision after any downtime stays cheap (``due`` jumps and counts).
    """

    @abstractmethod
    def first(self, start: datetime, zone: ZoneInfo) -> datetime | None:
        """The first occurrence for a job that starts at ``start`` (None: nothing to run)."""

    @abstractmethod
    def next_after(self, occurrence: datetime, zone: ZoneInfo) -> datetime | None:
        """The occurrence that follows ``occurrence`` (None: the schedule is exhausted)."""

    @abstractmethod
    def due(self, first_due: datetime, now: datetime, zone: ZoneInfo) -> tuple[int, datetime]:
        """Count the occurrences from ``first_due`` (itself one, ``<= now``) up to ``now``.

        Returns ``(count, last)``: how many occurrences lie in ``[first_due, now]`` and the
        latest of them. Must not enumerate them one by one.
        """

    @abstractmethod
    def nth(self, first_due: datetime, n: int, zone: ZoneInfo) -> datetime:
        """The ``n``-th occurrence counting ``first_due`` as the first (``n >= 1``)."""

    @abstractmethod
    def fingerprint(self, zone: ZoneInfo) -> str:
        """A short string that changes whenever the set of occurrences would change."""

    def preview(
        self,
        n: int,
        after: datetime,
        timezone: str | tzinfo | None = None,
    ) -> list[datetime]:
        """The next ``n`` occurrences strictly after ``after``, at most MAX_PREVIEW.

        ``after`` is required: schedules never read the clock (pass ``clock.now()``).

        Near the ends of the calendar (years 1 and 9999) the list stops where ``datetime``
        cannot go on instead of overflowing.
        """
        count = require_int(n, "preview n", 0)
        if count > MAX_PREVIEW:
            raise InvalidJobError(InvalidJobKind.OTHER, f"preview n must be <= {MAX_PREVIEW}, got {count}")
        zone = to_zone(timezone)
        start = require_aware(after, "after")
        low, high = datetime.min.replace(tzinfo=UTC) + _EDGE, datetime.max.replace(tzinfo=UTC) - _EDGE
        out: list[datetime] = []
        if start >= high:
            return out
        try:
            current = self._first_after(max(start, low), zone)
            while current is not None and len(out) < count and current < high:
                if current > start:
                    out.append(current)
                current = self.next_after(current, zone)
        except OverflowError:
            pass
        return out

    def _first_after(self, after: datetime, zone: ZoneInfo) -> datetime | None:
        """The first candidate for ``preview`` (the listing then keeps only instants after ``after``)."""
        return self.first(after, zone)


class Interval(Schedule):
    """Every ``every``, anchored to the previous occurrence (never to completion: no drift).

    The first occurrence is ``start + every``. Arithmetic is in UTC: DST never affects it.
    """

    __slots__ = ("every",)
    every: timedelta

    def __init__(self, every: timedelta | float | int) -> None:
        try:
            value = to_timedelta(every, "interval")
        except InvalidJobError as exc:
            kind = type(exc)  # keeps a wrong type a TypeError
            raise kind(InvalidJobKind.ZERO_INTERVAL, str(exc)) from exc
        if value <= timedelta(0):
            raise InvalidJobError(InvalidJobKind.ZERO_INTERVAL, f"interval must be > 0, got {value}")
        if value > MAX_INTERVAL:
            raise InvalidJobError(
                InvalidJobKind.INTERVAL_OUT_OF_RANGE, f"interval {value} is longer than {MAX_INTERVAL}"
            )
        object.__setattr__(self, "every", value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Interval is immutable")

    def first(self, start: datetime, zone: ZoneInfo) -> datetime | None:
        return self.next_after(start, zone)

    def next_after(self, occurrence: datetime, zone: ZoneInfo) -> datetime | None:
        try:
            return occurrence + self.every
        except OverflowError:  # past year 9999: the schedule has nothing left
            return None

    def due(self, first_due: datetime, now: datetime, zone: ZoneInfo) -> tuple[int, datetime]:
        steps = (now - first_due) // self.every
        return steps + 1, first_due + steps * self.every

    def nth(self, first_due: datetime, n: int, zone: ZoneInfo) -> datetime:
        return first_due + (n - 1) * self.every

    def fingerprint(self, zone: ZoneInfo) -> str:
        return f"interval:{self.every.total_seconds():g}s"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Interval) and other.every == self.every

    def __hash__(self) -> int:
        return hash(("interval", self.every))

    def __repr__(self) -> str:
        return f"Interval({self.every!r})"


class AtTimes(Schedule):
    """Explicit instants (any zones), converted to UTC, sorted and de-duplicated.

    The first occurrence is the earliest instant even if it is in the past (the missed-run
    policy decides what happens to it). An empty list is a valid schedule that never runs.
    """

    __slots__ = ("times",)
    times: tuple[datetime, ...]

    def __init__(self, times: Iterable[datetime]) -> None:
        if isinstance(times, datetime):
            times = [times]
        given: object = times
        if isinstance(given, str | bytes) or not isinstance(given, Iterable):
            raise wrong_type("AtTimes times", "an iterable of aware datetimes", times)
        converted = {require_aware(t, "AtTimes instant") for t in times}
        object.__setattr__(self, "times", tuple(sorted(converted)))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("AtTimes is immutable")

    def first(self, start: datetime, zone: ZoneInfo) -> datetime | None:
        return self.times[0] if self.times else None

    def next_after(self, occurrence: datetime, zone: ZoneInfo) -> datetime | None:
        index = bisect.bisect_right(self.times, occurrence)
        return self.times[index] if index < len(self.times) else None

    def _first_after(self, after: datetime, zone: ZoneInfo) -> datetime | None:
        return self.next_after(after, zone)

    def due(self, first_due: datetime, now: datetime, zone: ZoneInfo) -> tuple[int, datetime]:
        lo = bisect.bisect_left(self.times, first_due)
        hi = bisect.bisect_right(self.times, now)
        return hi - lo, self.times[hi - 1]

    def nth(self, first_due: datetime, n: int, zone: ZoneInfo) -> datetime:
        return self.times[bisect.bisect_left(self.times, first_due) + n - 1]

    def fingerprint(self, zone: ZoneInfo) -> str:
        import hashlib  # here: only AtTimes needs it, and it costs more to import than this module

        digest = hashlib.sha256("|".join(t.isoformat() for t in self.times).encode()).hexdigest()
        return f"at:{len(self.times)}:{digest[:16]}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AtTimes) and other.times == self.times

    def __hash__(self) -> int:
        return hash(("at", self.times))

    def __repr__(self) -> str:
        return f"AtTimes({len(self.times)} instants)"
