"""SystemClock and FakeClock behaviour."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

import scheduler._clock as clock_module
from scheduler import Clock, SystemClock
from scheduler.testing import FakeClock

from .conftest import T0


class _JumpingDatetime(datetime):
    """A datetime whose now() can be moved, to simulate a wall-clock step."""

    offset = timedelta(0)

    @classmethod
    def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
        return datetime.now(UTC) + cls.offset


async def test_system_clock_notices_a_wall_clock_jump(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wait for an instant an hour away ends within about a second once the wall clock jumps past it."""
    monkeypatch.setattr(clock_module, "datetime", _JumpingDatetime)
    _JumpingDatetime.offset = timedelta(0)
    system = SystemClock()
    deadline = system.now() + timedelta(hours=1)
    waiter = asyncio.create_task(system.sleep_until(deadline))
    await asyncio.sleep(0.05)
    _JumpingDatetime.offset = timedelta(hours=2)  # NTP step / resume from suspend
    started = time.monotonic()
    await asyncio.wait_for(waiter, 5)
    assert time.monotonic() - started < 2 * clock_module.WALL_CLOCK_CHECK_SECONDS


async def test_system_clock_is_never_early() -> None:
    """sleep_until returns at or after the deadline by the wall clock."""
    system = SystemClock()
    for delay_ms in (1, 9, 13, 20):
        deadline = system.now() + timedelta(milliseconds=delay_ms)
        await system.sleep_until(deadline)
        assert system.now() >= deadline


def test_system_clock_is_aware_utc() -> None:
    """now() is timezone-aware UTC and the class satisfies the Clock protocol."""
    now = SystemClock().now()
    assert now.utcoffset() == timedelta(0)
    assert isinstance(SystemClock(), Clock)
    assert isinstance(FakeClock(), Clock)


async def test_fake_clock_advance_wakes_due_sleepers() -> None:
    """advance() moves time and wakes exactly the sleepers whose deadline passed."""
    clock = FakeClock(T0, auto_advance=False)
    woke: list[int] = []

    async def sleeper(seconds: int) -> None:
        await clock.sleep_until(T0 + timedelta(seconds=seconds))
        woke.append(seconds)

    tasks = [asyncio.create_task(sleeper(s)) for s in (5, 10, 20)]
    await asyncio.sleep(0)
    clock.advance(timedelta(seconds=10))
    await asyncio.sleep(0)
    assert woke == [5, 10]
    assert clock.now() == T0 + timedelta(seconds=10)
    clock.advance(10)
    await asyncio.gather(*tasks)
    assert woke == [5, 10, 20]
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)


async def test_fake_clock_auto_advances_when_idle() -> None:
    """With auto_advance the clock jumps to the next deadline as soon as the loop is idle."""
    clock = FakeClock(T0)
    started = time.monotonic()
    await clock.sleep_until(T0 + timedelta(days=365))
    assert clock.now() == T0 + timedelta(days=365)
    assert time.monotonic() - started < 1.0


async def test_fake_clock_waits_for_real_work_in_progress() -> None:
    """A short real sleep in another task keeps the fake clock from jumping past it."""
    clock = FakeClock(T0)
    order: list[str] = []

    async def real_work() -> None:
        await asyncio.sleep(0.05)
        order.append("work done")

    async def fake_wait() -> None:
        await clock.sleep_until(T0 + timedelta(hours=1))
        order.append("fake deadline")

    await asyncio.gather(real_work(), fake_wait())
    assert order == ["work done", "fake deadline"]


def test_fake_clock_rejects_naive_start() -> None:
    """FakeClock(start) must be timezone-aware."""
    from scheduler import InvalidJobError

    with pytest.raises(InvalidJobError):
        FakeClock(datetime(2025, 1, 1))
