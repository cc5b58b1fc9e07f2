"""Persisted state (JobState), run records and the report ``Scheduler.run`` returns.

JobState, InFlight and OpenRun are light frozen classes: the run loop derives states from
values it computed itself, without validation, and never imports pydantic. Whatever comes
from outside (the public constructor, ``model_validate``, a stored document) is validated by
pydantic models built in ``_state_json``, imported the first time one is needed.
"""

from __future__ import annotations

from dataclasses import field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self

from ._document import EXTRA, NEWER_SCHEMA, SCHEMA_VERSION, Document
from ._document import field as document_field
from ._document_json import document_json
from ._enums import RunSkipReason, RunStatus, SchedulerStopReason, TriggerSource
from ._records import record
from ._time import format_utc

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler
    from pydantic_core import CoreSchema

__all__ = [
    "SCHEMA_VERSION",
    "InFlight",
    "JobState",
    "OpenRun",
    "RunRecord",
    "SchedulerReport",
    "StateDocumentError",
    "parse_document",
]

_new_object = object.__new__
_set_attribute = object.__setattr__


class _ModelFields:
    """``model_fields``: pydantic's field descriptions, from the twin model (built on first use)."""

    def __get__(self, instance: object, owner: type[Document]) -> dict[str, Any]:
        from . import _state_json

        return _state_json.model_of(owner).model_fields


class _Stored(Document):
    """A document with pydantic's surface, served by its twin model in ``_state_json``."""

    model_fields = _ModelFields()

    def __init__(self, **data: Any) -> None:
        """Validated exactly as a stored document is (pydantic's ``ValidationError`` if not valid)."""
        from . import _state_json

        _set_attribute(self, "__dict__", _state_json.validated_values(type(self), data))

    @classmethod
    def model_validate(
        cls, obj: Any, *, strict: bool | None = None, from_attributes: bool | None = None, context: Any = None
    ) -> Self:
        if isinstance(obj, cls):
            return obj
        from . import _state_json

        return _state_json.validate(cls, obj, strict=strict, from_attributes=from_attributes, context=context)

    @classmethod
    def model_validate_json(
        cls, json_data: str | bytes | bytearray, *, strict: bool | None = None, context: Any = None
    ) -> Self:
        from . import _state_json

        return _state_json.validate_json(cls, json_data, strict=strict, context=context)

    @classmethod
    def model_json_schema(cls, **options: Any) -> dict[str, Any]:
        from . import _state_json

        return _state_json.model_of(cls).model_json_schema(**options)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: type[Any], handler: GetCoreSchemaHandler) -> CoreSchema:
        """Lets these classes be fields of the user's own pydantic models."""
        from . import _state_json

        return _state_json.core_schema_of(cls, handler)

    def model_dump(self, **options: Any) -> dict[str, Any]:
        """As pydantic's ``model_dump`` (``mode="json"`` for JSON-ready values)."""
        from . import _state_json

        return _state_json.to_model(self).model_dump(**options)

    def model_dump_json(self, **options: Any) -> str:
        from . import _state_json

        return _state_json.to_model(self).model_dump_json(**options)


class InFlight(_Stored):
    """The occurrence a process was running when it saved (``resume_interrupted``)."""

    occurrence: datetime
    started_at: datetime
    attempt: int = 1

    @classmethod
    def trusted(cls, occurrence: datetime, started_at: datetime, attempt: int) -> InFlight:
        """Built from the scheduler's own values: skips validation."""
        return cls._trusted({"occurrence": occurrence, "started_at": started_at, "attempt": attempt})


class OpenRun(_Stored):
    """An occurrence consumed to run whose outcome is not stored yet (kept while a ledger is on).

    Saved with the save that consumed it and removed by the save of its outcome, so a
    process that finds one for a dead process on restart knows the run never reported.
    """

    occurrence: datetime
    instance: str
    trigger_count: int = 0
    source: TriggerSource = TriggerSource.SCHEDULED
    catch_up: bool = False

    @classmethod
    def trusted(
        cls, occurrence: datetime, instance: str, trigger_count: int, source: TriggerSource, catch_up: bool
    ) -> OpenRun:
        """Built from the scheduler's own values: skips validation (one per run)."""
        new = _new_object(cls)
        values = {
            "occurrence": occurrence,
            "instance": instance,
            "trigger_count": trigger_count,
            "source": source,
            "catch_up": catch_up,
            EXTRA: None,
        }
        _set_attribute(new, "__dict__", values)
        return new


