"""The benchmark harness runs a small round and writes its report (no timing asserts)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("benchmarks.scenarios")
pytest.importorskip("apscheduler.schedulers.asyncio")

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
