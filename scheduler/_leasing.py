"""Asking the execution guard for a lease, under the guard error policy and a call deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from ._clock import Clock
from ._enums import GuardErrorPolicy, RunSkipReason
from ._errors import ExecutionGuardError, ExecutionGuardErrorKind
from ._execution import Trigger
from ._guard import ExecutionGuard, ExecutionLease, ExecutionSlot
from ._job import Job
from ._records import record
from .events import ExecutionGuardAcquired, ExecutionGuardContended, SchedulerEvent


@record
class Admission:
    """The guard's answer for one trigger: run (with ``lease``, or without one) or skip."""

    lease: ExecutionLease | None = None
    skip: RunSkipReason | None = None


ADMITTED_WITHOUT_LEASE = Admission()

#: Test hook, None in normal use: called synchronously after the pre-run save and before each
#: acquire (before the acquire's deadline starts). Fault tests set it to freeze the process at
#: exactly that point; the CLI sets it from ``SCHEDULER_TEST_STOP_BEFORE_ACQUIRE``.
before_acquire: Callable[[], None] | None = None


class LeaseBroker:
    """Turns a trigger into an ``Admission``; emits the guard events; raises when fatal."""

    def __init__(
        self,
        job: Job,
        guard: ExecutionGuard,
        policy: GuardErrorPolicy,
        clock: Clock,
        emit: Callable[[SchedulerEvent], None],
        call_timeout: timedelta,
        listening: Callable[[], bool] | None = None,
    ) -> None:
        self._job, self._guard, self._policy, self._clock, self._emit = job, guard, policy, clock, emit
        self._timeout = call_timeout.total_seconds()
        #: Whether anyone listens to events now (None: assume so); a granted lease then builds none.
        self._listening = listening

    def slot(self, trigger: Trigger) -> ExecutionSlot:
        job = self._job
        return ExecutionSlot(job.job_id, job.effective_resource_id, job.guard_scope, trigger.scheduled_at)

    async def admit(self, trigger: Trigger) -> Admission:
        slot = self.slot(trigger)
        if before_acquire is not None:
            before_acquire()
        try:
            lease = await self._acquire(slot)
        except Exception as exc:
            return self._failed(slot, exc)
        return self._granted(slot, lease)

    async def settle(self, trigger: Trigger, result: ExecutionLease | ExecutionGuardError | None) -> Admission:
        """The admission for an acquire made inside a combined store call.

        A failed acquire part is tried again alone, under the guard error policy.
        """
        if isinstance(result, ExecutionGuardError):
            return await self.admit(trigger)
        if result is not None and self._listening is not None and not self._listening():
            return Admission(lease=result)  # the common case: nobody to tell
        return self._granted(self.slot(trigger), result)

    def _fields(self, slot: ExecutionSlot) -> dict[str, Any]:
        return {
            "job_id": slot.job_id,
            "resource_id": slot.resource_id,
            "scope": slot.scope,
            "scheduled_at": slot.scheduled_at,
        }

    def _failed(self, slot: ExecutionSlot, exc: Exception) -> Admission:
        if self._policy is GuardErrorPolicy.FAIL:
            if isinstance(exc, ExecutionGuardError):
                raise exc
            raise ExecutionGuardError(ExecutionGuardErrorKind.UNKNOWN, f"guard acquire failed: {exc}") from exc
        if self._policy is GuardErrorPolicy.SKIP:
            return Admission(skip=RunSkipReason.GUARD_UNAVAILABLE)
        self._emit(ExecutionGuardAcquired(at=self._clock.now(), without_lease=True, **self._fields(slot)))
        return ADMITTED_WITHOUT_LEASE

    def _granted(self, slot: ExecutionSlot, lease: ExecutionLease | None) -> Admission:
        if lease is None:
            self._emit(ExecutionGuardContended(at=self._clock.now(), **self._fields(slot)))
            return Admission(skip=RunSkipReason.CONTENDED)
        self._emit(
            ExecutionGuardAcquired(
                at=self._clock.now(), key=lease.key, fencing_token=lease.fencing_token, **self._fields(slot)
            )
        )
        return Admission(lease=lease)

    async def _acquire(self, slot: ExecutionSlot) -> ExecutionLease | None:
        """One acquire call, bounded by the loop's budget (a hung guard is a CONNECTION error).

        A timed-out acquire may still be applied by the server later: the lease then exists
        without a holder and simply expires, so the occurrence is not run twice.
        """
        try:
            async with asyncio.timeout(self._timeout):
                return await self._guard.acquire(slot)
        except TimeoutError:
            raise ExecutionGuardError(
                ExecutionGuardErrorKind.CONNECTION, f"guard acquire timed out after {self._timeout:g}s"
            ) from None

    async def release_quietly(self, lease: ExecutionLease) -> None:
        """Best-effort release while failing: the lease expires on its own otherwise."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._guard.release(lease)
        except Exception:
            return
