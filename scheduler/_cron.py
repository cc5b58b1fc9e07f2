"""``Cron``: standard Unix cron on top of cronsim, with explicit DST rules.

cronsim iterates *wall-clock* matches (we always hand it naive local times); this module maps
wall times to real instants with these rules (docs/behaviour.md):

* a match inside a spring-forward gap fires once, at the first instant after the gap;
* in a fall-back fold, an expression with a fixed hour fires on the first pass only, while one
  whose hour field is ``*`` or a step follows real time and fires on both passes.

Counting occurrences over a long span (catch-up after downtime) is arithmetic on wall-clock
days, with exact enumeration only in a few hours around each DST transition.
"""

from __future__ import annotations

import bisect
import calendar
import re
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING

from cronsim import CronSim, CronSimError

from ._errors import InvalidJobError, InvalidJobKind
from ._schedules import Schedule
from ._time import to_zone, wrong_type

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

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
ONE_SECOND = timedelta(seconds=1)
ONE_MICROSECOND = timedelta(microseconds=1)
#: Below this many steps ``nth`` just iterates; above, it bisects on ``count``.
NTH_ITERATION_LIMIT = 512
#: Longest expression text accepted (real ones are a few dozen characters).
MAX_EXPRESSION = 1000


def _nearest_weekday(year: int, month: int, day: int) -> int | None:
    """The weekday (Mon-Fri) nearest to ``day`` within its month (``nW``), None if no such day."""
    last = calendar.monthrange(year, month)[1]
    if day > last:
        return None
    weekday = date(year, month, day).weekday()
    if weekday == 5:  # Saturday -> Friday, unless that leaves the month
        return day - 1 if day > 1 else day + 2
    if weekday == 6:  # Sunday -> Monday, unless that leaves the month
        return day + 1 if day < last else day - 2
    return day


class _Sim(CronSim):
    """cronsim plus the ``nW`` day-of-month term (nearest weekday), which cronsim lacks."""

    weekday_days: frozenset[int] = frozenset()

    def match_dom(self, d: date) -> bool:
        if super().match_dom(d):
            return True
        return any(_nearest_weekday(d.year, d.month, n) == d.day for n in self.weekday_days)


def _split_weekday_terms(fields: str, expression: str) -> tuple[str, frozenset[int], bool]:
    """Take ``nW`` terms out of the day-of-month field: (fields for cronsim, n values, other terms left)."""
    parts = fields.split(" ")
    terms = parts[3].split(",")
    nearest = [t for t in terms if re.fullmatch(r"\d{1,2}W", t.upper())]
    if not nearest:
        return fields, frozenset(), True
    days = frozenset(int(t[:-1]) for t in nearest)
    if not all(1 <= d <= 31 for d in days):
        raise InvalidJobError(
            InvalidJobKind.CRON_EXPRESSION, f"invalid cron expression {expression!r}: Bad day-of-month"
        )
    rest = [t for t in terms if t not in nearest]
    # A placeholder keeps cronsim's parser happy; the days it adds are removed after parsing.
    parts[3] = ",".join(rest) if rest else "1"
    return " ".join(parts), days, bool(rest)


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
            raise InvalidJobError(InvalidJobKind.CRON_EXPRESSION, f"unknown cron macro {text!r} (known: {known})")
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
    fields = [_collapse_equal_ranges(field, position) for position, field in enumerate(fields)]
    hour = fields[2]
    return " ".join(fields), ("*" not in hour and "/" not in hour)


_MONTH_NAMES = {name: i for i, name in enumerate(calendar.month_abbr) if name}
_DAY_NAMES = {name: (i + 1) % 7 for i, name in enumerate(calendar.day_abbr)}
_RANGE_STEP = re.compile(r"(\w+)-(\w+)/(\w+)")


def _term_value(text: str, position: int) -> int | str:
    """A range bound as a number (names resolved in the month and day-of-week fields)."""
    names = _MONTH_NAMES if position == 4 else _DAY_NAMES if position == 5 else {}
    upper = text.upper()
    for name, value in names.items():
        if name.upper() == upper:
            return value
    return int(text) if text.isascii() and text.isdigit() else upper


