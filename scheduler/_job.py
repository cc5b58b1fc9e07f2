"""Job, Task, contexts and retry policy: immutable descriptions of what to run."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import random
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Self, TypeVar
from zoneinfo import ZoneInfo

from ._enums import GuardScope, MissedRunPolicy, OverlapPolicy, TriggerSource
from ._errors import InvalidJobError, InvalidJobKind
from ._schedules import Schedule
from ._time import to_timedelta
from ._window import JobTimeWindow

MAX_JOB_ID_LENGTH = 256
E = TypeVar("E", bound=StrEnum)


@dataclass(frozen=True, slots=True)
class RunContext:
    """Facts about the run an attempt belongs to."""

    job_id: str
    scheduled_at: datetime
    catch_up: bool
    timezone: ZoneInfo
    trigger_count: int
    attempt: int
    source: TriggerSource
    fencing_token: int | None = None
    resumed: bool = False


@dataclass(frozen=True, slots=True)
class TaskContext:
    """What a task receives: the run's facts and the job's dependencies (same object every call)."""

    run: RunContext
    deps: Any


class TaskKind(StrEnum):
    ASYNC = "async"
    SYNC = "sync"
    BLOCKING = "blocking"


@dataclass(frozen=True, slots=True)
class Task:
    """The work of a job. Build with ``from_async``, ``from_sync`` or ``from_blocking``."""

    fn: Callable[[TaskContext], Any]
    kind: TaskKind

    @classmethod
    def from_async(cls, fn: Callable[[TaskContext], Awaitable[Any]]) -> Task:
        """``fn(ctx)`` returns an awaitable; it runs on the event loop."""
        return cls(fn, TaskKind.ASYNC)

    @classmethod
    def from_sync(cls, fn: Callable[[TaskContext], Any]) -> Task:
        """``fn(ctx)`` runs inline on the event loop: keep it short."""
        return cls(fn, TaskKind.SYNC)

    @classmethod
    def from_blocking(cls, fn: Callable[[TaskContext], Any]) -> Task:
        """``fn(ctx)`` runs in a worker thread. A cancelled run abandons the thread."""
        return cls(fn, TaskKind.BLOCKING)

    @classmethod
    def coerce(cls, value: Task | Callable[[TaskContext], Any]) -> Task:
        """A Task as is; a coroutine function as async; any other callable as blocking."""
        if isinstance(value, Task):
            return value
        if not callable(value):
            raise InvalidJobError(InvalidJobKind.OTHER, f"task must be a Task or a callable, got {value!r}")
        if inspect.iscoroutinefunction(value) or inspect.iscoroutinefunction(type(value).__call__):
            return cls.from_async(value)
        return cls.from_blocking(value)

    async def invoke(self, ctx: TaskContext) -> None:
        if self.kind is TaskKind.ASYNC:
            await self.fn(ctx)
        elif self.kind is TaskKind.SYNC:
            result = self.fn(ctx)
            if inspect.isawaitable(result):
                await result
        else:
            await _in_daemon_thread(self.fn, ctx)


async def _in_daemon_thread(fn: Callable[[TaskContext], Any], ctx: TaskContext) -> None:
    """Run ``fn`` in a daemon thread: a cancelled run can abandon it without blocking exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()

    def deliver(error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    def target() -> None:
        error: BaseException | None = None
        try:
            fn(ctx)
        except BaseException as exc:
            error = exc
        try:
            loop.call_soon_threadsafe(deliver, error)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    threading.Thread(target=target, name=f"scheduler-task-{ctx.run.job_id}", daemon=True).start()
    await future


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry failed or timed-out attempts of the same occurrence with exponential backoff."""

    max_attempts: int = 3
    initial_backoff: timedelta = timedelta(seconds=1)
    max_backoff: timedelta = timedelta(seconds=60)
    multiplier: float = 2.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise InvalidJobError(
                InvalidJobKind.OTHER, f"retry max_attempts must be an int >= 1, got {self.max_attempts!r}"
            )
        set_(self, "initial_backoff", to_timedelta(self.initial_backoff, "retry initial_backoff"))
        set_(self, "max_backoff", to_timedelta(self.max_backoff, "retry max_backoff"))
        if self.initial_backoff < timedelta(0) or self.max_backoff < timedelta(0):
            raise InvalidJobError(InvalidJobKind.OTHER, "retry backoffs must be >= 0")
        if self.max_backoff < self.initial_backoff:
            raise InvalidJobError(
                InvalidJobKind.OTHER, f"retry max_backoff {self.max_backoff} < initial_backoff {self.initial_backoff}"
            )
        if not self.multiplier >= 1.0:
            raise InvalidJobError(InvalidJobKind.OTHER, f"retry multiplier must be >= 1, got {self.multiplier!r}")
        if not 0.0 <= self.jitter <= 1.0:
            raise InvalidJobError(InvalidJobKind.OTHER, f"retry jitter must be within [0, 1], got {self.jitter!r}")

    def backoff(self, failed_attempt: int, rng: random.Random | None = None) -> timedelta:
        """Delay before the attempt after ``failed_attempt`` (1-based), jitter applied."""
        base = self.initial_backoff.total_seconds() * self.multiplier ** (failed_attempt - 1)
        base = min(base, self.max_backoff.total_seconds())
        spread = (rng or random).uniform(-self.jitter, self.jitter) if self.jitter else 0.0
        return timedelta(seconds=max(0.0, base * (1.0 + spread)))


def _check_job_id(job_id: object) -> str:
    if not isinstance(job_id, str):
        raise InvalidJobError(InvalidJobKind.JOB_ID, f"job_id must be a string, got {job_id!r}")
    if not job_id.strip():
        raise InvalidJobError(InvalidJobKind.JOB_ID, "job_id must not be empty or whitespace")
    if len(job_id) > MAX_JOB_ID_LENGTH:
        raise InvalidJobError(
            InvalidJobKind.JOB_ID, f"job_id is {len(job_id)} characters long; the limit is {MAX_JOB_ID_LENGTH}"
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in job_id):
        raise InvalidJobError(InvalidJobKind.JOB_ID, f"job_id {job_id!r} contains control characters")
    return job_id


@dataclass(frozen=True, slots=True)
class Job:
    """One job: an id (the key of its persisted state), a schedule, a task and its policies."""

    job_id: str
    schedule: Schedule
    task: Task
    deps: Any = None
    max_runs: int | None = None
    missed_run_policy: MissedRunPolicy = MissedRunPolicy.CATCH_UP_ONCE
    overlap_policy: OverlapPolicy = OverlapPolicy.FORBID
    time_window: JobTimeWindow | None = None
    retry: RetryPolicy | None = None
    timeout: timedelta | None = None
    guard_scope: GuardScope = GuardScope.OCCURRENCE
    resource_id: str | None = None

    def __init__(
        self,
        job_id: str,
        schedule: Schedule,
        task: Task | Callable[[TaskContext], Any],
        *,
        deps: Any = None,
        max_runs: int | None = None,
        missed_run_policy: MissedRunPolicy | str = MissedRunPolicy.CATCH_UP_ONCE,
        overlap_policy: OverlapPolicy | str = OverlapPolicy.FORBID,
        time_window: JobTimeWindow | None = None,
        retry: RetryPolicy | None = None,
        timeout: timedelta | float | None = None,
        guard_scope: GuardScope | str = GuardScope.OCCURRENCE,
        resource_id: str | None = None,
    ) -> None:
        set_ = object.__setattr__
        set_(self, "job_id", _check_job_id(job_id))
        if not isinstance(schedule, Schedule):
            raise InvalidJobError(InvalidJobKind.OTHER, f"schedule must be Interval, AtTimes or Cron, got {schedule!r}")
        set_(self, "schedule", schedule)
        set_(self, "task", Task.coerce(task))
        set_(self, "deps", deps)
        if max_runs is not None and (isinstance(max_runs, bool) or not isinstance(max_runs, int) or max_runs < 0):
            raise InvalidJobError(InvalidJobKind.OTHER, f"max_runs must be None or an int >= 0, got {max_runs!r}")
        set_(self, "max_runs", max_runs)
        set_(self, "missed_run_policy", _enum(MissedRunPolicy, missed_run_policy, "missed_run_policy"))
        set_(self, "overlap_policy", _enum(OverlapPolicy, overlap_policy, "overlap_policy"))
        if time_window is not None and not isinstance(time_window, JobTimeWindow):
            raise InvalidJobError(
                InvalidJobKind.TIME_WINDOW, f"time_window must be a JobTimeWindow, got {time_window!r}"
            )
        set_(self, "time_window", time_window)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise InvalidJobError(InvalidJobKind.OTHER, f"retry must be a RetryPolicy, got {retry!r}")
        set_(self, "retry", retry)
        if timeout is not None:
            timeout = to_timedelta(timeout, "timeout")
            if timeout <= timedelta(0):
                raise InvalidJobError(InvalidJobKind.OTHER, f"timeout must be > 0, got {timeout}")
        set_(self, "timeout", timeout)
        set_(self, "guard_scope", _enum(GuardScope, guard_scope, "guard_scope"))
        if resource_id is not None:
            _check_job_id(resource_id)
        set_(self, "resource_id", resource_id)

    @classmethod
    def without_deps(cls, job_id: str, schedule: Schedule, task: Task | Callable[[TaskContext], Any]) -> Job:
        return cls(job_id, schedule, task)

    def _copy(self, **changes: Any) -> Self:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields.update(changes)
        return type(self)(fields.pop("job_id"), fields.pop("schedule"), fields.pop("task"), **fields)

    def with_max_runs(self, max_runs: int | None) -> Self:
        return self._copy(max_runs=max_runs)

    def with_missed_run_policy(self, policy: MissedRunPolicy | str) -> Self:
        return self._copy(missed_run_policy=policy)

    def with_overlap_policy(self, policy: OverlapPolicy | str) -> Self:
        return self._copy(overlap_policy=policy)

    def with_time_window(self, window: JobTimeWindow | None) -> Self:
        return self._copy(time_window=window)

    def with_retry(self, retry: RetryPolicy | None) -> Self:
        return self._copy(retry=retry)

    def with_timeout(self, timeout: timedelta | float | None) -> Self:
        return self._copy(timeout=timeout)

    def with_guard_scope(self, scope: GuardScope | str) -> Self:
        return self._copy(guard_scope=scope)

    def with_resource_id(self, resource_id: str | None) -> Self:
        return self._copy(resource_id=resource_id)

    @property
    def effective_resource_id(self) -> str:
        return self.resource_id or self.job_id


def _enum(cls: type[E], value: E | str, what: str) -> E:
    try:
        return cls(value)
    except ValueError as exc:
        choices = ", ".join(m.value for m in cls)
        raise InvalidJobError(InvalidJobKind.OTHER, f"{what} {value!r} is not one of: {choices}") from exc
