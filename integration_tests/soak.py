"""Multi-process soak under gray failures: 4 CLI replicas, one Valkey, a chaos loop.

    python integration_tests/soak.py [--duration 120] [--seed 1]

The replicas run ``scheduler run --every 200ms --missed replay-all --lease-ttl 3s`` with state
and guard on one Valkey. A chaos loop SIGKILLs replicas, pauses them with SIGSTOP/SIGCONT
(some pauses longer than the lease TTL), freezes Valkey for a few seconds and restarts every
replica that exited. One replica is started with the test hook that makes it stop itself
between its pre-run save and its acquire; the loop holds it there longer than the TTL, then
resumes it (the run asserts that this happened).

The oracle is the append-only file the wrapped command writes (``scheduled_at pid token``),
not the scheduler's records. Verdict: no occurrence in it twice, and every occurrence missing
from it (up to the last one that ran; replay-all runs them in order) accounted for. The run
ledger read from Valkey after the soak is the first account: a missing occurrence is there
as ``interrupted`` (consumed by a process that died or gave up before running it, found by
the next start), ``skipped`` or ``missed`` with a reason. A gap the ledger does not account
for must be explained by a fault near it: a kill or pause of the replica that consumed it, or
a call that failed inside a freeze window (a skip decided after the consuming save is
appended in the background and may die with its replica). The figures are printed as JSON; exit
status 1 when the verdict fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from replicas import Replica, cli_argv, duplicates, log_events, process_state, read_oracle
from valkey_server import ServerProcess, find_server_binary

from scheduler import LedgerEntry, LedgerFate, ValkeyStateStore

PERIOD = timedelta(milliseconds=200)
TTL_SECONDS = 3.0
REPLICAS = 4
HOOK_AT = 5  # the hooked replica stops before its 5th acquire
#: An occurrence this close to a fault (before or after) may have been consumed by its victim.
SLACK = timedelta(seconds=1)


@dataclass
class Figures:
    duration_s: float = 0.0
    runs: int = 0
    occurrences: int = 0
    kills: int = 0
    pauses: int = 0
    long_pauses: int = 0
    pauses_before_acquire: int = 0
    freezes: int = 0
    restarts: int = 0
    duplicates: int = 0
    gaps: int = 0
    gaps_by_cause: dict[str, int] = field(default_factory=dict)
    gaps_in_ledger: dict[str, int] = field(default_factory=dict)
    unexplained: list[str] = field(default_factory=list)
    on_guard_error: str = "fail"

    @property
    def ok(self) -> bool:
        return self.runs > 0 and self.duplicates == 0 and not self.unexplained and self.pauses_before_acquire > 0


def _now() -> datetime:
    return datetime.now(UTC)


def _cli_supports(flag: str) -> bool:
    help_text = subprocess.run(
        [sys.executable, "-m", "scheduler", "run", "--help"], capture_output=True, text=True, check=False
    ).stdout
    return flag in help_text


class Chaos:
    """The fault schedule: one action every few seconds, pauses and freezes undone when due."""

    def __init__(self, server: ServerProcess, replicas: list[Replica], seed: int) -> None:
        self.server, self.replicas, self.rng = server, replicas, random.Random(seed)
        self.kills: list[tuple[datetime, str]] = []
        self.pauses: list[tuple[datetime, datetime, str]] = []
        self.freezes: list[tuple[datetime, datetime]] = []
        self.paused: dict[str, float] = {}  # replica -> monotonic time to resume it
        self.hooked: set[str] = set()
        self.thaw_at: float | None = None
        self.restarts = 0
        self.long_pauses = 0
        self.hook_pauses = 0
        self._pause_started: dict[str, datetime] = {}
        self._freeze_started: datetime | None = None

    def tick(self) -> None:
        mono = time.monotonic()
        for replica in self.replicas:  # the hooked replica stopped itself before an acquire
            if replica.alive and replica.name not in self.paused and process_state(replica.pid) == "T":
                self.hook_pauses += 1
                self._pause(replica, TTL_SECONDS + 1.5, stopped=True)
        for name, due in list(self.paused.items()):
            if mono >= due:
                self._resume(name)
        if self.thaw_at is not None and mono >= self.thaw_at:
            self.server.thaw()
            assert self._freeze_started is not None
            self.freezes.append((self._freeze_started, _now()))
            self.thaw_at = None
        if self.thaw_at is None:
            for replica in self.replicas:
                if not replica.alive and replica.name not in self.paused:
                    replica.reap()
                    replica.start()
                    self.restarts += 1

    def act(self) -> None:
        live = [r for r in self.replicas if r.alive and r.name not in self.paused]
        action = self.rng.choice(["kill", "kill", "pause", "long_pause", "freeze"])
        if action == "freeze" and self.thaw_at is None:
            self._freeze_started = _now()
            self.server.freeze()
            self.thaw_at = time.monotonic() + self.rng.uniform(2.0, 7.0)  # past 5 s calls fail
        elif action == "kill" and live:
            victim = self.rng.choice(live)
            victim.signal(signal.SIGKILL)
            victim.process.wait() if victim.process else None
            self.kills.append((_now(), victim.name))
        elif action in ("pause", "long_pause") and live:
            long = action == "long_pause"
            self.long_pauses += long
            seconds = self.rng.uniform(TTL_SECONDS + 0.5, TTL_SECONDS + 3) if long else self.rng.uniform(0.3, 2.0)
            self._pause(self.rng.choice(live), seconds, stopped=False)

    def _pause(self, replica: Replica, seconds: float, *, stopped: bool) -> None:
        if not stopped:
            replica.signal(signal.SIGSTOP)
        else:
            self.hooked.add(replica.name)
        self.paused[replica.name] = time.monotonic() + seconds
        self._pause_started[replica.name] = _now()

    def _resume(self, name: str) -> None:
        replica = next(r for r in self.replicas if r.name == name)
        replica.signal(signal.SIGCONT)
        self.pauses.append((self._pause_started.pop(name), _now(), name))
        del self.paused[name]

    def settle(self) -> None:
        for name in list(self.paused):
            self._resume(name)
        if self.thaw_at is not None:
            self.thaw_at = time.monotonic()
            self.tick()


def _explain(
    at: datetime, consumer: str | None, events_by_replica: dict[str, list[dict[str, object]]], chaos: Chaos
) -> str | None:
    """Why occurrence ``at`` never ran, or None when nothing explains it."""

    def near(start: datetime, end: datetime) -> bool:
        return start - SLACK <= at <= end + SLACK

    in_freeze = any(near(start, end) for start, end in chaos.freezes)
    if consumer is not None:
        events = events_by_replica[consumer]
        failed = any(
            (e.get("event") == "RunSkipped" and e.get("reason") == "guard_unavailable" and e.get("scheduled_at"))
            or (e.get("level") == "error")
            for e in events
        )
        if any(name == consumer and near(k, k) for k, name in chaos.kills):
            return "kill of the replica that consumed it"
        if failed and in_freeze:
            return "guard or store call failed inside a freeze window"
        if any(name == consumer and near(start, end) for start, end, name in chaos.pauses):
            return "pause of the replica that consumed it"
    if any(near(k, k) for k, _ in chaos.kills):
        return "kill (consumed by a replica killed before it logged the trigger)"
    if _killed_in_its_freeze(at, chaos):
        # The consuming call was sent into the frozen server and its replica killed before the
        # thaw: the server still ran the call (it was in its input buffer), for a dead client.
        return "kill inside the freeze window (a consuming call in flight, applied at the thaw)"
    if in_freeze and _errors_logged_in_a_freeze(at, events_by_replica, chaos):
        return "save in flight inside a freeze window (the replica logged the failed call and exited)"
    return None


def _killed_in_its_freeze(at: datetime, chaos: Chaos) -> bool:
    """A replica was killed during the freeze around ``at``."""
    return any(
        start - SLACK <= at <= end + SLACK and any(start <= k <= end for k, _ in chaos.kills)
        for start, end in chaos.freezes
    )


def _errors_logged_in_a_freeze(
    at: datetime, events_by_replica: dict[str, list[dict[str, object]]], chaos: Chaos
) -> bool:
    """A replica logged a failed store or guard call during the freeze around ``at``."""
    for start, end in chaos.freezes:
        if not start - SLACK <= at <= end + SLACK:
            continue
        for events in events_by_replica.values():
            for event in events:
                if event.get("level") == "error" and "ts" in event:
                    logged = datetime.fromisoformat(str(event["ts"]))
                    if start <= logged <= end + timedelta(seconds=6):
                        return True
    return False


#: Ledger fates that account for an occurrence that did not run.
_NOT_RUN = {LedgerFate.INTERRUPTED, LedgerFate.SKIPPED, LedgerFate.MISSED}


def read_ledger(url: str, job_id: str) -> dict[datetime, list[LedgerEntry]]:
    """The job's run ledger by occurrence (a range entry listed under each instant it covers)."""

    async def history() -> list[LedgerEntry]:
        store = ValkeyStateStore(url)
        try:
            return await store.history(job_id, limit=100_000)
        finally:
            await store.aclose()

    by_occurrence: dict[datetime, list[LedgerEntry]] = {}
    for entry in asyncio.run(history()):
        at = entry.scheduled_at
        while at <= entry.last_scheduled_at:
            by_occurrence.setdefault(at, []).append(entry)
            at += PERIOD
    return by_occurrence


