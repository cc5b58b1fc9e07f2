"""Job, Task, contexts and retry policy: immutable descriptions of what to run."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import math
import threading
import unicodedata
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Self, TypeVar

from ._enums import GuardScope, MissedRunPolicy, OverlapPolicy, TriggerSource
from ._errors import InvalidJobError, InvalidJobKind
from ._jitter import check_jitter
from ._records import record
from ._schedules import Schedule
from ._time import bounded_duration, require_int, wrong_type

if TYPE_CHECKING:
    from random import Random
    from zoneinfo import ZoneInfo

    from ._window import JobTimeWindow

MAX_JOB_ID_LENGTH = 256
E = TypeVar("E", bound=StrEnum)


@record
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


@record
class TaskContext:
    """What a task receives: the run's facts and the job's dependencies (same object every call)."""

    run: RunContext
    deps: Any


class TaskKind(StrEnum):
    ASYNC = "async"
    SYNC = "sync"
    BLOCKING = "blocking"


@record
class Task:
    """The work of a job. Build with ``from_async``, ``from_sync`` or ``from_blocking``."""

    fn: Callable[[TaskContext], Any]
    kind: TaskKind

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise wrong_type("task function", "a callable", self.fn)
        object.__setattr__(self, "kind", _enum(TaskKind, self.kind, "task kind"))

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
            raise wrong_type("task", "a Task or a callable", value)
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


@record
class RetryPolicy:
    """Retry failed or timed-out attempts of the same occurrence with exponential backoff."""

    max_attempts: int = 3
    initial_backoff: timedelta = timedelta(seconds=1)
    max_backoff: timedelta = timedelta(seconds=60)
    multiplier: float = 2.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        require_int(self.max_attempts, "retry max_attempts", 1)
        set_(self, "initial_backoff", bounded_duration(self.initial_backoff, "retry initial_backoff"))
        set_(self, "max_backoff", bounded_duration(self.max_backoff, "retry max_backoff"))
        if self.max_backoff < self.initial_backoff:
            raise InvalidJobError(
                InvalidJobKind.OTHER, f"retry max_backoff {self.max_backoff} < initial_backoff {self.initial_backoff}"
            )
        set_(self, "multiplier", _real(self.multiplier, "retry multiplier"))
        if not self.multiplier >= 1.0:
            raise InvalidJobError(InvalidJobKind.OTHER, f"retry multiplier must be >= 1, got {self.multiplier!r}")
        set_(self, "jitter", _real(self.jitter, "retry jitter"))
        if not 0.0 <= self.jitter <= 1.0:
            raise InvalidJobError(InvalidJobKind.OTHER, f"retry jitter must be within [0, 1], got {self.jitter!r}")

    def backoff(self, failed_attempt: int, rng: Random | None = None) -> timedelta:
        """Delay before the attempt after ``failed_attempt`` (1-based), jitter applied.

        Computed so that no multiplier or attempt number overflows: the exponential part is
        capped at ``max_backoff`` before it is ever raised to a large power.
        """
        initial, ceiling = self.initial_backoff.total_seconds(), self.max_backoff.total_seconds()
        base = initial
        if initial > 0 and self.multiplier > 1.0 and failed_attempt > 1:
            # initial * m**k <= ceiling  <=>  k <= log(ceiling / initial) / log(m)
            limit = math.log(ceiling / initial) / math.log(self.multiplier)
            exponent = failed_attempt - 1
            base = ceiling if exponent >= limit else initial * self.multiplier**exponent
        base = min(base, ceiling)
        spread = _uniform(rng, self.jitter) if self.jitter else 0.0
        return timedelta(seconds=max(0.0, base * (1.0 + spread)))


def _uniform(rng: Random | None, bound: float) -> float:
    """A uniform draw in [-bound, bound], from the ``random`` module's generator by default."""
    if rng is None:
        import random  # here: only a failed attempt needs it, and most processes never see one

        return random.uniform(-bound, bound)
    return rng.uniform(-bound, bound)


