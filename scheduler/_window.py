"""Time windows: when a job may start, in a zone, by weekday and time-of-day segments."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time, tzinfo
from enum import IntEnum
from typing import TYPE_CHECKING

from ._errors import InvalidJobError, InvalidJobKind
from ._records import record
from ._time import require_aware, to_zone, wrong_type

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo


class Weekday(IntEnum):
    """Monday is 0, as in ``datetime.weekday()``."""

    MON = 0
    TUE = 1
    WED = 2
    THU = 3
    FRI = 4
    SAT = 5
    SUN = 6

    @classmethod
    def parse(cls, value: Weekday | int | str) -> Weekday:
        """Accept a Weekday, 0-6, or a name like "Mon" / "monday" (any case)."""
        if isinstance(value, str):
            day = _NAMES.get(value.strip().upper())
            if day is None:
                raise InvalidJobError(InvalidJobKind.TIME_WINDOW, f"unknown weekday {value!r} (use Mon..Sun)")
            return cls(day)
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong_type("weekday", "a Weekday, 0-6 or a day name", value, InvalidJobKind.TIME_WINDOW)
        if not 0 <= value <= 6:
            raise InvalidJobError(InvalidJobKind.TIME_WINDOW, f"weekday must be 0 (Mon) .. 6 (Sun), got {value!r}")
        return cls(value)


_FULL_NAMES = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
_NAMES = {name: i for i, full in enumerate(_FULL_NAMES) for name in (full, full[:3])}


def _to_time(value: time | str, what: str) -> time:
    if isinstance(value, time):
        if value.tzinfo is not None:
            raise InvalidJobError(InvalidJobKind.TIME_WINDOW, f"{what} {value} must not carry a zone")
        return value
    if isinstance(value, str):
        try:
            parsed = time.fromisoformat(value.strip())
        except ValueError as exc:
            raise InvalidJobError(InvalidJobKind.TIME_WINDOW, f"{what} {value!r} is not HH:MM[:SS]") from exc
        if parsed.tzinfo is not None:
            raise InvalidJobError(
                InvalidJobKind.TIME_WINDOW,
                f"{what} {value!r} carries a UTC offset; give the zone to the window instead",
            )
        return parsed
    raise wrong_type(what, "a datetime.time or 'HH:MM' text", value, InvalidJobKind.TIME_WINDOW)


@record
class TimeWindowSegment:
    """Half-open ``[start, end)`` time of day. ``start > end`` crosses midnight."""

    start: time
    end: time

    def __init__(self, start: time | str, end: time | str) -> None:
        begin, finish = _to_time(start, "segment start"), _to_time(end, "segment end")
        if begin == finish:
            raise InvalidJobError(
                InvalidJobKind.TIME_WINDOW,
                f"time window segment {begin}-{finish} is empty (start == end); omit segments for a whole day",
            )
        object.__setattr__(self, "start", begin)
        object.__setattr__(self, "end", finish)

    @property
    def crosses_midnight(self) -> bool:
        return self.start > self.end


def _to_segment(value: object) -> TimeWindowSegment:
    if isinstance(value, TimeWindowSegment):
        return value
    if isinstance(value, tuple | list) and len(value) == 2:
        return TimeWindowSegment(value[0], value[1])
    raise wrong_type(
        "time window segment", "a TimeWindowSegment or a (start, end) pair", value, InvalidJobKind.TIME_WINDOW
    )


@record
class JobTimeWindow:
    """When runs may start. Empty ``weekdays`` = every day; empty ``segments`` = whole day.

    The after-midnight part of a segment that crosses midnight belongs to the previous day's
    weekday (Fri 22:00-02:00 covers Saturday 01:00).
    """

    timezone: ZoneInfo | None = None
    weekdays: tuple[Weekday, ...] = ()
    segments: tuple[TimeWindowSegment, ...] = ()

    def __init__(
        self,
        timezone: str | tzinfo | None = None,
        weekdays: Iterable[Weekday | int | str] = (),
        segments: Iterable[TimeWindowSegment | tuple[time | str, time | str]] = (),
    ) -> None:
        zone = None if timezone is None else to_zone(timezone, "time window timezone")
        if isinstance(weekdays, str | int):
            weekdays = [weekdays]
        if not isinstance(weekdays, Iterable):
            raise wrong_type("time window weekdays", "an iterable of weekdays", weekdays, InvalidJobKind.TIME_WINDOW)
        if isinstance(segments, str | bytes | TimeWindowSegment) or not isinstance(segments, Iterable):
            raise wrong_type(
                "time window segments", "an iterable of TimeWindowSegment or (start, end)", segments,
                InvalidJobKind.TIME_WINDOW,
            )  # fmt: skip
        days = tuple(sorted({Weekday.parse(d) for d in weekdays}))
        segs = tuple(_to_segment(s) for s in segments)
        object.__setattr__(self, "timezone", zone)
        object.__setattr__(self, "weekdays", days)
        object.__setattr__(self, "segments", segs)

    def _day_ok(self, weekday: int) -> bool:
        return not self.weekdays or weekday in self.weekdays

    def matches(self, instant: datetime, fallback_timezone: str | tzinfo | None = None) -> bool:
        """Whether a run may start at ``instant`` (zone: the window's, else ``fallback_timezone``)."""
        zone = self.timezone or to_zone(fallback_timezone)
        local = require_aware(instant, "instant").astimezone(zone)
        weekday, now = local.weekday(), local.time().replace(tzinfo=None)
        if not self.segments:
            return self._day_ok(weekday)
        for seg in self.segments:
            if not seg.crosses_midnight:
                if seg.start <= now < seg.end and self._day_ok(weekday):
                    return True
            elif (now >= seg.start and self._day_ok(weekday)) or (now < seg.end and self._day_ok((weekday - 1) % 7)):
                return True
        return False

    def describe(self) -> str:
        days = ",".join(d.name.title() for d in sorted(self.weekdays)) or "every day"
        segs = ",".join(f"{s.start:%H:%M}-{s.end:%H:%M}" for s in self.segments) or "all day"
        zone = f" ({self.timezone.key})" if self.timezone else ""
        return f"{days} {segs}{zone}"
