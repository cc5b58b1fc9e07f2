"""Markdown tables and the lateness plot, from the rounds' raw results.

Every cell is the median over rounds with the min–max spread; a ratio is computed inside each
round first, then summarised the same way.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._stats import MIN_SAMPLES, fmt, spread
from .scenarios import PUNCTUALITY_ROWS

PEER_NAMES = {
    "lib": "scheduler",
    "lib_observer": "scheduler + observer",
    "lib_sqlite": "scheduler + SQLite store",
    "aps3": "APScheduler 3 (coalesce=False)",
    "aps4": "APScheduler 4 (CoalescePolicy.all)",
    "floor": "call_at floor",
    "spin": "spin floor",
}
VALKEY_VARIANTS = ("store", "guard", "both")
Figure = Callable[[dict[str, Any]], float]


def per_round(data: dict[str, Any], fn: Figure) -> list[float]:
    """``fn`` applied to every round that has the figures it needs."""
    values = []
    for rnd in data["rounds"]:
        try:
            value = fn(rnd)
        except (KeyError, TypeError, ZeroDivisionError):
            continue
        if value is not None:  # a tail percentile left out for too few samples
            values.append(float(value))
    return values


def median(data: dict[str, Any], fn: Figure) -> float | None:
    values = per_round(data, fn)
    return statistics.median(values) if values else None


def cell(data: dict[str, Any], fn: Figure, digits: int = 1) -> str:
    values = per_round(data, fn)
    return fmt(spread(values), digits) if values else "n/a"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def peers_in(data: dict[str, Any], key: str) -> list[str]:
    """Peers measured under ``key`` in any round, in the report's order."""
    seen = {p for r in data["rounds"] for p in r.get(key, {})}
    return [p for p in PEER_NAMES if p in seen]


def _tail(data: dict[str, Any], key: str, peer: str, metric: str) -> str:
    if per_round(data, lambda r: r[key][peer][metric]):
        return cell(data, lambda r: r[key][peer][metric])
    return f"(< {MIN_SAMPLES[metric]} samples: see max)"


def _punctuality(data: dict[str, Any]) -> str:
    rows = []
    for row in PUNCTUALITY_ROWS:
        key = f"punctuality/{row}"
        for peer in peers_in(data, key):

            def get(metric: str, p: str = peer, k: str = key) -> Figure:
                return lambda r: r[k][p][metric]

            rows.append(
                [
                    row,
                    PEER_NAMES[peer],
                    f"{sum(per_round(data, get('samples'))):.0f}",
                    cell(data, get("p50_us")),
                    _tail(data, key, peer, "p95_us"),
                    _tail(data, key, peer, "p99_us"),
                    cell(data, get("max_us"), 0),
                    f"{sum(per_round(data, get('early'))):.0f}",
                    cell(data, get("mean_period_ms"), 3),
                    cell(data, get("cpu_pct"), 2),
                ]
            )
    header = ["period", "peer", "starts (all rounds)", "lateness p50 µs", "p95 µs", "p99 µs", "max µs"]
    header += ["early (all rounds)", "mean period ms", "CPU %"]
    ratios = []
    for row in PUNCTUALITY_ROWS:
        key = f"punctuality/{row}"
        tails = ("p95_us", "max_us") if row == "1s" else ("p99_us",)
        for other in ("spin", "floor", "aps3", "aps4"):
            for metric in ("p50_us", *tails, "cpu_pct"):
                values = cell(data, lambda r, k=key, o=other, m=metric: r[k]["lib"][m] / r[k][o][m], 2)
                if values != "n/a":
                    ratios.append([row, f"scheduler ÷ {PEER_NAMES[other]}, {metric.split('_')[0]}", values])
    return (
        table(header, rows)
        + "\n\nPer-round ratios (below 1: the scheduler is better):\n\n"
        + table(["period", "ratio", "median (min–max)"], ratios)
    )


