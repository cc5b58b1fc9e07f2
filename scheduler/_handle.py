"""SchedulerHandle: thread- and signal-safe control of a running (or about to run) Scheduler."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import timedelta
from enum import Enum

from ._records import record


class CommandKind(Enum):
    SHUTDOWN = "shutdown"
    CANCEL = "cancel"
    PAUSE = "pause"
    RESUME = "resume"
    TRIGGER_NOW = "trigger_now"


@record
class Command:
    """One control command (``grace``: how long a shutdown lets active runs finish)."""

    kind: CommandKind
    grace: timedelta | None = None


class SchedulerHandle:
    """Controls a Scheduler from any thread or a signal handler.

    Commands given before ``run()`` starts are held and applied when it starts; commands that
    reach a run after it finished are dropped, so nothing leaks into the next run.
    """

    def __init__(self) -> None:
        # Re-entrant: a signal handler may interrupt the main thread while it holds the lock.
        self._lock = threading.RLock()
        self._pending: list[Command] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sink: Callable[[Command], None] | None = None

    def shutdown(self, grace: timedelta | float | None = None) -> None:
        """Start nothing new, drop the queued trigger, let active runs finish (cancel after ``grace``)."""
        if grace is not None and not isinstance(grace, timedelta):
            grace = timedelta(seconds=grace)
        self._send(Command(CommandKind.SHUTDOWN, grace))

    def cancel(self) -> None:
        """Stop now: cancel active runs and release their leases."""
        self._send(Command(CommandKind.CANCEL))

    def pause(self) -> None:
        """Start nothing; occurrences falling due are consumed as ``paused``."""
        self._send(Command(CommandKind.PAUSE))

    def resume(self) -> None:
        """Undo ``pause()`` and decide again at once."""
        self._send(Command(CommandKind.RESUME))

    def trigger_now(self) -> None:
        """One extra run now (source MANUAL), through the overlap policy and the guard."""
        self._send(Command(CommandKind.TRIGGER_NOW))

    def _send(self, command: Command) -> None:
        with self._lock:
            loop, sink = self._loop, self._sink
            if loop is None or sink is None:
                self._pending.append(command)
                return
        try:
            loop.call_soon_threadsafe(sink, command)
        except RuntimeError:  # the loop closed under us: the run is over, drop the command
            pass

    def _bind(self, loop: asyncio.AbstractEventLoop, sink: Callable[[Command], None]) -> list[Command]:
        with self._lock:
            self._loop, self._sink = loop, sink
            pending, self._pending = self._pending, []
            return pending

    def _unbind(self) -> None:
        with self._lock:
            self._loop = self._sink = None
            self._pending.clear()
