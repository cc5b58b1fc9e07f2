"""Library quick start: an async job every 200 ms, three runs, state in SQLite.

Run it with ``python examples/quickstart.py``; run it again and it resumes from the stored
state (already terminal: it exits at once). Delete ``quickstart.db`` to start over.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import timedelta

from scheduler import (
    Interval,
    Job,
    LogObserver,
    MissedRunPolicy,
    Scheduler,
    SchedulerConfig,
    SqliteStateStore,
    TaskContext,
)


async def refresh_cache(ctx: TaskContext) -> None:
    print(f"run {ctx.run.trigger_count} for {ctx.run.scheduled_at:%H:%M:%S.%f} (catch-up: {ctx.run.catch_up})")


async def main(path: str) -> None:
    logging.basicConfig(level=logging.WARNING)
    job = Job(
        "cache-refresh",
        Interval(timedelta(milliseconds=200)),
        refresh_cache,
        max_runs=3,
        missed_run_policy=MissedRunPolicy.CATCH_UP_ONCE,
    )
    store = SqliteStateStore(path)
    try:
        report = await Scheduler(SchedulerConfig(timezone="UTC"), store, observer=LogObserver()).run(job)
    finally:
        await store.aclose()
    print(f"stopped: {report.stop_reason.value}, runs: {len(report.history)}, next: {report.state.next_run_at}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "quickstart.db"))
