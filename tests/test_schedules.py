"""Interval, AtTimes and Cron semantics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from scheduler import AtTimes, Cron, Interval

UTCZ = ZoneInfo("UTC")
T = datetime(2025, 1, 1, tzinfo=UTC)


def test_interval_first_is_start_plus_every() -> None:
    """The first Interval occurrence is start + every, then each occurrence + every."""
    s = Interval(timedelta(seconds=90))
    assert s.first(T, UTCZ) == T + timedelta(seconds=90)
    assert s.next_after(T + timedelta(seconds=90), UTCZ) == T + timedelta(seconds=180)


def test_interval_accepts_seconds() -> None:
    """A number is a count of seconds."""
    assert Interval(0.25).every == timedelta(milliseconds=250)


def test_interval_due_counts_without_enumeration() -> None:
    """due() returns the count and the last occurrence in [first, now] by arithmetic."""
    s = Interval(timedelta(seconds=10))
    count, last = s.due(T, T + timedelta(seconds=95), UTCZ)
    assert (count, last) == (10, T + timedelta(seconds=90))
    assert s.nth(T, 4, UTCZ) == T + timedelta(seconds=30)


def test_interval_is_not_affected_by_dst() -> None:
    """Interval arithmetic is UTC elapsed time even across a DST change in the config zone."""
    s = Interval(timedelta(hours=1))
    start = datetime(2025, 3, 9, 6, 0, tzinfo=UTC)  # 01:00 EST, the night of spring-forward
    zone = ZoneInfo("America/New_York")
    assert s.next_after(start, zone) == start + timedelta(hours=1)


def test_at_times_sorts_dedups_and_converts() -> None:
    """AtTimes converts every instant to UTC, sorts them and removes duplicates."""
    paris = ZoneInfo("Europe/Paris")
    a = datetime(2025, 1, 1, 12, 0, tzinfo=paris)
    b = datetime(2025, 1, 1, 11, 0, tzinfo=UTC)  # same instant as a
    c = datetime(2025, 1, 1, 9, 0, tzinfo=timezone(timedelta(hours=-5)))
    s = AtTimes([c, a, b])
    assert s.times == (a.astimezone(UTC), c.astimezone(UTC))
    assert all(t.tzinfo is UTC for t in s.times)


def test_at_times_first_is_earliest_even_in_the_past() -> None:
    """The first AtTimes occurrence is the earliest instant, even before start."""
    s = AtTimes([T + timedelta(days=1), T - timedelta(days=1)])
    assert s.first(T, UTCZ) == T - timedelta(days=1)
    assert s.next_after(T - timedelta(days=1), UTCZ) == T + timedelta(days=1)
    assert s.next_after(T + timedelta(days=1), UTCZ) is None


def test_at_times_progresses_by_time_not_index() -> None:
    """next_after returns the first instant strictly after the given one."""
    s = AtTimes([T, T + timedelta(minutes=1), T + timedelta(minutes=2)])
    assert s.next_after(T + timedelta(seconds=30), UTCZ) == T + timedelta(minutes=1)
    assert s.due(T, T + timedelta(minutes=1, seconds=5), UTCZ) == (2, T + timedelta(minutes=1))


def test_empty_at_times_has_nothing() -> None:
    """An empty AtTimes is a valid schedule with no occurrence."""
    assert AtTimes([]).first(T, UTCZ) is None


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/15 * * * *", "2025-01-01T00:07:00", "2025-01-01T00:15:00"),
        ("0 9 * * MON-FRI", "2025-01-03T10:00:00", "2025-01-06T09:00:00"),  # Fri after 9 -> Mon
        ("0 0 1 JAN *", "2025-02-01T00:00:00", "2026-01-01T00:00:00"),
        ("@daily", "2025-01-01T00:00:00", "2025-01-02T00:00:00"),
        ("@hourly", "2025-01-01T00:00:00", "2025-01-01T01:00:00"),
        ("@weekly", "2025-01-01T00:00:00", "2025-01-05T00:00:00"),  # Sunday
        ("@monthly", "2025-01-15T00:00:00", "2025-02-01T00:00:00"),
        ("@yearly", "2025-01-15T00:00:00", "2026-01-01T00:00:00"),
        ("@annually", "2025-01-15T00:00:00", "2026-01-01T00:00:00"),
        ("@midnight", "2025-01-01T12:00:00", "2025-01-02T00:00:00"),
        ("0 0 L * *", "2025-02-01T00:00:00", "2025-02-28T00:00:00"),
        ("0 0 15W * *", "2025-03-01T00:00:00", "2025-03-14T00:00:00"),  # 15th is a Saturday
        ("0 0 * * 5#2", "2025-01-01T00:00:00", "2025-01-10T00:00:00"),  # second Friday
        ("0 0 * * 0", "2025-01-01T00:00:00", "2025-01-05T00:00:00"),  # 0 = Sunday
        ("0 0 * * 7", "2025-01-01T00:00:00", "2025-01-05T00:00:00"),  # 7 = Sunday
        ("0 0 13 * 5", "2025-01-01T00:00:00", "2025-01-03T00:00:00"),  # Vixie OR: Friday OR the 13th
        ("30 * * * * *", "2025-01-01T00:00:00", "2025-01-01T00:00:30"),  # 6 fields, seconds first
    ],
)
def test_cron_next(expression: str, after: str, expected: str) -> None:
    """Cron finds the first match strictly after the given instant (UTC)."""
    start = datetime.fromisoformat(after).replace(tzinfo=UTC)
    assert Cron(expression).next_after(start, UTCZ) == datetime.fromisoformat(expected).replace(tzinfo=UTC)


def test_cron_uses_its_own_zone_over_the_fallback() -> None:
    """A cron's own timezone wins over the config zone passed as fallback."""
    c = Cron("0 9 * * *", timezone="Asia/Tokyo")
    assert c.next_after(T, ZoneInfo("America/New_York")) == datetime(2025, 1, 2, 0, 0, tzinfo=UTC)


