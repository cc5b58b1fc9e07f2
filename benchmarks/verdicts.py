"""The performance targets, each judged on the rounds of one run.

A target's figure is computed inside each round (ratios between peers that ran in the same
round), then summarised as median (min–max). Verdict: **met** when every round is on the right
side of the threshold, **unstable** when the median is but some round is not, **missed** when
the median is not.
"""

from __future__ import annotations

import operator
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._stats import fmt, spread
from .report import Figure, per_round, protocol_ratio, table, valkey_added_rt


@dataclass(frozen=True)
class Target:
    key: str
    label: str
    figure: Figure
    compare: Callable[[float, float], bool]
    threshold: float
    digits: int
    unit: str


def _lib_over(row: str, peer: str, metric: str) -> Figure:
    return lambda r: r[f"punctuality/{row}"]["lib"][metric] / r[f"punctuality/{row}"][peer][metric]


def _cpu(key: str, base: str, metric: str) -> Figure:
    return lambda r: r[key]["lib"][metric] / r[key][base][metric]


def _early(r: dict[str, Any]) -> float:
    rows = [k for k in r if k.startswith("punctuality/")]
    if not rows:
        raise KeyError("punctuality")
    return float(sum(r[k]["lib"]["early"] for k in rows))


def _all_downtime(r: dict[str, Any], metric: str) -> float:
    return float(max(v[metric] for v in r["downtime"].values()))


def _memory_ratio(r: dict[str, Any]) -> float:
    ratios = []
    for v in r["downtime"].values():
        ratios.append(v["start_peak_bytes_365d"] / v["start_peak_bytes_1d"])
        if "peak_bytes_1d" in v:
            ratios.append(v["peak_bytes_365d"] / v["peak_bytes_1d"])
    return float(max(ratios))


def _import_ratio(kind: str) -> Figure:
    from .scenarios import CORE_API

    return lambda r: r["footprint"][kind][CORE_API] / r["footprint"][kind]["import asyncio"]


