"""Scheduler: the public front of the run loop, light to import.

``from scheduler import Scheduler`` should cost little more than the value types a script
builds its job from. So this module imports nothing at load time: the defaults (store, guard,
clock, handle, observer fan-out) load when a Scheduler is built, and the run loop (``_runner``)
when ``run`` is first called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._clock import Clock
    from ._config import SchedulerConfig
    from ._guard import ExecutionGuard
    from ._handle import SchedulerHandle
    from ._job import Job
    from ._observers import ObserverLike
    from ._state import SchedulerReport
    from ._store import StateStore

__all__ = ["Scheduler"]


class Scheduler:
    """Runs one job at a time through its schedule, policies, store, guard and observers.

    Defaults: in-memory store, no-op guard, no observer, system clock. A second concurrent
    ``run`` raises RuntimeError; sequential reuse is fine.
    """

    def __init__(
        self,
        config: SchedulerConfig | None = None,
        store: StateStore | None = None,
        *,
        observer: ObserverLike | Iterable[ObserverLike] | None = None,
        guard: ExecutionGuard | None = None,
        clock: Clock | None = None,
    ) -> None:
        from ._clock import SystemClock
        from ._config import SchedulerConfig
        from ._guard import NoopExecutionGuard
        from ._handle import SchedulerHandle
        from ._observers import Fanout
        from ._store import InMemoryStateStore

        self.config = config or SchedulerConfig()
        self.store: StateStore = store if store is not None else InMemoryStateStore()
        self.guard: ExecutionGuard = guard if guard is not None else NoopExecutionGuard()
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._fanout = Fanout(observer)
        self._handle = SchedulerHandle()
        self._running = False

    def handle(self) -> SchedulerHandle:
        """The (one) control handle of this scheduler; safe from any thread or signal handler."""
        return self._handle

    async def run(self, job: Job) -> SchedulerReport:
        """Drive ``job`` until it is terminal, shut down, cancelled, loses its lease, or fails."""
        from ._job import Job
        from ._runner import _Loop

        if not isinstance(job, Job):
            raise TypeError(f"run() takes a Job, got {job!r}")
        if self._running:
            raise RuntimeError("this Scheduler is already running a job; use another Scheduler")
        self._running = True
        try:
            return await _Loop(self, job).run()
        finally:
            self._running = False

    def run_sync(self, job: Job) -> SchedulerReport:
        """Run ``job`` on a fresh event loop (for scripts). The first Ctrl-C stops gracefully,
        a second cancels; either way the report is returned, with no traceback."""
        from ._sync import run_sync

        return run_sync(self, job)
