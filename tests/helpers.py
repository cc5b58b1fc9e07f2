"""Small helpers for runner tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from scheduler import TaskContext
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
