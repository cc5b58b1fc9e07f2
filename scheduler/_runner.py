"""The asyncio run loop of ``Scheduler.run``, around the pure decisions of ``_decide``.

One loop owns the session's data (``_session.Session``): it decides, saves before dispatch,
starts runs as tasks and applies their outcomes. Run tasks and control commands only wake it.
Its collaborators take explicit inputs and return what happened: ``Persistence`` (store calls
with deadlines and conditional saves), ``LeaseBroker`` (the guard), ``Execution`` (one run)
and ``load_state``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import types
from collections import deque
from collections.abc import Callable, Generator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ._clock import SystemClock
from ._decide import Decision, Drop, OverlapAction, Policies, consume_all_due, decide, due_time, on_overlap
from ._entries import completed_event, drop_entry, drop_event, open_run, run_entry, skip_entry, skip_event
from ._enums import (
    LeaseLostPolicy,
    MissedRunPolicy,
    OverlapPolicy,
    RunSkipReason,
    SchedulerStopReason,
    TerminalStatePolicy,
    TriggerSource,
)
from ._errors import StoreError, StoreErrorKind, StoreOperation
from ._execution import Execution, Outcome, Trigger
from ._guard import ExecutionLease, NoopExecutionGuard
from ._handle import Command, CommandKind
from ._job import Job
from ._leasing import Admission, LeaseBroker
from ._ledger import LedgerEntry
from ._loading import load_state, new_state
from ._persist import Persistence
from ._session import Session
from ._state import InFlight, JobState, OpenRun, RunRecord, SchedulerReport
from ._steps import AFTER_STARTS, CONTINUE, MAX_CALL_TIMEOUT, Continue, Dispatched, Stop, Wait, call_budget
from ._store import AttachableStore, StoreAttachment
from .events import (
    SchedulerEvent,
    SchedulerPaused,
    SchedulerResumed,
    SchedulerStopped,
    StateConflict,
    TerminalStateDeleted,
    TriggerEmitted,
)

if TYPE_CHECKING:
    from ._scheduler import Scheduler

_log = logging.getLogger("scheduler")


class _Loop:
    """One ``Scheduler.run`` call: the only owner of its ``Session``."""

    # -- wiring (fixed for the whole run) ------------------------------------------------

    def __init__(self, owner: Scheduler, job: Job) -> None:
        self.owner, self.job = owner, job
        self.config, self.clock, self.guard = owner.config, owner.clock, owner.guard
        self.fanout = owner._fanout
        #: None when nobody listens: hot paths then build no events.
        self.emit_or_none: Callable[[SchedulerEvent], None] | None = self.fanout.on_event if self.fanout else None
        self.call_timeout = call_budget(self.config, job, self.clock.now())
        store = owner.store
        # A store that degrades on its own answers within the budget; others get the
        # documented 5 s, since for them a timeout is fatal. So is a failed load for any
        # store (the first has no state to fall back on): loads always get the 5 s.
        patient = max(self.call_timeout, MAX_CALL_TIMEOUT)
        outer = self.call_timeout if isinstance(store, AttachableStore) else patient
        self.persistence = Persistence(
            store,
            job.job_id,
            outer,
            ledger_keep=self.config.ledger_limit,
            emit=self.emit,
            now=self.clock.now,
            load_timeout=patient,
        )
        #: Whether decisions are written to the store's run ledger (and runs kept open until
        #: their outcome is saved); when not, none of the ledger work below happens.
        self.ledger_on = self.persistence.ledger is not None
        self.instance = f"{socket.gethostname()}:{os.getpid()}"
        self.broker: LeaseBroker | None = None
        if not isinstance(self.guard, NoopExecutionGuard):  # the no-op guard needs no call at all
            self.broker = LeaseBroker(
                job,
                self.guard,
                self.config.guard_error_policy,
                self.clock,
                self.emit,
                self.call_timeout,
                listening=self.fanout.__bool__,
            )
        #: Store and guard on one server: acquire with the consume-save, release with the outcome save.
        self.combined = self.broker is not None and self.persistence.combines_with(
            self.guard, job.job_id, job.effective_resource_id
        )
        self.policies = Policies(
            schedule=job.schedule,
            zone=self.config.timezone,
            missed=job.missed_run_policy,
            grace=self.config.misfire_grace,
            catch_up_window=self.config.catch_up_window,
            max_runs=job.max_runs,
            jitter=job.jitter,
            job_id=job.job_id,
        )
        self.replay_waits = (
            job.missed_run_policy is MissedRunPolicy.REPLAY_ALL
            and job.overlap_policy is not OverlapPolicy.ALLOW_PARALLEL
        )
        #: Runs of this job take one attempt with no time limit: ``Execution.run_plain`` runs them.
        self.plain_job = job.retry is None and job.timeout is None
        self.s = Session(state=JobState.initial(job.job_id), history=deque(maxlen=self.config.history_limit))
        self.stopping = asyncio.Event()  # set once: runs stop retrying
        self.releases: set[asyncio.Task[None]] = set()
        self.rng = random.Random()
        self._woken = False
        self._wakeup: asyncio.Future[None] | None = None
        #: The real clock (exactly): its waits are driven by the loop itself (``wait_system``).
        self.system_clock = self.clock if type(self.clock) is SystemClock else None

    def emit(self, event: SchedulerEvent) -> None:
        if self.fanout:
            self.fanout.on_event(event)

    # -- waking and control ----------------------------------------------------------------

    def on_run_done(self, task: asyncio.Task[Outcome]) -> None:
        # A step that ran after the task ended may have completed it already: waking the
        # loop again would only cost it a turn.
        if task in self.s.active:
            self.wake()

    def cancel_run(self, task: asyncio.Task[Outcome]) -> None:
        """Cancel a run whose end wakes the loop. A plain run wakes it from its last line
        (``Execution.on_done``), which a task cancelled before its first step never reaches."""
        task.cancel()
        task.add_done_callback(self.on_run_done)

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
        if deadline is not None and self.system_clock is not None:
            await self.wait_system(deadline, self.system_clock, loop)
            return
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

    async def wait_system(self, deadline: datetime, clock: SystemClock, loop: asyncio.AbstractEventLoop) -> None:
        """``wait`` on the real clock, driven here rather than in a task of its own: the step
        that finds the instant come is this coroutine's, so the run starts with no extra loop
        turn (a sleeper task would first end, then wake this one)."""
        window = clock.spin_window(deadline)
        try:
            while not self._woken and (delay := clock.pause(deadline, window)) is not None:
                if delay == 0:
                    await asyncio.sleep(0)  # wake() needs no future here: it sets _woken
                else:
                    self._wakeup = wakeup = loop.create_future()
                    timer = loop.call_later(delay, _resolve, wakeup)
                    try:
                        await wakeup
                    finally:
                        timer.cancel()
                        self._wakeup = None
        finally:
            self._woken = False

    def on_command(self, command: Command) -> None:
        s = self.s
        if s.stop_reason is not None and command.kind is not CommandKind.CANCEL:
            return
        kind = command.kind
        if kind is CommandKind.CANCEL:
            s.cancel_requested = True
        elif kind is CommandKind.SHUTDOWN:
            grace_deadline = None if command.grace is None else self.clock.now() + command.grace
            self.begin_stop(SchedulerStopReason.SHUTDOWN, grace_deadline)
        elif kind is CommandKind.PAUSE and not s.paused:
            s.paused = True
            self.emit(SchedulerPaused(job_id=self.job.job_id, at=self.clock.now()))
        elif kind is CommandKind.RESUME and s.paused:
            s.paused = False
            self.emit(SchedulerResumed(job_id=self.job.job_id, at=self.clock.now()))
        elif kind is CommandKind.TRIGGER_NOW:
            s.manual += 1
        self.wake()

    def begin_stop(self, reason: SchedulerStopReason, grace_deadline: datetime | None) -> None:
        s = self.s
        if s.stop_reason is None:
            s.stop_reason = reason
            s.grace_deadline = grace_deadline
            self.stopping.set()

    def on_lease_lost(self, execution: Execution) -> None:
        policy = self.config.lease_lost_policy
        if policy is LeaseLostPolicy.SHUTDOWN:
            self.begin_stop(SchedulerStopReason.LEASE_LOST, None)
            self.wake()
        elif policy is LeaseLostPolicy.CANCEL_RUN and execution.task is not None:
            self.cancel_run(execution.task)

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> SchedulerReport:
        handle = self.owner._handle
        for command in handle._bind(asyncio.get_running_loop(), self.on_command):
            self.on_command(command)
        store = self.persistence.store
        detach = None
        if isinstance(store, AttachableStore):
            detach = store.attach(StoreAttachment(events=self.emit, clock=self.clock, call_timeout=self.call_timeout))
        if not self.persistence.conditional:
            _log.warning(
                "state store %r cannot save conditionally: replicas sharing it may consume an occurrence twice",
                store,
            )
        try:
            try:
                loaded = await load_state(
                    self.persistence,
                    self.job,
                    self.config.timezone,
                    self.clock.now(),
                    self.emit,
                    resume_interrupted=self.config.resume_interrupted,
                    ledger=self.ledger_on,
                )
                self.s.state, self.s.resume_first = loaded.state, loaded.resume
                while True:
                    step = await self.step()
                    if self.s.unsaved_runs:  # no save of the step carried them (checked here: hot path)
                        await self.save_staged()
                    if step is AFTER_STARTS:
                        # With a fast store nothing in the step suspends; at sub-millisecond
                        # intervals the next occurrence is already due, so yield or the runs
                        # we start never run. Here rather than in the step: one frame less.
                        await _yield_to_loop()
                    elif isinstance(step, Stop):
                        reason = step.reason
                        await self.flush()
                        break
                    elif isinstance(step, Wait):
                        await self.wait(step.deadline)
            except asyncio.CancelledError:
                await self.abort(SchedulerStopReason.CANCELLED)
                raise
            except BaseException:
                await self.abort(SchedulerStopReason.ERROR)
                raise
        finally:
            handle._unbind()
            if detach is not None:
                detach()
            if self.releases:  # leases of runs that ended while the loop was failing
                await asyncio.shield(asyncio.gather(*self.releases, return_exceptions=True))
            await self.persistence.drain()
        self.emit_stopped(reason)
        return self.report(reason)

    def emit_stopped(self, reason: SchedulerStopReason) -> None:
        self.emit(
            SchedulerStopped(
                job_id=self.job.job_id, at=self.clock.now(), reason=reason, trigger_count=self.s.state.trigger_count
            )
        )

    def report(self, reason: SchedulerStopReason) -> SchedulerReport:
        s = self.s
        return SchedulerReport(
            job_id=self.job.job_id,
            state=s.state,
            history=tuple(s.history),
            last_skip_reason=s.last_skip,
            stop_reason=reason,
            skipped=dict(s.skipped),
        )

    async def abort(self, reason: SchedulerStopReason) -> None:
        """Fatal error or outer cancellation: cancel runs, release leases (best effort), report."""
        self.begin_stop(reason, None)
        self.drop_queued()
        await self.cancel_active()
        try:
            await self.save_staged()
        except Exception:  # best effort while aborting, as for the cancelled runs
            pass
        self.emit_stopped(reason)

    async def cancel_active(self) -> None:
        tasks = list(self.s.active)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        for task in tasks:
            if task in self.s.active:
                try:
                    await self.complete(task)
                except Exception:  # saving the cancellation is best effort while aborting
                    self.s.active.pop(task, None)

    # -- the state machine -------------------------------------------------------------------

    async def step(self) -> Wait | Stop | Continue:
        """One turn of the loop. Branches are tried in this order; the first that applies acts:

        1. settle runs that finished (always, first);
        2. ``cancel()`` asked: cancel active runs and stop;
        3. stopping (shutdown, lease lost): drop the queued trigger, wait for active runs
           (cancelling them once the grace is over), then stop;
        4. paused: consume what falls due as ``paused``; queued and manual triggers wait;
        5. an interrupted occurrence to run again (``resume_interrupted``);
        6. the queued trigger, once nothing is active;
        7. a manual trigger;
        8. the schedule's due occurrences (REPLAY_ALL waits while a run is active or queued);
        9. nothing left to run, active or queued: terminal;
        10. otherwise wait for the next occurrence (or for the active run, under REPLAY_ALL).
        """
        s = self.s
        # What woke the loop until now is seen by this step (runs it completes woke it too).
        self._woken = False
        for task in [t for t in s.active if t.done()]:
            await self.complete(task, stage=True)
        if s.cancel_requested:
            self.begin_stop(SchedulerStopReason.CANCELLED, None)
            self.drop_queued()
            await self.cancel_active()
            return Stop(SchedulerStopReason.CANCELLED)
        if s.stop_reason is not None:
            self.drop_queued()
            if not s.active:
                return Stop(s.stop_reason)
            if s.grace_deadline is not None and self.clock.now() >= s.grace_deadline:
                for task in s.active:
                    self.cancel_run(task)
                return Wait(None)  # woken when the cancelled runs complete
            return Wait(s.grace_deadline)
        now = self.clock.now()
        if s.paused:
            paused = consume_all_due(self.policies, s.state.next_run_at, s.state.trigger_count, now)
            if paused is not None:
                await self.consume(paused)
                return CONTINUE
        elif s.resume_first is not None:
            trigger, s.resume_first = s.resume_first, None
            if await self.dispatch(trigger) is Dispatched.SKIPPED and s.state.in_flight is not None:
                await self.save_merged(lambda st: st.started(None), "complete")  # the occurrence is settled
            return CONTINUE
        elif s.queued is not None and not s.active:
            trigger, s.queued = s.queued, None
            if self.in_window():
                await self.save_staged()  # the run it waited for is reported complete before it starts
                await self.start(trigger)
            else:
                self.skip(trigger, RunSkipReason.OUTSIDE_TIME_WINDOW)
            return CONTINUE
        elif s.manual:
            s.manual -= 1
            await self.trigger_manually(now)
            return CONTINUE
        elif not (self.replay_waits and (s.active or s.queued)):
            decision = decide(self.policies, s.state.next_run_at, s.state.trigger_count, now)
            if decision is not None:
                await self.consume(decision)
                return AFTER_STARTS
        if s.state.next_run_at is None and not s.active and s.queued is None and not s.manual:
            return Stop(await self.finish())
        next_run_at = s.state.next_run_at
        if (self.replay_waits and s.active) or next_run_at is None:
            return Wait(None)
        return Wait(due_time(self.policies, next_run_at))

    async def finish(self) -> SchedulerStopReason:
        await self.save_staged()  # the last outcomes: saved (and their entries written) first
        if self.config.terminal_state_policy is TerminalStatePolicy.DELETE:
            self.s.unsaved_skips.clear()  # nothing of the state is kept
            await self.persistence.delete()
            self.emit(
                TerminalStateDeleted(
                    job_id=self.job.job_id, at=self.clock.now(), trigger_count=self.s.state.trigger_count
                )
            )
        return SchedulerStopReason.TERMINAL

    # -- consuming occurrences ---------------------------------------------------------------

    async def consume(self, decision: Decision) -> None:
        """Consume and save BEFORE dispatch (at-most-once), report drops, dispatch the run.

        The save is conditional: if another process saved since we last read, nothing was
        consumed; we adopt its document and the next step decides again from it.
        """
        s = self.s
        count = s.state.trigger_count + decision.consumed
        trigger = None
        if decision.run_at is not None:
            trigger = Trigger(decision.run_at, decision.catch_up, count, TriggerSource.SCHEDULED)
        entries = None
        opened = None
        if self.ledger_on:
            # The drops and the run to start are written by the same save that consumes them.
            entries = (
                [drop_entry(self.job.job_id, drop, self.instance) for drop in decision.drops]
                if decision.drops
                else None
            )
            opened = (
                None
                if trigger is None
                else OpenRun.trusted(trigger.scheduled_at, self.instance, count, trigger.source, trigger.catch_up)
            )
        state = s.state.consumed(count, decision.next_run_at, opened)
        for drop in decision.drops:
            state = state.skipped(drop.reason, drop.count, drop.last)
        if self.combined:
            committed, admission = await self.commit_consuming(state, trigger, entries)
        else:  # the common case, without the tuple
            committed, admission = await self.commit(state, entries), None
        if committed is None:
            await self.adopt_stored("consume")
            return
        s.state = committed
        for drop in decision.drops:
            self.report_drop(drop, count)
        if trigger is not None:
            await self.dispatch(trigger, admission)

    async def commit_consuming(
        self, state: JobState, trigger: Trigger | None, entries: list[LedgerEntry] | None
    ) -> tuple[JobState | None, Admission | None]:
        """Save a state that consumes ``trigger``; when store and guard share a server and the
        trigger would start at once, the same call takes its lease (the guard's answer is
        returned for ``dispatch``). None: another process saved first, nothing consumed."""
        if trigger is None or not (self.combined and self.starts_at_once()):
            return await self.commit(state, entries), None
        assert self.broker is not None
        committed, acquired = await self.persistence.commit_and_acquire(
            state, self.guard, self.broker.slot(trigger), entries
        )
        if committed is None:
            return None, None
        self.s.unsaved_skips.clear()
        self.s.state = committed  # before the acquire is settled: a retried acquire may raise
        return committed, await self.broker.settle(trigger, acquired)

    def starts_at_once(self) -> bool:
        """Whether a trigger dispatched now goes straight to the guard (in the window, no overlap)."""
        s = self.s
        return self.in_window() and on_overlap(self.job.overlap_policy, len(s.active), s.queued is not None) is (
            OverlapAction.START
        )

    async def trigger_manually(self, now: datetime) -> None:
        """A trigger_now(): counted toward max_runs, through the overlap policy and the guard."""
        s = self.s
        max_runs, count = self.job.max_runs, s.state.trigger_count
        if max_runs is not None and count >= max_runs:
            return  # the job is finished: nothing more may run
        exhausted = max_runs is not None and count + 1 >= max_runs
        trigger = Trigger(now, False, count + 1, TriggerSource.MANUAL)
        opened = open_run(trigger, self.instance) if self.ledger_on else None
        state = s.state.consumed(count + 1, None if exhausted else s.state.next_run_at, opened)
        committed, admission = await self.commit_consuming(state, trigger, None)
        if committed is None:
            await self.adopt_stored("manual")
            s.manual += 1  # still wanted: try again from the adopted state
            return
        s.state = committed
        await self.dispatch(trigger, admission)

    async def commit(self, state: JobState, entries: list[LedgerEntry] | None = None) -> JobState | None:
        """Save through ``Persistence``; a saved state carries every skip and outcome applied
        so far (``state`` is derived from the session's), and the outcomes' ledger entries."""
        s = self.s
        if s.unsaved_entries:
            entries = s.unsaved_entries + entries if entries else s.unsaved_entries
        if s.in_doubt:
            detail = "not saved: an earlier save carrying run outcomes failed and may not have been written"
            raise StoreError(StoreErrorKind.UNKNOWN, StoreOperation.SAVE, self.job.job_id, detail)
        try:
            committed = await self.persistence.commit(state, entries)
        except BaseException:
            # The save may have landed before failing (a timeout, a cancellation): saving the
            # outcomes it carried again would count them and write their entries twice.
            # Forget them, as an outcome whose own save failed is not saved again. Our state
            # still counts them, so no later save may write it either (the loop is stopping:
            # what it would save is best effort; unsaved runs are found interrupted on restart).
            if s.unsaved_runs:
                s.unsaved_runs, s.unsaved_entries = [], []
                s.in_doubt = True
            raise
        if committed is not None:
            if s.unsaved_skips:
                s.unsaved_skips.clear()
            if s.unsaved_runs:
                self.settle_staged()
        return committed

    def settle_staged(self) -> None:
        """The staged outcomes are saved (or given up on): forget them, report them."""
        s = self.s
        staged, s.unsaved_runs, s.unsaved_entries = s.unsaved_runs, [], []
        if self.emit_or_none is not None:
            for record in staged:
                self.emit_or_none(completed_event(self.job.job_id, self.clock.now(), record))

    async def save_staged(self) -> None:
        """Save outcomes staged for a save that has not come (a save of their own)."""
        if self.s.unsaved_runs:
            await self.save_merged(_unchanged, "complete")

    async def flush(self) -> None:
        """Save skips decided since the last save (a queued trigger dropped at shutdown)."""
        if self.s.unsaved_skips:
            await self.save_merged(lambda st: st, "stop")

    async def adopt_stored(self, during: str) -> None:
        """Another process saved first: continue from the stored document (a new one if deleted)."""
        s = self.s
        stored = await self.persistence.load()
        if stored is None:
            # Deleted by an operator (``reset``) while we ran: start over rather than bring
            # the old counters back.
            stored = await self.persistence.create(new_state(self.job, self.config.timezone, self.clock.now()))
            trigger_count: int | None = None
        else:
            trigger_count = stored.trigger_count
        for occurrence, reason in s.unsaved_skips:  # ours, not in the other writer's document
            stored = stored.skipped(reason, 1, occurrence)
            if self.ledger_on:
                stored = stored.settled(occurrence)
        for record in s.unsaved_runs:
            stored = stored.completed(record)
        s.state = stored
        self.emit(
            StateConflict(
                job_id=self.job.job_id,
                at=self.clock.now(),
                during=during,
                trigger_count=trigger_count,
                next_run_at=stored.next_run_at,
            )
        )

    async def save_merged(
        self, change: Callable[[JobState], JobState], during: str, entries: list[LedgerEntry] | None = None
    ) -> None:
        """Save ``change`` applied to our state; on a conflict apply it to the fresher document.

        Used for a run's outcome and its in-flight marker: they belong to an occurrence we
        consumed, so they are merged into whatever another replica saved meanwhile (one retry).
        ``entries`` go with the save; if it never lands they are appended on their own.
        """
        s = self.s
        committed = await self.commit(change(s.state), entries)
        if committed is None:
            await self.adopt_stored(during)
            committed = await self.commit(change(s.state), entries)
            if committed is None:
                _log.warning(
                    "job %s: %s save lost a race twice; the stored state keeps the other writer's",
                    self.job.job_id,
                    during,
                )
                if entries or s.unsaved_entries:
                    self.persistence.append_later(s.unsaved_entries + (entries or []))
                if s.unsaved_runs:
                    self.settle_staged()
                return
        s.state = committed

    # -- one trigger: window, overlap, guard, start ------------------------------------------

    async def dispatch(self, trigger: Trigger, admission: Admission | None = None) -> Dispatched:
        """``admission``: the guard's answer, already given by a combined consume-and-acquire."""
        s = self.s
        if self.emit_or_none is not None:  # hot path: build the event only when someone listens
            self.emit_or_none(
                TriggerEmitted(
                    job_id=self.job.job_id,
                    at=self.clock.now(),
                    scheduled_at=trigger.scheduled_at,
                    catch_up=trigger.catch_up,
                    trigger_count=trigger.trigger_count,
                    source=trigger.source,
                    delay=self.delay_of(trigger),
                )
            )
        if admission is not None:  # window and overlap were checked before the combined call
            return await self.start(trigger, admission)
        if self.job.time_window is not None and not self.in_window():
            self.skip(trigger, RunSkipReason.OUTSIDE_TIME_WINDOW)
            return Dispatched.SKIPPED
        if not s.active:  # nothing to overlap with: START, as ``on_overlap`` says (the common case)
            return await self.start(trigger)
        action = on_overlap(self.job.overlap_policy, len(s.active), s.queued is not None)
        if action is OverlapAction.SKIP:
            self.skip(trigger, RunSkipReason.OVERLAP)
            return Dispatched.SKIPPED
        if action is OverlapAction.QUEUE:
            s.queued = trigger
            return Dispatched.QUEUED
        if action is OverlapAction.REPLACE:
            # Settle the replaced runs first: their leases must be released before we acquire
            # (a RESOURCE lease would otherwise make the replacement contend with itself).
            replaced = list(s.active)
            for task in replaced:
                task.cancel()
            await asyncio.wait(replaced)
            for task in replaced:
                await self.complete(task)
        return await self.start(trigger)

    def delay_of(self, trigger: Trigger) -> timedelta:
        """The start jitter this trigger waited for (manual triggers wait for none)."""
        if trigger.source is TriggerSource.MANUAL or not self.policies.jitter:
            return timedelta(0)
        return due_time(self.policies, trigger.scheduled_at) - trigger.scheduled_at

    def in_window(self) -> bool:
        window = self.job.time_window
        return window is None or window.matches(self.clock.now(), self.config.timezone)

    async def start(self, trigger: Trigger, admission: Admission | None = None) -> Dispatched:
        lease: ExecutionLease | None = None
        if self.broker is not None:
            if admission is None:
                admission = await self.broker.admit(trigger)
            if admission.skip is not None:
                self.skip(trigger, admission.skip)
                return Dispatched.SKIPPED
            lease = admission.lease
        if self.config.resume_interrupted:
            flight = InFlight.trusted(trigger.scheduled_at, self.clock.now(), 1)
            try:
                await self.save_merged(lambda st: st.started(flight), "consume")
            except BaseException:
                if lease is not None and self.broker is not None:
                    await asyncio.shield(self.broker.release_quietly(lease))
                raise
        plain = self.plain_job
        execution = Execution(
            job=self.job,
            trigger=trigger,
            lease=lease,
            guard=self.guard,
            clock=self.clock,
            context_zone=self.config.timezone,
            emit=self.emit_or_none,
            on_lease_lost=self.on_lease_lost,
            stopping=self.stopping,
            rng=self.rng,
            release_deferred=self.combined and lease is not None,
            on_done=self.wake if plain else None,
        )
        task = asyncio.get_running_loop().create_task(execution.run_plain() if plain else execution.run())
        execution.task = task
        if not plain:  # a plain run wakes the loop itself, with no callback to schedule
            task.add_done_callback(self.on_run_done)
        self.s.active[task] = execution
        return Dispatched.STARTED

    async def complete(self, task: asyncio.Task[Outcome], stage: bool = False) -> None:
        """Apply a finished run: history, outcome saved (merged on a conflict), RunCompleted.

        ``stage``: a run with no lease to release only applies its outcome to the state, and
        the next save of the same step carries it (at saturation, the save consuming the next
        occurrence: one save per run instead of two); see ``Session.unsaved_runs``.
        """
        s = self.s
        execution = s.active.pop(task)
        try:
            # A task cancelled before its first step never ran its own bookkeeping.
            outcome = execution.cancelled_before_start() if task.cancelled() else task.result()
        finally:  # a run that raised released its lease too: the loop awaits that before it ends
            release = execution.release_task
            if release is not None:
                self.releases.add(release)
                release.add_done_callback(self.releases.discard)
        if outcome.fatal is not None:
            raise outcome.fatal
        record = outcome.record
        s.history.append(record)
        entries = [run_entry(self.job.job_id, record, execution, self.instance)] if self.ledger_on else None
        # Not with a store that saves together with the guard: its consume call bypasses ``commit``.
        if stage and release is None and not self.combined:
            s.state = s.state.completed(record)
            s.unsaved_runs.append(record)
            if entries:
                s.unsaved_entries += entries
            return
        if execution.release_deferred:
            await self.release_and_save(execution, record, entries)
        elif release is None:
            await self.save_merged(lambda st: st.completed(record), "complete", entries)
        else:  # release the lease and save the outcome concurrently (independent round trips)
            await asyncio.gather(
                self.save_merged(lambda st: st.completed(record), "complete", entries), asyncio.shield(release)
            )
        if self.emit_or_none is not None:
            self.emit_or_none(completed_event(self.job.job_id, self.clock.now(), record))

    async def release_and_save(
        self, execution: Execution, record: RunRecord, entries: list[LedgerEntry] | None
    ) -> None:
        """Release the lease and save the outcome in one combined call (merged on a conflict)."""
        lease = execution.lease
        assert lease is not None
        try:
            # Not shielded, like the outcome save of the separate calls: if this task is
            # cancelled the call may or may not have landed, and the lease is released below.
            committed, released = await self.persistence.commit_and_release(
                self.s.state.completed(record), self.guard, lease, entries
            )
        except BaseException:
            release = execution.start_release()  # the lease must not wait for its TTL
            self.releases.add(release)
            release.add_done_callback(self.releases.discard)
            raise
        execution.release_deferred = False
        execution.report_release(released)
        if committed is None:  # another replica saved meanwhile: merge into its document
            await self.save_merged(lambda st: st.completed(record), "complete", entries)
        else:
            self.s.unsaved_skips.clear()
            self.s.state = committed

    # -- skips -------------------------------------------------------------------------------

    def drop_queued(self) -> None:
        s = self.s
        if s.queued is not None:
            self.skip(s.queued, RunSkipReason.SHUTDOWN)
            s.queued = None

    def count_skip(self, reason: RunSkipReason, count: int) -> None:
        s = self.s
        s.skipped[reason] = s.skipped.get(reason, 0) + count
        s.last_skip = reason

    def skip(self, trigger: Trigger, reason: RunSkipReason) -> None:
        """A consumed trigger does not run after all (decided after the save that consumed it).

        The counters ride with the next save; the ledger entry is appended in the background
        (a crash right now may lose it). A contended skip is written only when our own
        conditional save consumed the occurrence: with plain saves another replica may have
        consumed the same one, and its entry is the occurrence's entry.
        """
        self.count_skip(reason, 1)
        s = self.s
        state = s.state.skipped(reason, 1, trigger.scheduled_at)
        s.unsaved_skips.append((trigger.scheduled_at, reason))
        if self.ledger_on:
            state = state.settled(trigger.scheduled_at)
            if reason is not RunSkipReason.CONTENDED or self.persistence.conditional:
                self.persistence.append_later([skip_entry(self.job.job_id, trigger, reason, self.instance)])
        s.state = state
        if self.emit_or_none is not None:
            self.emit_or_none(skip_event(self.job.job_id, self.clock.now(), trigger, reason))

    def report_drop(self, drop: Drop, trigger_count: int) -> None:
        self.count_skip(drop.reason, drop.count)
        if self.emit_or_none is not None:  # at saturation every decision drops something: stay cheap
            self.emit_or_none(drop_event(self.job.job_id, self.clock.now(), drop, trigger_count))


@types.coroutine
def _yield_to_loop() -> Generator[None, None, None]:
    """``asyncio.sleep(0)`` in one frame instead of two (the loop yields once per run)."""
    yield


def _unchanged(state: JobState) -> JobState:
    return state


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