def test_cron_falls_back_to_config_zone() -> None:
    """Without its own zone a cron is evaluated in the zone it is given."""
    c = Cron("0 9 * * *")
    assert c.next_after(T, ZoneInfo("Europe/Paris")) == datetime(2025, 1, 1, 8, 0, tzinfo=UTC)


def test_cron_first_is_strictly_after_start() -> None:
    """A match exactly at start is not the first occurrence."""
    assert Cron("0 0 * * *").first(T, UTCZ) == T + timedelta(days=1)


def test_cron_count_over_a_year_is_exact() -> None:
    """count_between over a year of minutes equals the number of minutes, including DST zones."""
    end = datetime(2026, 1, 1, tzinfo=UTC)
    assert Cron("* * * * *").count_between(T, end, UTCZ) == 365 * 24 * 60
    assert Cron("* * * * *", "Europe/London").count_between(T, end, UTCZ) == 365 * 24 * 60
    # A fixed-hour daily job fires once a day, DST or not.
    assert Cron("30 1 * * *", "America/New_York").count_between(T, end, UTCZ) == 365


def test_cron_nth_and_due_agree() -> None:
    """nth(first, n) is the n-th occurrence and due() counts the same set."""
    c = Cron("*/5 * * * *", "America/New_York")
    first = datetime(2025, 3, 9, 5, 0, tzinfo=UTC)
    n, last = c.due(first, first + timedelta(hours=12), UTCZ)
    assert c.nth(first, n, UTCZ) == last
    assert c.nth(first, 1000, UTCZ) == c.nth(first, 999, UTCZ) + timedelta(minutes=5)


def test_explain_describes_the_expression() -> None:
    """explain() gives a plain-language description, naming the zone when set."""
    assert Cron("0 9 * * 1-5").explain() == "At 09:00 on Monday through Friday"
    assert "Europe/Paris" in Cron("0 9 * * *", "Europe/Paris").explain()


def test_preview_lists_next_instants() -> None:
    """preview(n) lists the next n occurrences in order."""
    got = Cron("0 12 * * *").preview(3, after=T)
    assert got == [T + timedelta(hours=12 + 24 * i) for i in range(3)]
    assert Interval(60).preview(2, after=T) == [T + timedelta(minutes=1), T + timedelta(minutes=2)]


def test_preview_in_a_zone() -> None:
    """preview(timezone=...) evaluates a zone-less cron in that zone."""
    got = Cron("0 9 * * *").preview(1, after=T, timezone="Asia/Tokyo")
    assert got == [datetime(2025, 1, 2, 0, 0, tzinfo=UTC)]


def test_schedules_are_immutable_and_comparable() -> None:
    """Schedules are immutable values with equality and hashing."""
    c = Cron("0 * * * *")
    with pytest.raises(AttributeError):
        c.expression = "x"  # type: ignore[misc]
    assert Cron("0 * * * *") == c
    assert hash(Interval(5)) == hash(Interval(timedelta(seconds=5)))
    assert len({AtTimes([T]), AtTimes([T])}) == 1


def test_fingerprints_change_with_the_schedule() -> None:
    """A fingerprint changes when the occurrences would change, including the zone."""
    assert Interval(5).fingerprint(UTCZ) != Interval(6).fingerprint(UTCZ)
    assert Cron("0 * * * *").fingerprint(UTCZ) != Cron("0 * * * *").fingerprint(ZoneInfo("Europe/Paris"))
    assert AtTimes([T]).fingerprint(UTCZ) != AtTimes([T, T + timedelta(1)]).fingerprint(UTCZ)


def test_nearest_weekday_day_of_month() -> None:
    """nW picks the weekday nearest to day n without leaving the month."""
    c = Cron("0 0 1W * *")
    # 2025-11-01 is a Saturday: the nearest weekday inside November is Monday the 3rd.
    assert c.next_after(datetime(2025, 10, 31, tzinfo=UTC), UTCZ) == datetime(2025, 11, 3, tzinfo=UTC)
    # 2025-08-31 is a Sunday and the last day: Friday the 29th.
    c31 = Cron("0 0 31W * *")
    assert c31.next_after(datetime(2025, 8, 1, tzinfo=UTC), UTCZ) == datetime(2025, 8, 29, tzinfo=UTC)