def _ledger_account(entries: list[LedgerEntry]) -> str | None:
    """How the ledger accounts for an occurrence missing from the oracle, None when it does not."""
    if len(entries) != 1 or entries[0].fate not in _NOT_RUN:
        return None  # absent, recorded as a run, or recorded twice
    entry = entries[0]
    return entry.fate.value if entry.reason is None else f"{entry.fate.value} ({entry.reason.value})"


def analyse(
    oracle: Path,
    replicas: list[Replica],
    chaos: Chaos,
    figures: Figures,
    ledger: dict[datetime, list[LedgerEntry]],
) -> None:
    lines = read_oracle(oracle)
    figures.runs = len(lines)
    figures.duplicates = len(duplicates(lines))
    if not lines:
        return
    seen = {line.scheduled_at for line in lines}
    first, last = min(seen), max(seen)
    events_by_replica = {r.name: log_events(r.log) for r in replicas}
    consumers: dict[datetime, str] = {}
    for name, events in events_by_replica.items():
        for event in events:
            if event.get("event") == "TriggerEmitted":
                consumers[datetime.fromisoformat(str(event["scheduled_at"]))] = name
    at = first
    while at <= last:
        figures.occurrences += 1
        if at not in seen:
            figures.gaps += 1
            account = _ledger_account(ledger.get(at, []))
            cause = _explain(at, consumers.get(at), events_by_replica, chaos)
            if account is None and cause is None:
                fates = [entry.fate.value for entry in ledger.get(at, [])]
                figures.unexplained.append(f"{at.isoformat()} (ledger: {fates or 'nothing'})")
                continue
            # A skip decided after the consuming save is appended in the background and may
            # die with its replica: a fault of that replica then explains the missing entry.
            account = account or "not in the ledger"
            figures.gaps_in_ledger[account] = figures.gaps_in_ledger.get(account, 0) + 1
            cause = cause or "no fault near its scheduled time (consumed later, while replaying a backlog)"
            figures.gaps_by_cause[cause] = figures.gaps_by_cause.get(cause, 0) + 1
        at += PERIOD


