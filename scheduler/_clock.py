"""The one place that reads real time.

Everything else asks a :class:`Clock`, so tests can swap in ``scheduler.testing.FakeClock`` and
run a year of schedule in milliseconds.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache, partial
from typing import Protocol, runtime_checkable

#: How often a long sleep re-reads the wall clock, so a suspend or an NTP step is noticed.
WALL_CLOCK_CHECK_SECONDS = 1.0
#: Scheduling latency the loop timer's wake-up is allowed for: the timer is aimed to end at
#: least this long before the instant (the OS wakes a sleeper 0.06-0.2 ms late here).
EARLY_WAKE_SECONDS = 0.0003
#: A wait of at most this is finished without a loop timer (whose unit is a whole millisecond).
SPIN_SECONDS = EARLY_WAKE_SECONDS + 0.001
#: The end of that last stretch is spent yielding to the loop (``sleep(0)``): at most this long,
#: and at most ``SPIN_SHARE`` of the whole wait, so that short periods do not spend their time
#: spinning. Before it the thread naps (``time.sleep``), which costs a fraction of the CPU.
SPIN_WINDOW_SECONDS = 0.00025
SPIN_SHARE = 0.025
#: The longest nap: the loop serves nothing while the thread naps, so a nap is at most about
#: one tick of the loop's own timers, and the loop gets a turn between naps. Each nap is a
#: wake-up of the process (tens of µs of CPU here): one per wait is the aim.
NAP_SECONDS = 0.001
#: After a long idle stretch the OS wakes us much later (about 1 ms here after 1 s, as the
#: CPU has gone into a deep idle state), so a wait longer than this first ends
#: ``LONG_WAIT_MARGIN_SECONDS`` early, and a second, short timer wait finishes it.
LONG_WAIT_SECONDS = 0.02
LONG_WAIT_MARGIN_SECONDS = 0.004


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

    Precision: stock asyncio hands the selector whole milliseconds, rounded up, and
    ``EpollSelector`` adds one more for some of them (9, 13, 18, 26 ms ...: ``ms * 1e-3`` is a
    hair above the exact value and ``epoll.poll`` rounds up again). So each timer wait here
    is a whole number of milliseconds that is not one of those, aimed to end just before the
    instant (a long wait ends 4 ms early and a second, short one follows, because the OS wakes
    a long-idle process late). The remaining fraction of a millisecond is napped away in short
    blocking sleeps with a loop turn between them, and its last quarter millisecond (less for a
    short wait) spent yielding to the loop: about 0.1-0.3 ms of CPU per wait instead of up to
    1.3 ms of spinning. Other loops (uvloop) may wake early: we re-check and wait again, so a
    wait never ends before its instant.
    """

    #: ``datetime.now(UTC)`` itself, with no method frame around it (read three times per run).
    now: Callable[[], datetime] = staticmethod(partial(datetime.now, UTC))

    async def sleep_until(self, instant: datetime) -> None:
        window = self.spin_window(instant)
        while True:
            delay = self.pause(instant, window)
            if delay is None:
                return
            await asyncio.sleep(delay)

    def spin_window(self, instant: datetime) -> float:
        """How long the end of a wait for ``instant`` that starts now is spent yielding."""
        return min(SPIN_WINDOW_SECONDS, (instant - datetime.now(UTC)).total_seconds() * SPIN_SHARE)

    def pause(self, instant: datetime, spin_window: float) -> float | None:
        """One step of a wait for ``instant``: None once it has come, otherwise the loop wait
        to do next (seconds of timer, or 0: a zero-length yield), after napping if that is due.

        The run loop drives its waits with this directly (it must also stop when woken);
        ``sleep_until`` is the same loop.
        """
        remaining = (instant - datetime.now(UTC)).total_seconds()
        if remaining <= 0:
            return None
        if remaining > SPIN_SECONDS:
            margin = LONG_WAIT_MARGIN_SECONDS if remaining > LONG_WAIT_SECONDS else EARLY_WAKE_SECONDS
            ms = _timer_ms(min(remaining - margin, WALL_CLOCK_CHECK_SECONDS))
            if ms > 0:
                # 1 µs less, so the loop's own ceil() lands on ``ms`` and not on ``ms + 1``.
                return ms * 1e-3 - 1e-6
        if remaining > spin_window:
            # A nap ends 0.05-0.25 ms late (timer slack, wake-up latency): inside the spin
            # window, which the yields then finish exactly. The loop keeps serving other
            # tasks between naps and during the final yields.
            time.sleep(min(remaining - spin_window, NAP_SECONDS))
        return 0.0

    def __repr__(self) -> str:
        return "SystemClock()"


def _timer_ms(seconds: float) -> int:
    """The longest whole-millisecond timer wait that really ends within ``seconds``."""
    ms = math.floor(seconds * 1000)
    while ms > 0 and _oversleeps(ms):
        ms -= 1
    return ms


@lru_cache(maxsize=1024)
def _oversleeps(ms: int) -> bool:
    """True when ``epoll.poll(ms * 1e-3)`` waits ``ms + 1`` ms (CPython rounds the float up)."""
    return math.ceil(ms * 1e-3 * 1e9) > ms * 1_000_000


def monotonic() -> float:
    """Monotonic seconds, for measuring durations (never for instants)."""
    return time.monotonic()