def _real(value: object, what: str) -> float:
    """A finite int or float (not a bool), as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise wrong_type(what, "a number", value)
    result = float(value)
    if not math.isfinite(result):
        raise InvalidJobError(InvalidJobKind.OTHER, f"{what} must be finite, got {value!r}")
    return result


#: Characters a job id may not hold: controls (C0, DEL, C1) split log lines and confuse
#: terminals, lone surrogates cannot be encoded (SQLite, logs), line/paragraph separators
#: break line-oriented logs.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def check_job_id(job_id: object, what: str = "job_id") -> str:
    if not isinstance(job_id, str):
        raise wrong_type(what, "a string", job_id, InvalidJobKind.JOB_ID)
    if not job_id.strip():
        raise InvalidJobError(InvalidJobKind.JOB_ID, f"{what} must not be empty or whitespace")
    if len(job_id) > MAX_JOB_ID_LENGTH:
        raise InvalidJobError(
            InvalidJobKind.JOB_ID, f"{what} is {len(job_id)} characters long; the limit is {MAX_JOB_ID_LENGTH}"
        )
    bad = next((c for c in job_id if unicodedata.category(c) in _FORBIDDEN_CATEGORIES), None)
    if bad is not None:
        shown = job_id.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
        raise InvalidJobError(
            InvalidJobKind.JOB_ID,
            f"{what} '{shown}' contains control characters or a lone surrogate (U+{ord(bad):04X})",
        )
    return job_id


@record
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
    jitter: timedelta = timedelta(0)

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
        jitter: timedelta | float = timedelta(0),
    ) -> None:
        set_ = object.__setattr__
        set_(self, "job_id", check_job_id(job_id))
        if not isinstance(schedule, Schedule):
            raise wrong_type("schedule", "an Interval, AtTimes or Cron", schedule)
        set_(self, "schedule", schedule)
        set_(self, "task", Task.coerce(task))
        set_(self, "deps", deps)
        set_(self, "max_runs", None if max_runs is None else require_int(max_runs, "max_runs", 0))
        set_(self, "missed_run_policy", _enum(MissedRunPolicy, missed_run_policy, "missed_run_policy"))
        set_(self, "overlap_policy", _enum(OverlapPolicy, overlap_policy, "overlap_policy"))
        if time_window is not None:
            from ._window import JobTimeWindow  # here: most jobs have no window

            if not isinstance(time_window, JobTimeWindow):
                raise wrong_type("time_window", "a JobTimeWindow or None", time_window, InvalidJobKind.TIME_WINDOW)
        set_(self, "time_window", time_window)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise wrong_type("retry", "a RetryPolicy or None", retry)
        set_(self, "retry", retry)
        set_(self, "timeout", None if timeout is None else bounded_duration(timeout, "timeout", allow_zero=False))
        set_(self, "guard_scope", _enum(GuardScope, guard_scope, "guard_scope"))
        if resource_id is not None:
            check_job_id(resource_id, "resource_id")
        set_(self, "resource_id", resource_id)
        set_(self, "jitter", check_jitter(jitter, schedule))

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

    def with_jitter(self, jitter: timedelta | float) -> Self:
        return self._copy(jitter=jitter)

    @property
    def effective_resource_id(self) -> str:
        return self.resource_id or self.job_id


def _enum(cls: type[E], value: E | str, what: str) -> E:
    given: object = value
    if not isinstance(given, str):
        choices = ", ".join(m.value for m in cls)
        raise wrong_type(what, f"a {cls.__name__} or one of: {choices}", value)
    try:
        return cls(value)
    except ValueError as exc:
        choices = ", ".join(m.value for m in cls)
        raise InvalidJobError(InvalidJobKind.OTHER, f"{what} {value!r} is not one of: {choices}") from exc
