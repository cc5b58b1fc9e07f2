"""``explain``: what happened at T, from the schedule spec, the ledger and the state (pure)."""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler import (
    AtTimes,
    Cron,
    InMemoryStateStore,
    Interval,
    Job,
    JobState,
    JobTimeWindow,
    Scheduler,
    TaskContext,
)
from scheduler._explain import explain, neighbours, readings
from scheduler._ledger import LedgerEntry, LedgerFate
from scheduler.testing import FakeClock

from .conftest import T0
from .test_ledger import run_until

S = timedelta(seconds=1)
UTC_ZONE = ZoneInfo("UTC")
PARIS = ZoneInfo("Europe/Paris")


async def everything(store: InMemoryStateStore, job_id: str) -> tuple[JobState, list[LedgerEntry]]:
    state = await store.load(job_id)
    assert state is not None
    return state, await store.history(job_id, limit=100_000)


def answer(state: JobState, entries: list[LedgerEntry], at: datetime, zone: ZoneInfo = UTC_ZONE) -> Any:
    return explain(state.schedule_spec, entries, state, at, zone)


async def test_interval_after_a_repair(clock: FakeClock) -> None:
    """Runs of the old chain are still explained from the ledger after the interval changed;
    the new chain's gaps are 'not an occurrence' with its neighbours."""
    store = InMemoryStateStore()

    async def ok(ctx: TaskContext) -> None:
        return None

    await run_until(Scheduler(store=store, clock=clock), Job("r", Interval(10), ok), clock, T0 + 35 * S, None)
    await run_until(Scheduler(store=store, clock=clock), Job("r", Interval(7), ok), clock, T0 + 60 * S, None)
    state, entries = await everything(store, "r")
    old = answer(state, entries, T0 + 20 * S)
    assert old.kind == "ran"
    assert "2025-01-01 00:00:20 UTC (2025-01-01T00:00:20Z) ran and succeeded after 1 attempt" in old.text
    new_runs = sorted(e.scheduled_at for e in entries if e.scheduled_at > T0 + 35 * S)
    assert (new_runs[1] - new_runs[0]) == 7 * S
    gap = answer(state, entries, new_runs[0] + 3 * S)
    assert gap.kind == "not_an_occurrence"
    assert "every 7s" in gap.text
    assert f"({new_runs[0]:%Y-%m-%dT%H:%M:%SZ})" in gap.text
    assert answer(state, entries, state.next_run_at + 7 * S).kind == "not_yet_due"  # type: ignore[operator]


async def test_explicit_times_and_the_end(clock: FakeClock) -> None:
    """At-times: a listed instant ran; another time names its neighbours; after the last one
    the job is finished."""
    store = InMemoryStateStore()
    times = [T0 + 10 * S, T0 + 70 * S, T0 + 200 * S]

    async def ok(ctx: TaskContext) -> None:
        return None

    await Scheduler(store=store, clock=clock).run(Job("at", AtTimes(times), ok))
    state, entries = await everything(store, "at")
    assert answer(state, entries, T0 + 70 * S).kind == "ran"
    between = answer(state, entries, T0 + 100 * S)
    assert between.kind == "not_an_occurrence"
    assert "00:01:10" in between.text
    assert "00:03:20" in between.text
    assert "at 3 instants" in between.text


async def test_missed_range_names_the_policy(clock: FakeClock) -> None:
    """After downtime under the skip policy, an occurrence inside the dropped range is 'missed',
    with the range and the policy named."""
    store = InMemoryStateStore()

    async def ok(ctx: TaskContext) -> None:
        return None

    job = Job("m", Interval(10), ok, missed_run_policy="skip")
    await run_until(Scheduler(store=store, clock=clock), job, clock, T0 + 25 * S, None)
    clock.advance(timedelta(minutes=5))
    await run_until(Scheduler(store=store, clock=clock), job, clock, clock.now() + 15 * S, None)
    state, entries = await everything(store, "m")
    missed = answer(state, entries, T0 + 120 * S)
    assert missed.kind == "missed"
    assert "missed-run policy skip" in missed.text
    assert "fell due while no scheduler was running" in missed.text


async def test_window_skip_names_the_window(clock: FakeClock) -> None:
    store = InMemoryStateStore()

    async def ok(ctx: TaskContext) -> None:
        return None

    window = JobTimeWindow(segments=[("00:00:00", "00:00:30")])
    await run_until(
        Scheduler(store=store, clock=clock), Job("w", Interval(10), ok, time_window=window), clock, T0 + 55 * S, None
    )
    state, entries = await everything(store, "w")
    skipped = answer(state, entries, T0 + 40 * S)
    assert skipped.kind == "skipped"
    assert window.describe() in skipped.text


