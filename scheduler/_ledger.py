"""The run ledger: what happened to every consumed occurrence, as durable entries.

Pure types and helpers (no I/O): ``LedgerEntry``, ``LedgerFate``, the ``RunLedger`` store
capability, the combined save capability ``LedgerSavingStore``, and ``select`` (the filter
and order every store applies to a job's entries).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from json.encoder import encode_basestring_ascii as _quoted
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ._enums import RunSkipReason, RunStatus, TriggerSource
from ._records import record
from ._slots import slot_filler
from ._time import format_utc

if TYPE_CHECKING:
    from ._state import JobState

#: Entries kept per job unless ``SchedulerConfig.ledger_limit`` says otherwise.
DEFAULT_LEDGER_LIMIT = 1000
#: Longest error text kept in an entry (the full text is in the logs and events).
MAX_ERROR_CHARS = 500


class LedgerFate(StrEnum):
    """What became of one occurrence (or of a range of them)."""

    #: A run; the values equal ``RunStatus``'s.
    SUCCESS = "success"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    #: One occurrence that did not run; ``reason`` says why.
    SKIPPED = "skipped"
    #: A range of ``count`` consecutive occurrences dropped for one ``reason``.
    MISSED = "missed"
    #: Consumed to run, but its run never reported (the process died); found on restart.
    INTERRUPTED = "interrupted"

    @classmethod
    def of_run(cls, status: RunStatus) -> LedgerFate:
        return RUN_FATES[status]


RUN_FATES = {status: LedgerFate(status.value) for status in RunStatus}


def _aware(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"LedgerEntry.{what} must be a timezone-aware datetime, got {value!r}")
    return value if value.tzinfo is UTC else value.astimezone(UTC)


@record
class LedgerEntry:
    """One occurrence (or one range of occurrences, ``count`` > 1) and what became of it.

    Instants are UTC. ``last_scheduled_at`` is the end of a range (``scheduled_at`` itself for
    a single occurrence). ``instance`` is ``host:pid`` of the process that decided it.
    ``error`` is a short text (at most 500 characters); ``exit_code`` is set for commands.
    """

    job_id: str
    scheduled_at: datetime
    fate: LedgerFate
    reason: RunSkipReason | None
    count: int
    last_scheduled_at: datetime
    source: TriggerSource
    catch_up: bool
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int
    error: str | None
    exit_code: int | None
    fencing_token: int | None
    instance: str

    def __init__(
        self,
        job_id: str,
        scheduled_at: datetime,
        fate: LedgerFate | str,
        reason: RunSkipReason | str | None = None,
        count: int = 1,
        last_scheduled_at: datetime | None = None,
        source: TriggerSource | str = TriggerSource.SCHEDULED,
        catch_up: bool = False,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        attempts: int = 0,
        error: str | None = None,
        exit_code: int | None = None,
        fencing_token: int | None = None,
        instance: str = "",
    ) -> None:
        set_ = object.__setattr__
        first = _aware(scheduled_at, "scheduled_at")
        last = first if last_scheduled_at is None else _aware(last_scheduled_at, "last_scheduled_at")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"LedgerEntry.count must be an int >= 1, got {count!r}")
        if last < first:
            raise ValueError(f"LedgerEntry range ends ({last}) before it starts ({first})")
        fate = LedgerFate(fate)
        if fate in (LedgerFate.SKIPPED, LedgerFate.MISSED) and reason is None:
            raise ValueError(f"a {fate.value} LedgerEntry needs a reason")
        set_(self, "job_id", job_id)
        set_(self, "scheduled_at", first)
        set_(self, "fate", fate)
        set_(self, "reason", None if reason is None else RunSkipReason(reason))
        set_(self, "count", count)
        set_(self, "last_scheduled_at", last)
        set_(self, "source", TriggerSource(source))
        set_(self, "catch_up", bool(catch_up))
        set_(self, "started_at", None if started_at is None else _aware(started_at, "started_at"))
        set_(self, "finished_at", None if finished_at is None else _aware(finished_at, "finished_at"))
        set_(self, "attempts", attempts)
        set_(self, "error", None if error is None else error[:MAX_ERROR_CHARS])
        set_(self, "exit_code", exit_code)
        set_(self, "fencing_token", fencing_token)
        set_(self, "instance", instance)

    @classmethod
    def trusted(cls, **fields: Any) -> LedgerEntry:
        """Built from the scheduler's own, already valid values: no checks (several per run)."""
        if fields.get("last_scheduled_at") is None:
            fields["last_scheduled_at"] = fields["scheduled_at"]
        return cls.trusted_values(*[fields.get(name, default) for name, default in _DEFAULTS.items()])

    @classmethod
    def trusted_values(cls, *values: Any) -> LedgerEntry:
        """Like ``trusted``, from every field's value in declaration order."""
        return build_entry(*values)

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def covers(self, before: datetime | None, after: datetime | None) -> bool:
        """Whether ``[scheduled_at, last_scheduled_at]`` meets ``[after, before]`` (inclusive)."""
        return (before is None or self.scheduled_at <= before) and (after is None or self.last_scheduled_at >= after)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; None values and a single occurrence's end are left out."""
        out: dict[str, Any] = {
            "job_id": self.job_id,
            "scheduled_at": format_utc(self.scheduled_at),
            "fate": self.fate.value,
            "count": self.count,
            "source": self.source.value,
            "catch_up": self.catch_up,
            "attempts": self.attempts,
            "instance": self.instance,
        }
        if self.reason is not None:
            out["reason"] = self.reason.value
        if self.last_scheduled_at != self.scheduled_at:
            out["last_scheduled_at"] = format_utc(self.last_scheduled_at)
        for name in ("started_at", "finished_at"):
            value = getattr(self, name)
            if value is not None:
                out[name] = format_utc(value)
        for name in ("error", "exit_code", "fencing_token"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def to_json(self) -> str:
        """``to_dict`` as compact JSON, non-ASCII escaped (what the stores keep; one per run).

        Written directly, about three times faster than ``json.dumps`` (a test pins the text to
        it); an entry holding a value of another type than its field's goes through it.
        """
        job_id, instance, count, attempts, catch_up = (
            self.job_id,
            self.instance,
            self.count,
            self.attempts,
            self.catch_up,
        )
        if not (
            type(job_id) is str
            and type(instance) is str
            and type(count) is int
            and type(attempts) is int
            and type(catch_up) is bool
        ):
            return _dumps(self.to_dict())
        parts = [
            f'{{"job_id":{_quoted(job_id)},"scheduled_at":"{format_utc(self.scheduled_at)}",'
            f'"fate":"{self.fate._value_}","count":{count},"source":"{self.source._value_}",'
            f'"catch_up":{"true" if catch_up else "false"},"attempts":{attempts},"instance":{_quoted(instance)}'
        ]
        if self.reason is not None:
            parts.append(f',"reason":"{self.reason.value}"')
        if self.last_scheduled_at != self.scheduled_at:
            parts.append(f',"last_scheduled_at":"{format_utc(self.last_scheduled_at)}"')
        if self.started_at is not None:
            parts.append(f',"started_at":"{format_utc(self.started_at)}"')
        if self.finished_at is not None:
            parts.append(f',"finished_at":"{format_utc(self.finished_at)}"')
        error, exit_code, fencing_token = self.error, self.exit_code, self.fencing_token
        if error is not None:
            if type(error) is not str:
                return _dumps(self.to_dict())
            parts.append(f',"error":{_quoted(error)}')
        if exit_code is not None:
            if type(exit_code) is not int:
                return _dumps(self.to_dict())
            parts.append(f',"exit_code":{exit_code}')
        if fencing_token is not None:  # one per guarded run: no loop over the two, no tuples
            if type(fencing_token) is not int:
                return _dumps(self.to_dict())
            parts.append(f',"fencing_token":{fencing_token}')
        parts.append("}")
        return "".join(parts)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LedgerEntry:
        def instant(name: str) -> datetime | None:
            value = data.get(name)
            return None if value is None else datetime.fromisoformat(str(value).replace("Z", "+00:00"))

        scheduled_at = instant("scheduled_at")
        if scheduled_at is None:
            raise ValueError("a ledger entry without scheduled_at")
        return cls(
            job_id=str(data["job_id"]),
            scheduled_at=scheduled_at,
            fate=data["fate"],
            reason=data.get("reason"),
            count=int(data.get("count", 1)),
            last_scheduled_at=instant("last_scheduled_at"),
            source=data.get("source", TriggerSource.SCHEDULED),
            catch_up=bool(data.get("catch_up", False)),
            started_at=instant("started_at"),
            finished_at=instant("finished_at"),
            attempts=int(data.get("attempts", 0)),
            error=data.get("error"),
            exit_code=data.get("exit_code"),
            fencing_token=data.get("fencing_token"),
            instance=str(data.get("instance", "")),
        )


_DEFAULTS: dict[str, Any] = {
    "job_id": None,
    "scheduled_at": None,
    "fate": None,
    "reason": None,
    "count": 1,
    "last_scheduled_at": None,
    "source": TriggerSource.SCHEDULED,
    "catch_up": False,
    "started_at": None,
    "finished_at": None,
    "attempts": 0,
    "error": None,
    "exit_code": None,
    "fencing_token": None,
    "instance": "",
}


#: ``LedgerEntry.trusted_values`` without the method call (the run loop builds one per run).
build_entry = slot_filler(LedgerEntry)
_dumps = json.JSONEncoder(separators=(",", ":")).encode
assert tuple(_DEFAULTS) == LedgerEntry.__slots__, "_DEFAULTS lists every field in order"  # type: ignore[attr-defined]


@runtime_checkable
class RunLedger(Protocol):
    """A store capability: a bounded, durable log of ledger entries per job.

    * ``append(entries, keep=...)`` adds entries in order; afterwards at most about ``keep``
      entries per job remain (the oldest appended go first; a store may keep a few more, as
      an approximate trim does). ``keep`` 0 means no trimming.
    * ``history(job_id, limit=100, before=None, after=None, fates=None)`` returns up to
      ``limit`` entries of the job, newest ``scheduled_at`` first (the later appended first
      among equal ones). ``before``/``after`` are inclusive bounds: an entry (a range
      ``[scheduled_at, last_scheduled_at]``) matches when it meets ``[after, before]``.
      ``fates`` keeps only entries with one of those fates.
    * Failures raise ``StoreError`` like the store's other calls.
    """

    async def append(self, entries: Sequence[LedgerEntry], *, keep: int = DEFAULT_LEDGER_LIMIT) -> None: ...

    async def history(
        self,
        job_id: str,
        *,
        limit: int = 100,
        before: datetime | None = None,
        after: datetime | None = None,
        fates: Iterable[LedgerFate] | None = None,
    ) -> list[LedgerEntry]: ...


@runtime_checkable
class LedgerSavingStore(Protocol):
    """A store that saves a state and appends ledger entries atomically (one transaction/script).

    ``save_with_ledger(state, entries, expected_revision=..., keep=...)``: with
    ``expected_revision`` None, an unconditional ``save`` plus ``append``; otherwise
    ``save_if``'s compare. Both happen or neither does; returns whether the state was saved.
    """

    async def save_with_ledger(
        self,
        state: JobState,
        entries: Sequence[LedgerEntry],
        *,
        expected_revision: int | None,
        keep: int,
    ) -> bool: ...


def select(
    entries: Iterable[tuple[int, LedgerEntry]],
    *,
    limit: int,
    before: datetime | None,
    after: datetime | None,
    fates: Iterable[LedgerFate] | None,
) -> list[LedgerEntry]:
    """Filter ``(append sequence, entry)`` pairs and order them newest first."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be an int >= 0, got {limit!r}")
    wanted = None if fates is None else frozenset(LedgerFate(f) for f in fates)
    kept = [
        (entry.scheduled_at, seq, entry)
        for seq, entry in entries
        if entry.covers(before, after) and (wanted is None or entry.fate in wanted)
    ]
    kept.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [entry for _, _, entry in kept[:limit]]


def check_query(limit: int, before: datetime | None, after: datetime | None) -> None:
    """Reject bad ``history`` arguments early, naming them."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be an int >= 0, got {limit!r}")
    for name, value in (("before", before), ("after", after)):
        if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
            raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
