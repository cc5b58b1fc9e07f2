"""Cron at DST transitions against a brute-force, minute-by-minute oracle of the documented DST rules.

The oracle walks real time one minute at a time. A minute fires when its local wall time
matches, except the second pass of a fall-back fold for fixed-hour expressions; a spring-
forward gap fires once, at the first instant after it, if any wall time inside it (or its end)
matches.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler import Cron
from scheduler._cron import _expand

ZONES = ["America/New_York", "Europe/London", "Australia/Lord_Howe"]
MINUTE = timedelta(minutes=1)


def _transitions(zone: ZoneInfo, years: range) -> list[datetime]:
    out = []
    t = datetime(years.start, 1, 1, tzinfo=UTC)
    end = datetime(years.stop, 1, 1, tzinfo=UTC)
    prev = t.astimezone(zone).utcoffset()
    while t < end:
        nxt = t + timedelta(hours=6)
        off = nxt.astimezone(zone).utcoffset()
        if off != prev:
            lo = t
            while nxt - lo > MINUTE:
                mid = lo + (nxt - lo) / 2
                if mid.astimezone(zone).utcoffset() == off:
                    nxt = mid
                else:
                    lo = mid
            out.append(nxt.replace(second=0, microsecond=0))
            prev = off
        t = t + timedelta(hours=6)
    return out


TRANSITIONS = {name: _transitions(ZoneInfo(name), range(2025, 2036)) for name in ZONES}


def oracle(expression: str, zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    fields, fixed_hour = _expand(expression)
    sim = CronSim(fields, datetime(2000, 1, 1))

    def match(w: datetime) -> bool:
        return (
            w.month in sim.months
            and sim.match_day(w.date())
            and w.hour in sim.hours
            and w.minute in sim.minutes
            and w.second in sim.seconds
        )

    fired = []
    u = start
    prev_wall = None
    while u <= end:
        local = u.astimezone(zone)
        wall = local.replace(tzinfo=None)
        ambiguous = wall.replace(tzinfo=zone, fold=0).utcoffset() != wall.replace(tzinfo=zone, fold=1).utcoffset()
        fire = match(wall) and not (fixed_hour and local.fold == 1 and ambiguous)
        if prev_wall is not None and wall - prev_wall > MINUTE:  # we just jumped over a gap
            g = prev_wall + MINUTE
            while g < wall and not fire:
                fire = match(g)
                g += MINUTE
        if fire:
            fired.append(u)
        prev_wall = wall
        u += MINUTE
    return fired


HOUR_FIELDS = st.sampled_from(["*", "1", "2", "0-3", "1,2", "*/2", "1-3/2", "0,2", "3"])
MINUTE_FIELDS = st.sampled_from(["0", "30", "15,45", "*/20", "*/30", "59", "0-10/5", "*"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    zone_name=st.sampled_from(ZONES),
    index=st.integers(min_value=0, max_value=19),
    minute=MINUTE_FIELDS,
    hour=HOUR_FIELDS,
)
def test_cron_matches_oracle_around_transitions(zone_name: str, index: int, minute: str, hour: str) -> None:
    """next_after, last_at_or_before and count_between agree with the oracle around ten years of transitions."""
    zone = ZoneInfo(zone_name)
    transition = TRANSITIONS[zone_name][index % len(TRANSITIONS[zone_name])]
    start, end = transition - timedelta(hours=5), transition + timedelta(hours=5)
    expression = f"{minute} {hour} * * *"
    cron = Cron(expression, zone)
    expected = oracle(expression, zone, start, end)
    got = []
    current = cron.next_after(start - timedelta(seconds=1), zone)
    while current is not None and current <= end:
        got.append(current)
        current = cron.next_after(current, zone)
    assert got == expected, (expression, zone_name, transition)
    for earlier, later in itertools.pairwise(expected):
        assert cron.last_at_or_before(later - timedelta(seconds=1), zone) == earlier
    assert cron.count_between(start - timedelta(seconds=1), end, zone) == len(expected)


def test_ten_years_of_transitions_are_covered() -> None:
    """The oracle test draws from at least ten years of transitions in each zone."""
    for name in ZONES:
        assert len(TRANSITIONS[name]) >= 20


def test_spring_forward_gap_fires_once_after_the_gap() -> None:
    """02:30 on the New York spring-forward night fires at 03:00 EDT, once."""
    zone = ZoneInfo("America/New_York")
    cron = Cron("30 2 * * *", zone)
    fired = cron.next_after(datetime(2025, 3, 9, 5, 0, tzinfo=UTC), zone)
    assert fired == datetime(2025, 3, 9, 7, 0, tzinfo=UTC)  # 03:00 EDT
    assert cron.next_after(fired, zone) == datetime(2025, 3, 10, 6, 30, tzinfo=UTC)


def test_fall_back_fold_fixed_hour_fires_once() -> None:
    """01:30 on the fall-back night fires on the first pass only."""
    zone = ZoneInfo("America/New_York")
    cron = Cron("30 1 * * *", zone)
    first = cron.next_after(datetime(2025, 11, 2, 4, 0, tzinfo=UTC), zone)
    assert first == datetime(2025, 11, 2, 5, 30, tzinfo=UTC)  # 01:30 EDT
    assert cron.next_after(first, zone) == datetime(2025, 11, 3, 6, 30, tzinfo=UTC)


def test_fall_back_fold_wildcard_hour_fires_twice() -> None:
    """An hourly expression follows real time through the fold: both 01:30s fire."""
    zone = ZoneInfo("America/New_York")
    cron = Cron("30 * * * *", zone)
    first = cron.next_after(datetime(2025, 11, 2, 5, 0, tzinfo=UTC), zone)
    assert first == datetime(2025, 11, 2, 5, 30, tzinfo=UTC)  # 01:30 EDT
    assert cron.next_after(first, zone) == datetime(2025, 11, 2, 6, 30, tzinfo=UTC)  # 01:30 EST


def test_lord_howe_half_hour_shift() -> None:
    """Lord Howe springs forward by 30 minutes: 02:15 fires at 02:30 once."""
    zone = ZoneInfo("Australia/Lord_Howe")
    cron = Cron("15 2 * * *", zone)
    # 2025-10-05 02:00 local (+10:30) jumps to 02:30 (+11:00).
    fired = cron.next_after(datetime(2025, 10, 4, 14, 0, tzinfo=UTC), zone)
    assert fired.astimezone(zone).replace(tzinfo=None) == datetime(2025, 10, 5, 2, 30)
