"""The benchmark harness imports and one scenario runs in a quick form (no timing asserts)."""

from __future__ import annotations

import pytest

pytest.importorskip("benchmarks.scenarios")


def test_downtime_scenario_quick_has_expected_keys() -> None:
    from benchmarks import scenarios

    result = scenarios.downtime(repeats=3)

    assert set(result) == {
        f"{s}/{p}" for s in ("cron_every_minute", "interval_1s") for p in ("skip", "catch_up_once", "replay_all")
    }
    for figures in result.values():
        assert {"decide_us", "full_start_ms", "consumed", "peak_bytes_1d", "peak_bytes_365d"} <= set(figures)


def test_report_renders_targets_from_a_round() -> None:
    from benchmarks import report, scenarios

    data = {"meta": {}, "rounds": [{"downtime": scenarios.downtime(repeats=2)}]}

    markdown = report.render(data)

    assert "### Targets" in markdown
    assert "decide()" in markdown