async def test_cron_across_a_dst_change_answers_each_reading() -> None:
    """02:30 Paris: on the fall-back night it happens twice; on the spring-forward night it
    does not exist; each instant it can mean gets its own answer."""
    start = datetime(2025, 10, 25, 12, tzinfo=UTC)
    clock = FakeClock(start)
    store = InMemoryStateStore()

    async def ok(ctx: TaskContext) -> None:
        return None

    job = Job("c", Cron("*/30 * * * *", "Europe/Paris"), ok)
    await run_until(Scheduler(store=store, clock=clock), job, clock, start + timedelta(days=1), None)
    state, entries = await everything(store, "c")
    fold = readings(datetime(2025, 10, 26, 2, 30), PARIS)
    assert [f"{t:%H:%M}" for t in fold] == ["00:30", "01:30"]  # CEST, then CET
    answers = [answer(state, entries, t, PARIS) for t in fold]
    assert [a.kind for a in answers] == ["ran", "ran"]
    assert "02:30:00 CEST" in answers[0].text
    assert "02:30:00 CET" in answers[1].text
    gap = readings(datetime(2025, 3, 30, 2, 30), PARIS)
    assert [f"{t:%H:%M}" for t in gap] == ["00:30", "01:30"]
    assert neighbours({"kind": "cron", "expression": "30 2 * * *", "timezone": "Europe/Paris"}, gap[0])[0] is False


def test_older_than_the_ledger_keeps_and_before_the_first() -> None:
    entries = [LedgerEntry(job_id="o", scheduled_at=T0 + 100 * S, fate=LedgerFate.SUCCESS, attempts=1)]
    spec = {"kind": "interval", "every_seconds": 10.0, "anchor": "2025-01-01T00:00:00Z", "description": "every 10s"}
    trimmed = JobState(job_id="o", trigger_count=11, next_run_at=T0 + 110 * S, schedule_spec=spec)
    assert explain(spec, entries, trimmed, T0 + 50 * S, UTC_ZONE).kind == "too_old"
    complete = trimmed.model_copy(update={"trigger_count": 1})
    assert explain(spec, entries, complete, T0 + 50 * S, UTC_ZONE).kind == "not_started"


# -- property: the answer agrees with the ledger and the schedule ---------------------------


@functools.cache
def scenario(seed: int) -> tuple[JobState, tuple[LedgerEntry, ...]]:
    """A job with a window, failures, overlaps and a downtime gap (fake time)."""

    async def build() -> tuple[JobState, tuple[LedgerEntry, ...]]:
        clock = FakeClock(T0)
        store = InMemoryStateStore()
        calls = 0

        async def task(ctx: TaskContext) -> None:
            nonlocal calls
            calls += 1
            await clock.sleep_until(clock.now() + (seed + calls) % 3 * 8 * S)
            if calls % 3 == 0:
                raise RuntimeError("every third run fails")

        window = JobTimeWindow(segments=[("00:00:00", "00:02:00"), ("00:03:00", "00:10:00")])
        job = Job("p", Interval(10), task, time_window=window, missed_run_policy=("skip", "catch_up_once")[seed % 2])
        await run_until(Scheduler(store=store, clock=clock), job, clock, T0 + 200 * S, None)
        clock.advance((60 + 10 * seed) * S)
        await run_until(Scheduler(store=store, clock=clock), job, clock, clock.now() + 200 * S, None)
        state, entries = await everything(store, "p")
        return state, tuple(entries)

    return asyncio.run(build())


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 3),
    offset_ms=st.one_of(st.integers(-2, 80).map(lambda k: k * 10_000), st.integers(-20_000, 800_000)),
)
def test_explain_agrees_with_the_ledger_and_the_schedule(seed: int, offset_ms: int) -> None:
    state, entries = scenario(seed)
    at = T0 + timedelta(milliseconds=offset_ms)
    result = explain(state.schedule_spec, entries, state, at, UTC_ZONE)
    exact = [e for e in entries if e.count == 1 and e.scheduled_at == at]
    on_schedule = at.microsecond == 0 and (at - T0) % (10 * S) == timedelta(0)
    in_range = [e for e in entries if e.count > 1 and e.scheduled_at <= at <= e.last_scheduled_at]
    if exact:
        expected = {
            LedgerFate.SKIPPED: "skipped",
            LedgerFate.INTERRUPTED: "interrupted",
        }.get(exact[0].fate, "ran")
        assert result.kind == expected
        if expected == "ran":
            assert {"success": "succeeded", "failed": "failed"}.get(exact[0].fate.value, "") in result.text
        else:
            assert exact[0].reason is not None
            assert exact[0].reason.value in result.text
    elif not on_schedule:
        assert result.kind == "not_an_occurrence"
    elif in_range:
        assert result.kind == "missed"
        assert f"{in_range[0].count} occurrences" in result.text
    elif state.next_run_at is not None and at >= state.next_run_at:
        assert result.kind == "not_yet_due"
    else:  # every consumed occurrence is in the ledger: only the time before the job is left
        assert result.kind == "not_started"
        assert at < min(e.scheduled_at for e in entries)