def soak(duration: float, seed: int, workdir: Path) -> Figures:
    figures = Figures(duration_s=duration)
    binary = find_server_binary()
    if binary is None:
        raise SystemExit("no valkey-server or redis-server found")
    job_id = f"soak-{uuid.uuid4().hex[:10]}"
    oracle = workdir / "oracle.txt"
    extra = ["--on-guard-error", "skip"] if _cli_supports("--on-guard-error") else []
    figures.on_guard_error = "skip" if extra else "fail"
    with ServerProcess(binary) as server:
        argv = cli_argv(job_id, server.url, oracle, missed="replay-all", lease_ttl="3s", extra=extra)
        argv[-1] = argv[-1].replace("sleep 0.1", "sleep 0.02")  # short runs: the backlog replays fast
        # The hook replica names the same server differently for its state, so it uses the
        # per-component protocol: that is where a pause between the consuming save and the
        # acquire can happen (with store and guard on one server, both are one script).
        hook_argv = cli_argv(
            job_id,
            server.url,
            oracle,
            missed="replay-all",
            lease_ttl="3s",
            extra=extra,
            state_url=server.url.replace("127.0.0.1", "localhost"),
        )
        hook_argv[-1] = argv[-1]
        replicas = [Replica(f"r{i}", argv, workdir / f"r{i}.log") for i in range(REPLICAS - 1)]
        replicas.append(Replica(f"r{REPLICAS - 1}", hook_argv, workdir / f"r{REPLICAS - 1}.log"))
        chaos = Chaos(server, replicas, seed)
        try:
            for replica in replicas[:-1]:
                replica.start()
            replicas[-1].start({"SCHEDULER_TEST_STOP_BEFORE_ACQUIRE": str(HOOK_AT)})
            started = time.monotonic()
            next_action = started + 3.0
            while time.monotonic() - started < duration:
                chaos.tick()
                if time.monotonic() >= next_action:
                    chaos.act()
                    next_action = time.monotonic() + chaos.rng.uniform(1.5, 4.0)
                time.sleep(0.05)
            chaos.settle()
            # Let the backlog replay (replay-all), then stop everyone gracefully.
            deadline = time.monotonic() + 20
            target = _now() - timedelta(seconds=1)
            while time.monotonic() < deadline:
                chaos.tick()
                lines = read_oracle(oracle)
                if lines and max(line.scheduled_at for line in lines) >= target:
                    break
                time.sleep(0.1)
        finally:
            for replica in replicas:
                replica.stop()
            server.thaw()
        analyse(oracle, replicas, chaos, figures, read_ledger(server.url, job_id))
    figures.kills = len(chaos.kills)
    figures.pauses = len(chaos.pauses)
    figures.long_pauses = chaos.long_pauses
    figures.pauses_before_acquire = chaos.hook_pauses
    figures.freezes = len(chaos.freezes)
    figures.restarts = chaos.restarts
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of chaos (default 120)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="scheduler-soak-") as workdir:
        figures = soak(args.duration, args.seed, Path(workdir))
    print(json.dumps({**asdict(figures), "ok": figures.ok}, indent=2))
    return 0 if figures.ok else 1


if __name__ == "__main__":
    sys.exit(main())
