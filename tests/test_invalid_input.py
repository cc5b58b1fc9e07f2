"""Bad input fails early, at construction, with the right kind and a message naming the problem."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta

import pytest

from scheduler import (
    AtTimes,
    Cron,
    Interval,
    InvalidJobError,
    InvalidJobKind,
    Job,
    JobTimeWindow,
    RetryPolicy,
    SchedulerConfig,
    TimeWindowSegment,
    ValkeyExecutionGuard,
)

NAIVE = datetime(2025, 1, 1, 12, 0)
OK = Interval(60)


async def _noop(ctx: object) -> None:
    return None


CASES: list[tuple[str, Callable[[], object], InvalidJobKind, str]] = [
    ("naive AtTimes instant", lambda: AtTimes([NAIVE]), InvalidJobKind.NAIVE_DATETIME, "naive"),
    ("naive instant among aware", lambda: AtTimes([datetime(2025, 1, 1, tzinfo=UTC), NAIVE]),
     InvalidJobKind.NAIVE_DATETIME, "2025-01-01T12:00:00"),
    ("naive window check", lambda: JobTimeWindow().matches(NAIVE), InvalidJobKind.NAIVE_DATETIME, "naive"),
    ("naive preview start", lambda: Interval(1).preview(1, after=NAIVE), InvalidJobKind.NAIVE_DATETIME, "naive"),
    ("zero interval", lambda: Interval(0), InvalidJobKind.ZERO_INTERVAL, "> 0"),
    ("negative interval", lambda: Interval(timedelta(seconds=-5)), InvalidJobKind.ZERO_INTERVAL, "-1 day"),
    ("interval not a duration", lambda: Interval("5s"), InvalidJobKind.ZERO_INTERVAL, "'5s'"),  # type: ignore[arg-type]
    ("interval too long", lambda: Interval(timedelta(days=100_000)), InvalidJobKind.INTERVAL_OUT_OF_RANGE, "longer"),
    ("cron bad minute", lambda: Cron("61 * * * *"), InvalidJobKind.CRON_EXPRESSION, "minute"),
    ("cron bad hour", lambda: Cron("0 24 * * *"), InvalidJobKind.CRON_EXPRESSION, "hour"),
    ("cron bad day-of-month", lambda: Cron("0 0 32 * *"), InvalidJobKind.CRON_EXPRESSION, "day-of-month"),
    ("cron bad month", lambda: Cron("0 0 1 13 *"), InvalidJobKind.CRON_EXPRESSION, "month"),
    ("cron bad day-of-week", lambda: Cron("0 0 * * 8"), InvalidJobKind.CRON_EXPRESSION, "day-of-week"),
    ("cron bad name", lambda: Cron("0 0 * FOO *"), InvalidJobKind.CRON_EXPRESSION, "month"),
    ("cron too few fields", lambda: Cron("0 0 *"), InvalidJobKind.CRON_EXPRESSION, "3 fields"),
    ("cron too many fields", lambda: Cron("0 0 * * * * *"), InvalidJobKind.CRON_EXPRESSION, "7 fields"),
    ("cron empty", lambda: Cron("   "), InvalidJobKind.CRON_EXPRESSION, "empty"),
    ("cron unknown macro", lambda: Cron("@fortnightly"), InvalidJobKind.CRON_EXPRESSION, "@fortnightly"),
    ("cron never fires", lambda: Cron("0 0 31 2 *"), InvalidJobKind.CRON_EXPRESSION, "0 0 31 2 *"),
    ("cron never fires (Apr 31)", lambda: Cron("0 0 31 4 *"), InvalidJobKind.CRON_EXPRESSION, "day-of-month"),
    ("cron unknown zone", lambda: Cron("0 0 * * *", "Mars/Olympus"), InvalidJobKind.TIMEZONE, "Mars/Olympus"),
    ("config unknown zone", lambda: SchedulerConfig(timezone="Europe/Atlantis"), InvalidJobKind.TIMEZONE,
     "Europe/Atlantis"),
    ("window unknown zone", lambda: JobTimeWindow(timezone="Nowhere/City"), InvalidJobKind.TIMEZONE, "Nowhere/City"),
    ("empty job id", lambda: Job("", OK, _noop), InvalidJobKind.JOB_ID, "empty"),
    ("whitespace job id", lambda: Job("   ", OK, _noop), InvalidJobKind.JOB_ID, "whitespace"),
    ("control chars in job id", lambda: Job("a\nb", OK, _noop), InvalidJobKind.JOB_ID, "control"),
    ("oversized job id", lambda: Job("x" * 257, OK, _noop), InvalidJobKind.JOB_ID, "257"),
    ("equal window bounds", lambda: TimeWindowSegment(time(9), time(9)), InvalidJobKind.TIME_WINDOW, "09:00:00"),
    ("bad weekday", lambda: JobTimeWindow(weekdays=["Funday"]), InvalidJobKind.TIME_WINDOW, "Funday"),
    ("weekday out of range", lambda: JobTimeWindow(weekdays=[7]), InvalidJobKind.TIME_WINDOW, "7"),
    ("bad segment text", lambda: TimeWindowSegment("9am", "5pm"), InvalidJobKind.TIME_WINDOW, "9am"),
    ("negative max_runs", lambda: Job("j", OK, _noop, max_runs=-1), InvalidJobKind.OTHER, "max_runs"),
    ("zero timeout", lambda: Job("j", OK, _noop, timeout=0), InvalidJobKind.OTHER, "timeout"),
    ("negative timeout", lambda: Job("j", OK, _noop, timeout=timedelta(seconds=-1)), InvalidJobKind.OTHER, "timeout"),
    ("retry zero attempts", lambda: RetryPolicy(max_attempts=0), InvalidJobKind.OTHER, "max_attempts"),
    ("retry multiplier < 1", lambda: RetryPolicy(multiplier=0.5), InvalidJobKind.OTHER, "multiplier"),
    ("retry jitter > 1", lambda: RetryPolicy(jitter=2.0), InvalidJobKind.OTHER, "jitter"),
    ("retry max < initial", lambda: RetryPolicy(initial_backoff=timedelta(seconds=10), max_backoff=timedelta(0)),
     InvalidJobKind.OTHER, "max_backoff"),
    ("unknown missed policy", lambda: Job("j", OK, _noop, missed_run_policy="sometimes"), InvalidJobKind.OTHER,
     "sometimes"),
    ("not a schedule", lambda: Job("j", "every minute", _noop), InvalidJobKind.OTHER, "every minute"),  # type: ignore[arg-type]
    ("task not callable", lambda: Job("j", OK, 42), InvalidJobKind.OTHER, "42"),  # type: ignore[arg-type]
    ("negative misfire grace", lambda: SchedulerConfig(misfire_grace=-1), InvalidJobKind.OTHER, "misfire_grace"),
    ("negative history limit", lambda: SchedulerConfig(history_limit=-1), InvalidJobKind.OTHER, "history_limit"),
    ("renew interval >= ttl", lambda: ValkeyExecutionGuard("redis://127.0.0.1:1", ttl=10, renew_interval=10),
     InvalidJobKind.OTHER, "renew_interval"),
]  # fmt: skip


@pytest.mark.parametrize(("label", "build", "kind", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_raises_the_right_kind(
    label: str, build: Callable[[], object], kind: InvalidJobKind, fragment: str
) -> None:
    """Each bad input raises InvalidJobError of its kind with a message naming the bad value."""
    with pytest.raises(InvalidJobError) as info:
        build()
    assert info.value.kind is kind, label
    assert fragment in str(info.value), (label, str(info.value))


def test_the_table_has_at_least_25_cases() -> None:
    """The table covers at least 25 distinct bad inputs."""
    assert len(CASES) >= 25


def test_max_runs_zero_is_valid() -> None:
    """max_runs=0 is a valid job (it ends Terminal without running)."""
    assert Job("j", OK, _noop, max_runs=0).max_runs == 0