def _overhead(data: dict[str, Any]) -> str:
    parts = []
    for key, title, base, metric in (
        ("overhead/saturated", "Saturated (the interval is shorter than any peer's run)", "floor", "cpu_us_per_run"),
        ("overhead/paced", "Paced (an interval the scheduler and APScheduler 3 keep up with)", "aps3", "cpu_pct"),
    ):
        rows = []
        for peer in peers_in(data, key):

            def get(metric: str, p: str = peer, k: str = key) -> Figure:
                return lambda r: r[k][p][metric]

            interval = median(data, get("interval_s")) or 0.0
            rows.append(
                [
                    PEER_NAMES[peer],
                    f"{interval * 1e6:g} µs",
                    cell(data, get("runs_per_s"), 0),
                    cell(data, get("pace"), 3),
                    cell(data, get("cpu_us_per_run"), 2),
                    cell(data, get("cpu_pct"), 1),
                    cell(data, lambda r, p=peer, k=key, m=metric, b=base: r[k][p][m] / r[k][b][m], 2),
                ]
            )
        if rows:
            header = ["peer", "interval", "runs/s", "pace (1 = keeps up)", "CPU µs per run", "CPU %"]
            header.append(f"{'CPU/run' if metric == 'cpu_us_per_run' else 'CPU %'} ÷ {PEER_NAMES[base]}")
            parts.append(f"{title}:\n\n" + table(header, rows))
    return "\n\n".join(parts)


def valkey_added_rt(r: dict[str, Any], variant: str) -> float:
    v = r["valkey"]
    return float((v[variant]["per_run_us"] - v["base"]["per_run_us"]) / v[variant]["set_mean_us"])


def _valkey(data: dict[str, Any]) -> str:
    rows = [["in-memory, no guard (base)", cell(data, lambda r: r["valkey"]["base"]["per_run_us"]), "0", "–", "–"]]
    for v in VALKEY_VARIANTS:
        rows.append(
            [
                {"store": "ValkeyStateStore", "guard": "ValkeyExecutionGuard", "both": "store + guard"}[v],
                cell(data, lambda r, v=v: r["valkey"][v]["per_run_us"]),
                cell(data, lambda r, v=v: r["valkey"][v]["commands_per_run"], 2),
                cell(data, lambda r, v=v: r["valkey"][v]["per_run_us"] - r["valkey"]["base"]["per_run_us"]),
                cell(data, lambda r, v=v: valkey_added_rt(r, v), 2),
            ]
        )
    rtt = cell(data, lambda r: statistics.median(x["set_mean_us"] for x in r["valkey"].values()))
    p50 = cell(data, lambda r: statistics.median(x["set_p50_us"] for x in r["valkey"].values()))
    header = ["variant", "µs per run", "Valkey calls per run", "added µs", "added, in SET round trips"]
    return table(header, rows) + f"\n\nOne SET round trip (300 B, same processes): mean {rtt} µs, p50 {p50} µs."


PROTOCOL_NAMES = {
    "store": "ValkeyStateStore, no guard",
    "guard": "in-memory store, ValkeyExecutionGuard",
    "combined": "store + guard on one server (combined scripts)",
    "per-component": "store + guard as separate servers (per-component calls)",
    "floor": "floor: two bare scripts per run, no scheduler",
}


def protocol_ratio(r: dict[str, Any], variant: str, base: str, field: str = "wall_us") -> float:
    v = r["valkey_protocol"]
    return float(v[variant][field] / v[base][field])


