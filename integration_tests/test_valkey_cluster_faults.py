"""A cluster master killed while a job runs on it: a clear error, then the job goes on once healed.

What happens (documented in docs/behaviour.md): the next call to the dead master's slots is
refused, so the scheduler stops with a CONNECTION store error (exit 1 from the CLI) instead of
running anything it could not record. Once the master is back (it rejoins from its nodes.conf
with its data), a new process continues from the stored state. An independent file written by
the command proves that no occurrence ran twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis import RedisCluster
from valkey_cluster import ClusterProcess

from scheduler._valkey_keys import cluster_state_keys
from scheduler._valkey_store import DEFAULT_PREFIX

pytestmark = [pytest.mark.valkey, pytest.mark.slow]

WAIT = 30.0


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _wait_for_lines(path: Path, count: int) -> None:
    deadline = time.monotonic() + WAIT
    while len(_lines(path)) < count:
        assert time.monotonic() < deadline, f"fewer than {count} runs in {WAIT} s"
        time.sleep(0.05)


def _cli(url: str, job_id: str, out: Path, log: Path) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "scheduler", "run", "--job-id", job_id, "--every", "100ms"]
    args += ["--state", url, "--guard", url, "--", "sh", "-c", f'echo "$SCHEDULER_SCHEDULED_AT" >> {out}']
    with log.open("wb") as errors:
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=errors, env={**os.environ})


@pytest.mark.timeout(120)
def test_a_killed_master_stops_the_job_clearly_and_it_resumes_once_healed(
    private_cluster: ClusterProcess, tmp_path: Path, uid: str
) -> None:
    job_id = f"fault-{uid}"
    with RedisCluster(host=private_cluster.host, port=private_cluster.port) as raw:
        master = private_cluster.node_of_slot(raw.keyslot(cluster_state_keys(DEFAULT_PREFIX, job_id).state))
    out = tmp_path / "runs.txt"
    first = _cli(private_cluster.url, job_id, out, tmp_path / "first.log")
    try:
        _wait_for_lines(out, 3)
        master.stop()
        assert first.wait(WAIT) == 1
        message = (tmp_path / "first.log").read_text()
        assert job_id in message, message
        before = len(_lines(out))
        master.start()
        private_cluster.wait_healthy()
        second = _cli(private_cluster.url, job_id, out, tmp_path / "second.log")
        try:
            _wait_for_lines(out, before + 3)
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(WAIT) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    runs = _lines(out)
    assert len(runs) == len(set(runs)), "an occurrence ran twice"
    assert runs == sorted(runs)
