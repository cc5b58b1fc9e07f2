"""The run ledger's cost per run: ``python -m benchmarks.ledger [--runs N] [--rounds R] [--url URL]``.

For SQLite (a file in a temporary directory) and Valkey (a loopback server started here unless
``--url`` names one), the same job runs with ``ledger_limit=0`` (no ledger) and with the
default 1000. Runs are strictly sequential (REPLAY_ALL over a 1 µs interval: every occurrence
is due at once and each run waits for the previous one), so wall time per run is what one run
costs; the difference between the two is the ledger's cost per run. Rounds alternate which
variant goes first; the report gives the median and the min–max over rounds. ``make bench``
runs ``measure`` once per variant in a fresh interpreter (``benchmarks.worker ledger``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any


async def _per_run_us(backend: str, ledger_limit: int, runs: int, target: str) -> float:
    from scheduler import Interval, Job, MissedRunPolicy, Scheduler, SchedulerConfig, SqliteStateStore, ValkeyStateStore

    store: Any
    if backend == "sqlite":
        store = SqliteStateStore(Path(target) / f"{uuid.uuid4().hex}.db")
    else:
        store = ValkeyStateStore(target, prefix=f"bench:ledger:{uuid.uuid4().hex}:")

    async def task(ctx: Any) -> None:
        return None

    job = Job(
        "bench-ledger",
        Interval(timedelta(microseconds=1)),
        task,
        max_runs=runs,
        missed_run_policy=MissedRunPolicy.REPLAY_ALL,
    )
    scheduler = Scheduler(SchedulerConfig(ledger_limit=ledger_limit), store=store)
    try:
        t0 = time.perf_counter()
        await scheduler.run(job)
        wall = time.perf_counter() - t0
        if ledger_limit:
            entries = await store.history("bench-ledger", limit=runs + 1)
            assert len(entries) >= min(runs, ledger_limit), f"{len(entries)} entries for {runs} runs"
    finally:
        await store.aclose()
    return wall / runs * 1e6


async def measure(
    backend: str, ledger_limit: int, runs: int, url: str | None = None, warmup: int = 50
) -> dict[str, Any]:
    """Wall time and CPU per run of one variant, after ``warmup`` runs of the same variant
    (imports done, scripts loaded, the database file's first pages written)."""
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as directory:
        target = directory if backend == "sqlite" else url
        assert target is not None, "a Valkey URL is needed"
        await _per_run_us(backend, ledger_limit, warmup, target)
        cpu = time.process_time()
        wall_us = await _per_run_us(backend, ledger_limit, runs, target)
        cpu_us = (time.process_time() - cpu) / runs * 1e6
    return {"backend": backend, "ledger_limit": ledger_limit, "per_run_us": wall_us, "cpu_us_per_run": cpu_us}


def measure_all(url: str, runs: int, rounds: int) -> dict[str, Any]:
    """Every variant in this process, rounds alternating which variant goes first."""
    results: dict[str, Any] = {}
    for backend in ("sqlite", "valkey"):
        samples: dict[int, list[float]] = {0: [], 1000: []}
        for index in range(rounds):
            order = (0, 1000) if index % 2 == 0 else (1000, 0)
            for limit in order:
                samples[limit].append(asyncio.run(measure(backend, limit, runs, url))["per_run_us"])
        off, on = statistics.median(samples[0]), statistics.median(samples[1000])
        results[backend] = {
            "per_run_us_without": off,
            "per_run_us_with": on,
            "ledger_us_per_run": on - off,
            "ledger_percent": (on - off) / off * 100,
            "spread_without": [min(samples[0]), max(samples[0])],
            "spread_with": [min(samples[1000]), max(samples[1000])],
        }
    return results


def render(results: dict[str, Any], runs: int, rounds: int) -> str:
    lines = [
        f"Run ledger cost per run ({runs} sequential runs, median of {rounds} rounds)",
        "",
        "| store | without ledger | with ledger | ledger cost per run |",
        "| --- | --- | --- | --- |",
    ]
    for backend, row in results.items():
        lines.append(
            f"| {backend} | {row['per_run_us_without']:.0f} µs ({row['spread_without'][0]:.0f}–"
            f"{row['spread_without'][1]:.0f}) | {row['per_run_us_with']:.0f} µs ({row['spread_with'][0]:.0f}–"
            f"{row['spread_with'][1]:.0f}) | {row['ledger_us_per_run']:+.0f} µs ({row['ledger_percent']:+.1f} %) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ledger", description=__doc__)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--url", help="a Valkey URL (default: start a loopback server)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.url:
        results = measure_all(args.url, args.runs, args.rounds)
    else:
        from ._server import ValkeyServer

        with ValkeyServer() as url:
            results = measure_all(url, args.runs, args.rounds)
    print(json.dumps(results, indent=2) if args.json else render(results, args.runs, args.rounds))


if __name__ == "__main__":
    main()
