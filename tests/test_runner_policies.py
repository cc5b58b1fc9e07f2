"""Missed-run x overlap policies, max_runs and windows, driven through Scheduler.run on a FakeClock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from scheduler import (
    InMemoryStateStore,
    Interval,
    Job,
    JobState,
    JobTimeWindow,
    MissedRunPolicy,
    OverlapPolicy,
    RunSkipReason,
    Scheduler,
    SchedulerConfig,
    SchedulerStopReason,
    TaskContext,
    TimeWindowSegment,
    Weekday,
)
from scheduler.events import RunSkipped, RunsMissed
from scheduler.testing import FakeClock, RecordingObserver

from .conftest import T0
from .helpers import recorder_task, sleeper, summary

S = timedelta(seconds=1)

# Scenario: the job was down; occurrences at -30, -20, -10 and 0 s are due when it starts at T0
# (only 0 is on time); Interval 10 s, runs take 15 s, max_runs 6 (so 10 s and 20 s follow).
OK, CANCELLED = "success", "cancelled"
MATRIX: dict[tuple[MissedRunPolicy, OverlapPolicy], tuple[list[tuple[int, bool, int, str]], dict[str, int]]] = {}
_AFTER_CATCH_UP = {
    OverlapPolicy.FORBID: ([(20, False, 6, OK)], {"overlap": 1}),
    OverlapPolicy.QUEUE_ONE: ([(10, False, 5, OK), (20, False, 6, OK)], {}),
    OverlapPolicy.ALLOW_PARALLEL: ([(10, False, 5, OK), (20, False, 6, OK)], {}),
    OverlapPolicy.REPLACE: ([(10, False, 5, CANCELLED), (20, False, 6, OK)], {}),
}
for overlap, (tail, skips) in _AFTER_CATCH_UP.items():
    first_status = CANCELLED if overlap is OverlapPolicy.REPLACE else OK
    MATRIX[(MissedRunPolicy.SKIP, overlap)] = ([(0, False, 4, first_status), *tail], {"missed": 3, **skips})
    MATRIX[(MissedRunPolicy.CATCH_UP_ONCE, overlap)] = ([(0, True, 4, first_status), *tail], {"coalesced": 3, **skips})
_REPLAYED = [(-30, True, 1, OK), (-20, True, 2, OK), (-10, True, 3, OK), (0, True, 4, OK), (10, True, 5, OK),
             (20, True, 6, OK)]  # fmt: skip
for overlap in (OverlapPolicy.FORBID, OverlapPolicy.QUEUE_ONE, OverlapPolicy.REPLACE):
    MATRIX[(MissedRunPolicy.REPLAY_ALL, overlap)] = (_REPLAYED, {})
MATRIX[(MissedRunPolicy.REPLAY_ALL, OverlapPolicy.ALLOW_PARALLEL)] = (
    [(-30, True, 1, OK), (-20, True, 2, OK), (-10, True, 3, OK), (0, False, 4, OK), (10, False, 5, OK),
     (20, False, 6, OK)],
    {},
)  # fmt: skip


@pytest.mark.parametrize(("missed", "overlap"), sorted(MATRIX), ids=lambda p: p.value)
async def test_missed_run_and_overlap_matrix(missed: MissedRunPolicy, overlap: OverlapPolicy) -> None:
    """Each missed-run x overlap combination runs exactly the expected occurrences and skips the rest."""
    clock = FakeClock(T0)
    store = InMemoryStateStore()
    await store.save(JobState(job_id="m", next_run_at=T0 - 30 * S))
    job = Job("m", Interval(10), sleeper(clock, 15), max_runs=6, missed_run_policy=missed, overlap_policy=overlap)
    report = await Scheduler(store=store, clock=clock).run(job)
    expected_runs, expected_skips = MATRIX[(missed, overlap)]
    finished = sorted(summary(report.history))
    assert finished == sorted(expected_runs)
    assert {k.value: v for k, v in report.skipped.items()} == expected_skips
    assert report.state.trigger_count == 6
    assert report.state.next_run_at is None
    assert report.stop_reason is SchedulerStopReason.TERMINAL


async def test_bulk_skips_are_one_event(clock: FakeClock, recorder: RecordingObserver) -> None:
    """After downtime the dropped occurrences are reported as one RunsMissed with count and bounds."""
    store = InMemoryStateStore()
    await store.save(JobState(job_id="b", next_run_at=T0 - timedelta(days=1)))
    job = Job("b", Interval(60), recorder_task([]), max_runs=1441, missed_run_policy=MissedRunPolicy.SKIP)
    report = await Scheduler(store=store, clock=clock, observer=recorder).run(job)
    missed = recorder.of_type(RunsMissed)
    assert len(missed) == 1
    assert (missed[0].count, missed[0].first_scheduled_at, missed[0].reason) == (1440, T0 - timedelta(days=1), "missed")
    assert missed[0].last_scheduled_at == T0 - timedelta(minutes=1)
    assert report.skipped[RunSkipReason.MISSED] == 1440
    assert summary(report.history) == [(0, False, 1441, "success")]


@pytest.mark.parametrize("max_runs", [0, 1, 5])
async def test_max_runs(clock: FakeClock, max_runs: int) -> None:
    """max_runs 0 runs nothing, 1 runs once, N runs N times; then the job is terminal."""
    log: list[TaskContext] = []
    report = await Scheduler(clock=clock).run(Job("n", Interval(5), recorder_task(log), max_runs=max_runs))
    assert len(log) == max_runs
    assert [c.run.trigger_count for c in log] == list(range(1, max_runs + 1))
    assert [c.run.scheduled_at for c in log] == [T0 + 5 * S * i for i in range(1, max_runs + 1)]
    assert report.stop_reason is SchedulerStopReason.TERMINAL
    assert report.state.next_run_at is None
    assert report.state.trigger_count == max_runs


async def test_max_runs_counts_skipped_occurrences(clock: FakeClock) -> None:
    """Overlap-skipped occurrences count toward max_runs."""
    report = await Scheduler(clock=clock).run(Job("c", Interval(10), sleeper(clock, 25), max_runs=4))
    assert summary(report.history) == [(10, False, 1, "success"), (40, False, 4, "success")]
    assert report.skipped == {RunSkipReason.OVERLAP: 2}


async def test_window_skips_outside_and_runs_inside(clock: FakeClock, recorder: RecordingObserver) -> None:
    """Occurrences outside the window are consumed and skipped with reason outside_time_window."""
    window = JobTimeWindow(segments=[TimeWindowSegment("00:00:30", "00:01:00")])
    job = Job("w", Interval(20), recorder_task([]), max_runs=4, time_window=window)
    report = await Scheduler(clock=clock, observer=recorder).run(job)
    assert [r.scheduled_at for r in report.history] == [T0 + 40 * S]
    assert report.skipped == {RunSkipReason.OUTSIDE_TIME_WINDOW: 3}
    reasons = [e.reason for e in recorder.of_type(RunSkipped)]
    assert reasons == [RunSkipReason.OUTSIDE_TIME_WINDOW] * 3


async def test_window_in_its_own_zone(clock: FakeClock) -> None:
    """A window in Asia/Tokyo (UTC+9) admits 09:00-09:01 Tokyo = 00:00-00:01 UTC."""
    window = JobTimeWindow(timezone="Asia/Tokyo", segments=[TimeWindowSegment("09:00", "09:01")])
    report = await Scheduler(clock=clock).run(Job("z", Interval(30), recorder_task([]), max_runs=3, time_window=window))
    assert [r.scheduled_at for r in report.history] == [T0 + 30 * S]


async def test_window_uses_config_zone_by_default(clock: FakeClock) -> None:
    """A zone-less window is evaluated in SchedulerConfig.timezone."""
    window = JobTimeWindow(weekdays=["wed"], segments=[TimeWindowSegment("01:00", "02:00")])
    config = SchedulerConfig(timezone="Europe/Paris")  # T0 is Wednesday 01:00 in Paris
    report = await Scheduler(config, clock=clock).run(
        Job("p", Interval(60), recorder_task([]), max_runs=2, time_window=window)
    )
    assert len(report.history) == 2


def test_midnight_crossing_segment_belongs_to_previous_weekday() -> None:
    """Fri 22:00-02:00 covers Saturday 01:00 but not Sunday 01:00 or Friday 01:00."""
    window = JobTimeWindow(weekdays=[Weekday.FRI], segments=[TimeWindowSegment("22:00", "02:00")])
    friday_late = T0.replace(day=3, hour=23)  # 2025-01-03 is a Friday
    saturday_early = T0.replace(day=4, hour=1)
    sunday_early = T0.replace(day=5, hour=1)
    friday_early = T0.replace(day=3, hour=1)
    assert window.matches(friday_late)
    assert window.matches(saturday_early)
    assert not window.matches(sunday_early)
    assert not window.matches(friday_early)
    assert not window.matches(T0.replace(day=4, hour=2))  # end is exclusive


def test_weekday_names_and_empty_window() -> None:
    """Weekdays accept names in any case; an empty window admits everything."""
    assert JobTimeWindow(weekdays=["Mon", "tuesday", 6]).weekdays == (Weekday.MON, Weekday.TUE, Weekday.SUN)
    assert JobTimeWindow().matches(T0)
    assert JobTimeWindow(weekdays=["wed"]).matches(T0)  # 2025-01-01 is a Wednesday
    assert not JobTimeWindow(weekdays=["thu"]).matches(T0)


async def test_queued_trigger_rechecks_the_window(clock: FakeClock) -> None:
    """A queued trigger that is dequeued after the window closed is skipped."""
    window = JobTimeWindow(segments=[TimeWindowSegment("00:00:00", "00:00:25")])
    job = Job(
        "q", Interval(10), sleeper(clock, 25), max_runs=2, overlap_policy=OverlapPolicy.QUEUE_ONE, time_window=window
    )
    report = await Scheduler(clock=clock).run(job)
    assert [r.scheduled_at for r in report.history] == [T0 + 10 * S]
    assert report.skipped == {RunSkipReason.OUTSIDE_TIME_WINDOW: 1}


async def test_queue_one_keeps_the_first_pending_trigger(clock: FakeClock) -> None:
    """With one trigger pending, a further one is skipped and the first is kept."""
    job = Job("k", Interval(10), sleeper(clock, 35), max_runs=4, overlap_policy=OverlapPolicy.QUEUE_ONE)
    report = await Scheduler(clock=clock).run(job)
    # 10 runs 10-45 s; 20 is queued; 30 and 40 find the queue full; 20 runs at 45 s.
    assert [(int((r.scheduled_at - T0).total_seconds()), r.started_at - T0) for r in report.history] == [
        (10, 10 * S),
        (20, 45 * S),
    ]
    assert report.skipped == {RunSkipReason.OVERLAP: 2}
