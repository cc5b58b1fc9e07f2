"""Fuzzing the public constructors and the CLI: any input either works or fails AT ONCE with
InvalidJobError (a bad value) or TypeError (a wrong type) naming the parameter; the CLI exits
0, 1 or 2 with no traceback. Bounded example counts keep this to a few seconds."""

from __future__ import annotations

import io
import os
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime, time, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler import (
    AtTimes,
    Cron,
    Interval,
    InvalidJobError,
    Job,
    JobTimeWindow,
    RetryPolicy,
    SchedulerConfig,
    TimeWindowSegment,
)
from scheduler._cli import main

FAST = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))

text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40)
aware = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59), timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))]
    )
)  # fmt: skip
durations = st.one_of(
    st.timedeltas(),
    st.just(timedelta.max),
    st.just(timedelta.min),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**20), max_value=10**20),
)
anything = st.one_of(
    st.none(), st.booleans(), text, st.binary(max_size=8), st.lists(st.integers(), max_size=3), durations, aware,
    st.times(), st.just(object()),
)  # fmt: skip
zones = st.one_of(
    st.sampled_from(["UTC", "Europe/Paris", "America", "Europe", "", "x" * 300, "../etc/passwd", "Etc/GMT+5"]),
    text,
    anything,
)


def _accepted_or_clear(build: object, *args: object, **kwargs: object) -> object:
    try:
        return build(*args, **kwargs)  # type: ignore[operator]
    except (InvalidJobError, TypeError) as exc:
        if not str(exc):
            raise AssertionError("an error must say what is wrong") from exc
        return None


async def _noop(ctx: object) -> None:
    return None


@FAST
@given(
    every=st.one_of(durations, anything), after=st.one_of(aware, anything), n=st.one_of(st.integers(-5, 50), anything)
)
def test_interval_and_preview(every: object, after: object, n: object) -> None:
    schedule = _accepted_or_clear(Interval, every)
    if isinstance(schedule, Interval):
        result = _accepted_or_clear(schedule.preview, n, after=after)
        if isinstance(result, list):
            assert all(t > after for t in result)  # type: ignore[operator]


@FAST
@given(times=st.one_of(st.lists(st.one_of(aware, anything), max_size=4), anything), after=aware)
def test_at_times_and_preview(times: object, after: datetime) -> None:
    schedule = _accepted_or_clear(AtTimes, times)
    if isinstance(schedule, AtTimes):
        assert all(t > after for t in schedule.preview(5, after=after))


cron_text = st.one_of(
    text,
    st.lists(st.sampled_from(["*", "*/5", "1-5", "46-46/10", "0", "L", "5W", "MON#2", "JAN", "7", "99", "-", ","]),
             min_size=1, max_size=7).map(" ".join),
    anything,
)  # fmt: skip


@FAST
@given(expression=cron_text, zone=zones, after=aware)
def test_cron(expression: object, zone: object, after: datetime) -> None:
    schedule = _accepted_or_clear(Cron, expression, zone)
    if isinstance(schedule, Cron):
        assert all(t > after for t in schedule.preview(3, after=after))


@FAST
@given(
    max_attempts=st.one_of(st.integers(-2, 5000), anything),
    initial=st.one_of(durations, anything),
    maximum=st.one_of(durations, anything),
    multiplier=st.one_of(st.floats(), st.just(1e308), anything),
    jitter=st.one_of(st.floats(), anything),
    attempt=st.integers(1, 5000),
)
def test_retry_policy_backoff_never_overflows(
    max_attempts: object, initial: object, maximum: object, multiplier: object, jitter: object, attempt: int
) -> None:
    policy = _accepted_or_clear(RetryPolicy, max_attempts, initial, maximum, multiplier, jitter)
    if isinstance(policy, RetryPolicy):
        assert timedelta(0) <= policy.backoff(attempt) <= policy.max_backoff * 2


@FAST
@given(
    zone=zones,
    weekdays=st.one_of(st.lists(st.one_of(st.integers(-1, 8), text), max_size=3), anything),
    segments=st.one_of(st.lists(st.tuples(st.one_of(st.times(), st.times(timezones=st.just(UTC)), text),
                                          st.one_of(st.times(), text)), max_size=3), anything),
    instant=aware,
)  # fmt: skip
def test_time_window(zone: object, weekdays: object, segments: object, instant: datetime) -> None:
    window = _accepted_or_clear(JobTimeWindow, zone, weekdays, segments)
    if isinstance(window, JobTimeWindow):
        assert isinstance(window.matches(instant), bool)


