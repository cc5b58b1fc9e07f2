"""Scenario 4: deciding after long downtime, timed directly and through a full start.

``decide()`` is timed on its own (median of many calls), and a whole ``Scheduler.run`` is
timed from the call to its first decision event (RunsMissed for SKIP, TriggerEmitted
otherwise) from a stored JobState whose next_run_at lies ``days`` in the past. tracemalloc
peaks are taken for 1 and 365 days offline: equal peaks mean memory does not grow with
the number of missed occurrences.
"""

from __future__ import annotations

import statistics
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

SCHEDULES = ("cron_every_minute", "interval_1s")
POLICIES = ("skip", "catch_up_once", "replay_all")


def _schedule(name: str) -> Any:
    from scheduler import Cron, Interval

    return Cron("* * * * *") if name == "cron_every_minute" else Interval(timedelta(seconds=1))


def _inputs(schedule: Any, policy: str, days: float) -> tuple[Any, datetime, datetime]:
    from zoneinfo import ZoneInfo

    from scheduler import MissedRunPolicy
    from scheduler._decide import Policies

    now = datetime.now(UTC)
    policies = Policies(schedule, ZoneInfo("UTC"), MissedRunPolicy(policy), timedelta(seconds=1), None, None)
    return policies, schedule.first(now - timedelta(days=days), ZoneInfo("UTC")), now


def _decide_once(schedule: Any, policy: str, days: float) -> Any:
    from scheduler._decide import decide

    policies, next_run_at, now = _inputs(schedule, policy, days)
    return decide(policies, next_run_at, 0, now)


def _time_decide(schedule: Any, policy: str, days: float) -> tuple[float, Any]:
    from scheduler._decide import decide

    policies, next_run_at, now = _inputs(schedule, policy, days)
    t0 = time.perf_counter()
    decision = decide(policies, next_run_at, 0, now)
    return time.perf_counter() - t0, decision


def _peak_bytes(fn: Any) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def _start_peak_bytes(schedule: Any, policy: str, days: float) -> int:
    tracemalloc.start()
    try:
        await _full_start(schedule, policy, days)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def _full_start(schedule: Any, policy: str, days: float) -> float:
    """Seconds from ``Scheduler.run`` to its first decision event (then cancel)."""
    from zoneinfo import ZoneInfo

    from scheduler import InMemoryStateStore, Job, JobState, MissedRunPolicy, Scheduler
    from scheduler.events import RunsMissed, TriggerEmitted

    store = InMemoryStateStore()
    job = Job("bench-downtime", schedule, _noop, missed_run_policy=MissedRunPolicy(policy))
    fingerprint = schedule.fingerprint(ZoneInfo("UTC"))
    next_run_at = schedule.first(datetime.now(UTC) - timedelta(days=days), ZoneInfo("UTC"))
    await store.save(JobState(job_id=job.job_id, next_run_at=next_run_at, schedule_fingerprint=fingerprint))
    marks: list[float] = []
    sched: Scheduler

    def observer(event: Any) -> None:
        if not marks and isinstance(event, RunsMissed | TriggerEmitted):
            marks.append(time.perf_counter())
            sched.handle().cancel()

    sched = Scheduler(store=store, observer=observer)
    t0 = time.perf_counter()
    await sched.run(job)
    return marks[0] - t0


async def _noop(ctx: Any) -> None:
    return None


async def measure(repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in SCHEDULES:
        schedule = _schedule(name)
        for policy in POLICIES:
            starts = [await _full_start(schedule, policy, 365) for _ in range(max(repeats // 10, 3))]
            out[f"{name}/{policy}"] = {
                "full_start_ms": statistics.median(starts) * 1e3,
                # Smallest of 3: a single tracemalloc peak can include one-off cache fills
                # (whichever measurement runs first pays them), which is not per-occurrence cost.
                "start_peak_bytes_1d": min([await _start_peak_bytes(schedule, policy, 1) for _ in range(3)]),
                "start_peak_bytes_365d": min([await _start_peak_bytes(schedule, policy, 365) for _ in range(3)]),
                **_decide_figures(schedule, policy, repeats),
            }
    return out


def _decide_figures(schedule: Any, policy: str, repeats: int) -> dict[str, Any]:
    """The decision alone, through the library's internal entry point. Internal names may
    move: then these figures are left out and the full start above still stands."""
    try:
        _decide_once(schedule, policy, 365)  # warm caches (cron tables, zone)
    except (ImportError, AttributeError, TypeError):
        return {}
    timed = [_time_decide(schedule, policy, 365) for _ in range(repeats)]
    return {
        "decide_us": statistics.median(t for t, _ in timed) * 1e6,
        "consumed": timed[-1][1].consumed,
        "peak_bytes_1d": min(_peak_bytes(lambda: _decide_once(schedule, policy, 1)) for _ in range(3)),
        "peak_bytes_365d": min(_peak_bytes(lambda: _decide_once(schedule, policy, 365)) for _ in range(3)),
    }
