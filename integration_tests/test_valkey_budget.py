"""What one guarded run costs on one server: client calls, script calls and server commands.

Counted on a private server from ``INFO commandstats`` (commands run inside scripts included)
as the difference between a long and a short run of the same job shape, so start-up work
(load, create, script loading) cancels out.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from redis.asyncio import Redis
from valkey_server import ServerProcess

from scheduler import (
    Interval,
    Job,
    MissedRunPolicy,
    Scheduler,
    SchedulerConfig,
    SchedulerStopReason,
    TaskContext,
    TriggerSource,
    ValkeyExecutionGuard,
    ValkeyStateStore,
)

pytestmark = pytest.mark.valkey

EVERY = timedelta(milliseconds=5)
#: Every command a guarded run may run; the reasons are in docs/decisions.md.
BUDGET = 18


@pytest.fixture
async def client(private_server: ServerProcess) -> AsyncIterator[Redis]:
    redis = Redis.from_url(private_server.url)
    try:
        yield redis
    finally:
        await redis.aclose()


async def _commands_for(client: Redis, job_id: str, runs: int) -> dict[str, int]:
    async def task(ctx: TaskContext) -> None:
        return None

    store = ValkeyStateStore(client=client)
    guard = ValkeyExecutionGuard(store=store, ttl=timedelta(seconds=30), renew_interval=timedelta(seconds=10))
    await client.config_resetstat()
    # Every occurrence runs (replayed if late), so each consumed occurrence is one guarded run.
    # Counting calls, not timing them: a stall of a loaded machine must not fail a call.
    config = SchedulerConfig(call_timeout=timedelta(seconds=5))
    report = await Scheduler(config, store, guard=guard).run(
        Job(job_id, Interval(EVERY), task, max_runs=runs, missed_run_policy=MissedRunPolicy.REPLAY_ALL)
    )
    assert report.stop_reason is SchedulerStopReason.TERMINAL
    assert len(report.history) == runs
    stats = await client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


async def test_a_guarded_run_is_two_script_calls_within_the_command_budget(client: Redis, uid: str) -> None:
    await _commands_for(client, f"warm-{uid}", 2)  # loads the scripts
    short, long = await _commands_for(client, f"short-{uid}", 5), await _commands_for(client, f"long-{uid}", 25)
    per_run = {name: (long.get(name, 0) - short.get(name, 0)) / 20 for name in set(short) | set(long)}
    per_run = {name: calls for name, calls in per_run.items() if calls and name not in ("config|resetstat", "info")}
    print("server commands per guarded run:", dict(sorted(per_run.items())))
    assert per_run.pop("evalsha") == 2, per_run  # one script before the run, one after
    assert "eval" not in per_run
    assert "script|load" not in per_run
    # Consume-save and acquire share the first script: one state write and one fence bump per run.
    assert per_run["incr"] == 1
    assert per_run["hset"] == 2
    assert "get" not in per_run, "a save must not read the stored document"
    total = sum(per_run.values()) + 2
    assert total <= BUDGET, f"{total} server commands per run: {per_run}"


async def test_separate_servers_keep_the_per_component_calls(
    client: Redis, private_server: ServerProcess, valkey_url: str, uid: str
) -> None:
    async def task(ctx: TaskContext) -> None:
        return None

    store = ValkeyStateStore(client=client)
    guard = ValkeyExecutionGuard(valkey_url)  # another server
    try:
        await client.config_resetstat()
        report = await Scheduler(store=store, guard=guard).run(Job(f"job-{uid}", Interval(EVERY), task, max_runs=4))
        assert report.history  # (an occurrence may be skipped as an overlap at this interval)
        stats = await client.info("commandstats")
        assert "cmdstat_incr" not in stats  # no lease work on the store's server
    finally:
        await guard.aclose()


async def test_a_manual_trigger_takes_its_lease_in_the_consuming_call(client: Redis, uid: str) -> None:
    """trigger_now() on a job whose schedule is far away: the same two script calls as a
    scheduled run (consume + acquire in the first), nothing else."""
    await _commands_for(client, f"warm-{uid}", 2)  # loads the scripts
    ran = asyncio.Event()

    async def task(ctx: TaskContext) -> None:
        ran.set()

    store = ValkeyStateStore(client=client)
    guard = ValkeyExecutionGuard(store=store, ttl=timedelta(seconds=30), renew_interval=timedelta(seconds=10))
    scheduler = Scheduler(store=store, guard=guard)
    running = asyncio.create_task(scheduler.run(Job(f"manual-{uid}", Interval(timedelta(hours=1)), task)))
    try:
        await _wait_for_key(client, f"manual-{uid}")
        await client.config_resetstat()
        scheduler.handle().trigger_now()
        await asyncio.wait_for(ran.wait(), 5)
    finally:
        scheduler.handle().shutdown()
        report = await asyncio.wait_for(running, 5)
    stats = await client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
    print("server commands for a manual run and the shutdown:", calls)
    assert calls.get("evalsha") == 2, calls  # consume + acquire, then release + outcome
    assert calls.get("incr") == 1, calls  # the fence bump, inside the consuming script
    assert "eval" not in calls, calls
    assert [run.source for run in report.history] == [TriggerSource.MANUAL]


async def _wait_for_key(client: Redis, job_id: str) -> None:
    for _ in range(500):
        if [key async for key in client.scan_iter(match=f"*{job_id}*")]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no key for {job_id}")
