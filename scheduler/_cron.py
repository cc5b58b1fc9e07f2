"""``Cron``: standard Unix cron on top of cronsim, with explicit DST rules.

cronsim iterates *wall-clock* matches (we always hand it naive local times); this module maps
wall times to real instants with the rules of the spec:

* a match inside a spring-forward gap fires once, at the first instant after the gap;
* in a fall-back fold, an expression with a fixed hour fires on the first pass only, while one
  whose hour field is ``*`` or a step follows real time and fires on both passes.

Counting occurrences over a long span (catch-up after downtime) is arithmetic on wall-clock
days, with exact enumeration only in a few hours around each DST transition.
"""

from __future__ import annotations

import bisect
from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from ._errors import InvalidJobError, InvalidJobKind
from ._schedules import Schedule
from ._time import to_zone

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
FIELD_NAMES_5 = ("minute", "hour", "day-of-month", "month", "day-of-week")
#: Exact enumeration covers this much real time on each side of a DST transition; wider than
#: any fold or gap in the tz database (at most two hours).
TRANSITION_MARGIN = timedelta(hours=3)
ONE_SECOND = timedelta(seconds=1)
ONE_MICROSECOND = timedelta(microseconds=1)
#: Below this many steps ``nth`` just iterates; above, it bisects on ``count``.
NTH_ITERATION_LIMIT = 512


def _naive(instant: datetime, zone: ZoneInfo) -> tuple[datetime, int]:
    local = instant.astimezone(zone)
    return local.replace(tzinfo=None), local.fold


def _utc(wall: datetime, zone: ZoneInfo, fold: int = 0) -> datetime:
    return wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)


def _offset(instant: datetime, zone: ZoneInfo) -> timedelta | None:
    return instant.astimezone(zone).utcoffset()


def _first_with_offset(lo: datetime, hi: datetime, zone: ZoneInfo) -> datetime:
    """Smallest whole-second instant in ``(lo, hi]`` whose offset equals ``hi``'s."""
    target = _offset(hi, zone)
    lo_s, hi_s = int(lo.timestamp()), int(hi.timestamp())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if _offset(datetime.fromtimestamp(mid, UTC), zone) == target:
            hi_s = mid
        else:
            lo_s = mid
    return datetime.fromtimestamp(hi_s, UTC)


def _expand(expression: str) -> tuple[str, bool]:
    """Return the 6-field expression (seconds first) and whether the hour field is fixed."""
    text = " ".join(expression.split())
    if not text:
        raise InvalidJobError(InvalidJobKind.CRON_EXPRESSION, "cron expression is empty")
    if text.startswith("@"):
        macro = MACROS.get(text.lower())
        if macro is None:
            known = ", ".join(sorted(MACROS))
            raise InvalidJobError(
                InvalidJobKind.CRON_EXPRESSION, f"unknown cron macro {text!r} (known: {known})"
            )
        text = macro
    fields = text.split(" ")
    if len(fields) == 5:
        fields.insert(0, "0")
    elif len(fields) != 6:
        raise InvalidJobError(
            InvalidJobKind.CRON_EXPRESSION,
            f"cron expression {expression!r} has {len(fields)} fields; expected 5 "
            "(minute hour day-of-month month day-of-week) or 6 (with leading seconds)",
        )
    hour = fields[2]
    return " ".join(fields), ("*" not in hour and "/" not in hour)


