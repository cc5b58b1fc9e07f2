"""CommandTask: exit status, streaming, timeout/cancel killing the whole group, no zombies."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from scheduler import RunContext, TaskContext, TriggerSource
from scheduler._command import CommandFailed, CommandTask

AT = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def ctx(attempt: int = 1) -> TaskContext:
    run = RunContext(
        job_id="job-1",
        scheduled_at=AT,
        catch_up=False,
        timezone=ZoneInfo("UTC"),
        trigger_count=7,
        attempt=attempt,
        source=TriggerSource.SCHEDULED,
    )
    return TaskContext(run=run, deps=None)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is only gone once reaped. Check its state.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def read_if_any(path: Path) -> str:
    return path.read_text().strip() if path.exists() else ""


async def wait_for_file(path: Path, timeout: float = 10.0) -> str:
    for _ in range(int(timeout / 0.01)):
        if text := read_if_any(path):
            return text
        await asyncio.sleep(0.01)
    raise AssertionError(f"{path} never written")


async def test_success_streams_prefixed_lines() -> None:
    out, err = io.StringIO(), io.StringIO()
    command = CommandTask(["sh", "-c", "echo hello; echo oops >&2; printf 'no newline'"], stdout=out, stderr=err)
    await command.run(ctx())
    assert out.getvalue().splitlines() == [
        "[job-1 2025-01-02T03:04:05.678Z] hello",
        "[job-1 2025-01-02T03:04:05.678Z] no newline",
    ]
    assert err.getvalue() == "[job-1 2025-01-02T03:04:05.678Z] oops\n"


async def test_attempt_shown_after_the_first() -> None:
    out = io.StringIO()
    await CommandTask(["echo", "x"], stdout=out).run(ctx(attempt=2))
    assert out.getvalue() == "[job-1 2025-01-02T03:04:05.678Z attempt 2] x\n"


async def test_json_lines() -> None:
    out = io.StringIO()
    await CommandTask(["echo", "héllo"], log_format="json", stdout=out).run(ctx())
    record = json.loads(out.getvalue())
    assert record["line"] == "héllo"
    assert record["stream"] == "stdout"
    assert record["job_id"] == "job-1"
    assert record["scheduled_at"] == "2025-01-02T03:04:05.678000Z"
    assert record["trigger_count"] == 7


async def test_environment_describes_the_run() -> None:
    out = io.StringIO()
    await CommandTask(
        ["sh", "-c", 'echo "$SCHEDULER_JOB_ID $SCHEDULER_ATTEMPT $SCHEDULER_TRIGGER_COUNT"'], stdout=out
    ).run(ctx())
    assert out.getvalue().endswith("] job-1 1 7\n")


async def test_failure_carries_exit_code_and_stderr_tail() -> None:
    script = "for i in 1 2 3 4 5 6 7; do echo line$i >&2; done; exit 3"
    command = CommandTask(["sh", "-c", script], stderr=io.StringIO(), stderr_tail=2)
    with pytest.raises(CommandFailed) as info:
        await command.run(ctx())
    assert info.value.returncode == 3
    assert str(info.value) == "exit code 3; stderr: line6 | line7"


async def test_killed_by_signal_is_named() -> None:
    with pytest.raises(CommandFailed, match="killed by SIGKILL"):
        await CommandTask(["sh", "-c", "kill -9 $$"]).run(ctx())


async def test_missing_program_fails_the_run() -> None:
    with pytest.raises(CommandFailed, match="cannot start 'definitely-not-a-program-xyz'"):
        await CommandTask(["definitely-not-a-program-xyz"]).run(ctx())


async def test_long_line_is_split_not_buffered_forever() -> None:
    out = io.StringIO()
    await CommandTask([sys.executable, "-c", "print('x' * 200000)"], stdout=out).run(ctx())
    payload = "".join(line.split("] ", 1)[1] for line in out.getvalue().splitlines())
    assert payload == "x" * 200000


async def test_timeout_kills_the_group_and_reaps(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 60 & echo $! > {pids}.child; echo $$ > {pids}; wait"
    command = CommandTask(["sh", "-c", script], kill_grace=2.0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await command.run(ctx())
    leader, child = int((tmp_path / "pids").read_text()), int((tmp_path / "pids.child").read_text())
    assert not alive(leader)
    assert not alive(child)


async def test_sigterm_ignored_escalates_to_sigkill(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    script = f"trap '' TERM; echo $$ > {ready}; while true; do sleep 0.05; done"
    command = CommandTask(["sh", "-c", script], kill_grace=0.3)
    task = asyncio.ensure_future(command.run(ctx()))
    pid = int(await wait_for_file(ready))
    started = asyncio.get_running_loop().time()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert asyncio.get_running_loop().time() - started >= 0.3
    assert not alive(pid)


async def test_background_leftovers_are_stopped_after_exit(tmp_path: Path) -> None:
    child = tmp_path / "child"
    await CommandTask(["sh", "-c", f"sleep 60 & echo $! > {child}"]).run(ctx())
    assert not alive(int(child.read_text()))


async def test_detached_process_holding_the_pipe_does_not_hang_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("scheduler._command.DRAIN_WAIT", 0.2)
    pid_file = tmp_path / "detached"
    # setsid leaves our process group on purpose; it keeps stdout open for 60 s.
    script = f"setsid sh -c 'echo $$ > {pid_file}; exec sleep 60' & sleep 0.2"
    await asyncio.wait_for(CommandTask(["sh", "-c", script]).run(ctx()), 10)
    pid = int(await wait_for_file(pid_file))
    os.kill(pid, 9)


async def test_cancel_while_the_process_starts_still_stops_its_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run cancelled before the spawn returned stops the group like any other (TERM, grace, KILL)."""
    ready = tmp_path / "ready"
    spawned = asyncio.Event()
    real_start = CommandTask._start

    async def slow_start(self: CommandTask, ctx: TaskContext) -> Any:
        started = await real_start(self, ctx)
        spawned.set()
        await asyncio.sleep(0.2)  # the process exists; the run has not seen it yet
        return started

    monkeypatch.setattr(CommandTask, "_start", slow_start)
    script = f"trap '' TERM; echo $$ > {ready}; while true; do sleep 0.05; done"
    task = asyncio.ensure_future(CommandTask(["sh", "-c", script], kill_grace=0.3).run(ctx()))
    await asyncio.wait_for(spawned.wait(), 10)
    pid = int(await wait_for_file(ready))
    started = asyncio.get_running_loop().time()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert asyncio.get_running_loop().time() - started >= 0.3  # TERM was ignored: the grace ran out
    assert not alive(pid)
