"""The benchmark harness runs a small round and writes its report (no timing asserts)."""

from __future__ import annotations

from typing import Any

import pytest

TINY = {"n10ms": 15, "warmup_s": 0.05, "window_s": 0.1, "stagger_s": 0.1}
PEERS = ["lib", "aps3", "floor", "spin"]


@pytest.fixture(scope="module")
def small_run() -> dict[str, Any]:
    from benchmarks import scenarios

    rnd = {
        "punctuality/10ms": scenarios.punctuality(PEERS, "10ms", TINY, aps4=None),
        "overhead/saturated": scenarios.overhead(PEERS, scenarios.SATURATED_INTERVAL_S, TINY, aps4=None),
        "overhead/paced": scenarios.overhead(PEERS, scenarios.PACED_INTERVAL_S, TINY, aps4=None),
        "downtime": scenarios.downtime(repeats=2),
    }
    meta = {"versions": {}, "rounds": 1, "sizes": TINY, "quick": True, "aps4": {"available": False, "why": "test"}}
    return {"meta": meta, "rounds": [rnd]}


def test_every_peer_reports_lateness_matched_to_its_occurrences(small_run: dict[str, Any]) -> None:
    row = small_run["rounds"][0]["punctuality/10ms"]

    assert set(row) == set(PEERS)
    for figures in row.values():
        assert figures["samples"] == TINY["n10ms"]
        assert figures["p99_us"] is None  # too few starts for a p99: the report shows the max
        assert figures["max_us"] >= figures["p50_us"]


def test_cpu_rows_cover_the_scheduler_and_its_peers(small_run: dict[str, Any]) -> None:
    saturated = small_run["rounds"][0]["overhead/saturated"]

    assert set(saturated) == {"lib", "aps3", "floor"}
    assert all(v["runs_per_s"] > 0 for v in saturated.values())


def test_report_and_notes_render_from_the_figures(small_run: dict[str, Any]) -> None:
    from benchmarks import report

    markdown = report.render(small_run)
    document = report.document(small_run, markdown)

    assert "### Targets" in markdown
    assert "the `call_at` floor" in markdown
    assert "decide()" in markdown
    assert "APScheduler 4 was **not measured**: test" in document
    assert "## Targets not met in this run, and what limits them" in document


def _round(ratio: float) -> dict[str, Any]:
    return {"overhead/saturated": {"lib": {"cpu_us_per_run": ratio}, "floor": {"cpu_us_per_run": 1.0}}}


@pytest.mark.parametrize(
    ("ratios", "verdict"),
    [([1.2, 1.3, 1.4], "met"), ([1.2, 1.4, 1.6], "unstable"), ([1.4, 1.6, 1.7], "missed")],
)
def test_verdict_is_met_only_when_every_round_is_on_the_right_side(ratios: list[float], verdict: str) -> None:
    from benchmarks.verdicts import judge

    judged = judge({"meta": {}, "rounds": [_round(r) for r in ratios]})

    assert [j["verdict"] for j in judged if j["target"].key == "cpu_per_run"] == [verdict]


def _valkey_round(combined: float) -> dict[str, Any]:
    protocol = {
        v: {"variant": v, "wall_us": wall, "cpu_us": wall * 0.8}
        for v, wall in (("store", 500.0), ("guard", 520.0), ("per-component", 900.0), ("floor", 400.0))
    }
    protocol["combined"] = {"variant": "combined", "wall_us": combined, "cpu_us": combined * 0.8}

    def ledger(without: float, extra: float) -> dict[str, Any]:
        return {
            "without": {"per_run_us": without, "cpu_us_per_run": without / 2},
            "with": {"per_run_us": without + extra, "cpu_us_per_run": without / 2 + extra},
        }

    return {"valkey_protocol": protocol, "ledger": {"sqlite": ledger(300.0, 20.0), "valkey": ledger(500.0, 10.0)}}


def test_valkey_protocols_and_ledger_are_judged_and_described() -> None:
    from benchmarks import report
    from benchmarks.verdicts import judge

    data = {"meta": {"versions": {}, "rounds": 3}, "rounds": [_valkey_round(c) for c in (480.0, 490.0, 520.0)]}

    verdicts = {j["target"].key: j["verdict"] for j in judge(data)}
    document = report.document(data, report.render(data))

    # 520 / 400 = 1.3 in one round: over 1.25, while the median (490 / 400) is under it.
    assert verdicts["valkey_vs_floor"] == "unstable"
    assert verdicts["valkey_vs_per_component"] == "met"  # 900 / 520 = 1.73 at worst
    assert "SqliteStateStore 20 µs per run on 300 µs (6.7 %)" in " ".join(document.split())
    assert "### 5. Run ledger: cost per run" in document
