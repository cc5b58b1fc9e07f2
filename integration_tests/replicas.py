"""CLI replicas, an independent oracle and a trigger_count watcher for the fault tests and the soak.

* ``Replica``: one ``python -m scheduler run`` process whose wrapped command appends
  ``scheduled_at pid fencing_token`` to an append-only file (the oracle), then sleeps a little.
  The oracle is written by the command itself, not by the scheduler's own records.
* ``CountWatcher``: a thread that reads the job's stored ``trigger_count`` straight from Valkey
  and remembers every value it saw, so a test can check it never went backwards.
* ``read_oracle`` / ``duplicates``: parse the file and find occurrences that ran twice.

Usable without pytest (the soak script uses it too).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import redis

STATE_PREFIX = "scheduler:valkey:job-state:"
#: Seconds the wrapped command works after writing its line.
COMMAND_SECONDS = 0.1


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 15.0, every: float = 0.01) -> None:
    """Poll ``condition`` until it holds; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def oracle_command(oracle: Path, seconds: float = COMMAND_SECONDS) -> list[str]:
    """The wrapped command: one O_APPEND line per run (atomic for a line this short), then work.

    ``$PPID`` is the replica (the CLI starts the command directly, without a shell between).
    """
    line = '"$SCHEDULER_SCHEDULED_AT $PPID ${SCHEDULER_FENCING_TOKEN:-none}"'
    return ["sh", "-c", f"echo {line} >> {shlex.quote(str(oracle))}; sleep {seconds:g}"]


@dataclass(frozen=True)
class OracleLine:
    scheduled_at: datetime
    pid: int
    fencing_token: str


def read_oracle(oracle: Path) -> list[OracleLine]:
    if not oracle.exists():
        return []
    lines = []
    for text in oracle.read_text().splitlines():
        parts = text.split()
        if len(parts) == 3:  # a line being written right now is skipped until it is whole
            lines.append(OracleLine(datetime.fromisoformat(parts[0]), int(parts[1]), parts[2]))
    return lines


def duplicates(lines: Sequence[OracleLine]) -> dict[datetime, int]:
    counts = Counter(line.scheduled_at for line in lines)
    return {at: n for at, n in counts.items() if n > 1}


def process_state(pid: int) -> str | None:
    """The kernel's one-letter state of ``pid`` (``T`` when stopped), None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()[0]


@dataclass
class Replica:
    """One CLI replica; ``start()`` again after it exited starts a new process (a restart)."""

    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    exits: list[int] = field(default_factory=list)

    def start(self, extra_env: dict[str, str] | None = None) -> None:
        env = {**os.environ, **self.env, **(extra_env or {})}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def reap(self) -> int | None:
        """The exit status if the process ended (recorded once), else None."""
        if self.process is None:
            return None
        code = self.process.poll()
        if code is not None:
            self.exits.append(code)
            self.process = None
        return code

    def signal(self, signum: int) -> None:
        if self.alive:
            assert self.process is not None
            os.kill(self.process.pid, signum)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGCONT (it may be stopped), SIGTERM, wait; SIGKILL if it does not go."""
        if self.process is None:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.reap()


def cli_argv(
    job_id: str,
    url: str,
    oracle: Path,
    *,
    every: str = "200ms",
    missed: str = "catch-up-once",
    overlap: str = "forbid",
    lease_ttl: str = "3s",
    state_url: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "scheduler",
        "run",
        "--job-id",
        job_id,
        "--every",
        every,
        "--missed",
        missed,
        "--overlap",
        overlap,
        "--state",
        state_url or url,
        "--guard",
        url,
        "--lease-ttl",
        lease_ttl,
        "--log-format",
        "json",
        *extra,
        "--",
        *oracle_command(oracle),
    ]


class CountWatcher:
    """Polls the stored ``trigger_count`` of one job in a thread; ``decreases`` lists any drop."""

    def __init__(self, url: str, job_id: str, every: float = 0.01) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=0.5)
        self._key = STATE_PREFIX + job_id
        self._every = every
        self._stop = threading.Event()
        self.values: list[int] = []
        self.decreases: list[tuple[int, int]] = []
        self._thread = threading.Thread(target=self._run, name="count-watcher", daemon=True)

    def __enter__(self) -> CountWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._client.close()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                raw = self._client.get(self._key)
            except redis.RedisError:  # the server is frozen or down: try again later
                continue
            if raw is None:
                continue
            count = int(json.loads(raw)["trigger_count"])
            if self.values and count < self.values[-1]:
                self.decreases.append((self.values[-1], count))
            self.values.append(count)


def log_events(log: Path) -> list[dict[str, object]]:
    """The JSON lines of a replica's log (``--log-format json``); other lines are skipped."""
    events = []
    if not log.exists():
        return events
    for text in log.read_text(errors="replace").splitlines():
        if text.startswith("{"):
            try:
                events.append(json.loads(text))
            except ValueError:
                continue
    return events
