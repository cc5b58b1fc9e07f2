"""Start jitter: a stable per-occurrence delay, uniform over [0, jitter), same in every process."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from scheduler import Cron, Interval, InvalidJobError, Job, Scheduler, TaskContext
from scheduler._jitter import jitter_delay
from scheduler.prometheus import PrometheusObserver
from scheduler.testing import FakeClock

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
JITTER = timedelta(seconds=10)


async def _noop(ctx: object) -> None:
    return None


def test_same_delay_for_the_same_job_and_occurrence() -> None:
    assert jitter_delay("job", T0, JITTER) == jitter_delay("job", T0, JITTER)
    assert jitter_delay("job", T0, JITTER) != jitter_delay("other", T0, JITTER)
    assert jitter_delay("job", T0, JITTER) != jitter_delay("job", T0 + timedelta(minutes=1), JITTER)


def test_same_delay_in_another_process_with_another_hash_seed() -> None:
    """Replicas agree: the delay does not depend on Python's per-process hash salt."""
    code = (
        "from datetime import datetime, timedelta, UTC; from scheduler._jitter import jitter_delay; "
        "print(jitter_delay('job', datetime(2025, 3, 1, 12, 0, tzinfo=UTC), timedelta(seconds=10)) "
        "// timedelta(microseconds=1))"
    )
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code], env={"PYTHONHASHSEED": seed}, capture_output=True, text=True, check=True
        )
        assert int(out.stdout) == jitter_delay("job", T0, JITTER) // timedelta(microseconds=1)


def test_the_zone_of_the_occurrence_does_not_matter() -> None:
    paris = T0.astimezone(Cron("* * * * *", "Europe/Paris").timezone)  # same instant, other zone
    assert jitter_delay("job", paris, JITTER) == jitter_delay("job", T0, JITTER)


def test_delays_are_spread_uniformly_over_zero_to_jitter() -> None:
    delays = [jitter_delay("job", T0 + timedelta(minutes=i), JITTER) for i in range(20_000)]
    assert min(delays) >= timedelta(0)
    assert max(delays) < JITTER
    buckets = [0] * 10
    for delay in delays:
        buckets[int(delay / JITTER * 10)] += 1
    # 2,000 expected per tenth; binomial sd ~42: a 15% band is more than 7 sd wide.
    assert all(1700 <= count <= 2300 for count in buckets), buckets
    assert min(delays) < JITTER / 100
    assert max(delays) > JITTER * 99 / 100


def test_zero_jitter_is_no_delay() -> None:
    assert jitter_delay("job", T0, timedelta(0)) == timedelta(0)


def test_job_validates_jitter() -> None:
    assert Job("j", Interval(60), _noop, jitter=5).jitter == timedelta(seconds=5)
    assert Job("j", Interval(60), _noop).jitter == timedelta(0)
    assert Job("j", Interval(60), _noop).with_jitter(timedelta(seconds=1)).jitter == timedelta(seconds=1)
    with pytest.raises(InvalidJobError, match="jitter"):
        Job("j", Interval(60), _noop, jitter=-1)
    with pytest.raises(InvalidJobError, match="shorter than the interval"):
        Job("j", Interval(60), _noop, jitter=60)
    with pytest.raises(TypeError, match="jitter"):
        Job("j", Interval(60), _noop, jitter="5s")  # type: ignore[arg-type]


def test_cron_jitter_longer_than_its_gaps_is_only_a_warning() -> None:
    with pytest.warns(UserWarning, match="jitter"):
        job = Job("j", Cron("*/5 * * * *"), _noop, jitter=timedelta(minutes=10))
    assert job.jitter == timedelta(minutes=10)
    Job("j", Cron("0 * * * *"), _noop, jitter=timedelta(minutes=10))  # shorter than an hour: silent


async def test_runs_start_after_their_jitter_delay_and_lateness_excludes_it() -> None:
    """Each occurrence starts at scheduled_at + its delay; the lateness metric does not count the delay."""
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    clock = FakeClock(t0)
    starts: list[tuple[datetime, datetime]] = []

    async def task(ctx: TaskContext) -> None:
        starts.append((ctx.run.scheduled_at, clock.now()))

    registry = CollectorRegistry()
    job = Job("jittered", Interval(timedelta(seconds=10)), task, jitter=timedelta(seconds=5), max_runs=20)
    report = await Scheduler(clock=clock, observer=PrometheusObserver(registry)).run(job)
    assert report.state.trigger_count == 20
    delays = [start - scheduled for scheduled, start in starts]
    assert delays == [jitter_delay("jittered", scheduled, timedelta(seconds=5)) for scheduled, _ in starts]
    assert len(set(delays)) > 10  # spread, not one fixed offset
    assert all(timedelta(0) <= d < timedelta(seconds=5) for d in delays)
    assert not any(r.catch_up for r in report.history)
    late_sum = registry.get_sample_value("scheduler_trigger_lateness_seconds_sum", {"job_id": "jittered"})
    assert late_sum == 0.0
