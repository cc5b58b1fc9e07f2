"""``scheduler history``, ``explain`` and ``status`` end to end (subprocesses, one SQLite file):
a job with a window, a failing command, overlaps and a downtime gap."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .test_cli import Running, cli, env, load, running, wait_until

__all__ = ["env", "running"]  # fixtures used below

#: A window on a day that is not today: every occurrence falls outside it.
OTHER_DAY = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][(datetime.now(UTC).weekday() + 3) % 7]
#: Every third run fails (exit 3), the one after it takes longer than the interval (overlaps).
COMMAND = "case $(( SCHEDULER_TRIGGER_COUNT % 3 )) in 0) echo disk full >&2; exit 3;; 1) sleep 0.5;; esac"


def state_of(db: Path, job_id: str) -> dict[str, Any]:
    result = cli({"PATH": "/usr/bin:/bin"}, "status", "--job-id", job_id, "--json", "--state", f"sqlite://{db}")
    return json.loads(result.stdout) if result.returncode == 0 else {}


def stored(db: Path, job_id: str) -> dict[str, Any]:
    """What ``status --json`` prints, read in this process: the phases poll it, and a CLI start
    per poll cost seconds and took the CPU from the scheduler under test."""
    state = load(db, job_id)
    return {} if state is None else json.loads(state.model_dump_json())


def run_until(
    env: dict[str, str], running: Callable[..., Running], db: Path, done: Callable[[dict[str, Any]], bool], *args: str
) -> None:
    proc = running(env, "run", "--job-id", "e2e", "--every", "300ms", "--state", f"sqlite://{db}", *args)
    wait_until(lambda: "starting job_id=e2e" in proc.stderr_text(), what="the start")
    wait_until(lambda: done(stored(db, "e2e")), what=f"the phase {args[:2]}")
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0, proc.stderr_text()


def test_history_explain_status(env: dict[str, str], running: Callable[..., Running], tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    env = {**env, "SCHEDULER_STATE": f"sqlite://{db}"}
    run_until(env, running, db, lambda s: s.get("skips", {}).get("outside_time_window", 0) >= 2,
              "--window", f"{OTHER_DAY} 00:00-23:59", "--", "true")  # fmt: skip
    window_spec = state_of(db, "e2e")["schedule_spec"]
    assert "window" in window_spec
    history = json.loads(cli(env, "history", "--job-id", "e2e", "--json").stdout)
    window_skip = history[0]
    explained = cli(env, "explain", "--job-id", "e2e", "--at", window_skip["scheduled_at"])
    assert explained.returncode == 0, explained.stderr
    assert f"it fell outside the time window {OTHER_DAY}" in explained.stdout

    def busy(s: dict[str, Any]) -> bool:
        skips = s.get("skips", {})
        return s.get("runs_started", 0) >= 4 and skips.get("overlap", 0) >= 1 and s.get("consecutive_failures") == 0

    run_until(env, running, db, busy, "--", "sh", "-c", COMMAND)
    gap_start = datetime.now(UTC)
    wait_until(lambda: datetime.now(UTC) - gap_start > timedelta(seconds=2), what="a downtime gap")
    before = state_of(db, "e2e")["runs_started"]
    run_until(env, running, db, lambda s: s["runs_started"] >= before + 2, "--missed", "skip", "--", "true")

    entries = json.loads(cli(env, "history", "--job-id", "e2e", "-n", "1000", "--json").stdout)
    fates = {e["fate"] for e in entries}
    assert {"success", "failed", "skipped", "missed"} <= fates
    reasons = {e.get("reason") for e in entries}
    assert {"outside_time_window", "overlap"} <= reasons
    text = cli(env, "history", "--job-id", "e2e", "-n", "1000")
    assert text.returncode == 0
    assert "exit=3" in text.stdout
    assert 'error="CommandFailed: exit code 3; stderr: disk full"' in text.stdout
    assert "reason=overlap" in text.stdout
    assert "(UTC" not in text.stdout
    assert "Z)" in text.stdout
    failed_only = json.loads(cli(env, "history", "--job-id", "e2e", "--fate", "failed", "--json").stdout)
    assert failed_only
    assert {e["fate"] for e in failed_only} == {"failed"}

    def explain(at: str) -> str:
        result = cli(env, "explain", "--job-id", "e2e", "--at", at)
        assert result.returncode == 0, result.stderr
        return result.stdout

    first = lambda fate, **more: next(  # noqa: E731
        e for e in entries if e["fate"] == fate and all(e.get(k) == v for k, v in more.items())
    )
    assert "ran and failed after 1 attempt" in explain(first("failed")["scheduled_at"])
    assert "exit code 3" in explain(first("failed")["scheduled_at"])
    success = first("success")
    assert "ran and succeeded after 1 attempt in " in explain(success["scheduled_at"])
    assert "the previous run was still running" in explain(first("skipped", reason="overlap")["scheduled_at"])
    gap = max((e for e in entries if e["fate"] == "missed"), key=lambda e: e["count"])
    said = explain(gap["last_scheduled_at"])
    assert f"it is one of {gap['count']} occurrences" in said
    assert "under the missed-run policy skip" in said
    half = datetime.fromisoformat(success["scheduled_at"].replace("Z", "+00:00")) + timedelta(milliseconds=150)
    assert "is not an occurrence of every 0.3s" in explain(half.isoformat())
    status = json.loads(cli(env, "status", "--job-id", "e2e", "--json").stdout)
    next_run = datetime.fromisoformat(status["next_run_at"].replace("Z", "+00:00"))
    assert "is not due yet" in explain((next_run + timedelta(seconds=3)).isoformat())

    # Retention: a later run that keeps 3 entries makes the first occurrences "older than the ledger keeps".
    before = state_of(db, "e2e")["runs_started"]
    run_until(env, running, db, lambda s: s["runs_started"] >= before + 1, "--ledger-limit", "3", "--", "true")
    assert "is older than the ledger keeps" in explain(window_skip["scheduled_at"])

    shown = cli(env, "status", "--job-id", "e2e")
    final = json.loads(cli(env, "status", "--job-id", "e2e", "--json").stdout)
    consumed, started = final["trigger_count"], final["runs_started"]
    assert consumed > started
    assert f"occurrences consumed: {consumed}" in shown.stdout
    assert f"runs started:         {started}" in shown.stdout
    assert f"outside_time_window {final['skips']['outside_time_window']}" in shown.stdout
    assert sum(final["skips"].values()) + started == consumed
    assert "last skip:" in shown.stdout
    assert "last success:" in shown.stdout

    unknown = cli(env, "explain", "--job-id", "nobody", "--at", "2025-01-01T00:00Z")
    assert unknown.returncode == 1
    bad = cli(env, "explain", "--job-id", "e2e", "--at", "noon")
    assert bad.returncode == 2
    assert cli(env, "history", "--job-id", "nobody").returncode == 1
