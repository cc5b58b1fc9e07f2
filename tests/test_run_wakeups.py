"""However a run ends, the loop hears of it: none leaves the loop asleep beside a finished run."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from scheduler import ExecutionLease, Interval, Job, OverlapPolicy, Scheduler, SchedulerConfig
from scheduler.testing import FakeClock

from .helpers import sleeper
from .test_guard_policies import FakeGuard


class BrokenIntervalGuard(FakeGuard):
    """Grants leases; after the first, fails to say how often to renew them (a faulty guard)."""

    def renew_interval(self, lease: ExecutionLease) -> timedelta | None:
        if lease.fencing_token != 1:
            raise RuntimeError("renew interval unknown")
        return None


async def test_a_leased_run_that_fails_before_its_task_stops_the_loop() -> None:
    # The queued run starts with no loop turn after it: the loop next waits for it to end.
    clock, guard = FakeClock(), BrokenIntervalGuard()
    job = Job("leased", Interval(10), sleeper(clock, 15), max_runs=2, overlap_policy=OverlapPolicy.QUEUE_ONE)
    async with asyncio.timeout(10):  # a bound on a failure, not a wait for a state
        with pytest.raises(RuntimeError, match="renew interval unknown"):
            await Scheduler(SchedulerConfig(), guard=guard, clock=clock).run(job)
    assert guard.held == {}  # the lease was released, not left to its TTL
