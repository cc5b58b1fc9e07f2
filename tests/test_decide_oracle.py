"""``decide()`` against a brute-force oracle that enumerates occurrences and applies the
policies literally, for every missed-run policy x catch-up window x max_runs x pause."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler import AtTimes, Interval, MissedRunPolicy, RunSkipReason, Schedule
from scheduler._decide import Decision, Policies, consume_all_due, decide

T0 = datetime(2025, 1, 1, tzinfo=UTC)
UTC_ZONE = ZoneInfo("UTC")
S = timedelta(seconds=1)


@dataclass(frozen=True)
class Expected:
    fates: list[tuple[datetime, RunSkipReason | None]]  # None: this one runs
    catch_up: bool
    next_run_at: datetime | None


def _occurrences(schedule: Schedule, first: datetime, now: datetime) -> list[datetime]:
    out, current = [], first
    while current is not None and current <= now:
        out.append(current)
        current = schedule.next_after(current, UTC_ZONE)
    return out


def oracle(p: Policies, next_run_at: datetime, count: int, now: datetime, paused: bool) -> Expected | None:
    if next_run_at > now:
        return None
    remaining = None if p.max_runs is None else p.max_runs - count
    if remaining is not None and remaining <= 0:
        return Expected([], False, None)
    due = _occurrences(p.schedule, next_run_at, now)
    cutoff = None if p.catch_up_window is None else now - p.catch_up_window
    missed_at = now - p.grace
    fates: list[tuple[datetime, RunSkipReason | None]] = []
    if paused:
        fates = [(s, RunSkipReason.PAUSED) for s in due]
    elif p.missed is MissedRunPolicy.REPLAY_ALL:
        for s in due:  # drop what the window excludes, then the oldest left runs
            if cutoff is not None and s < cutoff:
                fates.append((s, RunSkipReason.MISSED))
            else:
                fates.append((s, None))
                break
    else:
        considered = due if remaining is None else due[:remaining]
        latest = considered[-1]
        for s in considered:
            too_old = cutoff is not None and s < cutoff
            if p.missed is MissedRunPolicy.SKIP:
                too_old = too_old or s < missed_at
            if too_old:
                fates.append((s, RunSkipReason.MISSED))
            elif s == latest:
                fates.append((s, None))
            else:
                fates.append((s, RunSkipReason.COALESCED))
    if remaining is not None:
        fates = fates[:remaining]
    runs = [s for s, fate in fates if fate is None]
    if p.missed is MissedRunPolicy.REPLAY_ALL:
        catch_up = bool(runs) and runs[0] < missed_at
    elif p.missed is MissedRunPolicy.CATCH_UP_ONCE:
        catch_up = bool(runs) and (len(fates) > 1 or runs[0] < missed_at)
    else:
        catch_up = False
    exhausted = remaining is not None and len(fates) >= remaining
    following = None if exhausted else p.schedule.next_after(fates[-1][0], UTC_ZONE)
    return Expected(fates, catch_up, following)


def _expand(p: Policies, decision: Decision) -> list[tuple[datetime, RunSkipReason | None]]:
    fates: list[tuple[datetime, RunSkipReason | None]] = []
    for drop in decision.drops:
        current: datetime | None = drop.first
        for _ in range(drop.count):
            assert current is not None
            fates.append((current, drop.reason))
            last = current
            current = p.schedule.next_after(current, UTC_ZONE)
        assert last == drop.last
    if decision.run_at is not None:
        fates.append((decision.run_at, None))
    return sorted(fates, key=lambda fate: fate[0])


intervals = st.integers(1, 5).map(lambda n: Interval(n * S))
at_times = st.lists(st.integers(0, 60), min_size=1, max_size=12).map(lambda xs: AtTimes([T0 + x * S for x in xs]))


@settings(max_examples=1500, deadline=None)
@given(
    schedule=st.one_of(intervals, at_times),
    missed=st.sampled_from(MissedRunPolicy),
    grace=st.sampled_from([0, 1, 3]),
    window=st.none() | st.integers(0, 20),
    max_runs=st.none() | st.integers(0, 10),
    count=st.integers(0, 5),
    start=st.integers(0, 30),
    elapsed=st.integers(0, 60),
    paused=st.booleans(),
)
def test_decide_matches_the_oracle(
    schedule: Schedule,
    missed: MissedRunPolicy,
    grace: int,
    window: int | None,
    max_runs: int | None,
    count: int,
    start: int,
    elapsed: int,
    paused: bool,
) -> None:
    p = Policies(schedule, UTC_ZONE, missed, grace * S, None if window is None else window * S, max_runs)
    first = schedule.first(T0 + start * S - timedelta(microseconds=1), UTC_ZONE)
    if first is None:
        return
    now = first + elapsed * S
    expected = oracle(p, first, count, now, paused)
    decision = (consume_all_due if paused else decide)(p, first, count, now)
    if expected is None:
        assert decision is None
        return
    assert decision is not None
    fates = _expand(p, decision)
    assert fates == expected.fates
    assert decision.consumed == len(expected.fates)  # every consumed occurrence runs or is dropped
    assert decision.next_run_at == expected.next_run_at
    if decision.run_at is not None:
        assert decision.catch_up == expected.catch_up
