"""Lateness workers: how long after its scheduled instant each start's first line runs.

Every peer timestamps with ``time.monotonic()`` at the first line of the task (never
``loop.time()``, which uvloop caches in whole milliseconds). Peers that plan in wall-clock
datetimes (the scheduler, both APScheduler versions) have their scheduled instants moved onto
the monotonic clock by one offset read at the start; the offset's drift over the schedule is
returned, so a clock step during a run would show. Starts are matched to their scheduled
instant by occurrence (the instant the peer reports for that run), never by position.

Peers that run at once are given phases across the period (``first``: the instant of their
first occurrence). Each imports its library before waiting for its phase and anchors its
schedule there, so loading never moves one peer's busy moment onto another's.

This module must import without the scheduler installed: the APScheduler 4 worker runs it
from its own virtualenv.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from ._stats import lateness_summary


def _wall_offset() -> float:
    """Wall seconds minus monotonic seconds, read back to back."""
    return time.time() - time.monotonic()


async def _until(instant: float | None) -> None:
    """Sleep until the monotonic ``instant`` (no wait when None or past)."""
    if instant is not None:
        await asyncio.sleep(max(0.0, instant - time.monotonic()))


def _result(pairs: dict[float, float], cpu: float, wall: float, drift_s: float) -> dict[str, Any]:
    """``pairs`` maps each occurrence's scheduled instant to its start, both monotonic seconds."""
    instants = sorted(pairs)
    lateness_us = [(pairs[t] - t) * 1e6 for t in instants]
    starts = [pairs[t] for t in instants]
    gaps = (starts[-1] - starts[0]) / (len(starts) - 1) if len(starts) > 1 else float("nan")
    return {
        **lateness_summary(lateness_us),
        "mean_period_ms": gaps * 1e3,
        "cpu_pct": 100.0 * cpu / wall,
        "clock_drift_us": drift_s * 1e6,
        "first_instant": instants[0],
        "samples_us": [round(v, 1) for v in lateness_us],
    }


async def run_lib(period: float, count: int, first: float | None = None) -> dict[str, Any]:
    """The scheduler: in-memory store, ``SystemClock``, default configuration but for
    ``REPLAY_ALL`` (the default catches up once: a stall over two occurrences would start one
    run for both and drop the later-starting one's sample; the peers run every occurrence).
    Its interval counts from the start, so it starts one period before ``first``."""
    from scheduler import Interval, Job, MissedRunPolicy, Scheduler

    await _until(None if first is None else first - period)
    offset = _wall_offset()
    pairs: dict[float, float] = {}

    async def task(ctx: Any) -> None:
        now = time.monotonic()
        pairs[ctx.run.scheduled_at.timestamp()] = now

    job = Job(
        "bench", Interval(timedelta(seconds=period)), task, max_runs=count, missed_run_policy=MissedRunPolicy.REPLAY_ALL
    )
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await Scheduler().run(job)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return _result({t - offset: s for t, s in pairs.items()}, cpu, wall, _wall_offset() - offset)


async def run_aps3(period: float, count: int, first: float | None = None) -> dict[str, Any]:
    """APScheduler 3: ``coalesce=False`` and no misfire limit, so every occurrence runs.

    APScheduler 3 does not tell a task which occurrence it runs. The submission event, which
    it dispatches before the task's coroutine gets its first turn, lists the scheduled
    instants of that submission in the order the task will be called for them; the task takes
    the next one. The executed events then confirm every pairing (same instants, same order).
    """
    from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_SUBMITTED
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    await _until(None if first is None else first - period)
    offset = _wall_offset()
    anchor = None if first is None else datetime.fromtimestamp(first + offset, UTC)
    submitted: deque[float] = deque()
    taken: list[float] = []
    executed: list[float] = []
    pairs: dict[float, float] = {}
    done = asyncio.get_running_loop().create_future()

    async def task() -> None:
        now = time.monotonic()
        instant = submitted.popleft()
        taken.append(instant)
        pairs[instant] = now

    def on_event(event: Any) -> None:
        if event.code == EVENT_JOB_SUBMITTED:
            submitted.extend(t.timestamp() for t in event.scheduled_run_times)
            return
        executed.append(event.scheduled_run_time.timestamp())
        if len(executed) >= count and not done.done():
            done.set_result(None)

    sched = AsyncIOScheduler()
    sched.add_listener(on_event, EVENT_JOB_EXECUTED | EVENT_JOB_SUBMITTED)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    sched.add_job(
        task,
        "interval",
        seconds=period,
        start_date=anchor,
        max_instances=1,
        coalesce=False,
        misfire_grace_time=None,
    )
    sched.start()
    await done
    sched.shutdown(wait=False)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    if taken[: len(executed)] != executed:
        raise RuntimeError("APScheduler 3: executed occurrences differ from the ones the task started")
    return _result({t - offset: pairs[t] for t in executed[:count]}, cpu, wall, _wall_offset() - offset)