class JobState(_Stored):
    """Everything the scheduler persists about a job, keyed by ``job_id``.

    The first six fields alone are a valid document (the reference system's format). Unknown
    fields (written by a newer release of the same ``schema_version``) are kept and written
    back unchanged; a document with a higher ``schema_version`` is refused. ``next_run_at``
    None means terminal: nothing left to run. Counters are never negative; instants are UTC.

    ``revision`` is not part of the document: it is the store's version counter of the stored
    document (0 = never stored), set by ``load`` and passed back to conditional saves. Two
    states are equal when their content is; the revision does not take part.
    """

    job_id: str
    trigger_count: int = 0
    last_run_at: datetime | None = None
    last_success_at: datetime | None = None
    next_run_at: datetime | None = None
    last_error: str | None = None
    last_status: RunStatus | None = None
    consecutive_failures: int = 0
    schedule_fingerprint: str | None = None
    in_flight: InFlight | None = None
    #: The schedule and window in machine-readable form plus words (tools describe the job
    #: from it without its flags).
    schedule_spec: dict[str, Any] | None = None
    #: Runs that started (each counted when its outcome is saved).
    runs_started: int = 0
    #: Consumed occurrences that did not run, by reason (``RunSkipReason`` values).
    skips: dict[str, int] = document_field(default_factory=dict)
    last_skip_at: datetime | None = None
    last_skip_reason: RunSkipReason | None = None
    #: Runs that never reported (their process died), found on a restart.
    interrupted: int = 0
    open_runs: tuple[OpenRun, ...] = ()
    schema_version: int = SCHEMA_VERSION
    revision: int = 0

    _hashed = ("job_id", "trigger_count", "next_run_at")

    @classmethod
    def initial(
        cls,
        job_id: str,
        *,
        next_run_at: datetime | None = None,
        schedule_fingerprint: str | None = None,
        schedule_spec: dict[str, Any] | None = None,
    ) -> JobState:
        """A job's first state, from the scheduler's own values (no validation)."""
        values: dict[str, Any] = {"job_id": job_id, "next_run_at": next_run_at}
        values.update(schedule_fingerprint=schedule_fingerprint, schedule_spec=schedule_spec)
        return cls._trusted(values)

    # -- transitions: the only ways the scheduler derives a new state ---------------------
    # Typed so mypy sees every change; values come from the scheduler itself, so they skip
    # validation (a test pins each one to the validated ``model_copy`` result).

    def consumed(self, trigger_count: int, next_run_at: datetime | None, opened: OpenRun | None = None) -> JobState:
        """Occurrences were consumed: the new count and where the schedule continues.

        ``opened``: the consumed occurrence that is about to run (see ``opened``), in the same copy.
        """
        if opened is None:
            return self._copy_with({"trigger_count": trigger_count, "next_run_at": next_run_at})
        return self._copy_with(
            {"trigger_count": trigger_count, "next_run_at": next_run_at, "open_runs": (*self.open_runs, opened)}
        )

    def rescheduled(self, next_run_at: datetime | None, schedule_fingerprint: str | None) -> JobState:
        """The schedule changed (or was repaired): continue at ``next_run_at``."""
        return self._replace(next_run_at=next_run_at, schedule_fingerprint=schedule_fingerprint)

    def skipped(self, reason: RunSkipReason, count: int, scheduled_at: datetime) -> JobState:
        """``count`` consumed occurrences (the last at ``scheduled_at``) did not run, for ``reason``."""
        skips = dict(self.skips)
        skips[reason.value] = skips.get(reason.value, 0) + count
        return self._replace(skips=skips, last_skip_at=scheduled_at, last_skip_reason=reason)

    def opened(self, run: OpenRun) -> JobState:
        """An occurrence was consumed to run; its outcome (or skip) will settle it."""
        return self._replace(open_runs=(*self.open_runs, run))

    def settled(self, occurrence: datetime) -> JobState:
        """The open run of ``occurrence`` was skipped after all: no outcome will come."""
        return self._replace(open_runs=_without(self.open_runs, occurrence))

    def interrupted_runs(self, runs: tuple[OpenRun, ...]) -> JobState:
        """``runs`` belonged to a process that died: they will never report."""
        kept = list(self.open_runs)
        for run in runs:
            kept.remove(run)
        return self._replace(open_runs=tuple(kept), interrupted=self.interrupted + len(runs))

    def described(self, schedule_spec: dict[str, Any]) -> JobState:
        """The job's schedule, as tools should read it."""
        return self._replace(schedule_spec=schedule_spec)

    def started(self, in_flight: InFlight | None) -> JobState:
        """A run is (or no longer is) in flight; saved only with ``resume_interrupted``."""
        return self._replace(in_flight=in_flight)

    def completed(self, record: RunRecord) -> JobState:
        """Fold a finished run into the state.

        Safe to apply to a fresher document written by another replica: ``last_run_at`` only
        moves forward, and the in-flight marker and open run are cleared only if they name
        this run.
        """
        # Read from the values dict: every attribute read of a document passes the unknown-field
        # hook (``Document.__getattr__`` stops the interpreter from specializing it): several times
        # the cost of a dict lookup, and this runs once per run.
        values = self.__dict__
        success = record.status is RunStatus.SUCCESS
        last_run_at = values["last_run_at"]
        if last_run_at is None or record.started_at > last_run_at:
            last_run_at = record.started_at
        flight = values["in_flight"]
        changes: dict[str, Any] = {
            "last_run_at": last_run_at,
            "last_status": record.status,
            "last_error": None if success else record.error,
            "consecutive_failures": 0 if success else values["consecutive_failures"] + 1,
            "runs_started": values["runs_started"] + 1,
        }
        open_runs = values["open_runs"]
        if open_runs:
            changes["open_runs"] = _without(open_runs, record.scheduled_at)
        if success:
            changes["last_success_at"] = record.finished_at
        if flight is not None and flight.occurrence == record.scheduled_at:
            changes["in_flight"] = None
        return self._copy_with(changes)

    def _replace(self, **changes: Any) -> JobState:
        """A copy with ``changes`` applied, without validation; unknown names are an error.

        About twice as fast as ``model_copy(update=...)``, which matters at two states per run.
        """
        if not changes.keys() <= _FIELD_NAMES:
            unknown = sorted(changes.keys() - _FIELD_NAMES)
            raise TypeError(f"JobState has no field {unknown[0]!r}")
        return self._copy_with(changes)

    def _copy_with(self, changes: dict[str, Any]) -> JobState:
        """``_replace`` without the name check, for the two transitions of every run (``consumed``,
        ``completed``): their names are written out in them, and a test pins each result."""
        values = self.__dict__.copy()
        values.update(changes)
        new = _new_object(JobState)
        # Frozen: the copy may share the (never mutated) values, the extra fields included.
        _set_attribute(new, "__dict__", values)
        return new

    def with_revision(self, revision: int) -> JobState:
        """The same state as stored at ``revision`` (stores call this on load and save; twice per run)."""
        values = self.__dict__  # one attribute read (each passes the unknown-field hook)
        if values["revision"] == revision:
            return self
        values = values.copy()
        values["revision"] = revision
        new = _new_object(JobState)
        _set_attribute(new, "__dict__", values)
        return new

    def to_json(self) -> str:
        """The stored document: every field but ``revision``, unknown fields included.

        The text ``model_dump_json()`` gives, written without pydantic (see ``_document_json``).
        """
        return document_json(self)

    @classmethod
    def from_json(cls, text: str | bytes) -> JobState:
        return cls.model_validate_json(text)


