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
from typing import Any

from ._clock import Clock, SystemClock
from ._config import SchedulerConfig
from ._decide import Decision, Drop, OverlapAction, Policies, consume_all_due, decide, on_overlap
from ._enums import (
    GuardErrorPolicy,
    LeaseLostPolicy,
    MissedRunPolicy,
    OverlapPolicy,
    RunSkipReason,
    RunStatus,
    SchedulerStopReason,
    TerminalStatePolicy,
    TriggerSource,
)
from ._errors import ExecutionGuardError, ExecutionGuardErrorKind, StoreError
from ._execution import Execution, Outcome, Trigger
from ._guard import ExecutionGuard, ExecutionLease, ExecutionSlot, NoopExecutionGuard
from ._handle import Command, CommandKind, SchedulerHandle
from ._job import Job
from ._loading import load_state
from ._observers import Fanout, ObserverLike
from ._state import InFlight, JobState, RunRecord, SchedulerReport
from ._store import InMemoryStateStore, StateStore
from .events import (
    ExecutionGuardAcquired,
    ExecutionGuardContended,
    RunCompleted,
    RunSkipped,
    RunsMissed,
    SchedulerEvent,
    SchedulerPaused,
    SchedulerResumed,
    SchedulerStopped,
    TerminalStateDeleted,
    TriggerEmitted,
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
        """``asyncio.run(self.run(job))`` for scripts."""
        return asyncio.run(self.run(job))


class _Session:
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
        self.history: deque[RunRecord] = deque(maxlen=self.config.history_limit or None)
        if self.config.history_limit == 0:
            self.history = deque(maxlen=0)
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

    def emit(self, event: SchedulerEvent) -> None:
        if self.fanout:
            self.fanout.on_event(event)

    def wake(self) -> None:
        self._woken = True
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

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

    def _begin_stop(self, reason: SchedulerStopReason, grace_deadline: datetime | None) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            self.grace_deadline = grace_deadline
            self.stopping.set()

    async def save(self, **changes: object) -> None:
        self.state = self.state.evolve(changes)
        await self.store.save(self.state)

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

    def drop_queued(self) -> None:
        if self.queued is not None:
            self.skip(self.queued, RunSkipReason.SHUTDOWN)
            self.queued = None

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

    async def start_queued(self) -> None:
        trigger, self.queued = self.queued, None
        assert trigger is not None
        if not self.in_window():
            return self.skip(trigger, RunSkipReason.OUTSIDE_TIME_WINDOW)
        await self.start(trigger)
        return None

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

    def report_drop(self, drop: Drop, trigger_count: int) -> None:
        self.skipped[drop.reason] = self.skipped.get(drop.reason, 0) + drop.count
        self.last_skip = drop.reason
        if not self.fanout:  # at saturation every decision drops something: stay cheap
            return
        at = self.clock.now()
        if drop.count == 1:
            self.emit(
                RunSkipped(
                    job_id=self.job.job_id,
                    at=at,
                    scheduled_at=drop.first,
                    catch_up=drop.reason in (RunSkipReason.MISSED, RunSkipReason.COALESCED),
                    trigger_count=trigger_count,
                    reason=drop.reason,
                )
            )
        else:
            self.emit(
                RunsMissed(
                    job_id=self.job.job_id,
                    at=at,
                    count=drop.count,
                    first_scheduled_at=drop.first,
                    last_scheduled_at=drop.last,
                    reason=drop.reason,
                )
            )

    def skip(self, trigger: Trigger, reason: RunSkipReason) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        self.last_skip = reason
        if not self.fanout:
            return
        self.emit(
            RunSkipped(
                job_id=self.job.job_id,
                at=self.clock.now(),
                scheduled_at=trigger.scheduled_at,
                catch_up=trigger.catch_up,
                trigger_count=trigger.trigger_count,
                reason=reason,
            )
        )

    async def dispatch(self, trigger: Trigger, pending_save: asyncio.Task[None] | None = None) -> None:
        """Window check, overlap policy, guard, start."""
        if self.fanout:  # hot path: build the event only when someone listens
            self.emit(
                TriggerEmitted(
                    job_id=self.job.job_id,
                    at=self.clock.now(),
                    scheduled_at=trigger.scheduled_at,
                    catch_up=trigger.catch_up,
                    trigger_count=trigger.trigger_count,
                    source=trigger.source,
                )
            )
        if not self.in_window():
            return self.skip(trigger, RunSkipReason.OUTSIDE_TIME_WINDOW)
        action = on_overlap(self.job.overlap_policy, len(self.active), self.queued is not None)
        if action == OverlapAction.SKIP:
            return self.skip(trigger, RunSkipReason.OVERLAP)
        if action == OverlapAction.QUEUE:
            self.queued = trigger
            return None
        if action == OverlapAction.REPLACE:
            # Settle the replaced runs first: their leases must be released before we acquire
            # (a RESOURCE lease would otherwise make the replacement contend with itself).
            replaced = list(self.active)
            for task in replaced:
                task.cancel()
            await asyncio.wait(replaced)
            for task in replaced:
                await self.complete(task)
        await self.start(trigger, pending_save)
        return None

    def in_window(self) -> bool:
        window = self.job.time_window
        return window is None or window.matches(self.clock.now(), self.config.timezone)

    async def acquire(self, slot: ExecutionSlot, pending_save: asyncio.Task[None] | None) -> ExecutionLease | None:
        """Acquire the slot, concurrently with a pending state save; the save must succeed too."""
        if pending_save is None:
            return await self.guard.acquire(slot)
        save_result, lease = await asyncio.gather(pending_save, self.guard.acquire(slot), return_exceptions=True)
        if isinstance(save_result, BaseException):
            if isinstance(lease, ExecutionLease):
                await asyncio.shield(self._release_quietly(lease))
            raise save_result
        if isinstance(lease, BaseException):
            raise lease
        return lease

    async def _release_quietly(self, lease: ExecutionLease) -> None:
        try:
            await self.guard.release(lease)
        except Exception:  # best effort while failing: the lease expires on its own
            return

    async def start(self, trigger: Trigger, pending_save: asyncio.Task[None] | None = None) -> None:
        lease: ExecutionLease | None = None  # the no-op guard grants everything: no call needed
        if self.guarded:
            proceed, lease = await self.lease_for(trigger, pending_save)
            if not proceed:
                return
        await self.launch(trigger, lease)

    async def lease_for(
        self, trigger: Trigger, pending_save: asyncio.Task[None] | None
    ) -> tuple[bool, ExecutionLease | None]:
        """Acquire per the guard error policy: (False, None) when the trigger was skipped."""
        job = self.job
        slot = ExecutionSlot(job.job_id, job.effective_resource_id, job.guard_scope, trigger.scheduled_at)
        guard_fields: dict[str, Any] = {
            "job_id": job.job_id,
            "resource_id": slot.resource_id,
            "scope": slot.scope,
            "scheduled_at": slot.scheduled_at,
        }
        try:
            lease = await self.acquire(slot, pending_save)
        except StoreError:
            raise
        except Exception as exc:
            policy = self.config.guard_error_policy
            if policy is GuardErrorPolicy.FAIL:
                if isinstance(exc, ExecutionGuardError):
                    raise
                raise ExecutionGuardError(ExecutionGuardErrorKind.UNKNOWN, f"guard acquire failed: {exc}") from exc
            if policy is GuardErrorPolicy.SKIP:
                self.skip(trigger, RunSkipReason.GUARD_UNAVAILABLE)
                return False, None
            self.emit(ExecutionGuardAcquired(at=self.clock.now(), without_lease=True, **guard_fields))
            return True, None
        if lease is None:
            self.emit(ExecutionGuardContended(at=self.clock.now(), **guard_fields))
            self.skip(trigger, RunSkipReason.CONTENDED)
            return False, None
        self.emit(
            ExecutionGuardAcquired(
                at=self.clock.now(), key=lease.key, fencing_token=lease.fencing_token, **guard_fields
            )
        )
        return True, lease

    async def launch(self, trigger: Trigger, lease: ExecutionLease | None) -> None:
        """Start the run as a task (the loop is woken when it ends)."""
        job = self.job
        if self.config.resume_interrupted:
            await self.save(in_flight=InFlight(occurrence=trigger.scheduled_at, started_at=self.clock.now(), attempt=1))
        execution = Execution(
            job=job,
            trigger=trigger,
            lease=lease,
            guard=self.guard,
            clock=self.clock,
            context_zone=self.config.timezone,
            emit=self.emit,
            observed=bool(self.fanout),
            on_lease_lost=self.lease_lost,
            stopping=self.stopping,
            rng=self.rng,
            guarded=self.guarded,
        )
        task = asyncio.get_running_loop().create_task(execution.run())
        execution.task = task
        task.add_done_callback(lambda _: self.wake())
        self.active[task] = execution

    def lease_lost(self, execution: Execution) -> None:
        policy = self.config.lease_lost_policy
        if policy is LeaseLostPolicy.SHUTDOWN:
            self._begin_stop(SchedulerStopReason.LEASE_LOST, None)
            self.wake()
        elif policy is LeaseLostPolicy.CANCEL_RUN and execution.task is not None:
            execution.task.cancel()

    async def complete(self, task: asyncio.Task[Outcome]) -> None:
        """Apply a finished run: state, history, save, RunCompleted, then the queued trigger."""
        execution = self.active.pop(task)
        # A task cancelled before its first step never ran its own bookkeeping.
        outcome = execution.cancelled_before_start() if task.cancelled() else task.result()
        release = execution.release_task
        if release is not None:
            self.releases.add(release)
            release.add_done_callback(self.releases.discard)
        if outcome.fatal is not None:
            raise outcome.fatal
        record = outcome.record
        self.history.append(record)
        success = record.status is RunStatus.SUCCESS
        changes: dict[str, object] = {
            "last_run_at": record.started_at,
            "last_status": record.status,
            "last_error": None if success else record.error,
            "consecutive_failures": 0 if success else self.state.consecutive_failures + 1,
        }
        if success:
            changes["last_success_at"] = record.finished_at
        if self.state.in_flight is not None and self.state.in_flight.occurrence == record.scheduled_at:
            changes["in_flight"] = None
        if release is None:
            await self.save(**changes)
        else:  # release the lease and save the outcome concurrently (independent round trips)
            await asyncio.gather(self.save(**changes), asyncio.shield(release))
        if self.fanout:  # hot path: build the event only when someone listens
            self.emit(
                RunCompleted(
                    job_id=self.job.job_id,
                    at=self.clock.now(),
                    scheduled_at=record.scheduled_at,
                    catch_up=record.catch_up,
                    trigger_count=record.trigger_count,
                    status=record.status,
                    error=record.error,
                    attempts=record.attempts,
                    started_at=record.started_at,
                )
            )
        idle = not self.active and not self.paused and not self.cancel_requested
        if self.queued is not None and idle and self.stop_reason is None:
            await self.start_queued()
