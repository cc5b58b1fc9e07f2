"""Gray failures at the scheduler and CLI level: paused replicas, a hung guard, late-applied calls.

Every case runs against real Valkey servers, frozen with SIGSTOP/SIGCONT, and real CLI replicas
(or Schedulers) whose runs are recorded by the wrapped task itself: the oracle that says whether
an occurrence ran twice is independent of the scheduler's own records.
"""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import pytest
from replicas import CountWatcher, Replica, cli_argv, duplicates, log_events, read_oracle, wait_for

pytestmark = pytest.mark.valkey

#: A pause shorter than the 3 s lease TTL, and one longer.
SHORT_PAUSE, LONG_PAUSE = 1.5, 4.5


def start_replicas(tmp_path: Path, url: str, count: int, **options: str) -> tuple[list[Replica], Path, str]:
    job_id = f"gray-{uuid.uuid4().hex[:10]}"
    oracle = tmp_path / "oracle.txt"
    argv = cli_argv(job_id, url, oracle, **options)
    replicas = [Replica(f"r{i}", argv, tmp_path / f"r{i}.log") for i in range(count)]
    for replica in replicas:
        replica.start()
    return replicas, oracle, job_id


def pause_one_during_a_run(replicas: list[Replica], oracle: Path, seconds: float) -> Replica:
    """SIGSTOP the replica whose run just started (it holds fresh state and a lease), resume later."""
    seen = len(read_oracle(oracle))
    by_pid = {replica.pid: replica for replica in replicas if replica.alive}
    wait_for(
        lambda: any(line.pid in by_pid for line in read_oracle(oracle)[seen:]),
        "a run of a live replica",
    )
    victim = by_pid[next(line.pid for line in read_oracle(oracle)[seen:] if line.pid in by_pid)]
    victim.signal(signal.SIGSTOP)
    time.sleep(seconds)  # the fault itself lasts this long; nothing is awaited here
    victim.signal(signal.SIGCONT)
    return victim


def wait_for_more_runs(oracle: Path, count: int) -> None:
    seen = len(read_oracle(oracle))
    wait_for(lambda: len(read_oracle(oracle)) >= seen + count, f"{count} more runs")


def stop_all(replicas: list[Replica]) -> None:
    for replica in replicas:
        replica.stop()


def assert_clean_logs(replicas: list[Replica]) -> None:
    for replica in replicas:
        text = replica.log.read_text(errors="replace")
        assert "Traceback" not in text, text[-3000:]


@pytest.mark.parametrize(
    ("missed", "overlap"),
    [("replay-all", "forbid"), ("catch-up-once", "forbid"), ("catch-up-once", "queue-one")],
)
def test_a_replica_paused_shorter_then_longer_than_the_ttl_runs_nothing_twice(
    tmp_path: Path, valkey_url: str, missed: str, overlap: str
) -> None:
    replicas, oracle, job_id = start_replicas(tmp_path, valkey_url, 3, missed=missed, overlap=overlap)
    try:
        with CountWatcher(valkey_url, job_id) as counts:
            wait_for(lambda: len(read_oracle(oracle)) >= 3, "the first runs", timeout=20)
            for pause in (SHORT_PAUSE, LONG_PAUSE):
                pause_one_during_a_run(replicas, oracle, pause)
                wait_for_more_runs(oracle, 5)
            stop_all(replicas)
        lines = read_oracle(oracle)
        assert duplicates(lines) == {}
        assert counts.decreases == []
        assert len(counts.values) > 10
        assert_clean_logs(replicas)
        conflicts = sum(1 for r in replicas for e in log_events(r.log) if e.get("event") == "StateConflict")
        assert conflicts > 0  # the resumed replica really met fresher state
    finally:
        stop_all(replicas)


@pytest.mark.chaos
@pytest.mark.timeout(400)
def test_soak_with_kills_pauses_and_freezes(tmp_path: Path) -> None:
    from soak import soak

    figures = soak(120.0, 1, tmp_path)
    print(figures)
    assert figures.pauses_before_acquire >= 1
    assert figures.long_pauses >= 1
    assert figures.kills >= 1
    assert figures.freezes >= 1
    assert figures.duplicates == 0
    assert figures.unexplained == []
    assert figures.ok
