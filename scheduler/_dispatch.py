"""The dispatch half of a run session: a trigger through window, overlap and guard to a task.

``_Session`` (in ``_runner``) owns the loop and the lifecycle; this mixin holds what happens to
one trigger (dispatch, start, completion) and the plumbing both halves use. The attributes
below are set by ``_Session.__init__``.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from datetime import datetime
from typing import Any

from ._clock import Clock
from ._config import SchedulerConfig
from ._decide import Drop, OverlapAction, on_overlap
from ._enums import GuardErrorPolicy, LeaseLostPolicy, RunSkipReason, RunStatus, SchedulerStopReason
from ._errors import ExecutionGuardError, ExecutionGuardErrorKind, StoreError
from ._execution import Execution, Outcome, Trigger
from ._guard import ExecutionGuard, ExecutionLease, ExecutionSlot
from ._job import Job
from ._observers import Fanout
from ._state import InFlight, JobState, RunRecord
from ._store import StateStore
from .events import (
    ExecutionGuardAcquired,
    ExecutionGuardContended,
    RunCompleted,
    RunSkipped,
    RunsMissed,
    SchedulerEvent,
    TriggerEmitted,
)


class Dispatcher:
    """Trigger handling shared by the run loop: events, saves, skips, starts and completions."""

    job: Job
    config: SchedulerConfig
    store: StateStore
    guard: ExecutionGuard
    clock: Clock
    fanout: Fanout
    guarded: bool
    state: JobState
    active: dict[asyncio.Task[Outcome], Execution]
    queued: Trigger | None
    history: deque[RunRecord]
    skipped: dict[RunSkipReason, int]
    last_skip: RunSkipReason | None
    paused: bool
    cancel_requested: bool
    stop_reason: SchedulerStopReason | None
    grace_deadline: datetime | None
    stopping: asyncio.Event
    releases: set[asyncio.Task[None]]
    rng: random.Random
    _woken: bool
    _wakeup: asyncio.Future[None] | None

    def emit(self, event: SchedulerEvent) -> None:
        if self.fanout:
            self.fanout.on_event(event)

    def wake(self) -> None:
        self._woken = True
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def _begin_stop(self, reason: SchedulerStopReason, grace_deadline: datetime | None) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            self.grace_deadline = grace_deadline
            self.stopping.set()

    async def save(self, **changes: object) -> None:
        self.state = self.state.evolve(changes)
        await self.store.save(self.state)

    def drop_queued(self) -> None:
        if self.queued is not None:
            self.skip(self.queued, RunSkipReason.SHUTDOWN)
            self.queued = None

    async def start_queued(self) -> None:
        trigger, self.queued = self.queued, None
        assert trigger is not None
        if not self.in_window():
            return self.skip(trigger, RunSkipReason.OUTSIDE_TIME_WINDOW)
        await self.start(trigger)
        return None

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