class Cron(Schedule):
    """Standard Unix cron (5 fields, or 6 with leading seconds), evaluated in a time zone.

    ``timezone`` defaults to the scheduler config's zone. Invalid text, an expression that
    can never fire, or an unknown zone raise :class:`InvalidJobError` here, at construction.
    """

    __slots__ = ("_fields", "_fixed_hour", "_sim", "_hours", "_minutes", "_seconds",
                 "_hour_set", "_minute_set", "_per_day", "expression", "timezone")
    expression: str
    timezone: ZoneInfo | None

    def __init__(self, expression: str, timezone: str | tzinfo | None = None) -> None:
        if not isinstance(expression, str):
            raise InvalidJobError(InvalidJobKind.CRON_EXPRESSION, f"cron expression must be text, got {expression!r}")
        fields, fixed_hour = _expand(expression)
        try:
            sim = CronSim(fields, datetime(2000, 1, 1))
            next(sim)
        except CronSimError as exc:
            raise InvalidJobError(
                InvalidJobKind.CRON_EXPRESSION, f"invalid cron expression {expression!r}: {exc}"
            ) from exc
        except StopIteration as exc:
            raise InvalidJobError(
                InvalidJobKind.CRON_EXPRESSION, f"cron expression {expression!r} never fires"
            ) from exc
        setattr_ = object.__setattr__
        setattr_(self, "expression", expression.strip())
        setattr_(self, "timezone", None if timezone is None else to_zone(timezone))
        setattr_(self, "_fields", fields)
        setattr_(self, "_fixed_hour", fixed_hour)
        setattr_(self, "_sim", sim)
        setattr_(self, "_hours", sorted(sim.hours))
        setattr_(self, "_minutes", sorted(sim.minutes))
        setattr_(self, "_seconds", sorted(sim.seconds))
        setattr_(self, "_hour_set", frozenset(sim.hours))
        setattr_(self, "_minute_set", frozenset(sim.minutes))
        setattr_(self, "_per_day", len(sim.hours) * len(sim.minutes) * len(sim.seconds))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Cron is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cron) and (other._fields, other.timezone) == (self._fields, self.timezone)

    def __hash__(self) -> int:
        return hash(("cron", self._fields, self.timezone))

    def __repr__(self) -> str:
        zone = f", timezone={self.timezone.key!r}" if self.timezone else ""
        return f"Cron({self.expression!r}{zone})"

    def explain(self) -> str:
        """A plain-language description, e.g. "At 09:00 on Monday through Friday"."""
        text = CronSim(self._fields, datetime(2000, 1, 1)).explain()
        return text if self.timezone is None else f"{text} ({self.timezone.key})"

    def fingerprint(self, zone: ZoneInfo) -> str:
        return f"cron:{self._fields}@{self._zone(zone).key}"

    def _zone(self, zone: ZoneInfo) -> ZoneInfo:
        return self.timezone or zone

    # -- wall-clock iteration (naive datetimes) -----------------------------------------

    def _wall_next(self, wall: datetime) -> datetime | None:
        """First wall-clock match strictly after ``wall``."""
        try:
            return next(CronSim(self._fields, wall))
        except StopIteration:
            return None

    def _wall_prev(self, wall: datetime) -> datetime | None:
        """Last wall-clock match at or before ``wall``."""
        try:
            # cronsim's reverse iteration treats microseconds as the first tick, which
            # makes a whole-second match at ``wall`` itself included.
            return next(CronSim(self._fields, wall + ONE_MICROSECOND, reverse=True))
        except StopIteration:
            return None

    # -- wall <-> real mapping ----------------------------------------------------------

    @staticmethod
    def _kind(wall: datetime, zone: ZoneInfo) -> str:
        """'normal', 'fold' (happens twice) or 'gap' (never happens)."""
        first = wall.replace(tzinfo=zone, fold=0)
        second = wall.replace(tzinfo=zone, fold=1)
        if first.utcoffset() == second.utcoffset():
            return "normal"
        back = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
        return "fold" if back == wall else "gap"

    @staticmethod
    def _fold_end(wall: datetime, zone: ZoneInfo) -> datetime:
        """Wall time at which the fold containing ``wall`` ends (exclusive)."""
        first, second = _utc(wall, zone, 0), _utc(wall, zone, 1)
        transition = _first_with_offset(first, second, zone)
        before = first.astimezone(zone).utcoffset()
        assert before is not None
        return transition.replace(tzinfo=None) + before

    def _fold_start(self, wall: datetime, zone: ZoneInfo) -> datetime:
        first, second = _utc(wall, zone, 0), _utc(wall, zone, 1)
        transition = _first_with_offset(first, second, zone)
        return _naive(transition, zone)[0]

    @staticmethod
    def _gap_end(wall: datetime, zone: ZoneInfo) -> datetime:
        """The first real instant after the gap that swallowed ``wall``."""
        return _first_with_offset(_utc(wall, zone, 1), _utc(wall, zone, 0), zone)

    def _forward(self, wall: datetime | None, zone: ZoneInfo) -> datetime | None:
        """Real instant of a wall match reached moving forward (first pass in a fold)."""
        if wall is None:
            return None
        kind = self._kind(wall, zone)
        if kind == "gap":
            return self._gap_end(wall, zone)
        return _utc(wall, zone, 0)

    def _backward(self, wall: datetime | None, zone: ZoneInfo) -> datetime | None:
        """Real instant of the latest firing of a wall match (second pass if it follows time)."""
        if wall is None:
            return None
        kind = self._kind(wall, zone)
        if kind == "gap":
            return self._gap_end(wall, zone)
        return _utc(wall, zone, 1 if kind == "fold" and not self._fixed_hour else 0)

    # -- Schedule -----------------------------------------------------------------------

    def first(self, start: datetime, zone: ZoneInfo) -> datetime | None:
        return self.next_after(start, zone)

    def next_after(self, occurrence: datetime, zone: ZoneInfo) -> datetime | None:
        tz = self._zone(zone)
        wall, fold = _naive(occurrence, tz)
        if self._kind(wall, tz) != "fold":
            return self._forward(self._wall_next(wall), tz)
        fold_end = self._fold_end(wall, tz)
        candidate = self._wall_next(wall)
        if fold == 0:
            if candidate is not None and candidate < fold_end:
                return _utc(candidate, tz, 0)
            if not self._fixed_hour:
                # Real time re-enters the fold: its second pass comes before anything later.
                start = self._fold_start(wall, tz)
                again = self._wall_next(start - ONE_MICROSECOND)
                if again is not None and again < fold_end:
                    return _utc(again, tz, 1)
            return self._forward(candidate, tz)
        if candidate is not None and candidate < fold_end:
            if not self._fixed_hour:
                return _utc(candidate, tz, 1)
            candidate = self._wall_next(fold_end - ONE_MICROSECOND)
        return self._forward(candidate, tz)

    def last_at_or_before(self, instant: datetime, zone: ZoneInfo) -> datetime | None:
        """The latest occurrence at or before ``instant`` (None if there is none)."""
        tz = self._zone(zone)
        wall, fold = _naive(instant, tz)
        if self._kind(wall, tz) != "fold":
            return self._backward(self._wall_prev(wall), tz)
        fold_start = self._fold_start(wall, tz)
        candidate = self._wall_prev(wall)
        if fold == 1:
            if not self._fixed_hour and candidate is not None and candidate >= fold_start:
                return _utc(candidate, tz, 1)
            candidate = self._wall_prev(self._fold_end(wall, tz) - ONE_MICROSECOND)
        if candidate is not None and candidate >= fold_start:
            return _utc(candidate, tz, 0)
        return self._backward(candidate, tz)

    def due(self, first_due: datetime, now: datetime, zone: ZoneInfo) -> tuple[int, datetime]:
        last = self.last_at_or_before(now, zone)
        if last is None or last <= first_due:
            return 1, first_due
        return 1 + self.count_between(first_due, last, zone), last

    def nth(self, first_due: datetime, n: int, zone: ZoneInfo) -> datetime:
        if n <= NTH_ITERATION_LIMIT:
            current: datetime | None = first_due
            for _ in range(n - 1):
                assert current is not None
                current = self.next_after(current, zone)
            assert current is not None
            return current
        span = timedelta(days=1)
        while 1 + self.count_between(first_due, first_due + span, zone) < n:
            span *= 2
        lo, hi = first_due, first_due + span  # invariant: count(lo) < n <= count(hi)
        while hi - lo > ONE_SECOND:
            mid = lo + (hi - lo) / 2
            if 1 + self.count_between(first_due, mid, zone) >= n:
                hi = mid
            else:
                lo = mid
        last = self.last_at_or_before(hi, zone)
        assert last is not None
        return last

    def count_between(self, after: datetime, until: datetime, zone: ZoneInfo) -> int:
        """Number of occurrences in ``(after, until]``, without enumerating them."""
        tz = self._zone(zone)
        if until <= after:
            return 0
        total = 0
        cursor = after
        for transition in self._transitions(after - TRANSITION_MARGIN, until + TRANSITION_MARGIN, tz):
            exact_from = max(cursor, transition - TRANSITION_MARGIN)
            exact_to = min(until, transition + TRANSITION_MARGIN)
            if exact_to <= cursor:
                continue
            total += self._count_wall(cursor, exact_from, tz)
            total += self._count_exact(exact_from, exact_to, tz)
            cursor = exact_to
        return total + self._count_wall(cursor, until, tz)

    @staticmethod
    def _transitions(lo: datetime, hi: datetime, zone: ZoneInfo) -> list[datetime]:
        """Instants in ``(lo, hi]`` where the zone's UTC offset changes (one per day at most)."""
        out: list[datetime] = []
        if zone.key == "UTC":
            return out
        step = timedelta(days=1)
        x, offset = lo, _offset(lo, zone)
        while x < hi:
            y = min(x + step, hi)
            offset_y = _offset(y, zone)
            if offset_y != offset:
                out.append(_first_with_offset(x, y, zone))
                offset = offset_y
            x = y
        return out

    def _count_exact(self, after: datetime, until: datetime, zone: ZoneInfo) -> int:
        count = 0
        current = self.next_after(after, zone)
        while current is not None and current <= until:
            count += 1
            current = self.next_after(current, zone)
        return count

    def _count_wall(self, after: datetime, until: datetime, zone: ZoneInfo) -> int:
        """Occurrences in ``(after, until]`` when the offset is constant over that span."""
        if until <= after:
            return 0
        lo_wall, _ = _naive(after, zone)
        hi_wall, _ = _naive(until, zone)
        first_day, last_day = lo_wall.date(), hi_wall.date()
        lo_sod = lo_wall.hour * 3600 + lo_wall.minute * 60 + lo_wall.second
        hi_sod = hi_wall.hour * 3600 + hi_wall.minute * 60 + hi_wall.second
        sim, months, total = self._sim, self._sim.months, 0
        day = first_day
        one_day = timedelta(days=1)
        while day <= last_day:
            if day.month in months and sim.match_day(day):
                upper = self._rank(hi_sod) if day == last_day else self._per_day
                lower = self._rank(lo_sod) if day == first_day else 0
                total += upper - lower
            day += one_day
        return total

    def _rank(self, second_of_day: int) -> int:
        """How many (hour, minute, second) matches fall at or before ``second_of_day``."""
        hour, rest = divmod(second_of_day, 3600)
        minute, second = divmod(rest, 60)
        per_hour = len(self._minutes) * len(self._seconds)
        rank = bisect.bisect_left(self._hours, hour) * per_hour
        if hour in self._hour_set:
            rank += bisect.bisect_left(self._minutes, minute) * len(self._seconds)
            if minute in self._minute_set:
                rank += bisect.bisect_right(self._seconds, second)
        return rank


