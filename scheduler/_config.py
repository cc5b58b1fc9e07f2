"""SchedulerConfig: process-wide settings of a Scheduler (validated at construction)."""

from __future__ import annotations

from datetime import timedelta, tzinfo
from zoneinfo import ZoneInfo

from ._enums import GuardErrorPolicy, LeaseLostPolicy, TerminalStatePolicy
from ._errors import InvalidJobError, InvalidJobKind
from ._job import _enum
from ._records import record
from ._time import MAX_DURATION, require_int, to_timedelta, to_zone, wrong_type


@record
class SchedulerConfig:
    """Settings shared by every job a Scheduler runs.

    ``timezone`` (name or ZoneInfo) is used by crons and windows that have no zone of their
    own. ``misfire_grace``: how late an occurrence may start and still count as on time.
    ``catch_up_window``: due occurrences older than this are dropped whatever the policy.
    ``call_timeout``: how long one store or guard call may take before the loop treats it
    as a connection failure (None: half the schedule's period, between 50 ms and 5 s).
    ``ledger_limit``: run-ledger entries kept per job when the store has a ledger (0: none
    written).
    """

    timezone: ZoneInfo = ZoneInfo("UTC")
    history_limit: int = 32
    terminal_state_policy: TerminalStatePolicy = TerminalStatePolicy.RETAIN
    misfire_grace: timedelta = timedelta(seconds=1)
    catch_up_window: timedelta | None = None
    lease_lost_policy: LeaseLostPolicy = LeaseLostPolicy.SHUTDOWN
    guard_error_policy: GuardErrorPolicy = GuardErrorPolicy.FAIL
    resume_interrupted: bool = False
    call_timeout: timedelta | None = None
    ledger_limit: int = 1000

    def __init__(
        self,
        timezone: str | tzinfo = "UTC",
        history_limit: int = 32,
        terminal_state_policy: TerminalStatePolicy | str = TerminalStatePolicy.RETAIN,
        misfire_grace: timedelta | float = timedelta(seconds=1),
        catch_up_window: timedelta | float | None = None,
        lease_lost_policy: LeaseLostPolicy | str = LeaseLostPolicy.SHUTDOWN,
        guard_error_policy: GuardErrorPolicy | str = GuardErrorPolicy.FAIL,
        resume_interrupted: bool = False,
        call_timeout: timedelta | float | None = None,
        ledger_limit: int = 1000,
    ) -> None:
        set_ = object.__setattr__
        set_(self, "timezone", to_zone(timezone))
        set_(self, "history_limit", require_int(history_limit, "history_limit", 0))
        set_(self, "terminal_state_policy", _enum(TerminalStatePolicy, terminal_state_policy, "terminal_state_policy"))
        set_(self, "misfire_grace", _clamped(misfire_grace, "misfire_grace"))
        set_(self, "catch_up_window", None if catch_up_window is None else _clamped(catch_up_window, "catch_up_window"))
        set_(self, "lease_lost_policy", _enum(LeaseLostPolicy, lease_lost_policy, "lease_lost_policy"))
        set_(self, "guard_error_policy", _enum(GuardErrorPolicy, guard_error_policy, "guard_error_policy"))
        if not isinstance(resume_interrupted, bool):
            raise wrong_type("resume_interrupted", "a bool", resume_interrupted)
        set_(self, "resume_interrupted", resume_interrupted)
        budget = None if call_timeout is None else to_timedelta(call_timeout, "call_timeout")
        if budget is not None and not timedelta(0) < budget <= MAX_DURATION:
            raise InvalidJobError(
                InvalidJobKind.OTHER, f"call_timeout must be > 0 and at most {MAX_DURATION.days} days, got {budget}"
            )
        set_(self, "call_timeout", budget)
        set_(self, "ledger_limit", require_int(ledger_limit, "ledger_limit", 0))


def _clamped(value: timedelta | float, what: str) -> timedelta:
    """>= 0; anything longer than MAX_DURATION (``timedelta.max`` included) means MAX_DURATION,
    which already outlasts any downtime, and keeps ``now - value`` inside what datetime holds."""
    result = to_timedelta(value, what)
    if result < timedelta(0):
        raise InvalidJobError(InvalidJobKind.OTHER, f"{what} must be >= 0, got {result}")
    return min(result, MAX_DURATION)
