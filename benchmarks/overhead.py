"""Scenario 2 (sustained run rate, CPU per run) and the RSS part of scenario 5.

Each peer runs a no-op task at the smallest interval it accepts; the task only counts. A
probe samples the counter after a warm-up and at the end of a fixed window.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

Starter = Callable[[Callable[[], None]], Awaitable[Callable[[], None]]]


async def _start_lib(tick: Callable[[], None], interval_s: float) -> Callable[[], None]:
    from scheduler import Interval, Job, MissedRunPolicy, Scheduler

    async def task(ctx: Any) -> None:
        tick()

    # REPLAY_ALL: every occurrence is its own run, one after another. With the defaults
    # (CATCH_UP_ONCE + FORBID) a 1 µs interval keeps the run loop busy without ever yielding.
    every = Interval(timedelta(seconds=interval_s))
    job = Job("bench", every, task, missed_run_policy=MissedRunPolicy.REPLAY_ALL)
    runner = asyncio.get_running_loop().create_task(Scheduler().run(job))
    return runner.cancel


async def _start_aps(tick: Callable[[], None], interval_s: float) -> Callable[[], None]:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    logging.getLogger("apscheduler").setLevel(logging.ERROR)

    async def task() -> None:
        tick()

    sched = AsyncIOScheduler()
    sched.add_job(task, "interval", seconds=interval_s)
    sched.start()
    return lambda: sched.shutdown(wait=False)


async def _start_floor(tick: Callable[[], None], interval_s: float) -> Callable[[], None]:
    """``loop.call_at`` + a task per occurrence; the next timer is set when the task is done."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    stopped = False

    async def task() -> None:
        tick()

    def fire(i: int) -> None:
        if not stopped:
            done = loop.create_task(task())
            done.add_done_callback(lambda _: loop.call_at(t0 + (i + 1) * interval_s, fire, i + 1))

    def stop() -> None:
        nonlocal stopped
        stopped = True

    loop.call_at(t0 + interval_s, fire, 1)
    return stop


PEERS: dict[str, Callable[..., Awaitable[Callable[[], None]]]] = {
    "lib": _start_lib,
    "aps": _start_aps,
    "floor": _start_floor,
}


async def measure(peer: str, interval_s: float, warmup_s: float, window_s: float) -> dict[str, Any]:
    """Runs per second and process CPU µs per run over ``window_s``, after ``warmup_s``."""
    runs = 0

    def tick() -> None:
        nonlocal runs
        runs += 1

    stop = await PEERS[peer](tick, interval_s)
    await asyncio.sleep(warmup_s)
    n0, cpu0, wall0 = runs, time.process_time(), time.perf_counter()
    await asyncio.sleep(window_s)
    n1, cpu1, wall1 = runs, time.process_time(), time.perf_counter()
    stop()
    await asyncio.sleep(0.01)
    n = max(n1 - n0, 1)
    return {
        "runs_per_s": n / (wall1 - wall0),
        "cpu_us_per_run": (cpu1 - cpu0) / n * 1e6,
        "cpu_pct": 100.0 * (cpu1 - cpu0) / (wall1 - wall0),
        "interval_s": interval_s,
    }


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def _preimport(peer: str) -> None:
    """Load the peer's modules first, so "before" measures runs and not imports."""
    if peer == "lib":
        from scheduler import Interval, Job, MissedRunPolicy, Scheduler  # noqa: F401
    elif peer == "aps":
        from apscheduler.schedulers.asyncio import AsyncIOScheduler  # noqa: F401


async def measure_rss(peer: str, interval_s: float, runs: int) -> dict[str, Any]:
    """RSS (KiB) before start, after 1% of ``runs`` (warm) and after ``runs``."""
    marks: dict[str, int] = {}
    done = asyncio.get_running_loop().create_future()
    count = 0
    warm = max(runs // 100, 1)

    def tick() -> None:
        nonlocal count
        count += 1
        if count == warm:
            marks["warm"] = _rss_kib()
        elif count == runs and not done.done():
            marks["end"] = _rss_kib()
            done.set_result(None)

    _preimport(peer)
    marks["before"] = _rss_kib()
    wall0 = time.perf_counter()
    stop = await PEERS[peer](tick, interval_s)
    await done
    seconds = time.perf_counter() - wall0
    stop()
    await asyncio.sleep(0.01)
    return {
        "rss_before_kib": marks["before"],
        "rss_warm_kib": marks["warm"],
        "rss_end_kib": marks["end"],
        "growth_kib": marks["end"] - marks["before"],
        "growth_after_warm_kib": marks["end"] - marks["warm"],
        "seconds": seconds,
        "runs": runs,
    }