async def run_aps4(period: float, count: int, first: float | None = None) -> dict[str, Any]:
    """APScheduler 4 (pre-release): in-memory data store, ``CoalescePolicy.all``, no misfire
    limit. The task reads its own occurrence from ``current_job``."""
    from apscheduler import AsyncScheduler, CoalescePolicy, current_job
    from apscheduler.triggers.interval import IntervalTrigger

    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    await _until(None if first is None else first - period)
    offset = _wall_offset()
    # Its interval's first occurrence is its start time (by default, the moment it is added).
    trigger = (
        IntervalTrigger(seconds=period)
        if first is None
        else IntervalTrigger(seconds=period, start_time=datetime.fromtimestamp(first + offset, UTC))
    )
    pairs: dict[float, float] = {}
    done = asyncio.get_running_loop().create_future()

    async def task() -> None:
        now = time.monotonic()
        fire_time = current_job.get().scheduled_fire_time
        pairs[fire_time.timestamp()] = now
        if len(pairs) >= count and not done.done():
            done.set_result(None)

    async with AsyncScheduler() as sched:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await sched.configure_task("bench", func=task, misfire_grace_time=None)
        await sched.add_schedule(
            "bench",
            trigger,
            id="bench",
            coalesce=CoalescePolicy.all,
            misfire_grace_time=None,
        )
        await sched.start_in_background()
        await done
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        await sched.stop()
    first = sorted(pairs)[:count]
    return _result({t - offset: pairs[t] for t in first}, cpu, wall, _wall_offset() - offset)


async def run_floor(period: float, count: int, first: float | None = None) -> dict[str, Any]:
    """The ``call_at`` floor: absolute monotonic deadlines, one loop timer and one task each."""
    await _until(None if first is None else first - period)
    loop = asyncio.get_running_loop()
    pairs: dict[float, float] = {}
    done = loop.create_future()
    tasks: set[asyncio.Task[None]] = set()
    t0 = time.monotonic() if first is None else first - period

    async def task(deadline: float) -> None:
        pairs[deadline] = time.monotonic()
        if len(pairs) >= count:
            done.set_result(None)

    def fire(i: int) -> None:
        started = loop.create_task(task(t0 + i * period))
        tasks.add(started)
        started.add_done_callback(tasks.discard)
        if i < count:
            loop.call_later(t0 + (i + 1) * period - time.monotonic(), fire, i + 1)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    loop.call_later(t0 + period - time.monotonic(), fire, 1)
    await done
    return _result(pairs, time.process_time() - cpu0, time.perf_counter() - wall0, 0.0)


# The spin floor's wait, written here after the documented behaviour of the scheduler's real
# clock rather than imported from it: aim a loop timer at a whole number of milliseconds that
# the selector does not round up, ending a little before the instant (a long wait ends a few
# ms early and a second, short timer finishes it), then nap in blocking sleeps of at most 1 ms
# with a loop turn between them (none once a nap has passed the instant), and yield to the
# loop for the last stretch (at most 0.25 ms and at most 5 % of the wait) until the instant.
EARLY_WAKE_S = 0.0003
SPIN_S = EARLY_WAKE_S + 0.001
LONG_WAIT_S = 0.02
LONG_WAIT_MARGIN_S = 0.004
SLICE_S = 1.0
SPIN_WINDOW_S = 0.00025
SPIN_SHARE = 0.025
NAP_S = 0.001


@lru_cache(maxsize=1024)
def oversleeps(ms: int) -> bool:
    """True when ``epoll.poll(ms * 1e-3)`` waits ``ms + 1`` ms (the float is rounded up twice)."""
    return math.ceil(ms * 1e-3 * 1e9) > ms * 1_000_000


def _timer_ms(seconds: float) -> int:
    ms = math.floor(seconds * 1000)
    while ms > 0 and oversleeps(ms):
        ms -= 1
    return ms


