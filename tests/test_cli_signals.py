"""Signals an operator (or a container runtime) sends to ``scheduler run``, in a subprocess."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .test_cli import CLI, Running, env, running, wait_until

__all__ = ["env", "running"]  # fixtures used below


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_sighup_is_graceful_then_cancels(env: dict[str, str], tmp_path: Path, running: Callable[..., Running]) -> None:
    pid_file = tmp_path / "pid"
    proc = running(env, "run", "--job-id", "hup", "--every", "100ms", "--state", "memory:", "--kill-grace", "2s",
                   "--", "sh", "-c", f"echo $$ > {pid_file}; exec sleep 60")  # fmt: skip
    wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), what="the command to start")
    pid = int(pid_file.read_text())
    proc.signal(signal.SIGHUP)
    wait_until(lambda: "received SIGHUP: finishing" in proc.stderr_text(), what="the first SIGHUP to be logged")
    assert Path(f"/proc/{pid}").exists()  # graceful: the command keeps running
    proc.signal(signal.SIGHUP)
    assert proc.wait() == 128 + signal.SIGHUP
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), 5, "the command to be gone")
    assert "Traceback" not in proc.stderr_text()


def test_sigusr1_runs_the_command_now(env: dict[str, str], tmp_path: Path, running: Callable[..., Running]) -> None:
    runs = tmp_path / "runs"
    proc = running(env, "run", "--job-id", "usr1", "--every", "1h", "--state", "memory:",
                   "--", "sh", "-c", f"echo $SCHEDULER_TRIGGER_COUNT >> {runs}")  # fmt: skip
    wait_until(lambda: "starting job_id=usr1" in proc.stderr_text(), what="the CLI to start")
    proc.signal(signal.SIGUSR1)
    wait_until(lambda: _lines(runs) == 1, what="the triggered run")
    # Logged before the run, but read from the pipe by a thread that a loaded host may delay.
    wait_until(lambda: "received SIGUSR1: running the command now" in proc.stderr_text(), what="the log line")
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0


def test_sigusr2_pauses_then_resumes(env: dict[str, str], tmp_path: Path, running: Callable[..., Running]) -> None:
    runs = tmp_path / "runs"
    proc = running(env, "run", "--job-id", "usr2", "--every", "50ms", "--state", "memory:",
                   "--", "sh", "-c", f"echo x >> {runs}")  # fmt: skip
    wait_until(lambda: _lines(runs) >= 2, what="runs before the pause")
    proc.signal(signal.SIGUSR2)
    wait_until(lambda: "received SIGUSR2: pausing" in proc.stderr_text(), what="the pause")
    at_pause = _lines(runs)
    # Watch for ten periods: at most the run already started when the signal came may finish.
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        assert _lines(runs) <= at_pause + 1
        time.sleep(0.02)
    paused_count = _lines(runs)
    proc.signal(signal.SIGUSR2)
    wait_until(lambda: "received SIGUSR2: resuming" in proc.stderr_text(), what="the resume")
    wait_until(lambda: _lines(runs) >= paused_count + 2, what="runs after resuming")
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_as_pid_1_signals_are_forwarded(env: dict[str, str], tmp_path: Path) -> None:
    probe = subprocess.run(["unshare", "--pid", "--fork", "--map-root-user", "--mount-proc", "true"], check=False)
    if probe.returncode != 0:
        pytest.skip("user namespaces are not available here")
    runs, pid_file, log = tmp_path / "runs", tmp_path / "pid", tmp_path / "stderr"
    script = f'echo $SCHEDULER_TRIGGER_COUNT >> {runs}; [ "$SCHEDULER_TRIGGER_COUNT" = 1 ] || exec sleep 60; true'
    log_stream = log.open("w")
    wrapper = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--map-root-user", "--mount-proc", *CLI, "run", "--job-id", "p1",
         "--every", "1h", "--state", "memory:", "--kill-grace", "1s", "--", "sh", "-c", f"echo $$ > {pid_file}; {script}"],
        env=env, stdout=subprocess.DEVNULL, stderr=log_stream,
    )  # fmt: skip
    try:
        children = Path(f"/proc/{wrapper.pid}/task/{wrapper.pid}/children")
        wait_until(lambda: children.read_text().strip(), what="PID 1 of the namespace")
        init = int(children.read_text().split()[0])
        # PID 1 forks the real CLI, which logs its start once its signal handlers are in place.
        wait_until(lambda: "starting job_id=p1" in log.read_text(), what="the CLI under PID 1")
        subprocess.run(["kill", "-USR1", str(init)], check=True)
        wait_until(lambda: _lines(runs) == 1, what="USR1 forwarded: a run")
        subprocess.run(["kill", "-USR1", str(init)], check=True)
        wait_until(lambda: _lines(runs) == 2, what="a second run, which keeps running")
        subprocess.run(["kill", "-HUP", str(init)], check=True)
        subprocess.run(["kill", "-HUP", str(init)], check=True)
        assert wrapper.wait(30) == 128 + signal.SIGHUP, log.read_text()
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
            wrapper.wait()
        log_stream.close()
