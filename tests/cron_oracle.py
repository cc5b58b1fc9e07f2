"""An independent brute-force reading of cron, written from the rules, not from cronsim.

``fires(expression, zone, lo, hi)`` walks real time minute by minute and lists the instants
in ``(lo, hi]`` at which the expression fires:

* a minute fires when its local wall time matches the fields (day-of-month and day-of-week
  OR-ed when both are restricted, AND-ed otherwise; ``a-a/step`` is just ``a``);
* in a fall-back fold, an expression whose hour field has no ``*`` and no step fires on the
  first pass only;
* a spring-forward gap fires once, at the first instant after it, if its end or any wall
  minute inside it matches.

Only whole-minute expressions of numbers, names, ``*``, ranges, steps and lists are covered.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

MINUTE = timedelta(minutes=1)
_BOUNDS = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


def _value(text: str, field: int) -> int:
    upper = text.upper()
    if field == 3 and upper in _MONTHS:
        return _MONTHS.index(upper) + 1
    if field == 4 and upper in _DAYS:
        return _DAYS.index(upper)
    return int(text)


def _field(text: str, field: int) -> set[int]:
    low, high = _BOUNDS[field]
    out: set[int] = set()
    for term in text.split(","):
        body, _, step_text = term.partition("/")
        step = int(step_text) if step_text else 1
        if body == "*":
            first, last = low, high
        elif "-" in body:
            a, b = body.split("-")
            first, last = _value(a, field), _value(b, field)
        else:
            first = _value(body, field)
            last = high if step_text else first
        out.update(range(first, last + 1, step))
    if field == 4 and 7 in out:
        out = (out - {7}) | {0}
    return out


class Oracle:
    def __init__(self, expression: str) -> None:
        parts = expression.split()
        self.minutes, self.hours, self.days, self.months, self.weekdays = (
            _field(text, i) for i, text in enumerate(parts)
        )
        self.dom_star, self.dow_star = parts[2].startswith("*"), parts[4].startswith("*")
        self.fixed_hour = all(_single_or_range(term) for term in parts[1].split(","))

    def matches(self, wall: datetime) -> bool:
        if wall.minute not in self.minutes or wall.hour not in self.hours or wall.month not in self.months:
            return False
        dom, dow = wall.day in self.days, (wall.weekday() + 1) % 7 in self.weekdays
        if self.dom_star or self.dow_star:
            return dom and dow
        return dom or dow

    def fires(self, zone: ZoneInfo, lo: datetime, hi: datetime) -> list[datetime]:
        """Firing instants in ``(lo, hi]`` (``lo`` on a whole minute, UTC)."""
        out: list[datetime] = []
        t = lo + MINUTE
        previous = lo.astimezone(zone)
        while t <= hi:
            local = t.astimezone(zone)
            wall = local.replace(tzinfo=None)
            jump = local.utcoffset() - previous.utcoffset()  # type: ignore[operator]
            if jump > timedelta(0):  # spring forward: wall minutes [wall - jump, wall) never happen
                gap = [wall - jump + MINUTE * i for i in range(int(jump / MINUTE))]
                if self.matches(wall) or any(self.matches(w) for w in gap):
                    out.append(t)
            elif self.matches(wall) and not (local.fold == 1 and self.fixed_hour and _repeated(local)):
                out.append(t)
            previous = local
            t += MINUTE
        return out


def _single_or_range(term: str) -> bool:
    """No ``*`` and no step (a step over ``a-a`` is no step: the term is the single value a)."""
    body, _, step = term.partition("/")
    if "*" in body:
        return False
    return not step or (body.partition("-")[0] == body.partition("-")[2])


def _repeated(local: datetime) -> bool:
    """Whether this wall time already happened once (the second pass of a fold)."""
    return local.replace(fold=0).utcoffset() != local.utcoffset()


def transitions(zone: ZoneInfo, first_year: int, last_year: int) -> list[datetime]:
    """UTC instants (whole minutes) at which ``zone``'s offset changes."""
    out: list[datetime] = []
    t, end = datetime(first_year, 1, 1, tzinfo=UTC), datetime(last_year + 1, 1, 1, tzinfo=UTC)
    offset = t.astimezone(zone).utcoffset()
    step = timedelta(hours=6)
    while t < end:
        nxt = t + step
        if nxt.astimezone(zone).utcoffset() != offset:
            lo, hi = t, nxt
            while hi - lo > MINUTE:
                mid = lo + (hi - lo) / 2
                mid = mid.replace(second=0, microsecond=0)
                if mid <= lo:
                    break
                if mid.astimezone(zone).utcoffset() == offset:
                    lo = mid
                else:
                    hi = mid
            out.append(hi)
            offset = nxt.astimezone(zone).utcoffset()
        t = nxt
    return out
