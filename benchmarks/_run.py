"""Running workers in fresh interpreters and timing whole commands."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def worker(name: str, params: dict[str, Any], timeout: float = 600, python: str | None = None) -> dict[str, Any]:
    """Run ``benchmarks.worker`` in a new interpreter; its stdout's last line is the result."""
    cmd = [python or PYTHON, "-m", "benchmarks.worker", name, json.dumps(params)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"worker {name} {params} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def workers_concurrently(
    jobs: list[tuple[str, dict[str, Any], str | None]], timeout: float = 600
) -> list[dict[str, Any]]:
    """Several workers at once (used for long, mostly idle schedules staggered in phase)."""
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = [pool.submit(worker, name, params, timeout, python) for name, params, python in jobs]
        return [f.result() for f in futures]


def wall_seconds(cmd: list[str], timeout: float = 60, env: dict[str, str] | None = None) -> float:
    """Wall time of one command (fresh process), which must succeed."""
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=timeout, check=True, env=env)
    return time.perf_counter() - t0


def python_says(code: str) -> str:
    done = subprocess.run([PYTHON, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()