_FIELD_NAMES = frozenset(JobState._fields)


def _without(runs: tuple[OpenRun, ...], occurrence: datetime) -> tuple[OpenRun, ...]:
    """``runs`` less the first one for ``occurrence`` (parallel runs of one instant stay apart)."""
    for index, run in enumerate(runs):
        if run.occurrence == occurrence:
            return runs[:index] + runs[index + 1 :]
    return runs


class StateDocumentError(ValueError):
    """A stored document this release cannot use (stores turn it into ``StoreError(DATA)``)."""


def parse_document(raw: str | bytes, job_id: str, revision: int = 0) -> JobState:
    """Decode a stored document for ``job_id``; raises StateDocumentError naming the problem.

    A newer ``schema_version`` is named first, whatever else the document holds.
    """
    from pydantic import ValidationError

    from . import _state_json

    try:
        state = _state_json.validate_json(JobState, raw)
    except ValidationError as exc:
        # Summarise without the input: the stored value could be huge or sensitive.
        errors = exc.errors(include_input=False, include_url=False)
        newer = [e for e in errors if e["type"] == NEWER_SCHEMA]
        if newer:
            raise StateDocumentError(f"refusing a document from a newer release: {newer[0]['msg']}") from exc
        summary = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'document'}: {e['msg']}" for e in errors[:3])
        raise StateDocumentError(f"stored value is not a valid JobState document ({summary})") from exc
    if state.job_id != job_id:
        raise StateDocumentError(f"stored document belongs to job {state.job_id!r}")
    return state.with_revision(revision)


@record
class RunRecord:
    """One completed run (all its attempts)."""

    scheduled_at: datetime
    started_at: datetime
    finished_at: datetime
    catch_up: bool
    status: RunStatus
    error: str | None
    attempts: int
    trigger_count: int
    source: TriggerSource

    @property
    def duration_seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    def to_dict(self) -> dict[str, Any]:
        return {
            "scheduled_at": format_utc(self.scheduled_at),
            "started_at": format_utc(self.started_at),
            "finished_at": format_utc(self.finished_at),
            "catch_up": self.catch_up,
            "status": self.status.value,
            "error": self.error,
            "attempts": self.attempts,
            "trigger_count": self.trigger_count,
            "source": self.source.value,
        }


@record
class SchedulerReport:
    """What one ``Scheduler.run`` did: final state, recent runs, skips, and why it stopped."""

    job_id: str
    state: JobState
    history: tuple[RunRecord, ...]
    last_skip_reason: RunSkipReason | None
    stop_reason: SchedulerStopReason
    skipped: dict[RunSkipReason, int] = field(default_factory=dict)

    @property
    def runs(self) -> int:
        """Runs recorded in ``history`` (bounded by ``history_limit``)."""
        return len(self.history)

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "state": self.state.model_dump(mode="json"),
            "history": [r.to_dict() for r in self.history],
            "last_skip_reason": None if self.last_skip_reason is None else self.last_skip_reason.value,
            "stop_reason": self.stop_reason.value,
            "skipped": {reason.value: count for reason, count in self.skipped.items()},
        }
