"""Events the scheduler reports to observers: frozen, past-tense, each with ``job_id`` and ``at``.

``at`` comes from the scheduler's clock. Observers receive every event in order; an observer
that raises is logged and ignored.
"""

from __future__ import annotations

from dataclasses import MISSING, FrozenInstanceError, dataclass, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, dataclass_transform

from ._enums import (
    GuardScope,
    RunSkipReason,
    RunStatus,
    SchedulerStopReason,
    StateLoadSource,
    TriggerSource,
)
from ._errors import StoreOperation
from ._time import format_utc

__all__ = [
    "ExecutionGuardAcquired",
    "ExecutionGuardContended",
    "ExecutionGuardLost",
    "ExecutionGuardReleaseFailed",
    "ExecutionGuardReleased",
    "ExecutionGuardRenewFailed",
    "ExecutionGuardRenewed",
    "RunCompleted",
    "RunRetrying",
    "RunSkipped",
    "RunStarted",
    "RunsMissed",
    "SchedulerEvent",
    "SchedulerPaused",
    "SchedulerResumed",
    "SchedulerStopped",
    "StateLoaded",
    "StateConflict",
    "StateReconciled",
    "StateRepaired",
    "StoreDegraded",
    "StoreRecovered",
    "TerminalStateDeleted",
    "TriggerEmitted",
]


T = TypeVar("T")
#: Event classes whose ``__init__`` is still to be written (see ``_write_inits``).
_WITHOUT_INIT: list[type[Any]] = []


@dataclass_transform(kw_only_default=True, frozen_default=True)
def _event(cls: type[T]) -> type[T]:
    """A frozen, slotted, keyword-only dataclass, as ``dataclass`` would make it, made cheaply.

    ``dataclass`` compiles each generated method separately; for a frozen class that is three
    (``__init__``, ``__setattr__``, ``__delattr__``), most of this module's import time. Here the
    base writes ``__setattr__`` and ``__delattr__`` once, and ``_write_inits`` compiles every
    class's ``__init__`` in one go at the end of the module.
    """
    made = dataclass(slots=True, kw_only=True, eq=False, repr=False, init=False)(cls)
    _WITHOUT_INIT.append(made)
    return made


@_event
class SchedulerEvent:
    """Base of every event.

    Equality, hash and repr are the ones ``dataclass`` would write for each class (fields in
    order, equal only to the same class), written once here: generating them for every event
    class made importing this module cost several times more. So are ``__setattr__`` and
    ``__delattr__`` (an event is frozen) and the pickling methods of a frozen slotted dataclass.
    """

    if TYPE_CHECKING:
        __dataclass_fields__: ClassVar[dict[str, Any]]

    job_id: str
    at: datetime

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __getstate__(self) -> tuple[Any, ...]:
        return self._values()

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for name, value in zip(self.__dataclass_fields__, state, strict=True):
            object.__setattr__(self, name, value)

    def _values(self) -> tuple[Any, ...]:
        return tuple([getattr(self, name) for name in self.__dataclass_fields__])

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, SchedulerEvent)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__dataclass_fields__)
        return f"{self.__class__.__qualname__}({shown})"

    @property
    def name(self) -> str:
        return type(self).__name__

    def fields(self) -> dict[str, Any]:
        """The event's fields as JSON-ready values (instants as RFC 3339, enums as values)."""
        out: dict[str, Any] = {}
        for key in self.__dataclass_fields__:
            value = getattr(self, key)
            if isinstance(value, datetime):
                value = format_utc(value)
            elif isinstance(value, timedelta):
                value = value.total_seconds()
            elif hasattr(value, "value"):
                value = value.value
            out[key] = value
        return out


@_event
class StateLoaded(SchedulerEvent):
    """The job's state was read (``RESTORED``), created (``NEW``) or repaired (``REPAIRED``)."""

    source: StateLoadSource
    trigger_count: int
    next_run_at: datetime | None


@_event
class StateRepaired(SchedulerEvent):
    """An interval job's stored state had no next run though the job is not finished: it runs
    again one interval from now."""

    trigger_count: int
    previous_next_run_at: datetime | None
    repaired_next_run_at: datetime | None


@_event
class StateReconciled(SchedulerEvent):
    """The schedule changed since the state was saved: the next run follows the new one."""

    previous_next_run_at: datetime | None
    next_run_at: datetime | None


@_event
class StateConflict(SchedulerEvent):
    """Another process changed the stored state since this one last read it.

    The scheduler adopted the stored document (``trigger_count`` and ``next_run_at`` are its
    values; None when it was deleted) and decided again. ``during`` names the write that was
    refused: ``consume`` (before a run), ``complete`` (a run's outcome) or ``manual``.
    """

    during: str
    trigger_count: int | None
    next_run_at: datetime | None


