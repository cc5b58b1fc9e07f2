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


def _run(snippet: str, folder: Path) -> subprocess.CompletedProcess[str]:
    script = folder / "snippet.py"
    script.write_text(snippet)
    return subprocess.run(
        [sys.executable, str(script)], cwd=folder, capture_output=True, text=True, timeout=60, check=False
    )


def _quick_start() -> str:
    return next(s for s in SNIPPETS if "run_sync" in s)


@pytest.fixture(scope="module")
def quick_start_runs(tmp_path_factory: pytest.TempPathFactory) -> list[subprocess.CompletedProcess[str]]:
    """The quick start run twice in one fresh folder. A run takes seconds (its runs are a second
    apart), so the tests that need one share these instead of running it again."""
    folder = tmp_path_factory.mktemp("quick-start")
    return [_run(_quick_start(), folder) for _ in range(2)]


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_snippet_runs_as_written(index: int, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if SNIPPETS[index] == _quick_start():
        result = request.getfixturevalue("quick_start_runs")[0]  # its first run, in a fresh folder
    else:
        result = _run(SNIPPETS[index], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


def test_quick_start_shows_its_runs_and_starts_over_when_run_again(
    quick_start_runs: list[subprocess.CompletedProcess[str]],
) -> None:
    for result in quick_start_runs:  # the terminal state is deleted: a second run shows the runs again
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
