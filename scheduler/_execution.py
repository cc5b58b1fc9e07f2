"""Executing one triggered occurrence: attempts, timeout, retries, lease renewal, release."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ._clock import Clock
from ._enums import RunStatus, TriggerSource
from ._guard import ExecutionGuard, ExecutionLease, lease_timing
from ._job import Job, RunContext, TaskContext, TaskKind
from ._slots import slot_filler
from ._state import RunRecord
from .events import (
    ExecutionGuardLost,
    ExecutionGuardReleased,
    ExecutionGuardReleaseFailed,
    ExecutionGuardRenewed,
    ExecutionGuardRenewFailed,
    RunRetrying,
    RunStarted,
    SchedulerEvent,
)

_log = logging.getLogger("scheduler")

_run_context = slot_filler(RunContext)
_task_context = slot_filler(TaskContext)
_run_record = slot_filler(RunRecord)

#: After a failed renewal call, retry this many times per renew interval (until expiry).
RENEW_RETRIES_PER_INTERVAL = 4


@dataclass(slots=True)
class Trigger:
    """An occurrence that is about to run (or be skipped)."""

    scheduled_at: datetime
    catch_up: bool
    trigger_count: int
    source: TriggerSource
    resumed: bool = False


@dataclass(slots=True)
class Outcome:
    """What a run task hands back to the loop. ``fatal`` is a BaseException to re-raise."""

    record: RunRecord
    fatal: BaseException | None = None


@dataclass(slots=True)
class Execution:
    """Everything one run needs; ``run()`` never raises except for fatal BaseExceptions."""

    job: Job
    trigger: Trigger
    lease: ExecutionLease | None
    guard: ExecutionGuard
    clock: Clock
    context_zone: ZoneInfo
    #: None when nobody listens: the hot path then builds no events at all.
    emit: Callable[[SchedulerEvent], None] | None
    on_lease_lost: Callable[[Execution], None]
    stopping: asyncio.Event
    rng: random.Random
    renewals: int = 0
    failed_renewals: int = 0
    #: The last attempt's exit code, when the task reported one (a command that failed).
    exit_code: int | None = None
    task: asyncio.Task[Outcome] | None = field(default=None, repr=False)
    release_task: asyncio.Task[None] | None = field(default=None, repr=False)
    #: The loop releases the lease itself, together with the outcome save (one call).
    release_deferred: bool = False
    #: The lease renewal task, once started (see ``_start_renewal``).
    renewer: asyncio.Task[None] | None = field(default=None, repr=False)
    #: Set when the run's attempts are over: a renewal not started by then never starts.
    finished: bool = False
    #: Called by ``run_plain`` as it ends (the loop's wake-up, cheaper than a done callback).
    on_done: Callable[[], None] | None = None

    async def run_plain(self) -> Outcome:
        """``run`` for the common case (one attempt, no time limit), without the retry loop and
        the steps it would skip anyway: the same outcome, events, log lines and lease handling.
        Ends by calling ``on_done``."""
        started = self.clock.now()
        t = self.trigger
        lease = self.lease
        try:  # everything that may raise, so that ``on_done`` is always called
            if lease is not None:
                self._start_renewal(started)
            if self.emit is not None:
                self.emit(
                    RunStarted(
                        job_id=self.job.job_id,
                        at=self.clock.now(),
                        scheduled_at=t.scheduled_at,
                        catch_up=t.catch_up,
                        trigger_count=t.trigger_count,
                        attempt=1,
                    )
                )
            run = _run_context(
                self.job.job_id,
                t.scheduled_at,
                t.catch_up,
                self.context_zone,
                t.trigger_count,
                1,  # attempt
                t.source,
                None if lease is None else lease.fencing_token,
                t.resumed,
            )
            task = self.job.task
            try:
                if task.kind is TaskKind.ASYNC:  # the common case, without ``invoke``'s frame
                    await task.fn(_task_context(run, self.job.deps))
                else:
                    await task.invoke(_task_context(run, self.job.deps))
            except asyncio.CancelledError:
                return Outcome(self._record(started, RunStatus.CANCELLED, "cancelled", 1))
            except TimeoutError as exc:  # raised by the task itself: there is no time limit here
                return Outcome(self._record(started, RunStatus.FAILED, _describe(exc), 1))
            except Exception as exc:
                _log.error(
                    "job %s run %s attempt %d failed", self.job.job_id, t.scheduled_at.isoformat(), 1, exc_info=exc
                )
                code = getattr(exc, "returncode", None)
                self.exit_code = code if isinstance(code, int) else None
                return Outcome(self._record(started, RunStatus.FAILED, _describe(exc), 1))
            except BaseException as exc:
                return Outcome(self._record(started, RunStatus.FAILED, _describe(exc), 1), fatal=exc)
            self.exit_code = None
            return Outcome(self._record(started, RunStatus.SUCCESS, None, 1))
        finally:
            self.finished = True
            try:
                if lease is not None:
                    await self._end_lease()
            finally:
                if self.on_done is not None:
                    self.on_done()

    async def run(self) -> Outcome:
        started = self.clock.now()
        status, attempts = RunStatus.CANCELLED, 0
        error: str | None = "cancelled before start"
        self._start_renewal(started)
        try:
            for attempt in range(1, (self.job.retry.max_attempts if self.job.retry else 1) + 1):
                attempts = attempt
                status, error = await self._attempt(attempt)
                if status is RunStatus.SUCCESS or self.job.retry is None:
                    break
                if attempt >= self.job.retry.max_attempts or not await self._backoff(attempt, error):
                    break
        except asyncio.CancelledError:
            status, error = RunStatus.CANCELLED, "cancelled"
        except BaseException as exc:
            return Outcome(self._record(started, RunStatus.FAILED, _describe(exc), attempts), fatal=exc)
        finally:
            self.finished = True
            await self._end_lease()
        return Outcome(self._record(started, status, error, attempts))

    async def _end_lease(self) -> None:
        """The run is over: stop renewing, and release the lease unless the loop does it."""
        renewer = self.renewer
        if renewer is not None:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
        if self.lease is not None and not self.release_deferred:
            # A task of its own: the loop overlaps it with the completion save, and it
            # finishes even if whoever awaits it is cancelled.
            self.release_task = asyncio.get_running_loop().create_task(self._release())

    def cancelled_before_start(self) -> Outcome:
        """The outcome of a run task that was cancelled before its first step."""
        if self.lease is not None and self.release_task is None and not self.release_deferred:
            self.release_task = asyncio.get_running_loop().create_task(self._release())
        return Outcome(self._record(self.clock.now(), RunStatus.CANCELLED, "cancelled before start", 0))

    def _record(self, started: datetime, status: RunStatus, error: str | None, attempts: int) -> RunRecord:
        t = self.trigger
        return _run_record(
            t.scheduled_at,
            started,
            self.clock.now(),  # finished_at
            t.catch_up,
            status,
            error,
            max(attempts, 1),
            t.trigger_count,
            t.source,
        )

    async def _attempt(self, attempt: int) -> tuple[RunStatus, str | None]:
        t, job = self.trigger, self.job
        if self.emit is not None:  # hot path: build the event only when someone listens
            self.emit(
                RunStarted(
                    job_id=job.job_id,
                    at=self.clock.now(),
                    scheduled_at=t.scheduled_at,
                    catch_up=t.catch_up,
                    trigger_count=t.trigger_count,
                    attempt=attempt,
                )
            )
        run = RunContext(
            job_id=job.job_id,
            scheduled_at=t.scheduled_at,
            catch_up=t.catch_up,
            timezone=self.context_zone,
            trigger_count=t.trigger_count,
            attempt=attempt,
            source=t.source,
            fencing_token=None if self.lease is None else self.lease.fencing_token,
            resumed=t.resumed,
        )
        ctx = TaskContext(run=run, deps=job.deps)
        timeout = job.timeout
        try:
            if timeout is None:
                await job.task.invoke(ctx)
            else:
                # Timeouts measure real elapsed work (event-loop time), not the injected clock.
                async with asyncio.timeout(timeout.total_seconds()) as scope:
                    await job.task.invoke(ctx)
        except TimeoutError as exc:
            if timeout is not None and scope.expired():
                return RunStatus.TIMED_OUT, f"timed out after {timeout.total_seconds():g}s"
            return RunStatus.FAILED, _describe(exc)
        except Exception as exc:
            _log.error("job %s run %s attempt %d failed", job.job_id, t.scheduled_at.isoformat(), attempt, exc_info=exc)
            # Commands raise an error carrying the exit status; other tasks have none.
            code = getattr(exc, "returncode", None)
            self.exit_code = code if isinstance(code, int) else None
            return RunStatus.FAILED, _describe(exc)
        self.exit_code = None
        return RunStatus.SUCCESS, None

    async def _backoff(self, attempt: int, error: str | None) -> bool:
        """Wait before the next attempt; False when shutdown interrupted the wait."""
        assert self.job.retry is not None
        delay = self.job.retry.backoff(attempt, self.rng)
        self._event(
            RunRetrying(
                job_id=self.job.job_id,
                at=self.clock.now(),
                scheduled_at=self.trigger.scheduled_at,
                attempt=attempt + 1,
                delay=delay,
                error=error,
            )
        )
        return not await _sleep_or_event(self.clock, self.clock.now() + delay, self.stopping)

    # -- lease ------------------------------------------------------------------------

    def _guard_fields(self) -> dict[str, Any]:
        lease = self.lease
        assert lease is not None
        return {
            "job_id": self.job.job_id,
            "at": self.clock.now(),
            "resource_id": lease.resource_id,
            "scope": lease.scope,
            "scheduled_at": lease.scheduled_at,
            "key": lease.key,
            "fencing_token": lease.fencing_token,
        }

    def _start_renewal(self, started: datetime) -> None:
        """Start renewing the lease, on the loop's next turn if the run is still going then.

        A run that finishes without suspending (common for short tasks) never needs the
        renewal task: deferring it by one turn spares creating, cancelling and awaiting it.
        The renewal schedule still counts from ``started``.
        """
        if self.lease is None:
            return
        interval = self.guard.renew_interval(self.lease)
        if interval is None:
            return
        asyncio.get_running_loop().call_soon(self._begin_renewal, interval, started)

    def _begin_renewal(self, interval: timedelta, started: datetime) -> None:
        if not self.finished:
            self.renewer = asyncio.get_running_loop().create_task(self._renew_loop(interval, started))

    async def _renew_loop(self, interval: timedelta, started: datetime) -> None:
        """Renew every ``interval``; give the lease up before it can expire under us.

        The lease counts as lost at ``expires_at - safety_margin`` (never after): from then
        on another process may hold it, so this one must not believe it still does. Each
        renewal call is bounded so that it cannot run past that point. A failed call is
        retried sooner than the normal cadence. A lease whose expiry is unknown (a guard
        that leaves ``expires_at`` None) is lost two intervals after its last renewal.
        """
        lease = self.lease
        assert lease is not None
        clock = self.clock
        if lease.expires_at is None:
            timing = None
            give_up = started + 2 * interval
        else:
            timing = lease_timing(lease.expires_at - started, interval)
            give_up = lease.expires_at - timing.safety_margin
        call_limit = interval / 2 if timing is None else timing.renew_call_timeout
        next_renewal = started + interval
        while True:
            await clock.sleep_until(min(next_renewal, give_up))
            attempt_at = clock.now()
            if attempt_at >= give_up:
                return self._lost(
                    f"lease not renewed in time (gave up {_seconds(timing.safety_margin)} before expiry)"
                    if timing is not None
                    else "lease not renewed within two renew intervals"
                )
            try:
                async with asyncio.timeout(min(call_limit, give_up - attempt_at).total_seconds()):
                    held = await self.guard.renew(lease)
            except Exception as exc:
                self.failed_renewals += 1
                error = "renewal call timed out" if isinstance(exc, TimeoutError) else _describe(exc)
                self._event(
                    ExecutionGuardRenewFailed(
                        **self._guard_fields(), failed_renewal_count=self.failed_renewals, error=error
                    )
                )
                # Retry sooner than the normal cadence while the lease is still safely ours.
                next_renewal = clock.now() + interval / RENEW_RETRIES_PER_INTERVAL
                continue
            if not held:
                return self._lost("lease is held by another token or expired")
            self.renewals += 1
            # The server set the new expiry after the call started: count from its start.
            give_up = (
                attempt_at + 2 * interval
                if timing is None or lease.expires_at is None
                else attempt_at + (lease.expires_at - started) - timing.safety_margin
            )
            next_renewal = attempt_at + interval
            self._event(ExecutionGuardRenewed(**self._guard_fields(), renewal_count=self.renewals))

    def _lost(self, error: str) -> None:
        self._event(
            ExecutionGuardLost(
                **self._guard_fields(),
                renewal_count=self.renewals,
                failed_renewal_count=self.failed_renewals,
                error=error,
            )
        )
        self.on_lease_lost(self)

    def _event(self, event: SchedulerEvent) -> None:
        if self.emit is not None:
            self.emit(event)

    def start_release(self) -> asyncio.Task[None]:
        """Release the lease on its own (a deferred release whose combined call failed)."""
        self.release_deferred = False
        if self.release_task is None:
            self.release_task = asyncio.get_running_loop().create_task(self._release())
        return self.release_task

    async def _release(self) -> None:
        if self.lease is None:
            return
        try:
            released = await self.guard.release(self.lease)
        except Exception as exc:
            self.report_release(exc)
            return
        self.report_release(released)

    def report_release(self, released: bool | BaseException | None) -> None:
        """Emit what became of the lease: released, already gone, or the release failed."""
        if self.lease is None or self.emit is None:  # nobody listens: build no event
            return
        if isinstance(released, BaseException):
            self._event(ExecutionGuardReleaseFailed(**self._guard_fields(), error=_describe(released)))
            return
        if released is False:  # the lease expired or was taken over while we ran
            self._event(ExecutionGuardReleaseFailed(**self._guard_fields(), error="lease already gone"))
            return
        self._event(ExecutionGuardReleased(**self._guard_fields(), renewal_count=self.renewals))


def _seconds(delta: timedelta) -> str:
    return f"{delta.total_seconds():g}s"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _sleep_or_event(clock: Clock, deadline: datetime, event: asyncio.Event) -> bool:
    """Sleep until ``deadline``; True if ``event`` was set first."""
    if event.is_set():
        return True
    sleeper = asyncio.ensure_future(clock.sleep_until(deadline))
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait((sleeper, waiter), return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
        waiter.cancel()
    return event.is_set()
