"""Scenario 3: latency the Valkey store and guard add per run, in SET round trips.

One worker per variant (``base``, ``store``, ``guard``, ``both``), all against the same
loopback server. Runs are strictly sequential (REPLAY_ALL over a 1 µs interval: every
occurrence is due at once and each run waits for the previous one), so wall time per run
is the sum of what one run costs. The worker also times plain SETs of a 300-byte value on
its own connection, so the multiples use a round trip measured in the same process.
"""

from __future__ import annotations

import statistics
import time
import uuid
from datetime import timedelta
from typing import Any

from ._stats import percentile

VALUE = "x" * 300


async def _set_round_trip(url: str, ops: int) -> dict[str, float]:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    key = f"bench:set:{uuid.uuid4().hex}"
    samples = []
    try:
        for i in range(ops + 200):
            t0 = time.perf_counter()
            await client.set(key, VALUE)
            if i >= 200:
                samples.append((time.perf_counter() - t0) * 1e6)
        await client.delete(key)
    finally:
        await client.aclose()
    return {"set_p50_us": percentile(samples, 50), "set_mean_us": statistics.fmean(samples)}


def _count_requests(counter: list[int]) -> Any:
    """Count every request written to a Valkey socket (one per command, one per pipeline),
    whatever call path sent it; returns the function that stops counting.

    Patched on redis-py's connection class itself, so the library still sees its own
    connections and keeps its cheapest path (a counting subclass would not get it).
    """
    from redis.asyncio.connection import AbstractConnection

    original = AbstractConnection.send_packed_command

    async def send_packed_command(self: Any, command: Any, check_health: bool = True) -> None:
        counter[0] += 1
        await original(self, command, check_health)

    AbstractConnection.send_packed_command = send_packed_command  # type: ignore[method-assign]
    return lambda: setattr(AbstractConnection, "send_packed_command", original)


async def measure(variant: str, url: str, runs: int, set_ops: int) -> dict[str, Any]:
    from redis.asyncio import Redis
    from scheduler import (
        InMemoryStateStore,
        Interval,
        Job,
        MissedRunPolicy,
        Scheduler,
        SchedulerConfig,
        ValkeyExecutionGuard,
        ValkeyStateStore,
    )

    rtt = await _set_round_trip(url, set_ops)
    counter = [0]
    prefix = f"bench:{uuid.uuid4().hex}:"
    clients = []
    store: Any = InMemoryStateStore()
    guard: Any = None
    if variant in ("store", "both"):
        clients.append(Redis.from_url(url))
        store = ValkeyStateStore(client=clients[-1], prefix=prefix + "state:")
    if variant in ("guard", "both"):
        clients.append(Redis.from_url(url))
        guard = ValkeyExecutionGuard(client=clients[-1], prefix=prefix + "lease:")

    async def task(ctx: Any) -> None:
        return None

    schedule = Interval(timedelta(microseconds=1))
    job = Job("bench-valkey", schedule, task, max_runs=runs, missed_run_policy=MissedRunPolicy.REPLAY_ALL)
    stop_counting = _count_requests(counter)
    try:
        t0 = time.perf_counter()
        # Calls get the floor's 5 s deadline: the default (half the period, at least 50 ms)
        # would turn one stall of this shared machine into a failed run.
        config = SchedulerConfig(call_timeout=timedelta(seconds=5))
        report = await Scheduler(config, store=store, guard=guard).run(job)
        wall = time.perf_counter() - t0
    finally:
        stop_counting()
    for client in clients:
        await client.aclose()
    return {
        **rtt,
        "variant": variant,
        "runs": report.state.trigger_count,
        "per_run_us": wall / runs * 1e6,
        "commands_per_run": counter[0] / runs,
    }
