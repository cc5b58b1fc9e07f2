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


def lateness_summary(lateness_us: Sequence[float]) -> dict[str, float]:
    """p50/p99/max/min/mean of lateness samples in microseconds, and how many were early."""
    return {
        "p50_us": percentile(lateness_us, 50),
        "p99_us": percentile(lateness_us, 99),
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
