"""Persisted state (JobState), run records and the report ``Scheduler.run`` returns."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer

from ._enums import RunSkipReason, RunStatus, SchedulerStopReason, TriggerSource
from ._time import format_utc

SCHEMA_VERSION = 1
_FRACTION = re.compile(r"(\.\d{6})\d+")


def _parse_instant(value: Any) -> Any:
    """Accept RFC 3339 with up to 9 fractional digits (the reference system writes 9)."""
    if isinstance(value, str):
        value = _FRACTION.sub(r"\1", value.strip())
        value = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
    if isinstance(value, datetime):
        # Stored documents are UTC; a naive value in one can only mean UTC.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


Instant = Annotated[
    datetime,
    BeforeValidator(_parse_instant),
    PlainSerializer(format_utc, return_type=str, when_used="json"),
]


class InFlight(BaseModel):
    """The occurrence a process was running when it saved (``resume_interrupted``)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    occurrence: Instant
    started_at: Instant
    attempt: int = 1


class JobState(BaseModel):
    """Everything the scheduler persists about a job, keyed by ``job_id``.

    The first six fields alone are a valid document (the reference system's format); unknown
    fields are ignored. ``next_run_at`` None means terminal: nothing left to run.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    job_id: str
    trigger_count: int = 0
    last_run_at: Instant | None = None
    last_success_at: Instant | None = None
    next_run_at: Instant | None = None
    last_error: str | None = None
    last_status: RunStatus | None = None
    consecutive_failures: int = 0
    schedule_fingerprint: str | None = None
    in_flight: InFlight | None = None
    schema_version: int = SCHEMA_VERSION
    revision: int = 0

    # -- transitions: the only ways the scheduler derives a new state ---------------------
    # Typed so mypy sees every change; values come from the scheduler itself, so they skip
    # pydantic's validation (a test pins each one to the validated ``model_copy`` result).

    def consumed(self, trigger_count: int, next_run_at: datetime | None) -> JobState:
        """Occurrences were consumed: the new count and where the schedule continues."""
        return self._replace(trigger_count=trigger_count, next_run_at=next_run_at)

    def rescheduled(self, next_run_at: datetime | None, schedule_fingerprint: str | None) -> JobState:
        """The schedule changed (or was repaired): continue at ``next_run_at``."""
        return self._replace(next_run_at=next_run_at, schedule_fingerprint=schedule_fingerprint)

    def started(self, in_flight: InFlight | None) -> JobState:
        """A run is (or no longer is) in flight; saved only with ``resume_interrupted``."""
        return self._replace(in_flight=in_flight)

    def completed(self, record: RunRecord) -> JobState:
        """Fold a finished run into the state.

        Safe to apply to a fresher document written by another replica: ``last_run_at`` only
        moves forward, and the in-flight marker is cleared only if it names this run.
        """
        success = record.status is RunStatus.SUCCESS
        last_run_at = self.last_run_at
        if last_run_at is None or record.started_at > last_run_at:
            last_run_at = record.started_at
        flight = self.in_flight
        changes: dict[str, Any] = {
            "last_run_at": last_run_at,
            "last_status": record.status,
            "last_error": None if success else record.error,
            "consecutive_failures": 0 if success else self.consecutive_failures + 1,
        }
        if success:
            changes["last_success_at"] = record.finished_at
        if flight is not None and flight.occurrence == record.scheduled_at:
            changes["in_flight"] = None
        return self._replace(**changes)

    def with_revision(self, revision: int) -> JobState:
        """The same state as stored at ``revision`` (stores set it; the scheduler passes it back)."""
        return self if revision == self.revision else self._replace(revision=revision)

    def _replace(self, **changes: Any) -> JobState:
        """A copy with ``changes`` applied, without validation; unknown names are an error.

        About twice as fast as ``model_copy(update=...)``, which matters at two states per run.
        """
        fields = type(self).model_fields
        for name in changes:
            if name not in fields:
                raise TypeError(f"JobState has no field {name!r}")
        new = object.__new__(JobState)
        values = self.__dict__.copy()
        values.update(changes)
        object.__setattr__(new, "__dict__", values)
        object.__setattr__(new, "__pydantic_fields_set__", self.__pydantic_fields_set__ | changes.keys())
        object.__setattr__(new, "__pydantic_extra__", self.__pydantic_extra__)
        object.__setattr__(new, "__pydantic_private__", None)
        return new

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> JobState:
        return cls.model_validate_json(text)


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
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
