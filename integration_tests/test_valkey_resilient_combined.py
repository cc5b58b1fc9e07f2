"""ResilientStateStore over a Valkey store with a Valkey guard on the same server.

While the primary is healthy a guarded run costs the two combined script calls; when the
server goes away the store degrades to its mirror and the guard is asked alone, under the
guard error policy; once the server is back the combined calls resume.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from redis.asyncio import Redis
from valkey_server import ServerProcess

from scheduler import (
    GuardErrorPolicy,
    Interval,
    Job,
    MissedRunPolicy,
    RunSkipReason,
    Scheduler,
    SchedulerConfig,
    SchedulerStopReason,
    TaskContext,
    ValkeyExecutionGuard,
    ValkeyStateStore,
)
from scheduler._resilient import ResilientStateStore
from scheduler.events import RunSkipped, SchedulerEvent, StoreDegraded, StoreRecovered

pytestmark = pytest.mark.valkey


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.01)


def _pair(url: str, probe: timedelta = timedelta(milliseconds=200)) -> tuple[ResilientStateStore, ValkeyExecutionGuard]:
    primary = ValkeyStateStore(url)
    guard = ValkeyExecutionGuard(store=primary, ttl=timedelta(seconds=5), renew_interval=timedelta(seconds=1))
    return ResilientStateStore(primary, probe_interval=probe), guard


async def _script_calls(url: str, job_id: str, runs: int) -> int:
    tokens: list[int | None] = []

    async def task(ctx: TaskContext) -> None:
        tokens.append(ctx.run.fencing_token)

    store, guard = _pair(url)
    async with Redis.from_url(url) as raw:
        await raw.config_resetstat()
        try:
            job = Job(
                job_id,
                Interval(timedelta(milliseconds=2)),
                task,
                max_runs=runs,
                missed_run_policy=MissedRunPolicy.REPLAY_ALL,
            )
            # Counting calls, not timing them: a stall of a loaded machine must not fail a call.
            config = SchedulerConfig(call_timeout=timedelta(seconds=5))
            report = await Scheduler(config, store, guard=guard).run(job)
        finally:
            await store.aclose()
        assert report.stop_reason is SchedulerStopReason.TERMINAL
        assert len(report.history) == runs
        assert len(tokens) == runs
        assert all(tokens)  # every run held a lease
        stats = await raw.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_a_healthy_primary_runs_the_two_combined_scripts(private_server: ServerProcess, uid: str) -> None:
    url = private_server.url
    await _script_calls(url, f"warm-{uid}", 2)  # loads the scripts
    short, long = await _script_calls(url, f"short-{uid}", 5), await _script_calls(url, f"long-{uid}", 25)
    assert (long - short) / 20 == 2  # per guarded run: one script before it, one after


@pytest.mark.parametrize("fault", ["stopped", "frozen"])
@pytest.mark.parametrize("policy", [GuardErrorPolicy.SKIP, GuardErrorPolicy.RUN])
async def test_an_outage_degrades_then_the_combined_calls_resume(
    private_server: ServerProcess, uid: str, policy: GuardErrorPolicy, fault: str
) -> None:
    """A stopped server refuses connections; a frozen one (SIGSTOP) accepts calls and hangs,
    then runs what was queued when it resumes (late-applied combined scripts included)."""
    runs: list[tuple[datetime, int | None]] = []
    events: list[SchedulerEvent] = []

    async def task(ctx: TaskContext) -> None:
        runs.append((ctx.run.scheduled_at, ctx.run.fencing_token))
        await asyncio.sleep(0.005)

    store, guard = _pair(private_server.url)
    scheduler = Scheduler(SchedulerConfig(guard_error_policy=policy), store, guard=guard, observer=events.append)
    running = asyncio.create_task(scheduler.run(Job(f"job-{uid}", Interval(timedelta(milliseconds=50)), task)))
    try:
        await until(lambda: len(runs) >= 3, "runs with the server up")
        assert all(token for _, token in runs)
        if fault == "stopped":
            private_server.stop()
        else:
            private_server.freeze()
        await until(lambda: any(isinstance(e, StoreDegraded) for e in events), "the store to degrade")
        outage = len(runs)
        if policy is GuardErrorPolicy.SKIP:  # fail closed: the acquire alone fails, nothing runs
            await until(
                lambda: (
                    sum(isinstance(e, RunSkipped) and e.reason is RunSkipReason.GUARD_UNAVAILABLE for e in events) >= 3
                ),
                "occurrences skipped while the guard is unreachable",
            )
        else:  # fail open: the schedule goes on from the mirror, without a lease
            await until(lambda: len(runs) >= outage + 3, "runs from the mirror")
            assert any(token is None for _, token in runs[outage:])
        if fault == "stopped":
            private_server.start()  # empty (no persistence): the write-back restores the state
        else:
            private_server.thaw()
        await until(lambda: any(isinstance(e, StoreRecovered) for e in events), "the recovery")
        recovered = len(runs)
        await until(lambda: len(runs) >= recovered + 3, "runs after the recovery")
        assert all(token for _, token in runs[recovered + 1 :])  # leased again (the first may straddle)
    finally:
        scheduler.handle().shutdown()
        await asyncio.wait_for(running, 10)
        await store.aclose()
    assert not [at for at, n in Counter(at for at, _ in runs).items() if n > 1]  # no occurrence ran twice
    assert running.exception() is None
