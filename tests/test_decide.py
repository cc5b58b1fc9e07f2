"""The pure decision function: what is consumed, run and dropped (no asyncio)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from scheduler import AtTimes, Cron, Interval, MissedRunPolicy, RunSkipReason
from scheduler._decide import Policies, consume_all_due, decide
from scheduler._schedules import Schedule

UTCZ = ZoneInfo("UTC")
T = datetime(2025, 1, 1, tzinfo=UTC)
S = timedelta(seconds=1)


def policies(schedule: Schedule, missed: MissedRunPolicy, **kw: object) -> Policies:
    base: dict[str, object] = {"grace": S, "catch_up_window": None, "max_runs": None}
    base.update(kw)
    return Policies(schedule=schedule, zone=UTCZ, missed=missed, **base)  # type: ignore[arg-type]


def test_nothing_due_yields_no_decision() -> None:
    """Before next_run_at (or when terminal) there is nothing to decide."""
    p = policies(Interval(10), MissedRunPolicy.SKIP)
    assert decide(p, T + S, 0, T) is None
    assert decide(p, None, 0, T) is None


def test_on_time_occurrence_runs() -> None:
    """A single due occurrence within the grace runs, not flagged as catch-up."""
    for policy in MissedRunPolicy:
        d = decide(policies(Interval(10), policy), T, 0, T + S / 2)
        assert d is not None
        assert (d.consumed, d.run_at, d.catch_up, d.drops, d.next_run_at) == (1, T, False, (), T + 10 * S)


def test_skip_drops_missed_and_runs_on_time_latest() -> None:
    """SKIP drops every missed occurrence and runs the most recent due one if it is on time."""
    d = decide(policies(Interval(10), MissedRunPolicy.SKIP), T, 0, T + 40 * S)
    assert d is not None
    assert (d.consumed, d.run_at, d.catch_up) == (5, T + 40 * S, False)
    assert [(x.reason, x.count, x.first, x.last) for x in d.drops] == [(RunSkipReason.MISSED, 4, T, T + 30 * S)]
    assert d.next_run_at == T + 50 * S


def test_skip_drops_everything_when_latest_is_late() -> None:
    """SKIP runs nothing when even the latest due occurrence is past the grace."""
    d = decide(policies(Interval(10), MissedRunPolicy.SKIP), T, 0, T + 45 * S)
    assert d is not None
    assert (d.consumed, d.run_at) == (5, None)
    assert [(x.reason, x.count) for x in d.drops] == [(RunSkipReason.MISSED, 5)]


def test_catch_up_once_runs_latest_and_coalesces_rest() -> None:
    """CATCH_UP_ONCE consumes all due, runs the latest flagged catch_up, coalesces the others."""
    d = decide(policies(Interval(10), MissedRunPolicy.CATCH_UP_ONCE), T, 3, T + 45 * S)
    assert d is not None
    assert (d.consumed, d.run_at, d.catch_up) == (5, T + 40 * S, True)
    assert [(x.reason, x.count, x.first, x.last) for x in d.drops] == [(RunSkipReason.COALESCED, 4, T, T + 30 * S)]


def test_catch_up_once_single_late_occurrence_is_catch_up() -> None:
    """A single missed occurrence under CATCH_UP_ONCE runs with catch_up=True."""
    d = decide(policies(Interval(10), MissedRunPolicy.CATCH_UP_ONCE), T, 0, T + 5 * S)
    assert d is not None
    assert (d.consumed, d.run_at, d.catch_up, d.drops) == (1, T, True, ())


def test_replay_all_consumes_one_at_a_time() -> None:
    """REPLAY_ALL consumes only the oldest due occurrence, flagged catch_up while missed."""
    d = decide(policies(Interval(10), MissedRunPolicy.REPLAY_ALL), T, 0, T + 45 * S)
    assert d is not None
    assert (d.consumed, d.run_at, d.catch_up, d.next_run_at) == (1, T, True, T + 10 * S)


def test_catch_up_window_drops_old_occurrences_first() -> None:
    """Occurrences older than catch_up_window are dropped as missed whatever the policy."""
    for policy in (MissedRunPolicy.CATCH_UP_ONCE, MissedRunPolicy.REPLAY_ALL):
        d = decide(policies(Interval(10), policy, catch_up_window=timedelta(seconds=25)), T, 0, T + 45 * S)
        assert d is not None
        assert d.drops[0].reason is RunSkipReason.MISSED
        assert (d.drops[0].count, d.drops[0].first, d.drops[0].last) == (2, T, T + 10 * S)
        assert d.run_at == (T + 40 * S if policy is MissedRunPolicy.CATCH_UP_ONCE else T + 20 * S)


def test_max_runs_caps_consumption() -> None:
    """Consumption stops at max_runs and the state becomes terminal."""
    d = decide(policies(Interval(10), MissedRunPolicy.CATCH_UP_ONCE, max_runs=5), T, 2, T + 100 * S)
    assert d is not None
    assert (d.consumed, d.run_at, d.next_run_at) == (3, T + 20 * S, None)
    done = decide(policies(Interval(10), MissedRunPolicy.SKIP, max_runs=2), T, 2, T + 100 * S)
    assert done is not None
    assert (done.consumed, done.run_at, done.next_run_at) == (0, None, None)


def test_exhausted_at_times_becomes_terminal() -> None:
    """After the last explicit instant is consumed, next_run_at is None."""
    d = decide(policies(AtTimes([T, T + S]), MissedRunPolicy.CATCH_UP_ONCE), T, 0, T + 10 * S)
    assert d is not None
    assert (d.consumed, d.run_at, d.next_run_at) == (2, T + S, None)


def test_paused_consumes_everything_due() -> None:
    """While paused every due occurrence is consumed with reason paused."""
    d = consume_all_due(policies(Interval(10), MissedRunPolicy.REPLAY_ALL), T, 0, T + 25 * S)
    assert d is not None
    assert (d.consumed, d.run_at, d.next_run_at) == (3, None, T + 30 * S)
    assert [(x.reason, x.count) for x in d.drops] == [(RunSkipReason.PAUSED, 3)]


class CountingCron(Cron):
    """A Cron that counts how often it is asked for a next occurrence."""

    __slots__ = ()
    calls = 0

    def next_after(self, occurrence: datetime, zone: ZoneInfo) -> datetime | None:
        type(self).calls += 1
        return super().next_after(occurrence, zone)


@pytest.mark.parametrize("policy", [MissedRunPolicy.SKIP, MissedRunPolicy.CATCH_UP_ONCE, MissedRunPolicy.REPLAY_ALL])
@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
def test_a_year_of_downtime_does_not_enumerate(policy: MissedRunPolicy, zone: str) -> None:
    """After 365 days offline, deciding on `* * * * *` jumps and counts instead of iterating."""
    cron = CountingCron("* * * * *", zone)
    CountingCron.calls = 0
    p = policies(cron, policy)
    now = T + timedelta(days=365, seconds=30)
    started = time.perf_counter()
    d = decide(p, T, 0, now)
    elapsed = time.perf_counter() - started
    assert d is not None
    assert CountingCron.calls < 20  # not 525,600
    assert elapsed < 1.0  # loose: the benchmark measures the real figure
    if policy is MissedRunPolicy.REPLAY_ALL:
        assert d.consumed == 1
    else:
        assert d.consumed == 365 * 24 * 60 + 1
        assert sum(x.count for x in d.drops) == d.consumed - (d.run_at is not None)
