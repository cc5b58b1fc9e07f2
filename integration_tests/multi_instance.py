"""Multi-instance exactly-once proof: several OS processes run one job against one Valkey.

    python integration_tests/multi_instance.py [--duration 120] [--url redis://... | valkey+cluster://...]

Timeline (fractions of ``duration``): instance A starts and creates the job state; B and C
join; D starts late (25 %); at 50 % the instance that starts the next run is killed with
SIGKILL right after it starts it, so one run is in flight, and restarted a second later; at
100 % every instance gets SIGTERM (graceful shutdown). The instance that wins a race keeps
winning while it runs (the others' next conditional saves carry a revision its outcome save
has moved on), so the kill is what moves the work for sure. Each run appends
``scheduled_at pid fencing_token lateness`` to a ledger. The proof: every occurrence of the
window started exactly once (zero duplicates, zero gaps); the only allowed gap is an
occurrence whose lease was live in Valkey right after the kill (the run in flight when the
instance died has its ledger line: it counts as started).

Instances use MissedRunPolicy.REPLAY_ALL so that an instance stalled for more than one
interval replays instead of coalescing: a gap can then only come from the guard, not from a
policy that drops occurrences on purpose. Exit status 1 when the proof fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

INTERVAL = timedelta(milliseconds=100)
RUN_SECONDS = 0.03
#: Occurrences due less than this before the SIGTERM may legitimately not have started.
END_MARGIN = timedelta(seconds=1)
WAIT_SECONDS = 20.0


async def _worker(url: str, job_id: str, ledger: str) -> None:
    from scheduler import (
        Interval,
        Job,
        MissedRunPolicy,
        Scheduler,
        TaskContext,
        ValkeyExecutionGuard,
        ValkeyStateStore,
    )

    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def task(ctx: TaskContext) -> None:
        run = ctx.run
        lateness = time.time() - run.scheduled_at.timestamp()
        # One small O_APPEND write per run: atomic, and on disk before the run "works".
        os.write(fd, f"{run.scheduled_at.isoformat()} {os.getpid()} {run.fencing_token} {lateness:.4f}\n".encode())
        await asyncio.sleep(RUN_SECONDS)

    store = ValkeyStateStore(url)
    guard = ValkeyExecutionGuard(url)
    scheduler = Scheduler(store=store, guard=guard)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, scheduler.handle().shutdown)
    job = Job(job_id, Interval(INTERVAL), task, missed_run_policy=MissedRunPolicy.REPLAY_ALL)
    try:
        await scheduler.run(job)
    finally:
        await store.aclose()
        await guard.aclose()
        os.close(fd)


@dataclass
class ProofResult:
    occurrences: int = 0
    duplicates: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)
    off_grid: list[str] = field(default_factory=list)
    in_flight_at_kill: list[str] = field(default_factory=list)
    killed_run_started: bool = False
    runs_per_pid: dict[str, int] = field(default_factory=dict)
    duplicate_fencing_tokens: int = 0
    lateness_p50_ms: float = 0.0
    lateness_p99_ms: float = 0.0
    exit_codes: list[int | None] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        clean_exits = all(code in (0, -signal.SIGKILL) for code in self.exit_codes)
        return clean_exits and self.occurrences > 0 and not (self.duplicates or self.gaps or self.off_grid)


def run_proof(url: str, duration: float, workdir: Path) -> ProofResult:
    """Run the timeline above against ``url`` and check the ledger."""
    import redis

    job_id = f"proof-{uuid.uuid4().hex[:10]}"
    ledger = workdir / "ledger.txt"
    ledger.touch()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    exit_codes: list[int | None] = []
    from scheduler._valkey_common import normalize_url, split_cluster
    from scheduler._valkey_guard import DEFAULT_PREFIX as LEASE_PREFIX
    from scheduler._valkey_keys import cluster_state_keys, guard_base, single_server_state_keys
    from scheduler._valkey_store import DEFAULT_PREFIX as STATE_PREFIX

    plain, cluster = split_cluster(url)
    index_key = f"{guard_base(LEASE_PREFIX, job_id, cluster)}:occurrences"
    state_key = (cluster_state_keys if cluster else single_server_state_keys)(STATE_PREFIX, job_id).state

    def spawn(name: str) -> None:
        args = [sys.executable, __file__, "--worker", "--url", url, "--job-id", job_id, "--ledger", str(ledger)]
        procs[name] = subprocess.Popen(args, stdout=subprocess.DEVNULL)

    client = (redis.RedisCluster if cluster else redis.Redis).from_url(normalize_url(plain))
    try:
        started = time.monotonic()
        spawn("A")
        _wait_for(lambda: client.exists(state_key) == 1, "instance A to save its state")
        spawn("B")
        spawn("C")
        _sleep_until(started + duration * 0.25)
        spawn("D")
        _sleep_until(started + duration * 0.5)
        # Kill the instance that starts the next run, inside it: the in-flight case. It is the
        # one that won the recent races, so the work must move to another instance.
        victim = _next_runner({proc.pid: name for name, proc in procs.items()}, ledger) or "B"
        procs[victim].kill()
        exit_codes.append(procs[victim].wait(WAIT_SECONDS))
        in_flight = [m.decode().rpartition(":occurrence:")[2] for m in client.zrange(index_key, 0, -1)]
        _sleep_until(started + duration * 0.5 + 1.0)
        spawn(victim)
        _sleep_until(started + duration)
        stopped_at = datetime.now(UTC)
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            exit_codes.append(proc.wait(WAIT_SECONDS))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        with contextlib.suppress(redis.RedisError):
            client.delete(state_key)
        client.close()
    return _analyse(ledger.read_text(), in_flight, stopped_at, exit_codes)


def _analyse(text: str, in_flight: list[str], stopped_at: datetime, exit_codes: list[int | None]) -> ProofResult:
    result = ProofResult(exit_codes=exit_codes)
    seen: dict[datetime, int] = {}
    fences: list[str] = []
    lateness: list[float] = []
    for line in text.splitlines():
        instant_text, pid, fence, late = line.split()
        instant = datetime.fromisoformat(instant_text)
        seen[instant] = seen.get(instant, 0) + 1
        result.runs_per_pid[pid] = result.runs_per_pid.get(pid, 0) + 1
        fences.append(fence)
        lateness.append(float(late))
    if not seen:
        return result
    result.duplicate_fencing_tokens = len(fences) - len(set(fences))
    first = min(seen)
    # The key format has 9 fractional digits; the ledger has ISO text: compare as instants.
    killed = {datetime.fromisoformat(text.replace("000Z", "+00:00")) for text in in_flight}
    result.in_flight_at_kill = sorted(i.isoformat() for i in killed)
    # The killed run wrote its ledger line before it died: it counts as started, once.
    result.killed_run_started = bool(killed) and all(seen.get(i) == 1 for i in killed)
    result.off_grid = sorted(i.isoformat() for i in seen if (i - first) % INTERVAL)
    result.duplicates = sorted(i.isoformat() for i, count in seen.items() if count > 1)
    instant = first
    while instant <= stopped_at - END_MARGIN:
        if instant in seen:
            result.occurrences += 1
        elif instant not in killed:
            result.gaps.append(instant.isoformat())
        instant += INTERVAL
    lateness.sort()
    result.lateness_p50_ms = round(lateness[len(lateness) // 2] * 1000, 2)
    result.lateness_p99_ms = round(lateness[min(len(lateness) - 1, int(len(lateness) * 0.99))] * 1000, 2)
    return result


def _next_runner(names: dict[int, str], ledger: Path) -> str | None:
    """The name of the instance that starts the next run, as soon as it does (None if no run
    starts within a few seconds)."""
    with ledger.open() as handle:
        handle.seek(0, os.SEEK_END)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            for line in handle.readlines():
                pid = line.split()[1:2]
                if pid and pid[0].isdigit() and int(pid[0]) in names:
                    return names[int(pid[0])]
            time.sleep(0.002)
    return None


def _wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _sleep_until(deadline: float) -> None:
    time.sleep(max(0.0, deadline - time.monotonic()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (the tests use 12)")
    parser.add_argument("--url", default=os.environ.get("SCHEDULER_VALKEY_URL"), help="else start a private server")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--job-id", help=argparse.SUPPRESS)
    parser.add_argument("--ledger", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(_worker(args.url, args.job_id, args.ledger))
        return 0
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from valkey_server import ServerProcess, find_server_binary

    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        url = args.url
        if not url:
            binary = find_server_binary()
            if binary is None:
                print("no valkey-server or redis-server found", file=sys.stderr)
                return 2
            url = stack.enter_context(ServerProcess(binary)).url
        result = run_proof(url, args.duration, Path(tmp))
    print(json.dumps({**asdict(result), "ok": result.ok}, indent=2))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
