"""Where the scheduler's CPU goes: py-spy samples of one worker, summarised by function.

``python -m benchmarks --profile`` samples the scheduler's saturated run (CPU per run) and its
1 ms paced run (CPU %), each in a fresh interpreter, and keeps the functions with the most
samples on top of the stack (self) and anywhere in it (inclusive, scheduler code only).
Samples taken while modules are still importing are left out.
Needs ``py-spy`` (in the ``bench`` extra); without it the run says so and goes on.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from ._run import PYTHON, ROOT

TOP = 12


def _py_spy() -> str | None:
    return shutil.which("py-spy", path=str(Path(PYTHON).parent)) or shutil.which("py-spy")


def _frame(raw: str) -> str:
    """``Execution.run (scheduler/_execution.py:84)`` -> ``Execution.run (scheduler/_execution.py)``."""
    name, _, where = raw.partition(" (")
    if name == "__create_fn__.<locals>.__init__":
        return "generated dataclass __init__"
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def summarise(collapsed: str) -> dict[str, Any]:
    """Self and inclusive sample shares from py-spy's raw (collapsed stack) output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        if "importlib._bootstrap" in stack:
            continue  # start-up imports, not the steady state being profiled
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";")]
        own[frames[-1]] += n
        for f in set(frames):
            if "scheduler/" in f:
                inclusive[f] += n
    share = lambda c: [[name, round(100.0 * n / max(total, 1), 1)] for name, n in c.most_common(TOP)]  # noqa: E731
    return {"samples": total, "self_pct": share(own), "inclusive_scheduler_pct": share(inclusive)}


def profile(name: str, params: dict[str, Any], seconds: float) -> dict[str, Any]:
    spy = _py_spy()
    if spy is None:
        return {"error": "py-spy not installed (pip install py-spy)"}
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as folder:
        out = Path(folder) / "stacks.txt"
        cmd = [spy, "record", "-r", "500", "-d", str(int(seconds) + 2), "-f", "raw", "-o", str(out)]
        cmd += ["--", PYTHON, "-m", "benchmarks.worker", name, json.dumps(params)]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0 or not out.exists():
            return {"error": f"py-spy failed ({done.returncode}): {done.stderr.strip()[-300:]}"}
        return summarise(out.read_text())


def run(sizes: dict[str, Any]) -> dict[str, Any]:
    from .scenarios import PACED_INTERVAL_S, SATURATED_INTERVAL_S

    window = max(sizes["window_s"], 2.0)
    return {
        label: profile("overhead", {"peer": "lib", "interval_s": interval, "warmup_s": 0.3, "window_s": window}, window)
        for label, interval in (("saturated", SATURATED_INTERVAL_S), ("paced", PACED_INTERVAL_S))
    }