async def spin_until(deadline: float) -> None:
    """Wait until ``time.monotonic() >= deadline``: timer waits, then naps, then zero-length yields."""
    window = -1.0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        if window < 0:
            window = min(SPIN_WINDOW_S, remaining * SPIN_SHARE)
        if remaining > SPIN_S:
            margin = LONG_WAIT_MARGIN_S if remaining > LONG_WAIT_S else EARLY_WAKE_S
            ms = _timer_ms(min(remaining - margin, SLICE_S))
            if ms > 0:
                await asyncio.sleep(ms * 1e-3 - 1e-6)
                continue
        if remaining > window:
            time.sleep(min(remaining - window, NAP_S))  # noqa: ASYNC251 (as the scheduler does)
            if time.monotonic() >= deadline:
                return
        await asyncio.sleep(0)


async def run_spin(period: float, count: int, first: float | None = None) -> dict[str, Any]:
    """The spin floor: the early-wake, nap and yield wait, then a task timestamped at its first line."""
    await _until(None if first is None else first - period)
    loop = asyncio.get_running_loop()
    pairs: dict[float, float] = {}
    tasks: set[asyncio.Task[None]] = set()

    async def task(deadline: float) -> None:
        pairs[deadline] = time.monotonic()

    t0 = time.monotonic() if first is None else first - period
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(1, count + 1):
        await spin_until(t0 + i * period)
        started = loop.create_task(task(t0 + i * period))
        tasks.add(started)
        started.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    return _result(pairs, time.process_time() - cpu0, time.perf_counter() - wall0, 0.0)


PEERS = {"lib": run_lib, "aps3": run_aps3, "aps4": run_aps4, "floor": run_floor, "spin": run_spin}
# Each library's first use (imports, and what its first start loads lazily: the scheduler
# loads its run loop on its first run, about 80 ms of CPU here; APScheduler 4 about 40 ms) is
# done once before measuring, the same way for every peer: a long-running process pays it
# once, and inside the measurement it would count as CPU of the schedule and, for a phased
# peer, push its first occurrence off its phase.
LOAD_PERIOD_S = 0.005


async def _load_lib() -> None:
    from scheduler import Interval, Job, Scheduler

    async def task(ctx: Any) -> None:
        pass

    await Scheduler().run(Job("load", Interval(timedelta(seconds=LOAD_PERIOD_S)), task, max_runs=1))


async def _load_aps3() -> None:
    from apscheduler.events import EVENT_JOB_EXECUTED
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    ran = asyncio.get_running_loop().create_future()

    async def task() -> None:
        pass

    def on_event(event: Any) -> None:
        if not ran.done():
            ran.set_result(None)

    sched = AsyncIOScheduler()
    sched.add_listener(on_event, EVENT_JOB_EXECUTED)
    sched.add_job(task, "interval", seconds=LOAD_PERIOD_S, coalesce=False, misfire_grace_time=None)
    sched.start()
    await ran
    sched.shutdown(wait=False)


async def _load_aps4() -> None:
    from apscheduler import AsyncScheduler, CoalescePolicy
    from apscheduler.triggers.interval import IntervalTrigger

    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    ran = asyncio.get_running_loop().create_future()

    async def task() -> None:
        if not ran.done():
            ran.set_result(None)

    async with AsyncScheduler() as sched:
        await sched.configure_task("load", func=task, misfire_grace_time=None)
        await sched.add_schedule("load", IntervalTrigger(seconds=LOAD_PERIOD_S), id="load", coalesce=CoalescePolicy.all)
        await sched.start_in_background()
        await ran
        await sched.stop()


LOADERS = {"lib": _load_lib, "aps3": _load_aps3, "aps4": _load_aps4}


async def measure(peer: str, period: float, count: int, start_at: float | None = None) -> dict[str, Any]:
    """Load ``peer``'s library, then run it; with ``start_at`` (wall seconds), its first
    occurrence falls due then.

    The result's ``phase_error_us`` is how far that first occurrence landed from ``start_at``
    (the scheduler's interval counts from its start, a few hundred microseconds after it is
    asked to start).
    """
    if peer in LOADERS:
        await LOADERS[peer]()
    first = None if start_at is None else start_at - _wall_offset()
    result = await PEERS[peer](period, count, first)
    if first is not None:
        result["phase_error_us"] = (result["first_instant"] - first) * 1e6
    return result