def _valkey_protocol(data: dict[str, Any]) -> str:
    rows = []
    for v in PROTOCOL_NAMES:
        if not per_round(data, lambda r, v=v: r["valkey_protocol"][v]["wall_us"]):
            continue
        rows.append(
            [
                PROTOCOL_NAMES[v],
                cell(data, lambda r, v=v: r["valkey_protocol"][v]["wall_us"], 0),
                cell(data, lambda r, v=v: r["valkey_protocol"][v]["cpu_us"], 0),
                cell(data, lambda r, v=v: r["valkey_protocol"][v]["server_us"], 0),
                cell(data, lambda r, v=v: protocol_ratio(r, v, "floor"), 2),
            ]
        )
    header = [
        "protocol (runs back to back)",
        "wall µs per run",
        "client CPU µs per run",
        "server µs per run (commandstats)",
        "wall ÷ floor",
    ]
    speedup = cell(data, lambda r: protocol_ratio(r, "per-component", "combined"), 2)
    return (
        table(header, rows)
        + f"\n\nPer-component wall time ÷ combined, per round: {speedup} (above 1: the combined scripts are faster)."
    )


LEDGER_NAMES = {"sqlite": "SqliteStateStore", "valkey": "ValkeyStateStore"}


def ledger_cost(r: dict[str, Any], backend: str, field: str = "per_run_us") -> float:
    row = r["ledger"][backend]
    return float(row["with"][field] - row["without"][field])


def _ledger(data: dict[str, Any]) -> str:
    rows = []
    for backend, name in LEDGER_NAMES.items():
        if not per_round(data, lambda r, b=backend: r["ledger"][b]["with"]["per_run_us"]):
            continue

        def get(variant: str, field: str, b: str = backend) -> Figure:
            return lambda r: r["ledger"][b][variant][field]

        rows.append(
            [
                name,
                cell(data, get("without", "per_run_us"), 0),
                cell(data, get("with", "per_run_us"), 0),
                cell(data, lambda r, b=backend: ledger_cost(r, b), 0),
                cell(data, lambda r, b=backend: ledger_cost(r, b) / r["ledger"][b]["without"]["per_run_us"] * 100, 1),
                cell(data, lambda r, b=backend: ledger_cost(r, b, "cpu_us_per_run"), 0),
            ]
        )
    header = ["store", "wall µs per run, no ledger", "with the ledger (1000 entries)", "ledger µs per run"]
    header += ["ledger % of a run", "ledger CPU µs per run"]
    return table(header, rows)


def _downtime(data: dict[str, Any]) -> str:
    keys = data["rounds"][0].get("downtime", {})
    rows = []
    for key, first in keys.items():

        def get(m: str, k: str = key) -> Figure:
            return lambda r: r["downtime"][k][m]

        rows.append(
            [
                key.replace("/", " / "),
                f"{first['consumed']:,}" if first.get("consumed") is not None else "n/a",
                cell(data, get("decide_us"), 1),
                cell(data, get("full_start_ms"), 3),
                f"{first['peak_bytes_1d']:,} / {first['peak_bytes_365d']:,}" if first.get("peak_bytes_1d") else "n/a",
                f"{first['start_peak_bytes_1d']:,} / {first['start_peak_bytes_365d']:,}",
            ]
        )
    header = ["schedule / policy", "occurrences consumed", "decide() µs", "full start → first decision ms"]
    header += ["decide() peak B (1 d / 365 d)", "full start peak B (1 d / 365 d)"]
    return table(header, rows)


