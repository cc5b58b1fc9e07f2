"""Run an external command as a job's task (the CLI's ``-- COMMAND [ARGS...]``).

Each attempt starts the command in its own session (so its own process group), streams its
output line by line with a prefix naming the job and occurrence, and turns its exit status
into the run's outcome. Whatever happens to the run (exit, timeout, cancel), the whole
process group is stopped and the leader reaped before the attempt returns: no strays, no
zombies.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal, TextIO

from ._clock import SystemClock, monotonic
from ._job import Task, TaskContext
from ._time import format_utc

LogFormat = Literal["text", "json"]

#: Seconds between SIGTERM and SIGKILL when a run is cancelled or timed out.
DEFAULT_KILL_GRACE = 5.0
#: After SIGKILL, how long we wait for the group to disappear before giving up on it.
KILL_WAIT = 5.0
#: After the processes are gone, how long output still in the pipes may take to drain.
DRAIN_WAIT = 2.0
#: Lines longer than this are emitted in pieces (a missing newline must not grow memory).
MAX_LINE_BYTES = 64 * 1024
READ_CHUNK = 64 * 1024
_PROC = Path("/proc")


class CommandFailed(Exception):
    """The command exited non-zero, was killed by a signal, or could not be started."""

    def __init__(self, message: str, returncode: int | None) -> None:
        super().__init__(message)
        self.returncode = returncode


def _occurrence_label(ctx: TaskContext) -> str:
    at = ctx.run.scheduled_at
    text = at.strftime("%Y-%m-%dT%H:%M:%S")
    if at.microsecond:
        text += f".{at.microsecond // 1000:03d}"
    return text + "Z"


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    """Whether a live (non-zombie) process is left in the group.

    ``killpg(pgid, 0)`` also succeeds for zombies, and an orphan's zombie lingers until its
    new parent reaps it (some container inits take seconds). On Linux we therefore look at
    ``/proc`` for a member that is not a zombie.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not _PROC.is_dir():
        return True
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited while we looked
            continue
        # Fields after the parenthesised command: state, ppid, pgrp, ...
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in {"Z", "X"}:
            return True
    return False


async def _wait_gone(proc: asyncio.subprocess.Process, pgid: int, timeout: float) -> bool:
    """Wait until the leader is reaped and no process is left in its group."""
    deadline = monotonic() + timeout
    delay = 0.005
    while proc.returncode is None or _group_alive(pgid):
        if monotonic() >= deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)
    return True


