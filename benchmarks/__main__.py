"""``python -m benchmarks [--quick] [--rounds N] [--only SCENARIO ...] [--profile]``: run, report, publish."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from typing import Any

from . import _aps4, profile, report, scenarios
from ._run import ROOT, python_says
from ._server import ValkeyServer

RESULTS = ROOT / "benchmarks" / "results"
SCENARIOS = ("punctuality", "overhead", "valkey", "ledger", "downtime", "footprint")


def run_round(index: int, sizes: dict[str, Any], only: set[str], url: str | None, aps4: str | None) -> dict[str, Any]:
    peers = list(dict.fromkeys(scenarios.PUNCTUALITY_PEERS + scenarios.OVERHEAD_PEERS))
    shift = index % len(peers)
    order = peers[shift:] + peers[:shift]  # alternate which peer goes first
    out: dict[str, Any] = {"order": order}
    if "punctuality" in only:
        for row in scenarios.PUNCTUALITY_ROWS:
            out[f"punctuality/{row}"] = scenarios.punctuality(order, row, sizes, aps4)
    if "overhead" in only:
        out["overhead/saturated"] = scenarios.overhead(order, scenarios.SATURATED_INTERVAL_S, sizes, aps4)
        out["overhead/paced"] = scenarios.overhead(order, scenarios.PACED_INTERVAL_S, sizes, aps4)
    if "valkey" in only and url is not None:
        out["valkey"] = scenarios.valkey(url, sizes["valkey_runs"])
        out["valkey_protocol"] = scenarios.valkey_protocol(index, url, sizes["valkey_runs"])
    if "ledger" in only:
        out["ledger"] = scenarios.ledger(index, url, sizes["ledger_runs"])
    if "downtime" in only:
        out["downtime"] = scenarios.downtime(sizes["decide_repeats"])
    if "footprint" in only:
        out["rss"] = scenarios.rss(order, sizes["rss_runs"])
        out["footprint"] = scenarios.footprint(sizes)
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
        "machine": _cpu_model(),
        "loadavg_at_start": load,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts (smoke run, not for publishing)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="*", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--profile", action="store_true", help="also sample the scheduler's CPU with py-spy")
    parser.add_argument("--no-publish", action="store_true", help="print only; do not write results or docs")
    parser.add_argument("--render", action="store_true", help="only rewrite the report from results/latest.json")
    args = parser.parse_args(argv)
    if args.render:
        data = json.loads((RESULTS / "latest.json").read_text())
        publish(data, report.render(data))
        return 0
    sizes = scenarios.QUICK if args.quick else scenarios.FULL
    only = set(args.only)
    meta = {**environment(), "quick": args.quick, "rounds": args.rounds, "sizes": sizes}
    aps4_python, aps4_says = _aps4.interpreter(create=not args.quick)
    meta["aps4"] = {"available": aps4_python is not None, "version" if aps4_python else "why": aps4_says}
    aps4 = str(aps4_python) if aps4_python else None
    t0 = time.perf_counter()
    rounds = []
    with ValkeyServer() if only & {"valkey", "ledger"} else _NoServer() as url:
        for i in range(args.rounds):
            print(f"round {i + 1}/{args.rounds} ...", file=sys.stderr, flush=True)
            rounds.append(run_round(i, sizes, only, url, aps4))
    data: dict[str, Any] = {"meta": meta, "rounds": rounds}
    if args.profile:
        print("profile ...", file=sys.stderr, flush=True)
        data["profile"] = profile.run(sizes)
    meta["seconds"] = round(time.perf_counter() - t0, 1)
    markdown = report.render(data)
    print(markdown)
    if not args.no_publish:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "latest.json").write_text(json.dumps(data, indent=1) + "\n")
        publish(data, markdown)
    return 0


def publish(data: dict[str, Any], markdown: str) -> None:
    report.plot(data, RESULTS / "lateness.png")
    (ROOT / "docs" / "benchmarks.md").write_text(report.document(data, markdown))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


class _NoServer:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
