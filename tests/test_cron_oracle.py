"""``Cron`` agrees with an independent brute-force oracle around every DST change of 2024-2030
in seven zones, and on random expressions at random instants."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from scheduler import Cron

from .cron_oracle import Oracle, transitions

ZONES = [
    "America/New_York",
    "Europe/London",
    "Europe/Berlin",
    "Australia/Lord_Howe",  # half-hour shifts
    "Pacific/Auckland",
    "America/Santiago",
    "America/Havana",  # changes at midnight: the day fields meet the gap
]
EXPRESSIONS = [
    "30 2 * * *",
    "0 * * * *",
    "*/15 1-3 * * *",
    "0 1,2,3 * * *",
    "46-46/10 * * * *",
    "59 1 * * *",
    "0 0 * * *",
    "30 0 * * SUN",
    "0 */2 * * *",
    "45 1 1-7 * MON",
    "5 2-2/3 * * *",
]


def _library(cron: Cron, zone: ZoneInfo, lo: datetime, hi: datetime) -> list[datetime]:
    out, current = [], cron.next_after(lo, zone)
    while current is not None and current <= hi:
        out.append(current)
        current = cron.next_after(current, zone)
    return out


@pytest.mark.parametrize("zone_name", ZONES)
def test_matches_the_oracle_around_every_dst_change(zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    changes = transitions(zone, 2024, 2030)
    for index, change in enumerate(changes):
        # Two expressions per change, rotating through the list: every one meets many changes.
        for expression in (EXPRESSIONS[index % len(EXPRESSIONS)], EXPRESSIONS[(index + 5) % len(EXPRESSIONS)]):
            lo, hi = change - timedelta(hours=5), change + timedelta(hours=5)
            cron = Cron(expression)
            expected = Oracle(expression).fires(zone, lo, hi)
            assert _library(cron, zone, lo, hi) == expected, (zone_name, expression, change)
            assert cron.count_between(lo, hi, zone) == len(expected), (zone_name, expression, change)


def _random_field(rng: random.Random, low: int, high: int) -> str:
    def term() -> str:
        a = rng.randint(low, high)
        b = rng.randint(a, high)
        return rng.choice([str(a), f"{a}-{b}", f"{a}-{b}/{rng.randint(1, 9)}", f"*/{rng.randint(1, 9)}", f"{a}-{a}/5"])

    if rng.random() < 0.3:
        return "*"
    return ",".join(term() for _ in range(rng.randint(1, 3)))


def test_matches_the_oracle_on_random_expressions() -> None:
    rng = random.Random(20240611)
    for _ in range(120):
        expression = " ".join(
            _random_field(rng, low, high) for low, high in [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
        )
        zone = ZoneInfo(rng.choice([*ZONES, "UTC"]))
        lo = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(7 * 365 * 24 * 60))
        try:
            cron = Cron(expression)
        except ValueError:  # never fires (e.g. 31 February): nothing to compare
            continue
        hi = lo + timedelta(days=2)
        assert _library(cron, zone, lo, hi) == Oracle(expression).fires(zone, lo, hi), (expression, zone, lo)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("46-46/10 * * * *", {46}),
        ("0 0 18-18/6 * *", {18}),
    ],
)
def test_a_range_with_equal_bounds_and_a_step_is_one_value(expression: str, expected: set[int]) -> None:
    instants = Cron(expression).preview(20, after=datetime(2024, 1, 1, tzinfo=UTC))
    field = "minute" if expression.startswith("46") else "day"
    assert {getattr(t, field) for t in instants} == expected