def _footprint(data: dict[str, Any]) -> str:
    rss = [
        [
            PEER_NAMES[p],
            cell(data, lambda r, p=p: r["rss"][p]["rss_before_kib"], 0),
            cell(data, lambda r, p=p: r["rss"][p]["growth_kib"], 0),
            cell(data, lambda r, p=p: r["rss"][p]["growth_after_warm_kib"], 0),
            cell(data, lambda r, p=p: r["rss"][p]["seconds"], 2),
        ]
        for p in peers_in(data, "rss")
    ]
    runs = data["rounds"][0]["rss"]["lib"]["runs"] if data["rounds"][0].get("rss") else 0
    labels = list(data["rounds"][0].get("footprint", {}).get("warm", {}))
    imports = [
        [
            f"`{k}`",
            cell(data, lambda r, k=k: r["footprint"]["warm"][k], 1),
            cell(data, lambda r, k=k: r["footprint"]["warm"][k] / r["footprint"]["warm"]["import asyncio"], 2),
            cell(data, lambda r, k=k: r["footprint"]["cold"][k], 1),
            cell(data, lambda r, k=k: r["footprint"]["cold"][k] / r["footprint"]["cold"]["import asyncio"], 2),
        ]
        for k in labels
    ]
    imports.append(["`scheduler run --every 10ms --max-runs 1` (CLI)", cell(data, lambda r: r["footprint"]["cli_ms"])])
    imports[-1] += ["", "", ""]

    def said(flag: str) -> str:
        values = {r["footprint"][flag] for r in data["rounds"] if "footprint" in r}
        return "yes" if values == {True} else "no" if values == {False} else "in some rounds"

    header = ["command (fresh interpreter)", "warm ms", "÷ `import asyncio`", "cold ms", "÷ `import asyncio`"]
    return (
        table(["peer", "RSS before KiB", f"growth over {runs:,} runs KiB", "after the first 1 % KiB", "seconds"], rss)
        + "\n\n"
        + table(header, imports)
        + f"\n\nAn in-memory run of one async job imports `pydantic`: **{said('pydantic_imported')}**;"
        + f" imports `redis`: **{said('redis_imported')}**."
    )


SECTIONS = [
    ("1. Punctuality", _punctuality, "punctuality/10ms"),
    ("2. CPU per run", _overhead, "overhead/saturated"),
    ("3. Valkey: added latency", _valkey, "valkey"),
    ("4. Valkey: protocols, wall time and client CPU", _valkey_protocol, "valkey_protocol"),
    ("5. Run ledger: cost per run", _ledger, "ledger"),
    ("6. Downtime", _downtime, "downtime"),
    ("7. Footprint", _footprint, "footprint"),
]


def _profile(data: dict[str, Any]) -> str:
    parts = []
    for label, found in data["profile"].items():
        if "error" in found:
            parts.append(f"{label}: not profiled: {found['error']}")
            continue
        rows = [[f"`{name}`", f"{pct:.1f}"] for name, pct in found["self_pct"]]
        inclusive = [[f"`{name}`", f"{pct:.1f}"] for name, pct in found["inclusive_scheduler_pct"]]
        parts.append(
            f"{label} ({found['samples']:,} samples), self time:\n\n"
            + table(["function", "% of samples"], rows)
            + "\n\ninclusive, scheduler code:\n\n"
            + table(["function", "% of samples"], inclusive)
        )
    return "\n\n".join(parts)


def render(data: dict[str, Any]) -> str:
    from .verdicts import verdicts

    parts = ["### Targets\n\n" + verdicts(data)]
    for title, fn, key in SECTIONS:
        if any(key in r for r in data["rounds"]):
            parts.append(f"### {title}\n\n{fn(data)}")
    if data.get("profile"):
        parts.append(f"### 8. Profile of the scheduler's runs (py-spy, one fresh process each)\n\n{_profile(data)}")
    return "\n\n".join(parts) + "\n"


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [f"punctuality/{row}" for row in PUNCTUALITY_ROWS if any(f"punctuality/{row}" in r for r in data["rounds"])]
    if not keys:
        return
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.8), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        for peer in peers_in(data, key):
            samples = sorted(v for r in data["rounds"] for v in r.get(key, {}).get(peer, {}).get("samples_us", []))
            ys = [100.0 * (i + 1) / len(samples) for i in range(len(samples))]
            ax.plot(samples, ys, label=PEER_NAMES[peer], drawstyle="steps-post")
        ax.set_xscale("symlog", linthresh=10)
        ax.set_title(key.split("/")[1] + " period")
        ax.set_xlabel("lateness µs (all rounds)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("cumulative % of starts")
    axes[0][0].legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def document(data: dict[str, Any], markdown: str) -> str:
    from .narrative import document as narrative

    return narrative(data, markdown)