def _collapse_equal_ranges(field: str, position: int) -> str:
    """Rewrite ``a-a/step`` as ``a``: a range with equal bounds is that single value whatever
    the step (as in Vixie cron); cronsim would otherwise read it as ``a/step`` to the end."""
    terms = field.split(",")
    for i, term in enumerate(terms):
        found = _RANGE_STEP.fullmatch(term)
        if found and _term_value(found[1], position) == _term_value(found[2], position):
            terms[i] = found[1]
    return ",".join(terms)


class Cron(Schedule):
    """Standard Unix cron (5 fields, or 6 with leading seconds), evaluated in a time zone.

    ``timezone`` defaults to the scheduler config's zone. Invalid text, an expression that
    can never fire, or an unknown zone raise :class:`InvalidJobError` here, at construction.
    """

    __slots__ = (
        "_every_day",
        "_fields",
        "_fixed_hour",
        "_hour_set",
        "_hours",
        "_minute_set",
        "_minutes",
        "_per_day",
        "_seconds",
        "_sim",
        "expression",
        "timezone",
    )
    expression: str
    timezone: ZoneInfo | None
    _fields: str
    _weekday_days: frozenset[int]
    _other_days: bool
    _fixed_hour: bool
    _sim: CronSim
    _hours: list[int]
    _minutes: list[int]
    _seconds: list[int]
    _hour_set: frozenset[int]
    _minute_set: frozenset[int]
    _per_day: int
    _every_day: bool

    def __init__(self, expression: str, timezone: str | tzinfo | None = None) -> None:
        if not isinstance(expression, str):
            raise wrong_type("cron expression", "text", expression, InvalidJobKind.CRON_EXPRESSION)
        if len(expression) > MAX_EXPRESSION or not expression.isprintable():
            raise InvalidJobError(
                InvalidJobKind.CRON_EXPRESSION,
                f"cron expression {expression[:80]!r} is too long or holds unprintable characters",
            )
        zone = None if timezone is None else to_zone(timezone)
        fields, fixed_hour = _expand(expression)
        sim_fields, weekday_days, other_days = _split_weekday_terms(fields, expression)
        setattr_ = object.__setattr__
        setattr_(self, "_fields", sim_fields)
        setattr_(self, "_weekday_days", weekday_days)
        setattr_(self, "_other_days", other_days)
        try:
            sim = self._new_sim(datetime(2000, 1, 1))
            next(self._new_sim(datetime(2000, 1, 1)))
        except CronSimError as exc:
            raise InvalidJobError(
                InvalidJobKind.CRON_EXPRESSION, f"invalid cron expression {expression!r}: {exc}"
            ) from exc
        except StopIteration as exc:
            raise InvalidJobError(
                InvalidJobKind.CRON_EXPRESSION, f"cron expression {expression!r} never fires"
            ) from exc
        except Exception as exc:  # cronsim's parser is not ours: anything it raises is bad text
            raise InvalidJobError(
                InvalidJobKind.CRON_EXPRESSION, f"invalid cron expression {expression!r}: {exc}"
            ) from exc
        setattr_(self, "expression", expression.strip())
        setattr_(self, "timezone", zone)
        setattr_(self, "_fixed_hour", fixed_hour)
        setattr_(self, "_sim", sim)
        setattr_(self, "_hours", sorted(sim.hours))
        setattr_(self, "_minutes", sorted(sim.minutes))
        setattr_(self, "_seconds", sorted(sim.seconds))
        setattr_(self, "_hour_set", frozenset(sim.hours))
        setattr_(self, "_minute_set", frozenset(sim.minutes))
        setattr_(self, "_per_day", len(sim.hours) * len(sim.minutes) * len(sim.seconds))
        day_fields = fields.split(" ")[3:]
        setattr_(self, "_every_day", all(f == "*" for f in day_fields))

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
        if self._weekday_days:
            text = f"cron {self.expression}"
        else:
            text = CronSim(self._fields, datetime(2000, 1, 1)).explain()
        return text if self.timezone is None else f"{text} ({self.timezone.key})"

    def fingerprint(self, zone: ZoneInfo) -> str:
        return f"cron:{self._fields}@{self._zone(zone).key}"

    def _zone(self, zone: ZoneInfo) -> ZoneInfo:
        return self.timezone or zone

    # -- wall-clock iteration (naive datetimes) -----------------------------------------

    def _new_sim(self, wall: datetime, reverse: bool = False) -> _Sim:
        sim = _Sim(self._fields, wall, reverse)
        if self._weekday_days:
            sim.weekday_days = self._weekday_days
            if not self._other_days:
                sim.days = set()
        return sim

    def _wall_next(self, wall: datetime) -> datetime | None:
        """First wall-clock match strictly after ``wall``."""
        try:
            return next(self._new_sim(wall))
        except StopIteration:
            return None

    def _wall_prev(self, wall: datetime) -> datetime | None:
        """Last wall-clock match at or before ``wall``."""
        try:
            # cronsim's reverse iteration treats microseconds as the first tick, which
            # makes a whole-second match at ``wall`` itself included.
            return next(self._new_sim(wall + ONE_MICROSECOND, reverse=True))
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
        """Number of occurrences in ``(after, until]``: arithmetic on wall-clock days.

        Between DST transitions the offset is constant, so occurrences are wall-clock matches.
        At each transition we apply the two rules directly: a gap contributes one firing if
        anything in it (or its end) matches; a fold's second pass counts again unless the
        hour is fixed.
        """
        tz = self._zone(zone)
        if until <= after:
            return 0
        lo, fold = _naive(after, tz)
        if fold == 1 and self._fixed_hour:
            lo = max(lo, self._fold_end(lo, tz) - ONE_MICROSECOND)
        total = 0
        for transition in self._transitions(after, until, tz):
            before = _offset(transition - ONE_MICROSECOND, tz)
            after_offset = _offset(transition, tz)
            assert before is not None
            assert after_offset is not None
            base = transition.replace(tzinfo=None)
            wall_before, wall_after = base + before, base + after_offset
            total += self._count_wall(lo, wall_before - ONE_MICROSECOND)
            if after_offset > before:  # spring forward: [wall_before, wall_after) never happens
                total += 1 if self._count_wall(wall_before - ONE_MICROSECOND, wall_after) else 0
                lo = wall_after
            else:  # fall back: [wall_after, wall_before) happens twice
                lo = (wall_before if self._fixed_hour else wall_after) - ONE_MICROSECOND
        return total + self._count_wall(lo, _naive(until, tz)[0])

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

    def _count_wall(self, lo_wall: datetime, hi_wall: datetime) -> int:
        """Wall-clock matches in ``(lo_wall, hi_wall]`` (naive datetimes, no DST)."""
        if hi_wall <= lo_wall:
            return 0
        first_day, last_day = lo_wall.date(), hi_wall.date()
        lo_rank = self._rank(lo_wall.hour * 3600 + lo_wall.minute * 60 + lo_wall.second)
        hi_rank = self._rank(hi_wall.hour * 3600 + hi_wall.minute * 60 + hi_wall.second)
        if first_day == last_day:
            return hi_rank - lo_rank if self._matches_day(first_day) else 0
        total = self._per_day - lo_rank if self._matches_day(first_day) else 0
        total += hi_rank if self._matches_day(last_day) else 0
        inner = (last_day - first_day).days - 1
        if self._every_day:
            return total + inner * self._per_day
        day, one_day = first_day + timedelta(days=1), timedelta(days=1)
        for _ in range(inner):
            if self._matches_day(day):
                total += self._per_day
            day += one_day
        return total

    def _matches_day(self, day: date) -> bool:
        return day.month in self._sim.months and bool(self._sim.match_day(day))

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