@FAST
@given(start=st.one_of(st.times(), text, anything), end=st.one_of(st.times(), text, anything))
def test_time_window_segment(start: object, end: object) -> None:
    segment = _accepted_or_clear(TimeWindowSegment, start, end)
    if isinstance(segment, TimeWindowSegment):
        assert segment.start.tzinfo is None
        assert segment.end.tzinfo is None
        assert isinstance(segment.start, time)


@FAST
@given(
    zone=zones,
    history=st.one_of(st.integers(-2, 100), anything),
    grace=st.one_of(durations, anything),
    window=st.one_of(durations, anything),
    resume=anything,
)
def test_scheduler_config(zone: object, history: object, grace: object, window: object, resume: object) -> None:
    config = _accepted_or_clear(SchedulerConfig, zone, history, "retain", grace, window, "shutdown", "fail", resume)
    if isinstance(config, SchedulerConfig):
        now = datetime(2025, 1, 1, tzinfo=UTC)
        assert now - config.misfire_grace < now + timedelta(days=1)  # usable in arithmetic


@FAST
@given(
    job_id=st.one_of(text, st.just("a\udc80"), st.just("a\x85"), st.just("x" * 300), anything),
    max_runs=st.one_of(st.integers(-2, 10), anything),
    timeout=st.one_of(durations, anything),
    jitter=st.one_of(durations, anything),
    policy=st.one_of(st.sampled_from(["skip", "forbid", "catch_up_once"]), anything),
)
def test_job(job_id: object, max_runs: object, timeout: object, jitter: object, policy: object) -> None:
    job = _accepted_or_clear(
        Job, job_id, Interval(60), _noop, max_runs=max_runs, timeout=None if timeout == 0 else timeout,
        jitter=jitter, missed_run_policy=policy,
    )  # fmt: skip
    if isinstance(job, Job):
        assert job.job_id.encode("utf-8")  # storable: no lone surrogate
        assert all(ord(c) >= 32 and not 0x7F <= ord(c) <= 0x9F for c in job.job_id)


# -- the CLI ------------------------------------------------------------------------------

FLAGS = ["--job-id", "--every", "--cron", "--at", "--timezone", "--window", "--max-runs", "--timeout", "--retries",
         "--jitter", "--lease-ttl", "--misfire-grace", "--missed", "--overlap", "--terminal", "--state", "--report",
         "--metrics-port", "--startup-timeout", "-n", "--after", "--log-level", "--ever", "--json"]  # fmt: skip
VALUES = st.one_of(
    st.sampled_from(["x", "1s", "0s", "-1", "99999999999999999999", "@daily", "America", "\udcff", "a\x85b",
                     "0001-01-01T00:00+05:00", "9999-12-31T23:59Z", "memory:", "PT5M", "00:00-02:00-10:00", ""]),
    text,
)  # fmt: skip


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    command=st.sampled_from(["run", "check", "next", "status", "reset", "stats", "bogus"]),
    pairs=st.lists(st.tuples(st.sampled_from(FLAGS), VALUES), max_size=5),
    wrapped=st.sampled_from([[], ["--", "no-such-program-xyz"], ["--", "--"]]),
)
def test_cli_argv_exits_cleanly(command: str, pairs: list[tuple[str, str]], wrapped: list[str]) -> None:
    """Never runs anything real: every generated invocation has a bad flag, a missing schedule
    or a command that does not exist, so it must stop at usage (2) with one line."""
    argv = [command, *[part for pair in pairs for part in pair], *wrapped]
    if command in ("run", "check") and wrapped != ["--", "no-such-program-xyz"]:
        argv.append("--frobnicate")  # never reach a real run
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([*argv])
    assert code in (0, 1, 2), (argv, code)
    assert "Traceback" not in err.getvalue()
    if code == 2:
        assert err.getvalue().count("scheduler: error:") == 1
        assert err.getvalue().count("\n") == 1


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg")))
    for name in [n for n in os.environ if n.startswith("SCHEDULER_")]:
        monkeypatch.delenv(name)
