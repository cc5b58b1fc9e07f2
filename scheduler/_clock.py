"""The one place that reads real time.

Everything else asks a :class:`Clock`, so tests can swap in ``scheduler.testing.FakeClock`` and
run a year of schedule in milliseconds.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

#: How often a long sleep re-reads the wall clock, so a suspend or an NTP step is noticed.
WALL_CLOCK_CHECK_SECONDS = 1.0
#: Stock asyncio rounds timer waits up to whole milliseconds (and sometimes one more); we
#: wake this much early and finish the wait with short sleeps so we are neither early nor
#: systematically a millisecond late.
EARLY_WAKE_SECONDS = 0.0015


@runtime_checkable
class Clock(Protocol):
    """Source of the current instant and of timed waits.

    Contract: ``now()`` returns an aware UTC datetime that never goes backwards by much;
    ``sleep_until(instant)`` returns no earlier than ``instant`` (by this clock) and is
    cancellable.
    """

    def now(self) -> datetime:
        """Current instant, timezone-aware UTC."""
        ...

    async def sleep_until(self, instant: datetime) -> None:
        """Wait until ``now() >= instant``."""
        ...


class SystemClock:
    """Real time: wall clock for instants, the event loop's monotonic timer for waits.

    A long wait is cut into slices of at most one second and re-checks the wall clock after
    each, so a wall-clock jump (suspend, NTP step) is noticed within a second.
    """

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, instant: datetime) -> None:
        while True:
            remaining = (instant - datetime.now(UTC)).total_seconds()
            if remaining <= 0:
                return
            if remaining > EARLY_WAKE_SECONDS:
                await asyncio.sleep(min(remaining - EARLY_WAKE_SECONDS, WALL_CLOCK_CHECK_SECONDS))
            else:
                # Finish the last fraction of a millisecond precisely: one zero-length
                # yield at a time (the loop keeps serving other tasks meanwhile).
                await asyncio.sleep(0)

    def __repr__(self) -> str:
        return "SystemClock()"


def monotonic() -> float:
    """Monotonic seconds, for measuring durations (never for instants)."""
    return time.monotonic()
