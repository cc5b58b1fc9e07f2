"""The ExecutionGuard protocol (leases per occurrence or resource) and the no-op guard."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from ._enums import GuardScope
from ._records import record


@record
class ExecutionSlot:
    """What a run wants exclusive use of."""

    job_id: str
    resource_id: str
    scope: GuardScope
    scheduled_at: datetime


@record
class ExecutionLease:
    """A held slot. ``fencing_token`` strictly increases per resource (None: no-op guard).

    ``expires_at`` is when the holder loses the lease unless it renews (None: never).
    """

    job_id: str
    resource_id: str
    scope: GuardScope
    scheduled_at: datetime
    token: str
    key: str
    fencing_token: int | None
    expires_at: datetime | None = None


#: The longest a single renewal call may take, whatever the renewal interval.
MAX_RENEW_CALL_TIMEOUT = timedelta(seconds=5)


@record
class LeaseTiming:
    """Deadlines that keep a renewing holder from outliving its lease.

    ``renew_call_timeout``: how long one renewal call may take. ``safety_margin``: the lease
    counts as lost at ``expires_at - safety_margin``, before another holder can take it.
    """

    renew_call_timeout: timedelta
    safety_margin: timedelta


def lease_timing(ttl: timedelta, renew_interval: timedelta) -> LeaseTiming:
    """``renew_call_timeout = min(renew_interval / 2, 5 s)``, ``safety_margin = max(ttl / 10, it)``."""
    call = min(renew_interval / 2, MAX_RENEW_CALL_TIMEOUT)
    return LeaseTiming(renew_call_timeout=call, safety_margin=max(ttl / 10, call))


@runtime_checkable
class ExecutionGuard(Protocol):
    """Mutual exclusion for runs across processes.

    Contract (checked by ``scheduler.testing.check_execution_guard``):

    * ``acquire(slot)`` returns a lease, or None when another holder has it (contended). An
      OCCURRENCE lease excludes other holders of the same resource and occurrence, and stays
      taken (as a completed marker) after release until its TTL would have run out, so a
      late instance cannot run the occurrence again. A RESOURCE lease excludes every run on
      the resource.
    * ``renew(lease)`` extends it and returns True, or returns False when it is no longer
      held by this lease's token (lost).
    * ``release(lease)`` gives it up and never removes a lease held by another token. It
      returns True when this token's lease was released (also when an earlier call already
      released it), False when the lease was already gone (expired, or held by another
      token), None when the guard cannot tell.
    * ``renew_interval(lease)`` says how often to renew (None: never).
    * Failures raise ``ExecutionGuardError`` (CONNECTION, DATA or UNKNOWN).
    """

    async def acquire(self, slot: ExecutionSlot) -> ExecutionLease | None: ...

    async def renew(self, lease: ExecutionLease) -> bool: ...

    async def release(self, lease: ExecutionLease) -> bool | None: ...

    def renew_interval(self, lease: ExecutionLease) -> timedelta | None: ...


class NoopExecutionGuard:
    """Always grants; for a single instance (the default)."""

    async def acquire(self, slot: ExecutionSlot) -> ExecutionLease | None:
        return ExecutionLease(
            job_id=slot.job_id,
            resource_id=slot.resource_id,
            scope=slot.scope,
            scheduled_at=slot.scheduled_at,
            token="",
            key="",
            fencing_token=None,
        )

    async def renew(self, lease: ExecutionLease) -> bool:
        return True

    async def release(self, lease: ExecutionLease) -> bool | None:
        return True

    def renew_interval(self, lease: ExecutionLease) -> timedelta | None:
        return None
