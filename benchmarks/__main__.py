"""``python -m benchmarks [--quick] [--rounds N] [--only SCENARIO ...]``: run, report, publish."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from typing import Any

from . import report, scenarios
from ._run import ROOT, python_says
from ._server import ValkeyServer

RESULTS = ROOT / "benchmarks" / "results"
SCENARIOS = ("punctuality", "overhead", "valkey", "downtime", "footprint")


def run_round(index: int, sizes: dict[str, Any], only: set[str], url: str | None) -> dict[str, Any]:
    peers = list(scenarios.PEERS)
    order = peers[index % 3 :] + peers[: index % 3]  # alternate which peer goes first
    out: dict[str, Any] = {"order": order}
    if "punctuality" in only:
        out["punctuality/10ms"] = scenarios.punctuality(order, 0.01, sizes["n10ms"])
        out["punctuality/10ms uvloop"] = scenarios.punctuality(order, 0.01, sizes["n10ms"], loop="uvloop")
        out["punctuality/100ms"] = scenarios.punctuality(order, 0.1, sizes["n100ms"])
        out["punctuality/1s"] = scenarios.punctuality(order, 1.0, sizes["n1s"])
    if "overhead" in only:
        out["overhead"] = scenarios.overhead(order, sizes["window"])
    if "valkey" in only and url is not None:
        out["valkey"] = scenarios.valkey(url, sizes["valkey_runs"])
    if "downtime" in only:
        out["downtime"] = scenarios.downtime(sizes["decide_repeats"])
    if "footprint" in only:
        out["rss"] = scenarios.rss(order, sizes["rss_runs"])
        out["footprint"] = scenarios.footprint(sizes["import_reps"], sizes["cli_reps"])
    return out


def environment() -> dict[str, Any]:
    versions = python_says(
        "import importlib.metadata as m; print(';'.join(f'{p}={m.version(p)}' for p in "
        "('scheduler-runner', 'apscheduler', 'uvloop', 'redis', 'pydantic', 'cronsim')))"
    )
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": __import__("os").cpu_count(),
        "versions": dict(item.split("=", 1) for item in versions.split(";")),
        "loadavg_at_start": load,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts (smoke run, not for publishing)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="*", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--no-publish", action="store_true", help="print only; do not write results or docs")
    args = parser.parse_args(argv)
    sizes = scenarios.QUICK if args.quick else scenarios.FULL
    only = set(args.only)
    meta = {**environment(), "quick": args.quick, "rounds": args.rounds, "sizes": sizes}
    t0 = time.perf_counter()
    rounds = []
    with ValkeyServer() if "valkey" in only else _NoServer() as url:
        for i in range(args.rounds):
            print(f"round {i + 1}/{args.rounds} ...", file=sys.stderr, flush=True)
            rounds.append(run_round(i, sizes, only, url))
    meta["seconds"] = round(time.perf_counter() - t0, 1)
    data = {"meta": meta, "rounds": rounds}
    markdown = report.render(data)
    print(markdown)
    if not args.no_publish:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "latest.json").write_text(json.dumps(data, indent=1) + "\n")
        report.plot(data, RESULTS / "lateness.png")
        (ROOT / "docs" / "benchmarks.md").write_text(report.document(data, markdown))
    return 0


class _NoServer:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
