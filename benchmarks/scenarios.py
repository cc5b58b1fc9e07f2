"""One round of every scenario; each returns ``{label: result}`` for the round.

Peers alternate: ``order`` is rotated every round by the caller.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from ._run import PYTHON, python_says, wall_seconds, worker, workers_concurrently

PEERS = ("lib", "aps", "floor")
#: Smallest interval each peer sustains: the library and the floor accept 1 µs; APScheduler
#: accepts 1 µs too but stalls there (it iterates every missed run time), so it gets 10 µs.
MAX_RATE_INTERVAL = {"lib": 1e-6, "aps": 1e-5, "floor": 1e-6}
FULL = {
    "n10ms": 1000,
    "n100ms": 1000,
    "n1s": 20,
    "window": 3.0,
    "rss_runs": 100_000,
    "valkey_runs": 2000,
    "decide_repeats": 100,
    "import_reps": 15,
    "cli_reps": 10,
}
QUICK = {
    "n10ms": 150,
    "n100ms": 20,
    "n1s": 3,
    "window": 0.5,
    "rss_runs": 5000,
    "valkey_runs": 200,
    "decide_repeats": 10,
    "import_reps": 2,
    "cli_reps": 1,
}


def punctuality(order: list[str], period: float, count: int, loop: str = "asyncio") -> dict[str, Any]:
    """Short periods run peers one after another; long ones run them at once, phase-staggered
    by a third of the period (they are idle >99% of the time), to keep the run under 15 min."""
    if period < 0.05:
        return {p: worker("punctuality", {"peer": p, "period": period, "count": count, "loop": loop}) for p in order}
    start = time.time() + 3.0
    jobs = [
        ("punctuality", {"peer": p, "period": period, "count": count, "loop": loop, "start_at": start + i * period / 3})
        for i, p in enumerate(order)
    ]
    return dict(zip(order, workers_concurrently(jobs), strict=True))


def overhead(order: list[str], window: float) -> dict[str, Any]:
    return {
        p: worker("overhead", {"peer": p, "interval_s": MAX_RATE_INTERVAL[p], "warmup_s": 0.5, "window_s": window})
        for p in order
    }


def rss(order: list[str], runs: int) -> dict[str, Any]:
    return {p: worker("rss", {"peer": p, "interval_s": MAX_RATE_INTERVAL[p], "runs": runs}) for p in order}


def valkey(url: str, runs: int) -> dict[str, Any]:
    variants = ["base", "store", "guard", "both"]
    return {v: worker("valkey", {"variant": v, "url": url, "runs": runs, "set_ops": 2000}) for v in variants}


def downtime(repeats: int) -> dict[str, Any]:
    result: dict[str, Any] = worker("downtime", {"repeats": repeats})
    return result


IMPORTS = {
    "python -c pass": "pass",
    "import asyncio": "import asyncio",
    "import scheduler": "import scheduler",
    "from scheduler import <core API>": "from scheduler import Scheduler, SchedulerConfig, Job, Interval, Cron, "
    "InMemoryStateStore, MissedRunPolicy, JobState",
    "import apscheduler (AsyncIOScheduler)": "import apscheduler.schedulers.asyncio",
}
CLI = [
    str(Path(PYTHON).parent / "scheduler"),
    "run",
    "--job-id",
    "x",
    "--every",
    "10ms",
    "--max-runs",
    "1",
    "--state",
    "memory:",
    "--",
    "true",
]


def footprint(reps: int, cli_reps: int) -> dict[str, Any]:
    """Median wall ms per statement in fresh interpreters (statements interleaved), the CLI's
    time to run a job once at 10 ms, and whether redis got imported."""
    samples: dict[str, list[float]] = {label: [] for label in IMPORTS}
    for _ in range(reps):
        for label, code in IMPORTS.items():
            samples[label].append(wall_seconds([PYTHON, "-c", code]) * 1e3)
    out: dict[str, Any] = {label: statistics.median(values) for label, values in samples.items()}
    out["cli run --every 10ms --max-runs 1"] = statistics.median(wall_seconds(CLI) * 1e3 for _ in range(cli_reps))
    probe = (
        f"import sys; {IMPORTS['from scheduler import <core API>']}; "
        "Scheduler().run_sync(Job('x', Interval(0.001), lambda ctx: None, max_runs=1)); print('redis' in sys.modules)"
    )
    out["redis_imported"] = python_says(probe) == "True"
    return out
