"""SchedulerConfig: process-wide settings of a Scheduler (validated at construction)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta, tzinfo
from zoneinfo import ZoneInfo

from ._enums import GuardErrorPolicy, LeaseLostPolicy, TerminalStatePolicy
from ._errors import InvalidJobError, InvalidJobKind
from ._job import _enum
from ._time import to_timedelta, to_zone


@dataclass(frozen=True, slots=True)
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
        if isinstance(history_limit, bool) or not isinstance(history_limit, int) or history_limit < 0:
            raise InvalidJobError(InvalidJobKind.OTHER, f"history_limit must be an int >= 0, got {history_limit!r}")
        set_(self, "history_limit", history_limit)
        set_(self, "terminal_state_policy", _enum(TerminalStatePolicy, terminal_state_policy, "terminal_state_policy"))
        grace = to_timedelta(misfire_grace, "misfire_grace")
        if grace < timedelta(0):
            raise InvalidJobError(InvalidJobKind.OTHER, f"misfire_grace must be >= 0, got {grace}")
        set_(self, "misfire_grace", grace)
        window = None if catch_up_window is None else to_timedelta(catch_up_window, "catch_up_window")
        if window is not None and window < timedelta(0):
            raise InvalidJobError(InvalidJobKind.OTHER, f"catch_up_window must be >= 0, got {window}")
        set_(self, "catch_up_window", window)
        set_(self, "lease_lost_policy", _enum(LeaseLostPolicy, lease_lost_policy, "lease_lost_policy"))
        set_(self, "guard_error_policy", _enum(GuardErrorPolicy, guard_error_policy, "guard_error_policy"))
        set_(self, "resume_interrupted", bool(resume_interrupted))
        budget = None if call_timeout is None else to_timedelta(call_timeout, "call_timeout")
        if budget is not None and budget <= timedelta(0):
            raise InvalidJobError(InvalidJobKind.OTHER, f"call_timeout must be > 0, got {budget}")
        set_(self, "call_timeout", budget)
        if isinstance(ledger_limit, bool) or not isinstance(ledger_limit, int):
            raise TypeError(f"ledger_limit must be an int, got {ledger_limit!r}")
        if ledger_limit < 0:
            raise InvalidJobError(InvalidJobKind.OTHER, f"ledger_limit must be >= 0, got {ledger_limit}")
        set_(self, "ledger_limit", ledger_limit)
