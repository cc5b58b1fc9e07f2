"""Small helpers for runner tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from scheduler import SchedulerHandle, TaskContext
from scheduler.testing import FakeClock


def sleeper(
    clock: FakeClock, seconds: float, log: list[TaskContext] | None = None
) -> Callable[[TaskContext], Awaitable[None]]:
    """An async task that takes ``seconds`` of fake time and records its contexts."""

    async def task(ctx: TaskContext) -> None:
        if log is not None:
            log.append(ctx)
        await clock.sleep_until(clock.now() + timedelta(seconds=seconds))

    return task


def recorder_task(log: list[TaskContext]) -> Callable[[TaskContext], Awaitable[None]]:
    """An instant async task that records its contexts."""

    async def task(ctx: TaskContext) -> None:
        log.append(ctx)

    return task


def summary(history: Any) -> list[tuple[int, bool, int, str]]:
    """(seconds from T0, catch_up, trigger_count, status) per RunRecord."""
    from tests.conftest import T0

    return [(int((r.scheduled_at - T0).total_seconds()), r.catch_up, r.trigger_count, r.status.value) for r in history]


async def poke(clock: FakeClock, handle: SchedulerHandle, at: datetime, which: float, cancels: bool = False) -> None:
    """At ``at``, one control action chosen by ``which`` in [0, 1): a manual trigger (< 0.3), a
    pause of 35 s (< 0.5), with ``cancels`` a cancel (< 0.6), else nothing."""
    await clock.sleep_until(at)
    if which < 0.3:
        handle.trigger_now()
    elif which < 0.5:
        handle.pause()
        await clock.sleep_until(at + timedelta(seconds=35))
        handle.resume()
    elif cancels and which < 0.6:
        handle.cancel()