LE, LT, GE, EQ = operator.le, operator.lt, operator.ge, operator.eq
TARGETS = [
    Target(
        "cpu_per_run",
        "CPU per run (in memory, async no-op, every occurrence runs) ≤ 1.5× the `call_at` floor's",
        _cpu("overhead/saturated", "floor", "cpu_us_per_run"),
        LE,
        1.5,
        2,
        "×",
    ),
    Target(
        "cpu_paced",
        "CPU % at a 1 ms interval lower than APScheduler 3 (coalesce=False)",
        _cpu("overhead/paced", "aps3", "cpu_pct"),
        LT,
        1.0,
        2,
        "×",
    ),
    Target(
        "p50_100ms",
        "100 ms: lateness p50 ≤ 2.5× the spin floor's",
        _lib_over("100ms", "spin", "p50_us"),
        LE,
        2.5,
        2,
        "×",
    ),
    Target(
        "p99_100ms",
        "100 ms: lateness p99 ≤ 1/3 of APScheduler 3's",
        _lib_over("100ms", "aps3", "p99_us"),
        LE,
        1 / 3,
        3,
        "×",
    ),
    Target("never_early", "never early (asyncio and uvloop, every start)", _early, EQ, 0, 0, "early starts"),
    Target(
        "p95_1s",
        "1 s: lateness p95 ≤ 1/2 of APScheduler 3's",
        _lib_over("1s", "aps3", "p95_us"),
        LE,
        0.5,
        3,
        "×",
    ),
    Target(
        "max_1s",
        "1 s: lateness max ≤ 1/2 of APScheduler 3's",
        _lib_over("1s", "aps3", "max_us"),
        LE,
        0.5,
        3,
        "×",
    ),
    Target(
        "cpu_10ms",
        "CPU at a 10 ms period ≤ 2× APScheduler 3's",
        _lib_over("10ms", "aps3", "cpu_pct"),
        LE,
        2,
        2,
        "×",
    ),
    Target(
        "idle_cpu_1s",
        "CPU waiting for a 1 s schedule < 1 % of a core",
        lambda r: r["punctuality/1s"]["lib"]["cpu_pct"],
        LT,
        1,
        3,
        "% CPU",
    ),
    Target(
        "period_10ms",
        "10 ms: mean period within 0.1 ms of 10 ms",
        lambda r: abs(r["punctuality/10ms"]["lib"]["mean_period_ms"] - 10.0),
        LE,
        0.1,
        4,
        "ms off",
    ),
    Target(
        "import_warm",
        "`from scheduler import Scheduler, Job, Interval, Cron` ≤ 1.5× `import asyncio`, warm",
        _import_ratio("warm"),
        LE,
        1.5,
        2,
        "×",
    ),
    Target(
        "import_cold",
        "the same, cold (no bytecode cache)",
        _import_ratio("cold"),
        LE,
        1.5,
        2,
        "×",
    ),
    Target(
        "no_pydantic",
        "an in-memory run does not import pydantic",
        lambda r: float(r["footprint"]["pydantic_imported"]),
        EQ,
        0,
        0,
        "(1 = imported)",
    ),
    Target(
        "no_redis",
        "an in-memory run does not import redis",
        lambda r: float(r["footprint"]["redis_imported"]),
        EQ,
        0,
        0,
        "(1 = imported)",
    ),
    Target(
        "valkey_rt",
        "Valkey store + guard add ≤ 2 round trips per run",
        lambda r: valkey_added_rt(r, "both"),
        LE,
        2,
        2,
        "SET round trips",
    ),
    Target(
        "valkey_vs_floor",
        "Valkey store + guard on one server: wall time per run ≤ 1.25× the two-script floor's",
        lambda r: protocol_ratio(r, "combined", "floor"),
        LE,
        1.25,
        2,
        "×",
    ),
    Target(
        "valkey_vs_per_component",
        "Valkey store + guard on one server ≥ 1.5× faster than the per-component calls",
        lambda r: protocol_ratio(r, "per-component", "combined"),
        GE,
        1.5,
        2,
        "× faster",
    ),
    Target(
        "decide",
        "downtime: decide() < 10 ms (every schedule and policy)",
        lambda r: _all_downtime(r, "decide_us") / 1000,
        LT,
        10,
        3,
        "ms (worst case)",
    ),
    Target(
        "full_start",
        "downtime: full start to first decision < 10 ms",
        lambda r: _all_downtime(r, "full_start_ms"),
        LT,
        10,
        3,
        "ms (worst case)",
    ),
    Target(
        "downtime_memory",
        "downtime: memory independent of missed occurrences (365 d ÷ 1 d peak ≤ 1.1)",
        _memory_ratio,
        LE,
        1.1,
        2,
        "× (worst case)",
    ),
    Target(
        "rss",
        "RSS growth over 100,000 runs < 1 MiB (after the first 1 %)",
        lambda r: r["rss"]["lib"]["growth_after_warm_kib"] / 1024,
        LT,
        1,
        3,
        "MiB",
    ),
]


def judge(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target that the run measured: its per-round values, spread and verdict."""
    out = []
    for target in TARGETS:
        values = per_round(data, target.figure)
        if not values:
            continue
        ok = [target.compare(v, target.threshold) for v in values]
        middle = statistics.median(values)
        verdict = "met" if all(ok) else "unstable" if target.compare(middle, target.threshold) else "missed"
        out.append({"target": target, "values": values, "spread": spread(values), "verdict": verdict})
    return out


def verdicts(data: dict[str, Any]) -> str:
    rows = [
        [j["target"].label, f"{fmt(j['spread'], j['target'].digits)} {j['target'].unit}", f"**{j['verdict']}**"]
        for j in judge(data)
    ]
    return table(["target", "figure: median (min–max over rounds)", "verdict"], rows)
