"""ResilientStateStore: keep running from memory while the primary store is unreachable."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TypeVar

from ._clock import Clock, SystemClock
from ._errors import InvalidJobError, InvalidJobKind, StoreError, StoreErrorKind, StoreOperation
from ._state import JobState
from ._store import ConditionalStateStore, CreatingStateStore, StateStore, StoreAttachment
from ._time import to_timedelta
from .events import SchedulerEvent, StoreDegraded, StoreRecovered

EventSink = Callable[[SchedulerEvent], None]
T = TypeVar("T")
_log = logging.getLogger("scheduler")
#: Share of the scheduler's call budget a primary call may use (the rest covers the mirror).
BUDGET_SHARE = 0.8
#: Conditional write-back attempts per job and probe before waiting for the next probe.
WRITE_BACK_ATTEMPTS = 3


class ResilientStateStore:
    """Wraps a primary store; on the first CONNECTION error or timeout serves from a mirror.

    * Every primary call is bounded by ``0.8 x call_timeout`` (the scheduler's budget from
      :class:`StoreAttachment` while attached, else the constructor's ``call_timeout``); a
      call that runs out counts as a CONNECTION error. The first such error switches to the
      in-process mirror (kept in step with every successful primary call) and emits
      ``StoreDegraded``.
    * While degraded, no call made by the scheduler touches the primary: a background task
      probes it every ``probe_interval`` and writes the states recorded during the outage
      back with conditional saves over the primary revision they were built on. A save that
      timed out may still be applied late by the server: the conditional write-back then
      finds another revision, reloads, and writes ours over it only when it does not have a
      higher ``trigger_count`` (a document written by another instance wins). Then
      ``StoreRecovered`` is emitted and calls go to the primary again.
    * ``save_if`` and ``create`` work while degraded against the mirror, which keeps
      revisions. Revisions returned to callers stay consistent across an outage (the store
      translates them to the primary's after the write-back).
    * A job is loaded from the primary once before its state may be served from the mirror:
      a first ``load`` that fails raises the CONNECTION error instead of answering None.
    * DATA and UNKNOWN errors are never masked: they propagate.
    * The background task starts on the running loop when the store degrades and stops on
      ``aclose`` or when the scheduler detaches.
    """

    def __init__(
        self,
        primary: StateStore,
        *,
        probe_interval: timedelta | float = timedelta(seconds=5),
        clock: Clock | None = None,
        observer: EventSink | None = None,
        call_timeout: timedelta | float = timedelta(seconds=5),
    ) -> None:
        self.primary = primary
        self.probe_interval = to_timedelta(probe_interval, "probe_interval")
        self.call_timeout = to_timedelta(call_timeout, "call_timeout")
        if self.probe_interval <= timedelta(0) or self.call_timeout <= timedelta(0):
            raise InvalidJobError(InvalidJobKind.OTHER, "probe_interval and call_timeout must be positive")
        self._clock = clock
        self._sinks: list[EventSink] = [observer] if observer else []
        self._attached_timeout: timedelta | None = None
        self._mirror: dict[str, JobState] = {}
        #: Caller's revision minus the primary's, per job (non-zero after a write-back).
        self._offset: dict[str, int] = {}
        #: Primary revision each dirty mirror state was built on (the write-back expects it).
        self._base: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._deleted: set[str] = set()
        self._known: set[str] = set()
        self._degraded = False
        self._probe: asyncio.Task[None] | None = None

    @property
    def is_degraded(self) -> bool:
        """True while calls are served from the in-process mirror."""
        return self._degraded

    # -- attachment -----------------------------------------------------------------------

    def attach(self, attachment: StoreAttachment | EventSink, clock: Clock | None = None) -> Callable[[], None]:
        """Send StoreDegraded/StoreRecovered to the scheduler and use its clock and budget.

        Returns a detach function, which also stops the background probe.
        """
        if isinstance(attachment, StoreAttachment):
            sink, clock, timeout = attachment.events, attachment.clock, attachment.call_timeout
        else:  # legacy call form, removed when the runner passes StoreAttachment
            sink, timeout = attachment, None
        self._sinks.append(sink)
        if self._clock is None and clock is not None:
            self._clock = clock
        if timeout is not None:
            self._attached_timeout = timeout

        def detach() -> None:
            if sink in self._sinks:
                self._sinks.remove(sink)
            if timeout is not None and self._attached_timeout is timeout:
                self._attached_timeout = None
            self._stop_probe()

        return detach

    def _clock_now(self) -> Clock:
        if self._clock is None:
            self._clock = SystemClock()
        return self._clock

    def _budget(self) -> float:
        timeout = self._attached_timeout if self._attached_timeout is not None else self.call_timeout
        return timeout.total_seconds() * BUDGET_SHARE

    def _emit(self, event: SchedulerEvent) -> None:
        for sink in list(self._sinks):
            try:
                sink(event)
            except Exception:  # an observer bug must not turn into a store failure
                _log.exception("store event observer %r failed on %s; ignored", sink, event.name)

    # -- primary calls --------------------------------------------------------------------

    async def _call(self, operation: StoreOperation, job_id: str, call: Callable[[], Awaitable[T]]) -> T:
        """A primary call within the budget; running out is a CONNECTION error."""
        budget = self._budget()
        try:
            async with asyncio.timeout(budget):
                return await call()
        except TimeoutError as exc:
            detail = f"no answer within {budget:g} s"
            raise StoreError(StoreErrorKind.CONNECTION, operation, job_id, detail) from exc

    def _degrade(self, operation: StoreOperation, job_id: str, error: StoreError) -> None:
        if error.kind is not StoreErrorKind.CONNECTION:
            raise error
        if not self._degraded:
            self._degraded = True
            self._emit(StoreDegraded(job_id=job_id, at=self._clock_now().now(), operation=operation, error=str(error)))
        self._start_probe()

    def _to_caller(self, state: JobState) -> JobState:
        return state.with_revision(state.revision + self._offset.get(state.job_id, 0))

    def _to_primary(self, job_id: str, revision: int) -> int:
        return revision - self._offset.get(job_id, 0)

    # -- the protocol ---------------------------------------------------------------------

    async def load(self, job_id: str) -> JobState | None:
        if not self._degraded:
            try:
                state = await self._call(StoreOperation.LOAD, job_id, lambda: self.primary.load(job_id))
            except StoreError as exc:
                if job_id not in self._known:
                    raise  # never answer "no state" for a job the primary was never asked about
                self._degrade(StoreOperation.LOAD, job_id, exc)
                return self._mirror.get(job_id)
            self._known.add(job_id)
            if state is None:
                self._mirror.pop(job_id, None)
                return None
            self._mirror[job_id] = self._to_caller(state)
            return self._mirror[job_id]
        self._start_probe()
        if job_id not in self._known:
            detail = "the primary store is unreachable and this job's state was never loaded from it"
            raise StoreError(StoreErrorKind.CONNECTION, StoreOperation.LOAD, job_id, detail)
        return self._mirror.get(job_id)

    async def save(self, state: JobState) -> None:
        job_id = state.job_id
        current = self._mirror.get(job_id)
        revision = (0 if current is None else current.revision) + 1
        if not self._degraded:
            try:
                await self._call(StoreOperation.SAVE, job_id, lambda: self.primary.save(state))
            except StoreError as exc:
                self._degrade(StoreOperation.SAVE, job_id, exc)
            else:
                self._known.add(job_id)
                self._mirror[job_id] = state.with_revision(revision)
                return
        self._record(state, revision)

    async def save_if(self, state: JobState, expected_revision: int) -> bool:
        job_id = state.job_id
        if not self._degraded:
            primary = self.primary
            try:
                if isinstance(primary, ConditionalStateStore):
                    expected = self._to_primary(job_id, expected_revision)
                    saved = await self._call(StoreOperation.SAVE, job_id, lambda: primary.save_if(state, expected))
                else:  # a primary without the capability: compare with what we last saw
                    saved = self._mirror_revision(job_id) == expected_revision
                    if saved:
                        await self._call(StoreOperation.SAVE, job_id, lambda: primary.save(state))
            except StoreError as exc:
                self._degrade(StoreOperation.SAVE, job_id, exc)
            else:
                self._known.add(job_id)
                if saved:
                    self._mirror[job_id] = state.with_revision(expected_revision + 1)
                return saved
        if self._mirror_revision(job_id) != expected_revision:
            return False
        self._record(state, expected_revision + 1)
        return True

    async def create(self, state: JobState) -> JobState:
        job_id = state.job_id
        if not self._degraded:
            primary = self.primary
            try:
                if isinstance(primary, CreatingStateStore):
                    stored = await self._call(StoreOperation.SAVE, job_id, lambda: primary.create(state))
                else:
                    await self._call(StoreOperation.SAVE, job_id, lambda: primary.save(state))
                    stored = state.with_revision(1)
            except StoreError as exc:
                self._degrade(StoreOperation.SAVE, job_id, exc)
            else:
                self._known.add(job_id)
                self._mirror[job_id] = self._to_caller(stored)
                return self._mirror[job_id]
        existing = self._mirror.get(job_id)
        if existing is not None:
            return existing
        self._record(state, self._mirror_revision(job_id) + 1)
        return self._mirror[job_id]

    async def delete(self, job_id: str) -> None:
        self._mirror.pop(job_id, None)
        self._dirty.discard(job_id)
        self._base.pop(job_id, None)
        self._offset.pop(job_id, None)
        if not self._degraded:
            try:
                await self._call(StoreOperation.DELETE, job_id, lambda: self.primary.delete(job_id))
            except StoreError as exc:
                self._degrade(StoreOperation.DELETE, job_id, exc)
            else:
                return
        self._known.add(job_id)
        self._deleted.add(job_id)

    async def aclose(self) -> None:
        self._stop_probe()
        await self.primary.aclose()

    # -- the mirror -----------------------------------------------------------------------

    def _mirror_revision(self, job_id: str) -> int:
        current = self._mirror.get(job_id)
        return 0 if current is None else current.revision

    def _record(self, state: JobState, revision: int) -> None:
        """Keep ``state`` in the mirror until the write-back (a save the primary did not take)."""
        job_id = state.job_id
        if job_id not in self._dirty:
            self._base[job_id] = self._to_primary(job_id, self._mirror_revision(job_id))
        self._known.add(job_id)
        self._mirror[job_id] = state.with_revision(revision)
        self._dirty.add(job_id)
        self._deleted.discard(job_id)
        self._start_probe()

    # -- probing and write-back (background) ---------------------------------------------

    def _start_probe(self) -> None:
        if self._probe is not None and not self._probe.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        clock = self._clock_now()
        # The first probe is due one interval after the outage began, not after the task starts.
        first = clock.now() + self.probe_interval
        self._probe = loop.create_task(self._probe_loop(clock, first), name="scheduler-store-probe")

    def _stop_probe(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None and not probe.done():
            probe.cancel()

    async def _probe_loop(self, clock: Clock, due: datetime) -> None:
        while self._degraded:
            await clock.sleep_until(due)
            due = clock.now() + self.probe_interval
            try:
                written = await self._recover()
            except StoreError as exc:
                if exc.kind is not StoreErrorKind.CONNECTION:
                    _log.error("write-back to %r failed; still serving from memory: %s", self.primary, exc)
                continue
            if written is not None:
                return

    async def _recover(self) -> int | None:
        """Probe, write back; the number of writes when recovered, None when more is pending."""
        written = 0
        for job_id in sorted(self._deleted):
            await self._call(StoreOperation.DELETE, job_id, functools.partial(self.primary.delete, job_id))
            self._deleted.discard(job_id)
            written += 1
        if not self._dirty and not self._deleted:
            probe_id = next(iter(self._known), "scheduler-probe")
            await self._call(StoreOperation.LOAD, probe_id, lambda: self.primary.load(probe_id))
        for _ in range(WRITE_BACK_ATTEMPTS):  # again when the scheduler saved while we wrote
            for job_id in sorted(self._dirty):
                if await self._write_back(job_id):
                    written += 1
            if not self._dirty:
                break
        if self._dirty or self._deleted:
            return None
        self._degraded = False
        self._emit(StoreRecovered(job_id=self._any_job(), at=self._clock_now().now(), written_back=written))
        return written

    def _any_job(self) -> str:
        return next(iter(sorted(self._known)), "")

    async def _write_back(self, job_id: str) -> bool:
        """Write the mirror's state of one job over the primary revision it was built on."""
        ours = self._mirror.get(job_id)
        if ours is None:
            self._dirty.discard(job_id)
            return False
        expected = self._base.get(job_id, 0)
        primary = self.primary
        for _ in range(WRITE_BACK_ATTEMPTS):
            if isinstance(primary, ConditionalStateStore):
                write = functools.partial(primary.save_if, ours, expected)
                saved = await self._call(StoreOperation.SAVE, job_id, write)
            else:
                await self._call(StoreOperation.SAVE, job_id, functools.partial(primary.save, ours))
                saved = True
            if saved:
                self._settle(job_id, ours, expected + 1)
                return True
            # Not the revision we built on: another instance wrote, or our timed-out save was
            # applied late. Theirs wins when it ran further; else ours goes over it.
            theirs = await self._call(StoreOperation.LOAD, job_id, lambda: primary.load(job_id))
            if theirs is not None and theirs.trigger_count > ours.trigger_count:
                # Adopt theirs, numbered above anything a caller holds, so a stale save_if conflicts.
                latest = self._mirror_revision(job_id)
                self._offset[job_id] = latest + 1 - theirs.revision
                self._mirror[job_id] = self._to_caller(theirs)
                self._dirty.discard(job_id)
                self._base.pop(job_id, None)
                return False
            expected = 0 if theirs is None else theirs.revision
        return False

    def _settle(self, job_id: str, ours: JobState, primary_revision: int) -> None:
        self._offset[job_id] = ours.revision - primary_revision
        if self._mirror.get(job_id) is ours:
            self._dirty.discard(job_id)
            self._base.pop(job_id, None)
        else:  # saved again while we wrote: write that one next, over what we just wrote
            self._base[job_id] = primary_revision

    def __repr__(self) -> str:
        mode = "degraded" if self._degraded else "healthy"
        return f"ResilientStateStore({self.primary!r}, {mode})"
