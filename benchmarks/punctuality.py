"""Scenario 1 workers: lateness of each start against its scheduled instant, one peer each.

Every worker returns raw lateness samples (µs), the mean period between consecutive starts,
and process CPU time over wall time for the whole schedule.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Any

from ._stats import lateness_summary


def _result(lateness_s: list[float], starts: list[float], cpu: float, wall: float) -> dict[str, Any]:
    lateness_us = [v * 1e6 for v in lateness_s]
    gaps = (starts[-1] - starts[0]) / (len(starts) - 1) if len(starts) > 1 else float("nan")
    return {
        **lateness_summary(lateness_us),
        "mean_period_ms": gaps * 1e3,
        "cpu_pct": 100.0 * cpu / wall,
        "samples_us": [round(v, 1) for v in lateness_us],
    }


async def run_lib(period: float, count: int) -> dict[str, Any]:
    from scheduler import Interval, Job, Scheduler

    lateness: list[float] = []
    starts: list[float] = []

    async def task(ctx: Any) -> None:
        now = time.time()
        starts.append(now)
        lateness.append(now - ctx.run.scheduled_at.timestamp())

    job = Job("bench", Interval(timedelta(seconds=period)), task, max_runs=count)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await Scheduler().run(job)
    return _result(lateness, starts, time.process_time() - cpu0, time.perf_counter() - wall0)


async def run_aps(period: float, count: int) -> dict[str, Any]:
    from apscheduler.events import EVENT_JOB_EXECUTED
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    starts: list[float] = []
    planned: list[float] = []
    done = asyncio.get_running_loop().create_future()

    async def task() -> None:
        starts.append(time.time())

    def on_executed(event: Any) -> None:
        planned.append(event.scheduled_run_time.timestamp())
        if len(planned) >= count and not done.done():
            done.set_result(None)

    sched = AsyncIOScheduler()
    sched.add_listener(on_executed, EVENT_JOB_EXECUTED)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    sched.add_job(task, "interval", seconds=period, max_instances=1, coalesce=False)
    sched.start()
    await done
    sched.shutdown(wait=False)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    lateness = [s - p for s, p in zip(starts[:count], planned[:count], strict=True)]
    return _result(lateness, starts[:count], cpu, wall)


async def run_floor(period: float, count: int) -> dict[str, Any]:
    """The floor: absolute deadlines on the loop's monotonic clock, ``call_at`` + a task each."""
    loop = asyncio.get_running_loop()
    lateness: list[float] = []
    starts: list[float] = []
    done = loop.create_future()
    t0 = loop.time()

    async def task(deadline: float) -> None:
        now = loop.time()
        starts.append(now)
        lateness.append(now - deadline)
        if len(lateness) >= count:
            done.set_result(None)

    tasks: set[asyncio.Task[None]] = set()

    def fire(i: int) -> None:
        started = loop.create_task(task(t0 + i * period))
        tasks.add(started)
        started.add_done_callback(tasks.discard)
        if i < count:
            loop.call_at(t0 + (i + 1) * period, fire, i + 1)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    loop.call_at(t0 + period, fire, 1)
    await done
    return _result(lateness, starts, time.process_time() - cpu0, time.perf_counter() - wall0)


PEERS = {"lib": run_lib, "aps": run_aps, "floor": run_floor}


async def measure(peer: str, period: float, count: int, start_at: float | None = None) -> dict[str, Any]:
    """Wait for ``start_at`` (wall seconds; used to stagger concurrent peers), then run ``peer``."""
    if start_at is not None:
        await asyncio.sleep(max(0.0, start_at - time.time()))
    return await PEERS[peer](period, count)
