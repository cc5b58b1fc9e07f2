"""Bad input fails early, at construction, with the right kind and a message naming the problem."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta, timezone

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
T0 = datetime(2025, 1, 1, tzinfo=UTC)
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
    ("zone that is a tz-db folder", lambda: Cron("0 0 * * *", "America"), InvalidJobKind.TIMEZONE, "America"),
    ("config zone folder", lambda: SchedulerConfig(timezone="Europe"), InvalidJobKind.TIMEZONE, "Europe"),
    ("window zone too long", lambda: JobTimeWindow(timezone="A/" + "b" * 400), InvalidJobKind.TIMEZONE, "unknown"),
    ("segment with an offset", lambda: TimeWindowSegment("09:00+02:00", "10:00"), InvalidJobKind.TIME_WINDOW,
     "09:00+02:00"),
    ("segment end with an offset", lambda: TimeWindowSegment("00:00", "02:00-10:00"), InvalidJobKind.TIME_WINDOW,
     "02:00-10:00"),
    ("lone surrogate in job id", lambda: Job("a\udc80", OK, _noop), InvalidJobKind.JOB_ID, "surrogate"),
    ("C1 control in job id", lambda: Job("a\x85b", OK, _noop), InvalidJobKind.JOB_ID, "U+0085"),
    ("CSI in job id", lambda: Job("a\x9bb", OK, _noop), InvalidJobKind.JOB_ID, "U+009B"),
    ("line separator in job id", lambda: Job("a\u2028b", OK, _noop), InvalidJobKind.JOB_ID, "U+2028"),
    ("control in resource id", lambda: Job("j", OK, _noop, resource_id="r\x00"), InvalidJobKind.JOB_ID,
     "resource_id"),
    ("AtTimes year 1 east of UTC",
     lambda: AtTimes([datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))]), InvalidJobKind.OTHER, "out of range"),
    ("timeout too long", lambda: Job("j", OK, _noop, timeout=timedelta.max), InvalidJobKind.OTHER, "timeout"),
    ("retry backoff too long", lambda: RetryPolicy(max_backoff=timedelta.max), InvalidJobKind.OTHER, "max_backoff"),
    ("retry multiplier nan", lambda: RetryPolicy(multiplier=float("nan")), InvalidJobKind.OTHER, "multiplier"),
    ("preview negative n", lambda: Interval(1).preview(-1, after=T0), InvalidJobKind.OTHER, "preview n"),
    ("preview huge n", lambda: Interval(1).preview(10**20, after=T0), InvalidJobKind.OTHER, "preview n"),
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


TYPE_CASES: list[tuple[str, Callable[[], object], str]] = [
    ("retry multiplier None", lambda: RetryPolicy(multiplier=None), "multiplier"),  # type: ignore[arg-type]
    ("retry jitter text", lambda: RetryPolicy(jitter="0.1"), "jitter"),  # type: ignore[arg-type]
    ("retry attempts float", lambda: RetryPolicy(max_attempts=2.0), "max_attempts"),  # type: ignore[arg-type]
    ("window segments None", lambda: JobTimeWindow(segments=None), "segments"),  # type: ignore[arg-type]
    ("window weekdays None", lambda: JobTimeWindow(weekdays=None), "weekdays"),  # type: ignore[arg-type]
    ("window segment triple", lambda: JobTimeWindow(segments=[("09:00", "10:00", "11:00")]), "segment"),  # type: ignore[list-item]
    ("AtTimes None", lambda: AtTimes(None), "times"),  # type: ignore[arg-type]
    ("AtTimes text", lambda: AtTimes("2025-01-01T00:00Z"), "times"),  # type: ignore[arg-type]
    ("AtTimes of text", lambda: AtTimes(["2025-01-01T00:00Z"]), "instant"),  # type: ignore[list-item]
    ("cron not text", lambda: Cron(5), "cron expression"),  # type: ignore[arg-type]
    ("zone not text", lambda: Cron("* * * * *", 5), "timezone"),  # type: ignore[arg-type]
    ("config history float", lambda: SchedulerConfig(history_limit=1.5), "history_limit"),  # type: ignore[arg-type]
    ("config resume text", lambda: SchedulerConfig(resume_interrupted="no"), "resume_interrupted"),  # type: ignore[arg-type]
    ("config grace text", lambda: SchedulerConfig(misfire_grace="1s"), "misfire_grace"),  # type: ignore[arg-type]
    ("job id not text", lambda: Job(5, OK, _noop), "job_id"),  # type: ignore[arg-type]
    ("max_runs float", lambda: Job("j", OK, _noop, max_runs=1.0), "max_runs"),  # type: ignore[arg-type]
    ("policy not text", lambda: Job("j", OK, _noop, overlap_policy=3), "overlap_policy"),  # type: ignore[arg-type]
    ("retry not a policy", lambda: Job("j", OK, _noop, retry=3), "retry"),  # type: ignore[arg-type]
    ("preview n float", lambda: Interval(1).preview(2.5, after=T0), "preview n"),  # type: ignore[arg-type]
]  # fmt: skip


@pytest.mark.parametrize(("label", "build", "fragment"), TYPE_CASES, ids=[c[0] for c in TYPE_CASES])
def test_wrong_types_raise_type_error_naming_the_parameter(
    label: str, build: Callable[[], object], fragment: str
) -> None:
    """A wrong type is a TypeError (and an InvalidJobError), raised at construction, naming the parameter."""
    with pytest.raises(TypeError) as info:
        build()
    assert isinstance(info.value, InvalidJobError), label
    assert fragment in str(info.value), (label, str(info.value))


def test_huge_durations_are_clamped_or_capped_so_they_work() -> None:
    """Accepted values work at run time: no overflow in the backoff or in the grace arithmetic."""
    assert SchedulerConfig(misfire_grace=timedelta.max).misfire_grace == timedelta(days=3650)
    assert SchedulerConfig(catch_up_window=timedelta.max).catch_up_window == timedelta(days=3650)
    policy = RetryPolicy(max_attempts=5000, initial_backoff=timedelta(seconds=1), multiplier=1e308, jitter=0)
    assert policy.backoff(2) == timedelta(seconds=60)
    assert policy.backoff(4999) == timedelta(seconds=60)
    zero = RetryPolicy(max_attempts=1100, initial_backoff=timedelta(0), max_backoff=timedelta(0), jitter=0)
    assert zero.backoff(1099) == timedelta(0)
    assert RetryPolicy(multiplier=2, jitter=0).backoff(3) == timedelta(seconds=4)


def test_preview_is_strictly_after_and_safe_at_the_ends_of_the_calendar() -> None:
    instants = [datetime(2025, 1, d, tzinfo=UTC) for d in (1, 2, 3)]
    assert AtTimes(instants).preview(5, after=instants[0]) == instants[1:]
    assert AtTimes(instants).preview(5, after=instants[2]) == []
    late = datetime(9999, 12, 31, 23, 0, tzinfo=UTC)
    assert Interval(60).preview(3, after=late) == []
    assert Cron("0 0 * * *", "America/New_York").preview(3, after=late) == []
    early = datetime(1, 1, 1, tzinfo=UTC)
    assert len(Cron("0 0 * * *", "Asia/Tokyo").preview(3, after=early)) == 3
    assert all(t > early for t in Interval(60).preview(3, after=early))
