"""APScheduler 4's own virtualenv (it cannot share one with APScheduler 3).

Created on first use under ``benchmarks/.venv-aps4`` with the newest pre-release and uvloop.
Its workers run this package's worker module with that interpreter; they never import the
scheduler. When it cannot be created, :func:`interpreter` says why and the run publishes it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ._run import ROOT

VENV = ROOT / "benchmarks" / ".venv-aps4"
PYTHON = VENV / "bin" / "python"
REQUIREMENTS = ["apscheduler>=4.0.0a1", "uvloop>=0.19"]
_READY = VENV / ".ready"


def interpreter(create: bool) -> tuple[Path | None, str]:
    """(python, version) when the virtualenv is usable; (None, why not) otherwise.

    ``create=False`` only uses a virtualenv made by an earlier run (quick runs stay fast).
    """
    if not _READY.exists():
        if not create:
            return None, "not installed (quick run: run `make bench` once to create benchmarks/.venv-aps4)"
        why = _create()
        if why:
            return None, why
    done = subprocess.run(
        [str(PYTHON), "-c", "import importlib.metadata as m; print(m.version('apscheduler'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        return None, f"installed but does not import: {done.stderr.strip()[-300:]}"
    return PYTHON, done.stdout.strip()


def _create() -> str:
    steps = [
        [sys.executable, "-m", "venv", str(VENV)],
        [str(PYTHON), "-m", "pip", "install", "--quiet", "--pre", *REQUIREMENTS],
    ]
    for cmd in steps:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"`{' '.join(cmd[-3:])}` failed: {exc}"
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if "WARNING" not in line]
            return f"`{' '.join(cmd[2:])}` failed: {' '.join(lines)[-400:]}"
    _READY.touch()
    return ""
