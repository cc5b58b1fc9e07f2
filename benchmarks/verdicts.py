"""Issue 5's targets, each checked against the rounds of one run (ratios per round)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._stats import fmt, spread
from .report import _per_round, _table, _valkey_added_rt

Check = tuple[str, Callable[[dict[str, Any]], float], Callable[[float, float], bool], int, str]


def _all_downtime(r: dict[str, Any], metric: str) -> float:
    return max(v[metric] for v in r["downtime"].values())


def _memory_ratio(r: dict[str, Any]) -> float:
    d = r["downtime"].values()
    return max(
        max(v["peak_bytes_365d"] / v["peak_bytes_1d"], v["start_peak_bytes_365d"] / v["start_peak_bytes_1d"]) for v in d
    )


def _early(r: dict[str, Any]) -> float:
    keys = ("punctuality/10ms", "punctuality/10ms uvloop", "punctuality/100ms", "punctuality/1s")
    return sum(r[k]["lib"]["early"] for k in keys)


#: (target, per-round figure, test on (min, max) over rounds, digits, unit)
CHECKS: list[Check] = [
    ("never early (asyncio and uvloop, every start of every round)", _early, lambda lo, hi: hi == 0, 0, "early starts"),
    (
        "p99 ≥ 2× lower than APScheduler at 100 ms",
        lambda r: r["punctuality/100ms"]["aps"]["p99_us"] / r["punctuality/100ms"]["lib"]["p99_us"],
        lambda lo, hi: lo >= 2,
        2,
        "× (APS p99 ÷ ours)",
    ),
    (
        "p99 ≥ 2× lower than APScheduler at 1 s",
        lambda r: r["punctuality/1s"]["aps"]["p99_us"] / r["punctuality/1s"]["lib"]["p99_us"],
        lambda lo, hi: lo >= 2,
        2,
        "× (APS p99 ÷ ours)",
    ),
    (
        "10 ms: mean period within 0.1 ms of 10 ms",
        lambda r: abs(r["punctuality/10ms"]["lib"]["mean_period_ms"] - 10.0),
        lambda lo, hi: hi <= 0.1,
        4,
        "ms off",
    ),
    (
        "10 ms: no systematic 1 ms oversleep (p50 lateness < 1 ms)",
        lambda r: r["punctuality/10ms"]["lib"]["p50_us"],
        lambda lo, hi: hi < 1000,
        0,
        "µs p50",
    ),
    (
        "idle CPU waiting for a 1 s schedule < 1 % of a core",
        lambda r: r["punctuality/1s"]["lib"]["cpu_pct"],
        lambda lo, hi: hi < 1,
        3,
        "% CPU",
    ),
    (
        "runs/s ≥ 2× APScheduler's",
        lambda r: r["overhead"]["lib"]["runs_per_s"] / r["overhead"]["aps"]["runs_per_s"],
        lambda lo, hi: lo >= 2,
        2,
        "×",
    ),
    (
        "CPU per run ≤ 2× the floor loop's",
        lambda r: r["overhead"]["lib"]["cpu_us_per_run"] / r["overhead"]["floor"]["cpu_us_per_run"],
        lambda lo, hi: hi <= 2,
        2,
        "×",
    ),
    (
        "Valkey store + guard add ≤ 2 round trips per run",
        lambda r: _valkey_added_rt(r, "both"),
        lambda lo, hi: hi <= 2,
        2,
        "SET round trips",
    ),
    (
        "downtime: decide() < 10 ms (every schedule and policy)",
        lambda r: _all_downtime(r, "decide_us") / 1000,
        lambda lo, hi: hi < 10,
        3,
        "ms (worst case)",
    ),
    (
        "downtime: full start to first decision < 10 ms",
        lambda r: _all_downtime(r, "full_start_ms"),
        lambda lo, hi: hi < 10,
        3,
        "ms (worst case)",
    ),
    (
        "downtime: memory independent of missed occurrences (365 d ÷ 1 d peak ≤ 1.1)",
        _memory_ratio,
        lambda lo, hi: hi <= 1.1,
        2,
        "× (worst case)",
    ),
    (
        "RSS growth over 100,000 runs < 1 MiB (after the first 1 %)",
        lambda r: r["rss"]["lib"]["growth_after_warm_kib"] / 1024,
        lambda lo, hi: hi < 1,
        3,
        "MiB",
    ),
    (
        "`import scheduler` ≤ 1.5× `import asyncio`",
        lambda r: r["footprint"]["import scheduler"] / r["footprint"]["import asyncio"],
        lambda lo, hi: hi <= 1.5,
        2,
        "×",
    ),
    (
        "`from scheduler import <core API>` ≤ 1.5× `import asyncio` (stricter reading)",
        lambda r: r["footprint"]["from scheduler import <core API>"] / r["footprint"]["import asyncio"],
        lambda lo, hi: hi <= 1.5,
        2,
        "×",
    ),
    (
        "redis never imported",
        lambda r: float(r["footprint"]["redis_imported"]),
        lambda lo, hi: hi == 0,
        0,
        "(1 = imported)",
    ),
]


def verdicts(data: dict[str, Any]) -> str:
    rows = []
    for target, fn, test, digits, unit in CHECKS:
        values = _per_round(data, fn)
        if not values:
            continue
        s = spread(values)
        met = "**met**" if test(s["min"], s["max"]) else "**missed**"
        rows.append([target, f"{fmt(s, digits)} {unit}", met])
    return _table(["target", "figure: median (min–max over rounds)", "verdict"], rows)