@_event
class TriggerEmitted(SchedulerEvent):
    """An occurrence (or a manual trigger) is about to start; ``delay`` is its start jitter."""

    scheduled_at: datetime
    catch_up: bool
    trigger_count: int
    source: TriggerSource
    delay: timedelta = timedelta(0)


@_event
class RunStarted(SchedulerEvent):
    """An attempt of a run starts (``attempt`` counts from 1)."""

    scheduled_at: datetime
    catch_up: bool
    trigger_count: int
    attempt: int


@_event
class RunRetrying(SchedulerEvent):
    """An attempt failed; the next one starts after ``delay``."""

    scheduled_at: datetime
    attempt: int
    delay: timedelta
    error: str | None


@_event
class RunCompleted(SchedulerEvent):
    """A run finished: its status, error and attempts."""

    scheduled_at: datetime
    catch_up: bool
    trigger_count: int
    status: RunStatus
    error: str | None
    attempts: int
    started_at: datetime | None = None


@_event
class RunSkipped(SchedulerEvent):
    """A consumed occurrence did not run; ``reason`` says why."""

    scheduled_at: datetime
    catch_up: bool
    trigger_count: int
    reason: RunSkipReason


@_event
class RunsMissed(SchedulerEvent):
    """Many consumed occurrences dropped at once (after downtime), reported as one event."""

    count: int
    first_scheduled_at: datetime
    last_scheduled_at: datetime
    reason: RunSkipReason


@_event
class _GuardEvent(SchedulerEvent):
    """Fields shared by the execution guard's events."""

    resource_id: str
    scope: GuardScope
    scheduled_at: datetime
    key: str | None = None
    fencing_token: int | None = None


@_event
class ExecutionGuardAcquired(_GuardEvent):
    """``key`` is None when the guard failed and the run went ahead without a lease."""

    without_lease: bool = False


@_event
class ExecutionGuardContended(_GuardEvent):
    """Another process holds the lease: this occurrence does not run here."""


@_event
class ExecutionGuardRenewed(_GuardEvent):
    """The lease was renewed (``renewal_count`` so far)."""

    renewal_count: int = 0


@_event
class ExecutionGuardRenewFailed(_GuardEvent):
    """A renewal call failed; it is retried while the lease is safely held."""

    failed_renewal_count: int = 0
    error: str | None = None


@_event
class ExecutionGuardLost(_GuardEvent):
    """The lease can no longer be trusted to be held (expired or taken)."""

    renewal_count: int = 0
    failed_renewal_count: int = 0
    error: str | None = None


@_event
class ExecutionGuardReleased(_GuardEvent):
    """The lease was released after the run."""

    renewal_count: int = 0


@_event
class ExecutionGuardReleaseFailed(_GuardEvent):
    """The release failed, or the lease was already gone."""

    error: str | None = None


@_event
class StoreDegraded(SchedulerEvent):
    """A store call failed (``operation``); the job goes on as the store allows."""

    operation: StoreOperation
    error: str


@_event
class StoreRecovered(SchedulerEvent):
    """The primary store answers again; ``written_back`` states were written back to it."""

    written_back: int


@_event
class TerminalStateDeleted(SchedulerEvent):
    """Nothing is left to run and the state was deleted (``terminal_state_policy``)."""

    trigger_count: int


@_event
class SchedulerPaused(SchedulerEvent):
    """``pause()`` took effect."""


@_event
class SchedulerResumed(SchedulerEvent):
    """``resume()`` took effect."""


@_event
class SchedulerStopped(SchedulerEvent):
    """``Scheduler.run`` is about to return; ``reason`` says why."""

    reason: SchedulerStopReason
    trigger_count: int


def _write_inits(classes: list[type[Any]]) -> None:
    """Give each class the ``__init__`` a frozen keyword-only dataclass has, compiled at once.

    Each field is set through its slot's descriptor (the class refuses assignment).
    """
    scope: dict[str, Any] = {}
    source = []
    for i, cls in enumerate(classes):
        params, body = [], []
        for j, f in enumerate(fields(cls)):
            if f.default_factory is not MISSING:
                raise TypeError(f"{cls.__name__}.{f.name}: events take plain defaults only")
            default = "" if f.default is MISSING else f"=__d{i}_{j}"
            scope[f"__d{i}_{j}"] = f.default
            scope[f"__s{i}_{j}"] = getattr(cls, f.name).__set__
            params.append(f"{f.name}{default}")
            body.append(f"    __s{i}_{j}(__self__, {f.name})\n")
        source.append(f"def __init{i}__(__self__, *, {', '.join(params)}):\n{''.join(body)}")
    exec("".join(source), scope)  # built from field names only
    for i, cls in enumerate(classes):
        init = scope[f"__init{i}__"]
        init.__qualname__ = f"{cls.__qualname__}.__init__"
        init.__annotations__ = {f.name: f.type for f in fields(cls)} | {"return": None}
        cls.__init__ = init
    classes.clear()


_write_inits(_WITHOUT_INIT)
