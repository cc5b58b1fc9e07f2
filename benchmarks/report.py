"""Markdown tables, target verdicts and the lateness plot, from the rounds' raw results."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._stats import fmt, spread

PEER_NAMES = {"lib": "scheduler", "aps": "APScheduler 3.11", "floor": "floor loop"}
PUNCTUALITY = ("punctuality/10ms", "punctuality/10ms uvloop", "punctuality/100ms", "punctuality/1s")
VALKEY_VARIANTS = ("store", "guard", "both")


def _per_round(data: dict[str, Any], fn: Callable[[dict[str, Any]], float]) -> list[float]:
    """``fn`` applied to every round that has the needed keys."""
    values = []
    for rnd in data["rounds"]:
        try:
            values.append(fn(rnd))
        except KeyError:
            continue
    return values


def _cell(data: dict[str, Any], fn: Callable[[dict[str, Any]], float], digits: int = 1) -> str:
    values = _per_round(data, fn)
    return fmt(spread(values), digits) if values else "n/a"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _punctuality(data: dict[str, Any]) -> str:
    rows = []
    for key in PUNCTUALITY:
        for peer in PEER_NAMES:

            def get(metric: str, k: str = key, p: str = peer) -> Callable[[dict[str, Any]], float]:
                return lambda r: r[k][p][metric]

            if not _per_round(data, get("p50_us")):
                continue
            early = sum(_per_round(data, get("early")))
            rows.append(
                [
                    key.split("/")[1],
                    PEER_NAMES[peer],
                    _cell(data, get("p50_us")),
                    _cell(data, get("p99_us")),
                    _cell(data, get("max_us"), 0),
                    f"{early:.0f}",
                    _cell(data, get("mean_period_ms"), 3),
                    _cell(data, get("cpu_pct"), 2),
                ]
            )
    header = ["period", "peer", "lateness p50 µs", "p99 µs", "max µs", "early (all rounds)", "mean period ms", "CPU %"]
    ratios = []
    for key in PUNCTUALITY:
        for metric in ("p50_us", "p99_us"):
            cell = _cell(data, lambda r, k=key, m=metric: r[k]["aps"][m] / r[k]["lib"][m], 2)
            ratios.append([key.split("/")[1], f"APScheduler / scheduler, {metric[:3]}", cell])
            cell = _cell(data, lambda r, k=key, m=metric: r[k]["floor"][m] / r[k]["lib"][m], 2)
            ratios.append([key.split("/")[1], f"floor / scheduler, {metric[:3]}", cell])
    return (
        _table(header, rows)
        + "\n\nPer-round ratios (higher = scheduler better):\n\n"
        + _table(["period", "ratio", "median (min–max)"], ratios)
    )


def _overhead(data: dict[str, Any]) -> str:
    rows = [
        [
            PEER_NAMES[p],
            f"{r0['overhead'][p]['interval_s'] * 1e6:g} µs" if (r0 := data["rounds"][0]).get("overhead") else "",
            _cell(data, lambda r, p=p: r["overhead"][p]["runs_per_s"], 0),
            _cell(data, lambda r, p=p: r["overhead"][p]["cpu_us_per_run"], 2),
        ]
        for p in PEER_NAMES
    ]
    ratios = [
        [
            "scheduler runs/s ÷ APScheduler runs/s",
            _cell(data, lambda r: r["overhead"]["lib"]["runs_per_s"] / r["overhead"]["aps"]["runs_per_s"], 2),
        ],
        [
            "scheduler CPU/run ÷ floor CPU/run",
            _cell(data, lambda r: r["overhead"]["lib"]["cpu_us_per_run"] / r["overhead"]["floor"]["cpu_us_per_run"], 2),
        ],
    ]
    return (
        _table(["peer", "interval", "runs/s", "CPU µs per run"], rows)
        + "\n\n"
        + _table(["per-round ratio", "median (min–max)"], ratios)
    )


def _valkey_added_rt(r: dict[str, Any], variant: str) -> float:
    v = r["valkey"]
    return (v[variant]["per_run_us"] - v["base"]["per_run_us"]) / v[variant]["set_mean_us"]


def _valkey(data: dict[str, Any]) -> str:
    rows = [["in-memory, no guard (base)", _cell(data, lambda r: r["valkey"]["base"]["per_run_us"]), "0", "–", "–"]]
    for v in VALKEY_VARIANTS:
        rows.append(
            [
                {"store": "ValkeyStateStore", "guard": "ValkeyExecutionGuard", "both": "store + guard"}[v],
                _cell(data, lambda r, v=v: r["valkey"][v]["per_run_us"]),
                _cell(data, lambda r, v=v: r["valkey"][v]["commands_per_run"], 2),
                _cell(data, lambda r, v=v: r["valkey"][v]["per_run_us"] - r["valkey"]["base"]["per_run_us"]),
                _cell(data, lambda r, v=v: _valkey_added_rt(r, v), 2),
            ]
        )
    rtt = _cell(data, lambda r: statistics.median(x["set_mean_us"] for x in r["valkey"].values()))
    p50 = _cell(data, lambda r: statistics.median(x["set_p50_us"] for x in r["valkey"].values()))
    header = ["variant", "µs per run", "Valkey calls per run", "added µs", "added, in SET round trips"]
    return _table(header, rows) + f"\n\nOne SET round trip (300 B, same processes): mean {rtt} µs, p50 {p50} µs."


def _downtime(data: dict[str, Any]) -> str:
    keys = data["rounds"][0].get("downtime", {})
    rows = []
    for key in keys:

        def get(m: str, k: str = key) -> Callable[[dict[str, Any]], float]:
            return lambda r: r["downtime"][k][m]

        rows.append(
            [
                key.replace("/", " / "),
                f"{keys[key]['consumed']:,}",
                _cell(data, get("decide_us"), 1),
                _cell(data, get("full_start_ms"), 3),
                f"{keys[key]['peak_bytes_1d']:,} / {keys[key]['peak_bytes_365d']:,}",
                f"{keys[key]['start_peak_bytes_1d']:,} / {keys[key]['start_peak_bytes_365d']:,}",
            ]
        )
    header = [
        "schedule / policy",
        "occurrences consumed",
        "decide() µs",
        "full start → first decision ms",
        "decide() peak B (1 d / 365 d)",
        "full start peak B (1 d / 365 d)",
    ]
    return _table(header, rows)


def _footprint(data: dict[str, Any]) -> str:
    rss = [
        [
            PEER_NAMES[p],
            _cell(data, lambda r, p=p: r["rss"][p]["rss_before_kib"], 0),
            _cell(data, lambda r, p=p: r["rss"][p]["growth_kib"], 0),
            _cell(data, lambda r, p=p: r["rss"][p]["growth_after_warm_kib"], 0),
            _cell(data, lambda r, p=p: r["rss"][p]["seconds"], 2),
        ]
        for p in PEER_NAMES
    ]
    runs = data["rounds"][0]["rss"]["lib"]["runs"] if data["rounds"][0].get("rss") else 0
    labels = [k for k in data["rounds"][0].get("footprint", {}) if k != "redis_imported"]
    imports = [
        [
            f"`{k}`",
            _cell(data, lambda r, k=k: r["footprint"][k], 1),
            _cell(data, lambda r, k=k: r["footprint"][k] / r["footprint"]["import asyncio"], 2),
        ]
        for k in labels
    ]
    redis = any(r.get("footprint", {}).get("redis_imported") for r in data["rounds"])
    return (
        _table(
            ["peer", "RSS before KiB", f"growth over {runs:,} runs KiB", "growth after the first 1 % KiB", "seconds"],
            rss,
        )
        + "\n\n"
        + _table(["command (fresh interpreter)", "wall ms", "÷ `import asyncio` (per round)"], imports)
        + f"\n\n`redis` imported by the core API and an in-memory run: **{'yes' if redis else 'no'}**."
    )


def render(data: dict[str, Any]) -> str:
    parts = []
    sections = [
        ("1. Punctuality", _punctuality, "punctuality/10ms"),
        ("2. Overhead", _overhead, "overhead"),
        ("3. Valkey", _valkey, "valkey"),
        ("4. Downtime", _downtime, "downtime"),
        ("5. Footprint", _footprint, "footprint"),
    ]
    for title, fn, key in sections:
        if data["rounds"] and key in data["rounds"][0]:
            parts.append(f"### {title}\n\n{fn(data)}")
    from .verdicts import verdicts

    return "\n\n".join(["### Targets\n\n" + verdicts(data), *parts]) + "\n"


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in PUNCTUALITY if data["rounds"] and k in data["rounds"][0]]
    if not keys:
        return
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.8), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        for peer, name in PEER_NAMES.items():
            samples = sorted(v for r in data["rounds"] for v in r[key][peer]["samples_us"])
            ys = [100.0 * (i + 1) / len(samples) for i in range(len(samples))]
            ax.plot(samples, ys, label=name, drawstyle="steps-post")
        ax.set_xscale("symlog", linthresh=10)
        ax.set_title(key.split("/")[1] + " period")
        ax.set_xlabel("lateness µs (all rounds)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("cumulative % of starts")
    axes[0][0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def document(data: dict[str, Any], markdown: str) -> str:
    from .narrative import document as narrative

    return narrative(data, markdown)
