"""One round of every scenario; each returns ``{label: result}`` for the round.

Peers alternate: ``order`` is rotated every round by the caller. Every peer in one comparison
runs the same schedule (same interval, every occurrence its own run).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from ._run import PYTHON, ROOT, python_says, wall_seconds, worker, workers_concurrently

#: Lateness peers: the scheduler, APScheduler 3 and 4, the ``call_at`` floor, the spin floor.
PUNCTUALITY_PEERS = ("lib", "aps3", "aps4", "floor", "spin")
#: CPU peers: the scheduler as configured by default, with an observer and with SQLite, the
#: two APScheduler versions and the ``call_at`` floor.
OVERHEAD_PEERS = ("lib", "lib_observer", "lib_sqlite", "aps3", "aps4", "floor")
#: Shorter than any peer's cost per run: every peer is saturated and runs back to back.
SATURATED_INTERVAL_S = 5e-6
#: Long enough for the scheduler and APScheduler 3 to keep pace: compared as CPU % of a core.
PACED_INTERVAL_S = 1e-3
PUNCTUALITY_ROWS = {
    # label: (period s, sizes key, event loop)
    "10ms": (0.01, "n10ms", "asyncio"),
    "10ms uvloop": (0.01, "n10ms", "uvloop"),
    "100ms": (0.1, "n100ms", "asyncio"),
    "100ms uvloop": (0.1, "n100ms", "uvloop"),
    "1s": (1.0, "n1s", "asyncio"),
}
FULL = {
    "n10ms": 400,
    # p99 of 400 lies between the 4th and 5th latest starts (250: the 3rd and 4th), so one
    # stall of the machine moves it less; 400 keeps the whole run near a quarter of an hour.
    "n100ms": 400,
    "n1s": 60,
    "stagger_s": 3.0,
    "warmup_s": 0.3,
    "window_s": 1.5,
    "rss_runs": 100_000,
    "valkey_runs": 2000,
    "ledger_runs": 2000,
    "decide_repeats": 100,
    "import_reps": 10,
    "cold_import_reps": 3,
    "cli_reps": 5,
}
QUICK = {
    "n10ms": 30,
    "n100ms": 5,
    "n1s": 2,
    "stagger_s": 1.0,
    "warmup_s": 0.05,
    "window_s": 0.2,
    "rss_runs": 2000,
    "valkey_runs": 100,
    "ledger_runs": 100,
    "decide_repeats": 5,
    "import_reps": 1,
    "cold_import_reps": 1,
    "cli_reps": 1,
}


def _python(peer: str, aps4: str | None) -> str | None:
    """The interpreter a peer's worker runs in (APScheduler 4 has its own virtualenv)."""
    return aps4 if peer == "aps4" else PYTHON


def punctuality(order: list[str], row: str, sizes: dict[str, Any], aps4: str | None) -> dict[str, Any]:
    """Periods under 50 ms run the peers one after another. Longer ones run them at once, to
    keep the run short: each is idle > 99 % of the time, and each is given its own phase (the
    first occurrence of the i-th peer falls ``i * period / len(peers)`` after the first
    peer's), so no two peers' wake-ups and runs fall in the same millisecond. ``stagger_s``
    leaves every worker time to start and load its library before its phase."""
    period, count_key, loop = PUNCTUALITY_ROWS[row]
    peers = [p for p in order if p in PUNCTUALITY_PEERS and (p != "aps4" or aps4)]
    params = {"period": period, "count": sizes[count_key], "loop": loop}
    if period < 0.05:
        return {p: worker("punctuality", {"peer": p, **params}, python=_python(p, aps4)) for p in peers}
    start = time.time() + sizes["stagger_s"]
    jobs = [
        ("punctuality", {"peer": p, **params, "start_at": start + i * period / len(peers)}, _python(p, aps4))
        for i, p in enumerate(peers)
    ]
    return dict(zip(peers, workers_concurrently(jobs), strict=True))


def overhead(order: list[str], interval_s: float, sizes: dict[str, Any], aps4: str | None) -> dict[str, Any]:
    params = {"interval_s": interval_s, "warmup_s": sizes["warmup_s"], "window_s": sizes["window_s"]}
    peers = [p for p in order if p in OVERHEAD_PEERS and (p != "aps4" or aps4)]
    return {p: worker("overhead", {"peer": p, **params}, python=_python(p, aps4)) for p in peers}


def rss(order: list[str], runs: int) -> dict[str, Any]:
    peers = [p for p in order if p in ("lib", "aps3", "floor")]
    return {p: worker("rss", {"peer": p, "interval_s": SATURATED_INTERVAL_S, "runs": runs}) for p in peers}


def valkey(url: str, runs: int) -> dict[str, Any]:
    variants = ["base", "store", "guard", "both"]
    return {v: worker("valkey", {"variant": v, "url": url, "runs": runs, "set_ops": 2000}) for v in variants}


