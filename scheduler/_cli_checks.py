"""Start-up checks of ``scheduler run`` / ``check``: mistakes are found before the first
occurrence, not at 03:00 the next night.

The command must resolve to an executable and the ``--report`` folder must be writable
(usage errors, exit 2). The store and the guard must answer: a store or guard that is
unreachable is retried with backoff for ``--startup-timeout`` (a pod must not crash-loop while
Valkey restarts), then it is a runtime error (exit 1).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ._cli_log import say
from ._config import SchedulerConfig
from ._errors import StoreError, StoreErrorKind
from ._guard import ExecutionGuard
from ._job import Job
from ._state import JobState
from ._store import StateStore

EXIT_ERROR, EXIT_USAGE = 1, 2
#: Retry delays while waiting for the store or the guard: 0.1 s doubling up to 2 s.
_FIRST_DELAY, _MAX_DELAY = 0.1, 2.0
#: One probe call may take this long before it counts as a failed attempt.
_PROBE_DEADLINE = 5.0


class StartupFailed(Exception):
    """A start-up check failed: ``code`` is the exit status, ``message`` one line."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def check_command(command: list[str]) -> None:
    """The program to run exists and is executable (looked up in PATH when it has no slash)."""
    program = command[0]
    if not program:
        raise StartupFailed(EXIT_USAGE, "the command to run is empty")
    if shutil.which(program) is None:
        where = "is not an executable file" if os.sep in program else "is not found in PATH"
        raise StartupFailed(EXIT_USAGE, f"command {program!r} {where}")


def check_report(path: str) -> None:
    """``--report``'s folder exists (or can be created) and a file can be written in it.

    Tried for real (create and delete a probe file): permission bits say nothing for root or
    for read-only mounts.
    """
    target = Path(path)
    if target.is_dir():
        raise StartupFailed(EXIT_USAGE, f"--report {path!r} is a folder, not a file")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".probe"):
            pass
    except OSError as exc:
        reason = exc.strerror if exc.strerror else type(exc).__name__
        raise StartupFailed(EXIT_USAGE, f"--report {path!r}: its folder is not writable ({reason})") from exc


def _networked(url: str) -> bool:
    return not url.strip().lower().startswith(("sqlite:", "memory:"))


async def _retrying(what: str, attempt: Any, timeout: float, retry_if: Any) -> Any:
    loop = asyncio.get_running_loop()
    deadline, delay, warned = loop.time() + timeout, _FIRST_DELAY, False
    while True:
        try:
            return await asyncio.wait_for(attempt(), _PROBE_DEADLINE)
        except Exception as exc:
            left = deadline - loop.time()
            if not retry_if(exc) or left <= 0:
                raise
            if not warned:
                say(logging.WARNING, "startup_waiting", f"{what} is not reachable yet; retrying for up to "
                    f"{timeout:g}s: {' '.join(str(exc).split())[:200]}", target=what, timeout=timeout)  # fmt: skip
                warned = True
            await asyncio.sleep(min(delay, left))  # the last attempt comes at the deadline
            delay = min(delay * 2, _MAX_DELAY)


def _transient_store_error(url: str) -> Any:
    def retry_if(exc: BaseException) -> bool:
        if isinstance(exc, TimeoutError):
            return True
        return isinstance(exc, StoreError) and exc.kind is not StoreErrorKind.DATA and _networked(url)

    return retry_if


async def probe_store(store: StateStore, url: str, job_id: str, timeout: float) -> JobState | None:
    """Load the job's state once the store answers (a data error is not waited for)."""
    from ._cli_common import redact

    try:
        state: JobState | None = await _retrying(
            f"state store {redact(url)}", lambda: store.load(job_id), timeout, _transient_store_error(url)
        )
    except TimeoutError as exc:
        raise StartupFailed(EXIT_ERROR, f"state store {redact(url)} did not answer within {timeout:g}s") from exc
    except StoreError as exc:
        raise StartupFailed(EXIT_ERROR, " ".join(str(exc).split())) from exc
    return state


async def probe_guard(guard: ExecutionGuard, url: str, timeout: float) -> None:
    """One PING through the guard's client (retried like the store while it is unreachable)."""
    from ._cli_common import redact

    client = getattr(guard, "client", None)
    if client is None:
        return
    try:
        await _retrying(f"guard {redact(url)}", client.ping, timeout, lambda exc: True)
    except Exception as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise StartupFailed(EXIT_ERROR, f"guard {redact(url)} is not reachable: {detail}") from exc


def print_next(job: Job, config: SchedulerConfig, state: JobState | None, count: int = 5) -> None:
    """What ``scheduler check`` shows: where the job stands and its next occurrences."""
    from ._cli_common import fmt_local
    from ._clock import SystemClock

    zone = config.timezone
    if state is not None and state.next_run_at is None:
        print(f"stored state: terminal after {state.trigger_count} runs (nothing left to run; reset to start over)")
        return
    if state is not None and state.next_run_at is not None:
        print(f"stored state: {state.trigger_count} occurrences consumed, {state.runs_started} runs started")
        first = state.next_run_at
        instants = [first, *job.schedule.preview(count - 1, after=first, timezone=zone)]
    else:
        print("stored state: none yet (the job starts fresh)")
        instants = job.schedule.preview(count, after=SystemClock().now(), timezone=zone)
    if not instants:
        print("next occurrences: none")
        return
    print("next occurrences:")
    for instant in instants[:count]:
        print(f"  {fmt_local(instant, zone.key)}")
