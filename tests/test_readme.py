"""The README's python snippets run as written (pasted into a file, in a fresh folder)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)


def test_the_readme_has_python_snippets() -> None:
    assert len(SNIPPETS) >= 2


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_snippet_runs_as_written(index: int, tmp_path: Path) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(SNIPPETS[index])
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


def _quick_start() -> str:
    return next(s for s in SNIPPETS if "run_sync" in s)


def test_quick_start_shows_its_runs_and_starts_over_when_run_again(tmp_path: Path) -> None:
    script = tmp_path / "quickstart.py"
    script.write_text(_quick_start())
    for _ in range(2):  # the terminal state is deleted: a second run shows the runs again
        result = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("exporting: run") == 3
        assert "RunCompleted" in result.stderr  # the logging set-up makes LogObserver visible
        assert "stopped: terminal after 3 runs" in result.stdout


def test_quick_start_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    script = tmp_path / "quickstart.py"
    script.write_text(_quick_start().replace("max_runs=3,", "max_runs=None,"))
    proc = subprocess.Popen(
        [sys.executable, str(script)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stdout is not None
    assert "exporting: run" in proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped: shutdown" in out
    assert "Traceback" not in err
