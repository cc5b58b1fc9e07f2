"""``Scheduler.run_sync``: the script entry point, where Ctrl-C ends the job cleanly.

The first SIGINT asks for a graceful shutdown (the running task finishes, the report is
returned); a second one cancels the run (the report is returned with stop reason
``cancelled``). Either way no ``KeyboardInterrupt`` traceback reaches the user.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._job import Job
    from ._scheduler import Scheduler
    from ._state import SchedulerReport

_log = logging.getLogger("scheduler")


def run_sync(scheduler: Scheduler, job: Job) -> SchedulerReport:
    """Run ``job`` to its end on a fresh event loop, turning Ctrl-C into shutdown, then cancel."""
    return asyncio.run(_run(scheduler, job))


async def _run(scheduler: Scheduler, job: Job) -> SchedulerReport:
    handle, loop, presses = scheduler.handle(), asyncio.get_running_loop(), [0]

    def on_interrupt() -> None:
        presses[0] += 1
        if presses[0] == 1:
            _log.warning("interrupted: letting the running task finish, then stopping (Ctrl-C again to cancel it)")
            handle.shutdown()
        else:
            _log.warning("interrupted again: cancelling the running task")
            handle.cancel()

    # Signal handlers can only be set from the main thread; elsewhere Ctrl-C is not ours to handle.
    installed = threading.current_thread() is threading.main_thread()
    if installed:
        try:
            loop.add_signal_handler(signal.SIGINT, on_interrupt)
        except (NotImplementedError, RuntimeError):  # event loops without signal support
            installed = False
    try:
        return await scheduler.run(job)
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGINT)
