"""Scheduler: the asyncio run loop around the pure decisions of ``_decide``.

One loop task owns the state: it decides, saves before dispatch, starts runs as tasks, and
applies their outcomes. Run tasks and control commands only wake it up.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Iterable
from datetime import datetime

from ._clock import Clock, SystemClock
from ._config import SchedulerConfig
from ._decide import Decision, Policies, consume_all_due, decide
from ._dispatch import Dispatcher
from ._enums import (
    MissedRunPolicy,
    OverlapPolicy,
    RunSkipReason,
    SchedulerStopReason,
    TerminalStatePolicy,
    TriggerSource,
)
from ._execution import Execution, Outcome, Trigger
from ._guard import ExecutionGuard, NoopExecutionGuard
from ._handle import Command, CommandKind, SchedulerHandle
from ._job import Job
from ._loading import load_state
from ._observers import Fanout, ObserverLike
from ._state import JobState, RunRecord, SchedulerReport
from ._store import InMemoryStateStore, StateStore
from .events import (
    SchedulerPaused,
    SchedulerResumed,
    SchedulerStopped,
    TerminalStateDeleted,
)

__all__ = ["Scheduler", "SchedulerHandle"]


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
        if not isinstance(job, Job):
            raise TypeError(f"run() takes a Job, got {job!r}")
        if self._running:
            raise RuntimeError("this Scheduler is already running a job; use another Scheduler")
        self._running = True
        try:
            return await _Session(self, job).run()
        finally:
            self._running = False

    def run_sync(self, job: Job) -> SchedulerReport:
        """Run ``job`` on a fresh event loop (for scripts). The first Ctrl-C stops gracefully,
        a second cancels; either way the report is returned, with no traceback."""
        from ._sync import run_sync

        return run_sync(self, job)


class _Session(Dispatcher):
    """The state of one ``Scheduler.run`` call."""

    def __init__(self, owner: Scheduler, job: Job) -> None:
        self.owner, self.job = owner, job
        self.config, self.store, self.guard, self.clock = owner.config, owner.store, owner.guard, owner.clock
        self.fanout = owner._fanout
        self.guarded = not isinstance(self.guard, NoopExecutionGuard)
        self.policies = Policies(
            schedule=job.schedule,
            zone=self.config.timezone,
            missed=job.missed_run_policy,
            grace=self.config.misfire_grace,
            catch_up_window=self.config.catch_up_window,
            max_runs=job.max_runs,
        )
        self.state = JobState(job_id=job.job_id)
        self.active: dict[asyncio.Task[Outcome], Execution] = {}
        self.queued: Trigger | None = None
        self.resume_first: Trigger | None = None
        self.history: deque[RunRecord] = deque(maxlen=self.config.history_limit)
        self.skipped: dict[RunSkipReason, int] = {}
        self.last_skip: RunSkipReason | None = None
        self.paused = False
        self.manual = 0
        self.cancel_requested = False
        self.stop_reason: SchedulerStopReason | None = None
        self.grace_deadline: datetime | None = None
        self.stopping = asyncio.Event()
        self.releases: set[asyncio.Task[None]] = set()
        self.rng = random.Random()
        self._woken = False
        self._wakeup: asyncio.Future[None] | None = None

    # -- plumbing ---------------------------------------------------------------------

    async def wait(self, deadline: datetime | None) -> None:
        """Sleep until ``deadline`` on the clock, or until something wakes the loop."""
        if self._woken:
            self._woken = False
            return
        if deadline is not None and deadline <= self.clock.now():
            await asyncio.sleep(0)  # never spin without yielding to the loop
            return
        loop = asyncio.get_running_loop()
        self._wakeup = loop.create_future()
        if deadline is None:
            await self._wakeup
        else:
            sleeper = loop.create_task(self.clock.sleep_until(deadline))
            try:
                await asyncio.wait((sleeper, self._wakeup), return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
        self._wakeup = None
        self._woken = False

    def on_command(self, command: Command) -> None:
        if self.stop_reason is not None and command.kind is not CommandKind.CANCEL:
            return
        kind = command.kind
        if kind is CommandKind.CANCEL:
            self.cancel_requested = True
        elif kind is CommandKind.SHUTDOWN:
            grace_deadline = None if command.grace is None else self.clock.now() + command.grace
            self._begin_stop(SchedulerStopReason.SHUTDOWN, grace_deadline)
        elif kind is CommandKind.PAUSE and not self.paused:
            self.paused = True
            self.emit(SchedulerPaused(job_id=self.job.job_id, at=self.clock.now()))
        elif kind is CommandKind.RESUME and self.paused:
            self.paused = False
            self.emit(SchedulerResumed(job_id=self.job.job_id, at=self.clock.now()))
        elif kind is CommandKind.TRIGGER_NOW:
            self.manual += 1
        self.wake()

    # -- lifecycle --------------------------------------------------------------------

    async def run(self) -> SchedulerReport:
        handle = self.owner._handle
        for command in handle._bind(asyncio.get_running_loop(), self.on_command):
            self.on_command(command)
        attach = getattr(self.store, "attach", None)
        detach = attach(self.emit, self.clock) if callable(attach) else None
        try:
            try:
                self.state, self.resume_first = await load_state(self)
                reason = await self.loop()
            except asyncio.CancelledError:
                await self.abort(SchedulerStopReason.CANCELLED)
                raise
            except BaseException:
                await self.abort(SchedulerStopReason.ERROR)
                raise
        finally:
            handle._unbind()
            if callable(detach):
                detach()
            if self.releases:  # leases of runs that ended while the loop was failing
                await asyncio.shield(asyncio.gather(*self.releases, return_exceptions=True))
        self.emit(
            SchedulerStopped(
                job_id=self.job.job_id, at=self.clock.now(), reason=reason, trigger_count=self.state.trigger_count
            )
        )
        return self.report(reason)

    def report(self, reason: SchedulerStopReason) -> SchedulerReport:
        return SchedulerReport(
            job_id=self.job.job_id,
            state=self.state,
            history=tuple(self.history),
            last_skip_reason=self.last_skip,
            stop_reason=reason,
            skipped=dict(self.skipped),
        )

    async def abort(self, reason: SchedulerStopReason) -> None:
        """Fatal error or outer cancellation: cancel runs, release leases (best effort), report."""
        self._begin_stop(reason, None)  # so completing runs cannot start the queued trigger
        self.drop_queued()
        await self.cancel_active()
        self.emit(
            SchedulerStopped(
                job_id=self.job.job_id, at=self.clock.now(), reason=reason, trigger_count=self.state.trigger_count
            )
        )

    async def cancel_active(self) -> None:
        tasks = list(self.active)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        for task in tasks:
            if task in self.active:
                try:
                    await self.complete(task)
                except Exception:  # saving the cancellation is best effort while aborting
                    self.active.pop(task, None)

    # -- the loop ---------------------------------------------------------------------

    async def loop(self) -> SchedulerStopReason:
        p = self.policies
        blocks_replay = (
            p.missed is MissedRunPolicy.REPLAY_ALL and self.job.overlap_policy is not OverlapPolicy.ALLOW_PARALLEL
        )
        while True:
            for task in [t for t in self.active if t.done()]:
                await self.complete(task)
            if self.cancel_requested:
                self._begin_stop(SchedulerStopReason.CANCELLED, None)
                self.drop_queued()
                await self.cancel_active()
                return SchedulerStopReason.CANCELLED
            if self.stop_reason is not None:
                self.drop_queued()
                if not self.active:
                    return self.stop_reason
                if self.grace_deadline is not None and self.clock.now() >= self.grace_deadline:
                    for task in self.active:
                        task.cancel()
                    await self.wait(None)  # woken when the cancelled runs complete
                else:
                    await self.wait(self.grace_deadline)
                continue
            now = self.clock.now()
            if self.paused:
                await self.apply(consume_all_due(p, self.state.next_run_at, self.state.trigger_count, now))
            elif self.resume_first is not None:
                trigger, self.resume_first = self.resume_first, None
                await self.dispatch(trigger)
                started = any(e.trigger is trigger for e in self.active.values()) or self.queued is trigger
                if not started and self.state.in_flight is not None:
                    await self.save(in_flight=None)  # skipped: the interrupted occurrence is settled
                continue
            elif self.queued is not None and not self.active:
                await self.start_queued()  # held while paused; resume() lands here
                continue
            elif self.manual:
                self.manual -= 1
                await self.trigger_manually(now)
                continue
            elif not (blocks_replay and (self.active or self.queued)):
                decision = decide(p, self.state.next_run_at, self.state.trigger_count, now)
                if decision is not None:
                    await self.apply(decision)
                    # With a fast store nothing above suspends; at sub-millisecond intervals the
                    # next occurrence is already due, so yield or the runs we start never run.
                    await asyncio.sleep(0)
                    continue
            if self.state.next_run_at is None and not self.active and self.queued is None and not self.manual:
                return await self.finish()
            blocked = blocks_replay and bool(self.active)
            await self.wait(None if blocked else self.state.next_run_at)

    async def trigger_manually(self, now: datetime) -> None:
        """A trigger_now(): counted toward max_runs, through the overlap policy and the guard."""
        max_runs, count = self.job.max_runs, self.state.trigger_count
        if max_runs is not None and count >= max_runs:
            return  # the job is finished: nothing more may run
        exhausted = max_runs is not None and count + 1 >= max_runs
        await self.save(trigger_count=count + 1, **({"next_run_at": None} if exhausted else {}))
        await self.dispatch(Trigger(now, False, count + 1, TriggerSource.MANUAL))

    async def finish(self) -> SchedulerStopReason:
        if self.config.terminal_state_policy is TerminalStatePolicy.DELETE:
            await self.store.delete(self.job.job_id)
            self.emit(
                TerminalStateDeleted(
                    job_id=self.job.job_id, at=self.clock.now(), trigger_count=self.state.trigger_count
                )
            )
        return SchedulerStopReason.TERMINAL

    async def apply(self, decision: Decision | None) -> None:
        """Consume, save BEFORE dispatch (at-most-once), report drops, then dispatch the run."""
        if decision is None:
            return
        count = self.state.trigger_count + decision.consumed
        self.state = self.state.evolve({"trigger_count": count, "next_run_at": decision.next_run_at})
        if decision.run_at is not None and self.guarded:
            # The save and the lease acquisition are independent round trips: overlap them.
            # The run still starts only after both have succeeded (save-before-dispatch).
            pending: asyncio.Task[None] | None = asyncio.get_running_loop().create_task(self.store.save(self.state))
        else:
            pending = None
            await self.store.save(self.state)
        for drop in decision.drops:
            self.report_drop(drop, count)
        try:
            if decision.run_at is not None:
                trigger = Trigger(decision.run_at, decision.catch_up, count, TriggerSource.SCHEDULED)
                await self.dispatch(trigger, pending)
        finally:
            if pending is not None:
                await pending  # re-raises a failed save; a no-op when start() already awaited it
