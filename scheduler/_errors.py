"""Exceptions raised by the scheduler.

The tree::

    SchedulerError                      root: catch this to catch everything we raise
    ├── InvalidJobError (ValueError)    bad input, raised early at construction; ``.kind``
    │   └── InvalidJobTypeError (TypeError)  a parameter of the wrong type (also an InvalidJobError)
    ├── StoreError                      a StateStore call failed; ``.kind``, ``.operation``, ``.job_id``
    └── ExecutionGuardError             an ExecutionGuard call failed; ``.kind``

Errors carry structured attributes and build their own message, so handlers can branch on
``kind`` instead of parsing text.
"""

from __future__ import annotations

from enum import StrEnum


class InvalidJobKind(StrEnum):
    """What was wrong with the input that raised an :class:`InvalidJobError`."""

    JOB_ID = "job_id"
    ZERO_INTERVAL = "zero_interval"
    INTERVAL_OUT_OF_RANGE = "interval_out_of_range"
    CRON_EXPRESSION = "cron_expression"
    TIMEZONE = "timezone"
    NAIVE_DATETIME = "naive_datetime"
    TIME_WINDOW = "time_window"
    OTHER = "other"


class StoreErrorKind(StrEnum):
    """CONNECTION errors are transient (retry, degrade); DATA errors are never masked."""

    CONNECTION = "connection"
    DATA = "data"
    UNKNOWN = "unknown"


class StoreOperation(StrEnum):
    """The StateStore call that failed."""

    LOAD = "load"
    SAVE = "save"
    DELETE = "delete"
    #: Appending to (or reading) the run ledger.
    LEDGER = "ledger"


class ExecutionGuardErrorKind(StrEnum):
    """Why a guard call failed."""

    CONNECTION = "connection"
    DATA = "data"
    UNKNOWN = "unknown"


class SchedulerError(Exception):
    """Root of every exception this library raises on purpose."""


class InvalidJobError(SchedulerError, ValueError):
    """Input that can never work: raised at construction, before anything runs."""

    def __init__(self, kind: InvalidJobKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class InvalidJobTypeError(InvalidJobError, TypeError):
    """A parameter of the wrong type. Both a ``TypeError`` (the Python convention) and an
    :class:`InvalidJobError` (so one ``except InvalidJobError`` still catches every bad input)."""


class StoreError(SchedulerError):
    """A state store could not load, save or delete a job's state."""

    def __init__(
        self,
        kind: StoreErrorKind,
        operation: StoreOperation,
        job_id: str,
        detail: str,
    ) -> None:
        super().__init__(f"state store {operation.value} failed for job {job_id!r}: {detail}")
        self.kind = kind
        self.operation = operation
        self.job_id = job_id
        self.detail = detail


class ExecutionGuardError(SchedulerError):
    """An execution guard could not acquire, renew or release a lease."""

    def __init__(self, kind: ExecutionGuardErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
