"""Small statistics helpers shared by workers and the report (no numpy needed)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank-with-interpolation percentile, ``q`` in [0, 100]."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


#: Fewest samples a percentile is published from; below, the report shows the max instead.
MIN_SAMPLES = {"p95_us": 60, "p99_us": 200}


def lateness_summary(lateness_us: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99/max/min/mean of lateness samples in microseconds, and how many were early.

    A tail percentile from too few samples is only the max under another name: it is None.
    """
    n = len(lateness_us)
    return {
        "p50_us": percentile(lateness_us, 50),
        "p95_us": percentile(lateness_us, 95) if n >= MIN_SAMPLES["p95_us"] else None,
        "p99_us": percentile(lateness_us, 99) if n >= MIN_SAMPLES["p99_us"] else None,
        "max_us": max(lateness_us),
        "min_us": min(lateness_us),
        "mean_us": statistics.fmean(lateness_us),
        "early": sum(1 for v in lateness_us if v < 0),
        "samples": len(lateness_us),
    }


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median with min and max: how every figure is published."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fmt(summary: dict[str, float], digits: int = 1) -> str:
    """``median (min–max)`` for a Markdown cell."""
    return f"{summary['median']:,.{digits}f} ({summary['min']:,.{digits}f}–{summary['max']:,.{digits}f})"