class _Exit(asyncio.subprocess.SubprocessStreamProtocol):
    """The stock stream protocol, plus a future that resolves when the leader exits."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=READ_CHUNK, loop=loop)
        self.future: asyncio.Future[None] = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.future.done():
            self.future.set_result(None)


class CommandTask:
    """Turns ``argv`` into a :class:`Task`: one subprocess per attempt.

    Exit 0 is success; anything else raises :class:`CommandFailed` with the exit code (or
    signal) and the last ``stderr_tail`` stderr lines. The command gets ``SCHEDULER_JOB_ID``,
    ``SCHEDULER_SCHEDULED_AT``, ``SCHEDULER_ATTEMPT``, ``SCHEDULER_TRIGGER_COUNT`` and
    ``SCHEDULER_CATCH_UP`` in its environment, and stdin from /dev/null.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_format: LogFormat = "text",
        kill_grace: float = DEFAULT_KILL_GRACE,
        stderr_tail: int = 5,
        env: Mapping[str, str] | None = None,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        if not argv:
            raise ValueError("a command is required")
        self.argv = tuple(argv)
        self.log_format = log_format
        self.kill_grace = kill_grace
        self.stderr_tail = stderr_tail
        self.env = env
        # None means "the current sys.stdout/sys.stderr at write time" (test capture works).
        self._out = stdout
        self._err = stderr
        self._clock = SystemClock()

    def task(self) -> Task:
        return Task.from_async(self.run)

    def _environment(self, ctx: TaskContext) -> dict[str, str]:
        env = dict(os.environ if self.env is None else self.env)
        run = ctx.run
        env.update(
            SCHEDULER_JOB_ID=run.job_id,
            SCHEDULER_SCHEDULED_AT=format_utc(run.scheduled_at),
            SCHEDULER_ATTEMPT=str(run.attempt),
            SCHEDULER_TRIGGER_COUNT=str(run.trigger_count),
            SCHEDULER_CATCH_UP="1" if run.catch_up else "0",
        )
        if run.fencing_token is not None:
            env["SCHEDULER_FENCING_TOKEN"] = str(run.fencing_token)
        return env

    def _emit(self, ctx: TaskContext, stream: str, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        target = (self._out or sys.stdout) if stream == "stdout" else (self._err or sys.stderr)
        if self.log_format == "json":
            record = {
                "ts": format_utc(self._clock.now()),
                "job_id": ctx.run.job_id,
                "scheduled_at": format_utc(ctx.run.scheduled_at),
                "trigger_count": ctx.run.trigger_count,
                "attempt": ctx.run.attempt,
                "stream": stream,
                "line": line,
            }
            text = json.dumps(record, ensure_ascii=False)
        else:
            attempt = f" attempt {ctx.run.attempt}" if ctx.run.attempt > 1 else ""
            text = f"[{ctx.run.job_id} {_occurrence_label(ctx)}{attempt}] {line}"
        try:
            target.write(text + "\n")
            target.flush()
        except (OSError, ValueError):  # closed or broken pipe: the run itself must go on
            pass

    async def _pump(self, ctx: TaskContext, reader: asyncio.StreamReader, stream: str, tail: deque[str]) -> None:
        pending = b""
        while chunk := await reader.read(READ_CHUNK):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if len(pending) > MAX_LINE_BYTES:
                lines.append(pending)
                pending = b""
            for line in lines:
                self._emit(ctx, stream, line)
                tail.append(line.decode("utf-8", errors="replace").rstrip("\r"))
        if pending:
            self._emit(ctx, stream, pending)
            tail.append(pending.decode("utf-8", errors="replace").rstrip("\r"))

    async def _stop_group(self, proc: asyncio.subprocess.Process, pgid: int) -> None:
        """SIGTERM the group, SIGKILL it after the grace, wait for it to be gone."""
        if proc.returncode is not None and not _group_alive(pgid):
            return
        _signal_group(pgid, signal.SIGTERM)
        if not await _wait_gone(proc, pgid, self.kill_grace):
            _signal_group(pgid, signal.SIGKILL)
            await _wait_gone(proc, pgid, KILL_WAIT)

    async def _cleanup(
        self,
        proc: asyncio.subprocess.Process,
        transport: asyncio.SubprocessTransport,
        readers: list[asyncio.Task[None]],
    ) -> None:
        try:
            await self._stop_group(proc, proc.pid)
            if readers:
                # A process that left our group (setsid) may still hold a pipe: stop reading then.
                _, stuck = await asyncio.wait(readers, timeout=DRAIN_WAIT)
                for reader in stuck:
                    reader.cancel()
                await asyncio.gather(*readers, return_exceptions=True)
        finally:
            transport.close()  # closes our pipe ends; the leader is already reaped

    async def _start(self, ctx: TaskContext) -> tuple[asyncio.subprocess.Process, asyncio.SubprocessTransport, _Exit]:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.subprocess_exec(
            lambda: _Exit(loop),
            *self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            env=self._environment(ctx),
        )
        return asyncio.subprocess.Process(transport, protocol, loop), transport, protocol

    async def run(self, ctx: TaskContext) -> None:
        """One attempt: start, stream, wait, clean up; raise CommandFailed unless exit 0."""
        spawn = asyncio.ensure_future(self._start(ctx))
        try:
            proc, transport, exited = await asyncio.shield(spawn)
        except OSError as exc:
            raise CommandFailed(f"cannot start {self.argv[0]!r}: {exc.strerror or exc}", None) from exc
        except asyncio.CancelledError:
            # Cancelled while the process was starting: once it exists, stop its group like
            # any other (TERM, then KILL after the grace), so no member outlives the run.
            try:
                proc, transport, _ = await spawn
            except OSError:
                raise asyncio.CancelledError from None
            await asyncio.shield(self._cleanup(proc, transport, []))
            raise
        assert proc.stdout is not None
        assert proc.stderr is not None
        tail: deque[str] = deque(maxlen=max(self.stderr_tail, 1))
        readers = [
            asyncio.ensure_future(self._pump(ctx, proc.stdout, "stdout", deque(maxlen=1))),
            asyncio.ensure_future(self._pump(ctx, proc.stderr, "stderr", tail)),
        ]
        try:
            # Not proc.wait(): on Python 3.11 it also waits for the pipes to close, which a
            # background grandchild can delay forever. The leader's exit is what ends the run.
            await asyncio.shield(exited.future)
        finally:
            # Runs on exit, cancel and timeout alike. Shielded: a second cancel while we are
            # stopping the group must not leave it running; it escalates to SIGKILL instead.
            cleanup = asyncio.ensure_future(self._cleanup(proc, transport, readers))
            try:
                await asyncio.shield(cleanup)
            except asyncio.CancelledError:
                _signal_group(proc.pid, signal.SIGKILL)
                raise
        returncode = transport.get_returncode()
        if returncode is None:  # the exit future resolves only after the return code is set
            raise CommandFailed("the command's exit status was lost", None)
        if returncode != 0:
            raise CommandFailed(self._describe_failure(returncode, tail), returncode)

    def _describe_failure(self, returncode: int, tail: deque[str]) -> str:
        if returncode < 0:
            try:
                name = signal.Signals(-returncode).name
            except ValueError:
                name = f"signal {-returncode}"
            what = f"killed by {name}"
        else:
            what = f"exit code {returncode}"
        lines = [line for line in tail if line.strip()][-self.stderr_tail :] if self.stderr_tail else []
        return f"{what}; stderr: {' | '.join(lines)}" if lines else what