#: Valkey protocols: the scheduler's store, guard, both on one server (combined scripts), both
#: on separate databases (per-component calls), and two bare scripts per run (the floor).
PROTOCOL_VARIANTS = ("store", "guard", "combined", "per-component", "floor")
LEDGER_BACKENDS = ("sqlite", "valkey")
#: ``ledger_limit`` without the ledger and with the default.
LEDGER_LIMITS = (0, 1000)


def valkey_protocol(index: int, url: str, runs: int) -> dict[str, Any]:
    """Wall time and client CPU per run of each protocol; the first variant rotates per round."""
    shift = index % len(PROTOCOL_VARIANTS)
    order = PROTOCOL_VARIANTS[shift:] + PROTOCOL_VARIANTS[:shift]
    params = {"url": url, "runs": runs, "warmup": min(50, runs)}
    return {v: worker("valkey_protocol", {"variant": v, **params}) for v in order}


def ledger(index: int, url: str | None, runs: int) -> dict[str, Any]:
    """Cost per run without and with the run ledger, for SQLite and (with a server) Valkey;
    which of the two goes first alternates per round."""
    limits = LEDGER_LIMITS if index % 2 == 0 else LEDGER_LIMITS[::-1]
    out: dict[str, Any] = {}
    for backend in LEDGER_BACKENDS:
        if backend == "valkey" and url is None:
            continue
        params = {"backend": backend, "runs": runs, "url": url, "warmup": min(50, runs)}
        found = {limit: worker("ledger", {**params, "ledger_limit": limit}) for limit in limits}
        out[backend] = {"without": found[0], "with": found[1000]}
    return out


def downtime(repeats: int) -> dict[str, Any]:
    result: dict[str, Any] = worker("downtime", {"repeats": repeats})
    return result


CORE_API = "from scheduler import Scheduler, Job, Interval, Cron"
IMPORTS = {
    "python -c pass": "pass",
    "import asyncio": "import asyncio",
    "import scheduler": "import scheduler",
    CORE_API: CORE_API,
    "import apscheduler.schedulers.asyncio": "import apscheduler.schedulers.asyncio",
}
CLI = [
    str(Path(PYTHON).parent / "scheduler"),
    *("run", "--job-id", "x", "--every", "10ms", "--max-runs", "1", "--state", "memory:", "--", "true"),
]
#: Runs one no-op async job in memory, then says which heavy modules got imported.
PROBE = f"""
import sys
{CORE_API}, InMemoryStateStore

async def task(ctx):
    return None

Scheduler(store=InMemoryStateStore()).run_sync(Job("x", Interval(0.001), task, max_runs=1))
print("pydantic" in sys.modules, "redis" in sys.modules)
"""


#: The environment of warm runs: a PYTHONDONTWRITEBYTECODE inherited from the shell would leave
#: modules without cached bytecode, compiled again in every "warm" run.
WARM_ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def footprint(sizes: dict[str, Any]) -> dict[str, Any]:
    """Median wall ms per statement in fresh interpreters (statements interleaved), warm (with
    the bytecode cache) and cold (no bytecode cache: every module, the standard library's too,
    compiled from source), the CLI's time to run a job once, and what an in-memory run imports."""
    warm: dict[str, list[float]] = {label: [] for label in IMPORTS}
    cold: dict[str, list[float]] = {label: [] for label in IMPORTS}
    for code in IMPORTS.values():  # warm means cached: write the bytecode of every module first
        wall_seconds([PYTHON, "-c", code], env=WARM_ENV)
    for _ in range(sizes["import_reps"]):
        for label, code in IMPORTS.items():
            warm[label].append(wall_seconds([PYTHON, "-c", code], env=WARM_ENV) * 1e3)
    with tempfile.TemporaryDirectory(prefix="bench-nopyc-") as empty:
        env = {**os.environ, "PYTHONPYCACHEPREFIX": empty, "PYTHONDONTWRITEBYTECODE": "1"}
        for _ in range(sizes["cold_import_reps"]):
            for label, code in IMPORTS.items():
                cold[label].append(wall_seconds([PYTHON, "-c", code], env=env) * 1e3)
    pydantic, redis = python_says(PROBE).split()
    return {
        "import_self_ms_by_package": import_profile(CORE_API),
        "warm": {label: statistics.median(v) for label, v in warm.items()},
        "cold": {label: statistics.median(v) for label, v in cold.items()},
        "cli_ms": statistics.median(wall_seconds(CLI) * 1e3 for _ in range(sizes["cli_reps"])),
        "pydantic_imported": pydantic == "True",
        "redis_imported": redis == "True",
    }


def import_profile(statement: str) -> dict[str, float]:
    """Self import time (ms, warm, ``-X importtime``) summed by top-level package, largest first."""
    done = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", statement],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=WARM_ENV,
    )
    by_package: dict[str, float] = {}
    for line in done.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[0].strip().isdigit():
            continue
        package = parts[2].strip().split(".")[0]
        by_package[package] = by_package.get(package, 0.0) + int(parts[0]) / 1000
    return {k: round(v, 1) for k, v in sorted(by_package.items(), key=lambda kv: -kv[1])[:10]}
