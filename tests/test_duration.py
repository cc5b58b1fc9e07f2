"""Duration and time-window text forms used by the CLI."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler import InvalidJobError, InvalidJobKind, Weekday
from scheduler._duration import format_duration, parse_duration, parse_window


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("250ms", timedelta(milliseconds=250)),
        ("0.5s", timedelta(milliseconds=500)),
        ("90s", timedelta(seconds=90)),
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("30m1h", timedelta(hours=1, minutes=30)),
        ("1h30m15s250ms", timedelta(hours=1, minutes=30, seconds=15, milliseconds=250)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        (" 10S ", timedelta(seconds=10)),
        ("1.5h", timedelta(minutes=90)),
        ("12", timedelta(seconds=12)),
        ("PT5M", timedelta(minutes=5)),
        ("pt1h30m", timedelta(hours=1, minutes=30)),
        ("PT0.25S", timedelta(milliseconds=250)),
        ("P1DT2H", timedelta(days=1, hours=2)),
        ("P2W", timedelta(weeks=2)),
        ("0s", timedelta(0)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "  ", "soon", "5x", "-5s", "5 m", "P", "PT", "P1DT", "P1M", "P1Y", "1h-30m", "ms"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(InvalidJobError) as info:
        parse_duration(text)
    assert info.value.kind is InvalidJobKind.OTHER
    assert repr(text) in str(info.value)
    assert "\n" not in str(info.value)


def test_parse_duration_out_of_range() -> None:
    with pytest.raises(InvalidJobError, match="out of range"):
        parse_duration("99999999999999d")


@given(st.integers(min_value=0, max_value=10**12))
def test_format_duration_round_trips(ms: int) -> None:
    value = timedelta(milliseconds=ms)
    assert parse_duration(format_duration(value)) == value


def test_format_duration_examples() -> None:
    assert format_duration(timedelta(hours=1, minutes=30)) == "1h30m"
    assert format_duration(timedelta(milliseconds=250)) == "250ms"
    assert format_duration(timedelta(0)) == "0s"


def test_parse_window_weekdays_and_segments() -> None:
    window = parse_window("Mon-Fri 09:00-12:00,13:00-18:00")
    assert window.weekdays == tuple(Weekday(i) for i in range(5))
    assert [(s.start, s.end) for s in window.segments] == [(time(9), time(12)), (time(13), time(18))]
    assert window.timezone is None
    monday_10 = datetime(2025, 6, 2, 10, 0, tzinfo=UTC)
    assert window.matches(monday_10)
    assert not window.matches(monday_10.replace(hour=12, minute=30))
    assert not window.matches(datetime(2025, 6, 7, 10, 0, tzinfo=UTC))  # Saturday


def test_parse_window_forms() -> None:
    assert parse_window("Sat,Sun").segments == ()
    assert parse_window("Sat,Sun").weekdays == (Weekday.SAT, Weekday.SUN)
    assert parse_window("09:00-17:00").weekdays == ()
    assert parse_window("Fri-Mon").weekdays == (Weekday.MON, Weekday.FRI, Weekday.SAT, Weekday.SUN)
    assert parse_window("monday,wednesday").weekdays == (Weekday.MON, Weekday.WED)
    night = parse_window("22:00-02:00")
    assert night.segments[0].crosses_midnight
    zoned = parse_window("Mon-Fri 09:00-17:00 Europe/Paris")
    assert zoned.timezone == ZoneInfo("Europe/Paris")
    assert parse_window("09:00-17:00", timezone="Asia/Tokyo").timezone == ZoneInfo("Asia/Tokyo")
    assert parse_window("UTC 09:00-17:00", timezone="Asia/Tokyo").timezone == ZoneInfo("UTC")


@pytest.mark.parametrize(
    "text",
    ["", "Mon-Funday", "Mon-Fri 09:00", "Mon-Fri 09:00-09:00", "Mon-Fri 25:00-26:00", "Mon,,Tue", "Mars/Olympus"],
)
def test_parse_window_rejects(text: str) -> None:
    with pytest.raises(InvalidJobError) as info:
        parse_window(text)
    assert info.value.kind in {InvalidJobKind.TIME_WINDOW, InvalidJobKind.TIMEZONE}
    assert "\n" not in str(info.value)
