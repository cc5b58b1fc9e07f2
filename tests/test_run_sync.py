"""``Scheduler.run_sync``: Ctrl-C once stops gracefully, twice cancels; no traceback either way."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = """
import json, sys, time, pathlib
from scheduler import Job, Scheduler, Interval, InMemoryStateStore

started = pathlib.Path(sys.argv[1])

def work(ctx):
    started.write_text(str(ctx.run.trigger_count))
    time.sleep(float(sys.argv[2]))
    print("task finished", flush=True)

report = Scheduler(store=InMemoryStateStore()).run_sync(Job("demo", Interval(0.05), work))
print(json.dumps({"stop": report.stop_reason.value, "statuses": [r.status.value for r in report.history]}), flush=True)
"""


def _start(tmp_path: Path, task_seconds: float) -> tuple[subprocess.Popen[str], Path]:
    marker = tmp_path / "started"
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(marker), str(task_seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 20
    while not marker.exists():
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.02)
    return proc, marker


def test_first_ctrl_c_lets_the_task_finish_and_returns_the_report(tmp_path: Path) -> None:
    proc, _ = _start(tmp_path, 0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "task finished" in out
    assert '"stop": "shutdown"' in out
    assert "Traceback" not in err
    assert "KeyboardInterrupt" not in err


def test_second_ctrl_c_cancels_and_returns_the_report(tmp_path: Path) -> None:
    proc, _ = _start(tmp_path, 30)
    proc.send_signal(signal.SIGINT)
    assert proc.stderr is not None
    first = proc.stderr.readline()  # the one warning line of the first Ctrl-C (logging's last resort)
    assert "interrupted" in first
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert '"stop": "cancelled"' in out
    assert "task finished" not in out
    assert "Traceback" not in err
