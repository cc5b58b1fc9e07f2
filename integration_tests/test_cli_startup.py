"""Start-up checks of ``scheduler run`` / ``check`` against a real server: mistakes are found
before the first occurrence, and a store that comes up within ``--startup-timeout`` is waited for."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import _binary
from valkey_server import ServerProcess, free_port

CLI = [sys.executable, "-m", "scheduler"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    return {**clean, "XDG_STATE_HOME": str(tmp_path / "xdg"), "PYTHONUNBUFFERED": "1"}


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def late_server() -> Iterator[ServerProcess]:
    """A server on a reserved port that is NOT started: the test starts it when it wants."""
    server = ServerProcess(_binary(), port=free_port())
    try:
        yield server
    finally:
        server.close()


def test_store_that_comes_up_within_the_startup_timeout_is_waited_for(
    env: dict[str, str], tmp_path: Path, late_server: ServerProcess
) -> None:
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [*CLI, "run", "--job-id", "late", "--every", "100ms", "--max-runs", "1", "--state", late_server.url,
         "--startup-timeout", "30s", "--", "sh", "-c", f"echo ran >> {runs}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    lines: list[str] = []
    waiting = threading.Event()

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "not reachable yet" in line:
                waiting.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    assert waiting.wait(20), "".join(lines)
    assert not runs.exists()
    late_server.start()
    assert proc.wait(30) == 0, "".join(lines)
    reader.join(5)
    proc.stderr.close()
    assert runs.read_text() == "ran\n"


def test_store_still_down_after_the_startup_timeout_exits_1_before_any_run(
    env: dict[str, str], tmp_path: Path, late_server: ServerProcess
) -> None:
    runs = tmp_path / "runs"
    started = time.monotonic()
    result = cli(env, "run", "--job-id", "down", "--every", "100ms", "--state", late_server.url.replace("redis://", "redis://u:pw123@"),
                 "--startup-timeout", "1s", "--", "sh", "-c", f"echo ran >> {runs}")  # fmt: skip
    assert result.returncode == 1
    assert time.monotonic() - started >= 1.0
    assert not runs.exists()
    assert "pw123" not in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].count("state store") == 1


def test_unreachable_guard_exits_1_before_any_run(env: dict[str, str], tmp_path: Path, valkey_url: str) -> None:
    runs = tmp_path / "runs"
    result = cli(env, "run", "--job-id", "g", "--every", "100ms", "--state", valkey_url,
                 "--guard", f"redis://127.0.0.1:{free_port()}/0", "--startup-timeout", "500ms",
                 "--", "sh", "-c", f"echo ran >> {runs}")  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "guard" in result.stderr.splitlines()[-1]
    assert not runs.exists()


def test_check_runs_every_startup_check_and_nothing_else(env: dict[str, str], tmp_path: Path, valkey_url: str) -> None:
    runs = tmp_path / "runs"
    ok = cli(env, "check", "--job-id", "chk", "--cron", "0 9 * * *", "--timezone", "Europe/Paris",
             "--state", valkey_url, "--guard", valkey_url, "--", "sh", "-c", f"echo ran >> {runs}")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "next occurrences:" in ok.stdout
    assert ok.stdout.count("CET") + ok.stdout.count("CEST") >= 5
    assert not runs.exists()
    down = cli(env, "check", "--job-id", "chk", "--every", "1m", "--state", f"redis://127.0.0.1:{free_port()}/0",
               "--startup-timeout", "200ms", "--", "true")  # fmt: skip
    assert down.returncode == 1
    bad = cli(env, "check", "--job-id", "chk", "--every", "1m", "--", "no-such-program-here")
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1


def test_metrics_port_in_use_exits_1_before_any_run(env: dict[str, str], tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli(env, "run", "--job-id", "m", "--every", "100ms", "--state", "memory:",
                     "--metrics-port", f"127.0.0.1:{port}", "--", "sh", "-c", f"echo ran >> {runs}")  # fmt: skip
    assert result.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr
    assert not runs.exists()


def test_a_failing_command_is_one_log_line_without_traceback(env: dict[str, str]) -> None:
    result = cli(env, "run", "--job-id", "f", "--every", "100ms", "--max-runs", "1", "--state", "memory:",
                 "--", "sh", "-c", "echo boom >&2; exit 3")  # fmt: skip
    assert result.returncode == 0
    assert "Traceback" not in result.stderr
    failed = [line for line in result.stderr.splitlines() if "attempt 1 failed" in line]
    assert len(failed) == 1
    assert "exit code 3" in failed[0]
    assert "boom" in failed[0]
    assert "+00:00 " in failed[0]  # UTC with an explicit offset
    debug = cli(env, "run", "--job-id", "f", "--every", "100ms", "--max-runs", "1", "--state", "memory:",
                "--log-level", "debug", "--", "sh", "-c", "exit 3")  # fmt: skip
    assert "Traceback" in debug.stderr


def test_json_mode_cli_lines_are_structured(env: dict[str, str]) -> None:
    import json

    result = cli(env, "run", "--job-id", "j", "--every", "100ms", "--max-runs", "1", "--state", "memory:",
                 "--log-format", "json", "--", "true")  # fmt: skip
    assert result.returncode == 0
    records = [json.loads(line) for line in result.stderr.splitlines()]
    events = {r["event"] for r in records}
    assert {"starting", "stopped", "RunCompleted"} <= events
    stopped = next(r for r in records if r["event"] == "stopped")
    assert stopped["reason"] == "terminal"
    assert stopped["ts"].endswith("+00:00")
