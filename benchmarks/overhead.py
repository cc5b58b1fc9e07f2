"""CPU per run and run rate, and the RSS growth over many runs.

Each peer runs a no-op async task on an interval, every occurrence its own run; the task only
counts. A probe samples the counter and the process CPU time after a warm-up and at the end
of a fixed window. At an interval shorter than a run costs, the peer is saturated and the
figure is its CPU per run; at an interval it keeps pace with, CPU % of a core is compared.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

Starter = Callable[[Callable[[], None]], Awaitable[Callable[[], None]]]


def _lib_job(tick: Callable[[], None], interval_s: float) -> Any:
    from scheduler import Interval, Job, MissedRunPolicy

    async def task(ctx: Any) -> None:
        tick()

    # REPLAY_ALL: every occurrence is its own run, one after another, also once behind.
    every = Interval(timedelta(seconds=interval_s))
    return Job("bench", every, task, missed_run_policy=MissedRunPolicy.REPLAY_ALL)


async def _start_lib(tick: Callable[[], None], interval_s: float) -> Callable[[], None]:
    """The scheduler's default configuration: in-memory store, no observer."""
    from scheduler import Scheduler

    runner = asyncio.get_running_loop().create_task(Scheduler().run(_lib_job(tick, interval_s)))
    return runner.cancel


async def _start_lib_observer(tick: Callable[[], None], interval_s: float) -> Callable[[], None]:
    """Same, with an observer that receives every event (it only counts them)."""
    from scheduler import Scheduler

    seen = [0]

    def observer(event: Any) -> None:
        seen[0] += 1

    runner = asyncio.get_running_loop().create_task(Scheduler(observer=observer).run(_lib_job(tick, interval_s)))
    return runner.cancel


async def _start_lib_sqlite(tick: Callable[[], None], interval_s: float) -> Callable[[], None]:
    """Same, persisting to an SQLite file in a temporary directory."""
    from scheduler import Scheduler, SqliteStateStore

    folder = tempfile.TemporaryDirectory(prefix="bench-sqlite-")
    store = SqliteStateStore(Path(folder.name) / "state.db")
    runner = asyncio.get_running_loop().create_task(Scheduler(store=store).run(_lib_job(tick, interval_s)))

    def stop() -> None:
        runner.cancel()
        runner.add_done_callback(lambda _: folder.cleanup())

    return stop


async def _start_aps3(tick: Callable[[], None], interval_s: float) -> Callable[[], None]:
    """APScheduler 3, configured so every occurrence runs (no coalescing, no misfire limit)."""
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    logging.getLogger("apscheduler").setLevel(logging.ERROR)

    async def task() -> None:
        tick()

    sched = AsyncIOScheduler()
    sched.add_job(task, "interval", seconds=interval_s, coalesce=False, misfire_grace_time=None)
    sched.start()
    return lambda: sched.shutdown(wait=False)


async def _start_aps4(tick: Callable[[], None], interval_s: float) -> Callable[[], None]:
    """APScheduler 4: in-memory data store, one job per accumulated fire time, no misfire limit."""
    from apscheduler import AsyncScheduler, CoalescePolicy
    from apscheduler.triggers.interval import IntervalTrigger

    logging.getLogger("apscheduler").setLevel(logging.ERROR)

    async def task() -> None:
        tick()

    stopping = asyncio.Event()
    started = asyncio.Event()

    async def lifetime() -> None:
        # anyio ties the scheduler's scopes to one task: enter and leave it in the same one.
        async with AsyncScheduler() as sched:
            await sched.configure_task("bench", func=task, misfire_grace_time=None)
            await sched.add_schedule("bench", IntervalTrigger(seconds=interval_s), coalesce=CoalescePolicy.all)
            await sched.start_in_background()
            started.set()
            await stopping.wait()
            await sched.stop()

    runner = asyncio.get_running_loop().create_task(lifetime())
    await started.wait()

    def stop() -> None:
        stopping.set()
        runner.add_done_callback(lambda t: t.cancelled() or t.exception())

    return stop


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
    "lib_observer": _start_lib_observer,
    "lib_sqlite": _start_lib_sqlite,
    "aps3": _start_aps3,
    "aps4": _start_aps4,
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
    n = n1 - n0
    return {
        "runs_per_s": n / (wall1 - wall0),
        # A peer that stalls (a handful of runs in the window) has no meaningful cost per run.
        "cpu_us_per_run": (cpu1 - cpu0) / n * 1e6 if n >= 10 else None,
        "cpu_pct": 100.0 * (cpu1 - cpu0) / (wall1 - wall0),
        "interval_s": interval_s,
        # 1.0: one run per interval (keeps pace); below: saturated, the backlog grows.
        "pace": n / (wall1 - wall0) * interval_s,
    }


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def _preimport(peer: str) -> None:
    """Load the peer's modules first, so "before" measures runs and not imports."""
    if peer.startswith("lib"):
        from scheduler import Interval, Job, MissedRunPolicy, Scheduler  # noqa: F401
    elif peer == "aps3":
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
