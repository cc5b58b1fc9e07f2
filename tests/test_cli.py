"""The ``scheduler`` console script, driven in a subprocess like an operator would."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from scheduler import JobState, SqliteStateStore, SystemClock

CLI = [sys.executable, "-m", "scheduler"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "XDG_STATE_HOME": str(tmp_path / "xdg"), "PYTHONUNBUFFERED": "1"}


def cli(env: dict[str, str], *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def load(path: Path, job_id: str) -> JobState | None:
    async def read() -> JobState | None:
        store = SqliteStateStore(path)
        try:
            return await store.load(job_id)
        finally:
            await store.aclose()

    return asyncio.run(read())


def wait_until(condition: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except (ProcessLookupError, FileNotFoundError):
        return False
    return state != "Z"


class Running:
    """A CLI process whose stdout/stderr are drained by threads (so pipes never fill up)."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen([*CLI, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self._threads = [
            threading.Thread(target=self._drain, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _drain(stream: object, sink: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            sink.append(line)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        code = self.proc.wait(timeout)
        for thread in self._threads:
            thread.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()
        return code

    def stderr_text(self) -> str:
        return "".join(self.err)


@pytest.fixture
def running() -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(env: dict[str, str], *args: str) -> Running:
        started.append(Running(env, *args))
        return started[-1]

    yield start
    for proc in started:
        if proc.proc.poll() is None:
            proc.proc.kill()
        proc.wait()


def default_db(env: dict[str, str]) -> Path:
    return Path(env["XDG_STATE_HOME"]) / "scheduler" / "state.db"


# -- schedules, max runs, outcomes ------------------------------------------------------


def test_every_with_max_runs_on_the_default_store(env: dict[str, str], tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = cli(env, "run", "--job-id", "demo", "--every", "100ms", "--max-runs", "3", "--report", str(report),
                 "--", "echo", "hello from scheduler")  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert all(re.fullmatch(r"\[demo \d{4}-\d\d-\d\dT[\d:.]+Z\] hello from scheduler", line) for line in lines)
    state = load(default_db(env), "demo")
    assert state is not None
    assert (state.trigger_count, state.next_run_at, state.last_status) == (3, None, "success")
    data = json.loads(report.read_text())
    assert data["stop_reason"] == "terminal"
    assert [r["status"] for r in data["history"]] == ["success"] * 3

    status = cli(env, "status", "--job-id", "demo", "--timezone", "Europe/Paris")
    assert status.returncode == 0
    assert "occurrences consumed: 3" in status.stdout
    assert "runs started:         3" in status.stdout
    assert "none (terminal)" in status.stdout
    assert "last outcome:         success" in status.stdout
    assert "consecutive failures: 0" in status.stdout
    assert "CET" in status.stdout or "CEST" in status.stdout  # local and UTC
    as_json = json.loads(cli(env, "status", "--job-id", "demo", "--json").stdout)
    assert as_json["trigger_count"] == 3

    again = cli(env, "run", "--job-id", "demo", "--every", "100ms", "--max-runs", "3", "--report", str(report),
                "--", "echo", "again")  # fmt: skip
    assert again.returncode == 0
    assert again.stdout == ""
    assert json.loads(report.read_text())["history"] == []

    assert cli(env, "reset", "--job-id", "demo").returncode == 0
    missing = cli(env, "status", "--job-id", "demo")
    assert missing.returncode == 1
    assert "no state stored" in missing.stderr


def test_cron_schedule(env: dict[str, str]) -> None:
    result = cli(env, "run", "--job-id", "c", "--cron", "* * * * * *", "--max-runs", "2", "--", "echo", "tick")
    assert result.returncode == 0, result.stderr
    stamps = [line.split()[1].rstrip("]") for line in result.stdout.splitlines()]
    assert len(stamps) == 2
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", s) for s in stamps)  # whole seconds
    first, second = (datetime.fromisoformat(s) for s in stamps)
    assert second - first == timedelta(seconds=1)  # consecutive matches of an every-second cron


def test_at_schedule(env: dict[str, str], tmp_path: Path) -> None:
    # Both instants are already past when the CLI starts, whatever its start-up time: replay-all
    # runs each of them, in order, so the outcome does not race the wall clock.
    now = SystemClock().now()
    first, second = now - timedelta(seconds=2), now - timedelta(seconds=1)
    report = tmp_path / "r.json"
    result = cli(env, "run", "--job-id", "at", "--at", second.isoformat(), first.isoformat(), "--missed", "replay-all",
                 "--report", str(report), "--", "true")  # fmt: skip
    assert result.returncode == 0, result.stderr
    history = json.loads(report.read_text())["history"]
    assert [datetime.fromisoformat(r["scheduled_at"]) for r in history] == [first, second]


def test_failing_command_records_failed_with_exit_code(env: dict[str, str], tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    result = cli(env, "run", "--job-id", "f", "--every", "100ms", "--max-runs", "1", "--state", f"sqlite://{db}",
                 "--", "sh", "-c", "echo boom >&2; exit 3")  # fmt: skip
    assert result.returncode == 0  # the scheduler did its job; the run's failure is in the state
    assert "] boom" in result.stderr
    state = load(db, "f")
    assert state is not None
    assert state.last_status == "failed"
    assert state.consecutive_failures == 1
    assert state.last_error is not None
    assert "exit code 3" in state.last_error
    assert "boom" in state.last_error


def test_timeout_kills_the_command_and_its_children(env: dict[str, str], tmp_path: Path) -> None:
    db, pids = tmp_path / "s.db", tmp_path / "pids"
    script = f"echo $$ > {pids}; sleep 60 & echo $! >> {pids}; wait"
    started = time.monotonic()
    result = cli(env, "run", "--job-id", "t", "--every", "100ms", "--max-runs", "1", "--timeout", "500ms",
                 "--kill-grace", "1s", "--state", f"sqlite://{db}", "--", "sh", "-c", script)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 20
    state = load(db, "t")
    assert state is not None
    assert state.last_status == "timed_out"
    leader, child = (int(p) for p in pids.read_text().split())
    wait_until(lambda: not alive(leader) and not alive(child), 5, "the command's processes to be gone")


# -- signals, restarts, crashes ---------------------------------------------------------


def test_sigterm_lets_the_running_command_finish(
    env: dict[str, str], tmp_path: Path, running: Callable[..., Running]
) -> None:
    db, started, finished = tmp_path / "s.db", tmp_path / "started", tmp_path / "finished"
    proc = running(env, "run", "--job-id", "g", "--every", "100ms", "--state", f"sqlite://{db}",
                   "--", "sh", "-c", f"touch {started}; sleep 1; echo done > {finished}")  # fmt: skip
    wait_until(started.exists, what="the command to start")
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0
    assert finished.read_text() == "done\n"
    state = load(db, "g")
    assert state is not None
    assert state.last_status == "success"
    assert state.trigger_count >= 1
    assert "finishing the running command" in proc.stderr_text()


def test_second_sigterm_cancels(env: dict[str, str], tmp_path: Path, running: Callable[..., Running]) -> None:
    db, pid_file = tmp_path / "s.db", tmp_path / "pid"
    proc = running(env, "run", "--job-id", "h", "--every", "100ms", "--state", f"sqlite://{db}", "--kill-grace", "2s",
                   "--", "sh", "-c", f"echo $$ > {pid_file}; exec sleep 60")  # fmt: skip
    wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), what="the command to start")
    pid = int(pid_file.read_text())
    proc.signal(signal.SIGTERM)
    wait_until(lambda: "finishing the running command" in proc.stderr_text(), what="the first signal to be handled")
    assert alive(pid)  # graceful: the command keeps running
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 128 + signal.SIGTERM
    assert not alive(pid)
    state = load(db, "h")
    assert state is not None
    assert state.trigger_count == 1


def test_restart_resumes_from_next_run_at_and_catches_up_once(
    env: dict[str, str], tmp_path: Path, running: Callable[..., Running]
) -> None:
    db, report = tmp_path / "s.db", tmp_path / "r.json"
    args = ["run", "--job-id", "r", "--every", "200ms", "--state", f"sqlite://{db}", "--report", str(report)]
    first = running(env, *args, "--", "true")
    wait_until(lambda: (s := load(db, "r")) is not None and s.trigger_count >= 2, what="two runs")
    first.signal(signal.SIGTERM)
    assert first.wait() == 0
    stopped = load(db, "r")
    assert stopped is not None
    assert stopped.next_run_at is not None
    time.sleep(1.5)  # about seven occurrences fall due while nothing runs

    second = running(env, *args, "--missed", "catch-up-once", "--", "true")
    wait_until(
        lambda: (s := load(db, "r")) is not None and s.trigger_count >= stopped.trigger_count + 8, what="catch-up"
    )
    second.signal(signal.SIGTERM)
    assert second.wait() == 0
    data = json.loads(report.read_text())
    first_run = data["history"][0]
    assert first_run["catch_up"] is True
    assert data["skipped"].get("coalesced", 0) >= 4  # the older due occurrences, coalesced into one run
    # Same grid as before the restart: resumed from next_run_at, not re-anchored on "now".
    offset = datetime.fromisoformat(first_run["scheduled_at"]) - stopped.next_run_at
    assert offset.total_seconds() > 0
    assert round(offset / timedelta(milliseconds=200)) * timedelta(milliseconds=200) == offset


def test_restart_with_skip_policy_drops_missed_runs(
    env: dict[str, str], tmp_path: Path, running: Callable[..., Running]
) -> None:
    db, report = tmp_path / "s.db", tmp_path / "r.json"
    args = ["run", "--job-id", "s", "--every", "200ms", "--state", f"sqlite://{db}", "--report", str(report)]
    first = running(env, *args, "--", "true")
    wait_until(lambda: (s := load(db, "s")) is not None and s.trigger_count >= 1, what="a first run")
    first.signal(signal.SIGTERM)
    assert first.wait() == 0
    stopped = load(db, "s")
    assert stopped is not None
    time.sleep(1.6)  # several occurrences become more than misfire_grace (1 s) late

    second = running(env, *args, "--missed", "skip", "--", "true")
    wait_until(lambda: (s := load(db, "s")) is not None and s.trigger_count >= stopped.trigger_count + 9, what="runs")
    second.signal(signal.SIGTERM)
    assert second.wait() == 0
    data = json.loads(report.read_text())
    assert data["skipped"].get("missed", 0) >= 3


def test_sigkill_mid_run_then_restart_resumes(
    env: dict[str, str], tmp_path: Path, running: Callable[..., Running]
) -> None:
    db, pid_file, runs = tmp_path / "s.db", tmp_path / "pid", tmp_path / "runs.log"
    script = (
        f"echo $SCHEDULER_TRIGGER_COUNT >> {runs}; echo $$ > {pid_file}.$SCHEDULER_TRIGGER_COUNT; "
        '[ "$SCHEDULER_TRIGGER_COUNT" = 1 ] && exec sleep 60; true'
    )
    # Every occurrence runs (replayed, one after the other), however slowly the restart goes.
    args = ["run", "--job-id", "k", "--every", "200ms", "--max-runs", "3", "--missed", "replay-all",
            "--state", f"sqlite://{db}"]  # fmt: skip
    proc = running(env, *args, "--", "sh", "-c", script)
    first_pid = tmp_path / "pid.1"
    wait_until(lambda: first_pid.exists() and first_pid.read_text().strip(), what="the first run to start")
    proc.proc.kill()
    proc.wait()
    os.kill(int(first_pid.read_text()), signal.SIGKILL)  # the orphaned command (own process group)
    crashed = load(db, "k")
    assert crashed is not None
    assert crashed.trigger_count == 1  # saved before dispatch
    assert crashed.next_run_at is not None

    restarted = cli(env, *args, "--", "sh", "-c", script)
    assert restarted.returncode == 0, restarted.stderr
    final = load(db, "k")
    assert final is not None
    assert (final.trigger_count, final.next_run_at, final.last_status) == (3, None, "success")
    # At most once: the interrupted occurrence is not run again; the others run once each.
    assert runs.read_text().split() == ["1", "2", "3"]


# -- next, usage errors, stores, metrics, formats ---------------------------------------


def test_next_shows_local_and_utc_across_dst(env: dict[str, str]) -> None:
    result = cli(env, "next", "--cron", "30 2 * * *", "--timezone", "Europe/Berlin", "-n", "4",
                 "--after", "2025-03-28T00:00:00+01:00")  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "At 02:30 every day (Europe/Berlin)"
    assert lines[1] == "2025-03-28 02:30:00 CET (UTC+0100)  =  2025-03-28T01:30:00Z"
    assert lines[3].startswith("2025-03-30 03:00:00 CEST (UTC+0200)  =  2025-03-30T01:00:00Z")  # in the gap
    assert "offset changes" in lines[3]
    assert lines[4] == "2025-03-31 02:30:00 CEST (UTC+0200)  =  2025-03-31T00:30:00Z"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "--job-id", "x", "--every", "1s", "--frobnicate", "--", "true"], "--frobnicate"),
        (["run", "--job-id", "x", "--every", "5 minutes", "--", "true"], "invalid duration"),
        (["run", "--job-id", "x", "--cron", "61 * * * *", "--", "true"], "61"),
        (["run", "--job-id", "x", "--every", "1s", "--window", "Mon-Fri 09:00", "--", "true"], "09:00"),
        (["run", "--job-id", "x", "--every", "1s", "--timezone", "Mars/Base", "--", "true"], "Mars/Base"),
        (["run", "--job-id", "x", "--every", "1s"], "after '--'"),
        (["next", "--cron", "0 0 31 2 *"], "0 0 31 2 *"),
        (["bogus"], "bogus"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(env: dict[str, str], args: list[str], needle: str) -> None:
    result = cli(env, *args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("scheduler: error: ")
    assert needle in result.stderr


def test_unreachable_store_exits_1_without_the_password(env: dict[str, str]) -> None:
    # A short startup wait: the default (30 s of retries) equals the subprocess timeout here.
    run = ["run", "--job-id", "x", "--every", "1s", "--startup-timeout", "1s", "--", "true"]
    for command in (run, ["status", "--job-id", "x"]):
        result = cli(env, *command[:1], "--state", "redis://user:s3cretpw@127.0.0.1:1/0", *command[1:])
        assert result.returncode == 1, result.stderr
        assert "s3cretpw" not in result.stdout + result.stderr
        assert "127.0.0.1:1" in result.stderr


def test_unopenable_sqlite_exits_1(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    result = cli(env, "run", "--job-id", "x", "--every", "1s", "--state", f"sqlite://{tmp_path}/file/sub/s.db",
                 "--", "true")  # fmt: skip
    assert result.returncode == 1
    assert "state store" in result.stderr


def test_json_log_format(env: dict[str, str]) -> None:
    result = cli(env, "run", "--job-id", "j", "--every", "100ms", "--max-runs", "1", "--log-format", "json",
                 "--state", "memory:", "--", "echo", "hi")  # fmt: skip
    assert result.returncode == 0
    out = json.loads(result.stdout)
    assert (out["job_id"], out["stream"], out["line"]) == ("j", "stdout", "hi")
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert "RunCompleted" in [e.get("event") for e in events]


def test_metrics_endpoint_counts_runs(env: dict[str, str], running: Callable[..., Running]) -> None:
    fail_second = '[ "$SCHEDULER_TRIGGER_COUNT" != 2 ]'
    proc = running(env, "run", "--job-id", "m", "--every", "100ms", "--state", "memory:",
                   "--metrics-port", "127.0.0.1:0", "--", "sh", "-c", fail_second)  # fmt: skip
    wait_until(lambda: "metrics_url=" in proc.stderr_text(), what="the metrics server")
    url = re.search(r"metrics_url=(\S+)", proc.stderr_text())
    assert url is not None

    def sample(name: str, text: str) -> float:
        found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    scraped = ""

    def enough_runs() -> bool:
        nonlocal scraped
        with urllib.request.urlopen(url.group(1), timeout=5) as response:
            scraped = response.read().decode()
        ok = sample('scheduler_runs_total{job_id="m",status="success"}', scraped)
        return ok >= 3

    wait_until(enough_runs, what="three successful runs")
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0
    assert sample('scheduler_runs_total{job_id="m",status="failed"}', scraped) == 1
    assert sample('scheduler_running{job_id="m"}', scraped) == 1
    assert sample('scheduler_run_duration_seconds_count{job_id="m"}', scraped) >= 4
    assert sample('scheduler_next_run_timestamp_seconds{job_id="m"}', scraped) > 0


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_as_pid_1_orphans_are_reaped(env: dict[str, str], tmp_path: Path) -> None:
    probe = subprocess.run(["unshare", "--pid", "--fork", "--map-root-user", "--mount-proc", "true"], check=False)
    if probe.returncode != 0:
        pytest.skip("user namespaces are not available here")
    result_file = tmp_path / "zombies"
    # Run 1 leaves a detached orphan (its own session, so it escapes the group cleanup);
    # run 2 waits for it to exit and counts zombies: PID 1 must have reaped it.
    script = (
        f'if [ "$SCHEDULER_TRIGGER_COUNT" = 1 ]; then setsid sh -c "sleep 0.2" </dev/null >/dev/null 2>&1 & '
        f"else sleep 1; grep -l '^[0-9]* ([^)]*) Z' /proc/[0-9]*/stat | wc -l > {result_file}; fi"
    )
    result = subprocess.run(
        ["unshare", "--pid", "--fork", "--map-root-user", "--mount-proc", *CLI, "run", "--job-id", "p",
         "--every", "200ms", "--max-runs", "2", "--state", "memory:", "--", "sh", "-c", script],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result_file.read_text().strip() == "0"


def test_the_stop_before_acquire_test_hook_refuses_a_bad_value(env: dict[str, str]) -> None:
    bad = {**env, "SCHEDULER_TEST_STOP_BEFORE_ACQUIRE": "soon"}
    result = cli(bad, "run", "--job-id", "h", "--every", "1s", "--state", "memory:", "--", "true")
    assert result.returncode == 2
    assert "SCHEDULER_TEST_STOP_BEFORE_ACQUIRE='soon' is not a whole number >= 1" in result.stderr
    assert "Traceback" not in result.stderr
