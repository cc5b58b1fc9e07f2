"""kill -9 right after the save that consumed an occurrence: on restart ledger and state agree."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from scheduler import Interval, Job, LedgerFate, Scheduler, SqliteStateStore

from .test_ledger import assert_consistent, everything

CHILD = textwrap.dedent(
    """
    import asyncio, pathlib, sys
    from scheduler import Interval, Job, Scheduler, SqliteStateStore

    marker = pathlib.Path(sys.argv[2])

    async def task(ctx):
        marker.write_text(ctx.run.scheduled_at.isoformat())
        await asyncio.sleep(3600)  # killed here, its outcome never saved

    job = Job("killed", Interval(0.5), task)  # the next occurrence falls due well after the kill
    Scheduler(store=SqliteStateStore(sys.argv[1])).run_sync(job)
    """
)


def _run_and_kill(db: Path, marker: Path) -> int:
    """Start the child, wait (polling, with a deadline) until its run started, kill -9 it."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db), str(marker)])
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert time.monotonic() < deadline, "the child never started its run"
            time.sleep(0.01)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    return child.pid


async def test_kill_9_during_a_run_is_interrupted_on_restart(tmp_path: Path) -> None:
    db, marker = tmp_path / "state.db", tmp_path / "started"
    pid = _run_and_kill(db, marker)
    store = SqliteStateStore(db)
    try:
        before = await store.load("killed")
        assert before is not None
        assert len(before.open_runs) == 1
        killed = before.open_runs[0].occurrence
        job = Job("killed", Interval(0.05), lambda ctx: None, max_runs=before.trigger_count + 3)
        report = await Scheduler(store=store).run(job)
        entries = await everything(store, "killed")
        interrupted = [e for e in entries if e.fate is LedgerFate.INTERRUPTED]
        assert [e.scheduled_at for e in interrupted] == [killed]
        assert interrupted[0].instance.endswith(f":{pid}")
        assert report.state.interrupted == 1
        assert_consistent(entries, report.state)
    finally:
        await store.aclose()
