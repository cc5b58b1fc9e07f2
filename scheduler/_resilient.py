"""ResilientStateStore: keep running from memory while the primary store is unreachable."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from ._clock import Clock, SystemClock
from ._errors import (
    ExecutionGuardError,
    ExecutionGuardErrorKind,
    InvalidJobError,
    InvalidJobKind,
    StoreError,
    StoreErrorKind,
    StoreOperation,
)
from ._guard import ExecutionGuard, ExecutionLease, ExecutionSlot
from ._ledger import DEFAULT_LEDGER_LIMIT, LedgerEntry, LedgerFate, LedgerSavingStore, RunLedger, check_query, select
from ._state import JobState
from ._store import (
    CombinedGuardStore,
    ConditionalStateStore,
    CreatingStateStore,
    InMemoryStateStore,
    StateStore,
    StoreAttachment,
)
from ._time import to_timedelta
from .events import SchedulerEvent, StoreDegraded, StoreRecovered

EventSink = Callable[[SchedulerEvent], None]
T = TypeVar("T")
#: The result of a combined call: (saved, lease outcome, ledger error).
_Combined = TypeVar("_Combined", bound=tuple[Any, ...])
_log = logging.getLogger("scheduler")
#: Share of the scheduler's call budget a primary call may use (the rest covers the mirror).
BUDGET_SHARE = 0.8
#: Conditional write-back attempts per job and probe before waiting for the next probe.
WRITE_BACK_ATTEMPTS = 3
#: Ledger entries kept while the primary is unreachable; beyond it the oldest are dropped
#: (and counted in a warning when written back).
MAX_BUFFERED_ENTRIES = 10_000


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
      a first ``load`` that fails raises the CONNECTION error instead of answering None. As
      nothing can stand in for it, a first load may take the constructor's budget
      (``0.8 x call_timeout``, 4 s by default) even when the scheduler's is shorter: a
      sub-second schedule must not fail to start on one slow connection.
    * DATA and UNKNOWN errors are never masked: they propagate.
    * Run ledger: entries go through to the primary's ledger (``save_with_ledger`` through
      its combined write); while degraded they are buffered (at most
      ``MAX_BUFFERED_ENTRIES``, the oldest dropped first) and appended after the states are
      written back. A primary without a ledger gets one in memory here.
    * A primary that runs its saves together with a guard on its server (the Valkey store
      with a Valkey guard on the same server) keeps doing so while healthy: one call before a
      run, one after. When such a call fails it is a store error first: the store degrades,
      the state goes to the mirror, and the lease is then asked for (or released) alone, under
      the guard error policy. While degraded, the same: mirror, then the guard alone.
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
        self._buffer: deque[tuple[LedgerEntry, int]] = deque(maxlen=MAX_BUFFERED_ENTRIES)
        self._buffered_total = 0
        self._ledger: RunLedger = primary if isinstance(primary, RunLedger) else InMemoryStateStore()

    @property
    def is_degraded(self) -> bool:
        """True while calls are served from the in-process mirror."""
        return self._degraded

    # -- attachment -----------------------------------------------------------------------

    def attach(self, attachment: StoreAttachment) -> Callable[[], None]:
        """Send StoreDegraded/StoreRecovered to the scheduler and use its clock and budget.

        Returns a detach function, which also stops the background probe.
        """
        sink, timeout = attachment.events, attachment.call_timeout
        self._sinks.append(sink)
        if self._clock is None:
            self._clock = attachment.clock
        self._attached_timeout = timeout

        def detach() -> None:
            if sink in self._sinks:
                self._sinks.remove(sink)
            if self._attached_timeout is timeout:
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

    async def _call(
        self, operation: StoreOperation, job_id: str, call: Callable[[], Awaitable[T]], at_least: float | None = None
    ) -> T:
        """A primary call within the budget (or ``at_least`` seconds, if longer); running out
        is a CONNECTION error."""
        budget = self._budget() if at_least is None else max(self._budget(), at_least)
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
            # A first load has no mirror to fall back on, so running out is fatal to the
            # caller: it gets the constructor's budget when that is longer (it also pays for
            # opening the connection), not the scheduler's, which follows the schedule.
            budget = None if job_id in self._known else self.call_timeout.total_seconds() * BUDGET_SHARE
            try:
                state = await self._call(StoreOperation.LOAD, job_id, lambda: self.primary.load(job_id), budget)
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

    # -- the run ledger -------------------------------------------------------------------

    async def append(self, entries: Sequence[LedgerEntry], *, keep: int = DEFAULT_LEDGER_LIMIT) -> None:
        if not entries:
            return
        job_id = entries[0].job_id
        if not self._degraded:
            try:
                await self._call(StoreOperation.LEDGER, job_id, lambda: self._ledger.append(entries, keep=keep))
                return
            except StoreError as exc:
                self._degrade(StoreOperation.LEDGER, job_id, exc)
        self._hold(entries, keep)

    def _hold(self, entries: Sequence[LedgerEntry], keep: int) -> None:
        self._buffer.extend((entry, keep) for entry in entries)
        self._buffered_total += len(entries)
        self._start_probe()

    async def history(
        self,
        job_id: str,
        *,
        limit: int = 100,
        before: datetime | None = None,
        after: datetime | None = None,
        fates: Iterable[LedgerFate] | None = None,
    ) -> list[LedgerEntry]:
        """The primary's entries plus those still buffered (only the buffered while degraded)."""
        check_query(limit, before, after)
        wanted = None if fates is None else list(fates)
        stored: list[LedgerEntry] = []
        if not self._degraded:
            ledger = self._ledger
            query = functools.partial(ledger.history, job_id, limit=limit, before=before, after=after, fates=wanted)
            try:
                stored = await self._call(StoreOperation.LEDGER, job_id, query)
            except StoreError as exc:
                self._degrade(StoreOperation.LEDGER, job_id, exc)
        held = [entry for entry, _ in self._buffer if entry.job_id == job_id]
        if not held:
            return stored
        # Stored entries were appended before the buffered ones.
        pairs = [(-i, e) for i, e in enumerate(stored)] + [(i + 1, e) for i, e in enumerate(held)]
        return select(pairs, limit=limit, before=before, after=after, fates=wanted)

    async def save_with_ledger(
        self,
        state: JobState,
        entries: Sequence[LedgerEntry],
        *,
        expected_revision: int | None,
        keep: int,
    ) -> bool:
        """Through the primary's combined write when it has one; else a save, then ``append``."""
        job_id = state.job_id
        primary = self.primary
        if not self._degraded and isinstance(primary, LedgerSavingStore):
            expected = None if expected_revision is None else self._to_primary(job_id, expected_revision)
            revision = self._mirror_revision(job_id) + 1 if expected_revision is None else expected_revision + 1
            write = functools.partial(primary.save_with_ledger, state, entries, expected_revision=expected, keep=keep)
            try:
                saved = await self._call(StoreOperation.SAVE, job_id, write)
            except StoreError as exc:
                if exc.operation is StoreOperation.LEDGER:  # the state was saved, the entries not
                    self._known.add(job_id)
                    self._mirror[job_id] = state.with_revision(revision)
                    raise
                self._degrade(StoreOperation.SAVE, job_id, exc)
            else:
                self._known.add(job_id)
                if saved:
                    self._mirror[job_id] = state.with_revision(revision)
                return saved
        if expected_revision is None:
            await self.save(state)
        elif not await self.save_if(state, expected_revision):
            return False
        await self.append(entries, keep=keep)
        return True

    async def _write_back_ledger(self) -> None:
        lost = self._buffered_total - len(self._buffer)
        if lost > 0:
            _log.warning("run ledger: %d entries recorded during the outage were dropped (buffer full)", lost)
            self._buffered_total = len(self._buffer)
        while self._buffer:
            entry, keep = self._buffer[0]
            batch = [entry]
            for other, other_keep in list(self._buffer)[1:200]:
                if other_keep != keep:
                    break
                batch.append(other)
            fresh = await self._not_yet_stored(batch)
            if fresh:
                append = functools.partial(self._ledger.append, fresh, keep=keep)
                await self._call(StoreOperation.LEDGER, entry.job_id, append)
            for _ in batch:
                self._buffer.popleft()
        self._buffered_total = 0

    async def _not_yet_stored(self, batch: list[LedgerEntry]) -> list[LedgerEntry]:
        """``batch`` less the entries the primary already holds.

        A write that failed as the primary went away (or a write-back that failed half way)
        may have been applied all the same: writing it again would list an occurrence twice.
        """
        fresh: list[LedgerEntry] = []
        for job_id in dict.fromkeys(e.job_id for e in batch):
            mine = [e for e in batch if e.job_id == job_id]
            first = min(e.scheduled_at for e in mine)
            last = max(e.last_scheduled_at for e in mine)
            query = functools.partial(self._ledger.history, job_id, limit=10_000, before=last, after=first)
            stored = {_identity(e) for e in await self._call(StoreOperation.LEDGER, job_id, query)}
            fresh += [e for e in mine if _identity(e) not in stored]
        return fresh

    # -- combined with a guard on the primary's server -------------------------------------

    def shares_server_with(self, guard: ExecutionGuard, job_id: str, resource_id: str) -> bool:
        primary = self.primary
        return isinstance(primary, CombinedGuardStore) and primary.shares_server_with(guard, job_id, resource_id)

    def _combined_budget(self, timeout: float | None) -> float:
        budget = self._budget()
        return budget if timeout is None else min(budget, timeout)

    async def consume_and_acquire(
        self,
        state: JobState,
        expected_revision: int,
        guard: ExecutionGuard,
        slot: ExecutionSlot,
        entries: Sequence[LedgerEntry] = (),
        keep: int = 0,
        *,
        timeout: float | None = None,
    ) -> tuple[bool, ExecutionLease | ExecutionGuardError | None, str | None]:
        """The primary's combined call while healthy; else the mirror, and the acquire alone."""
        primary = self.primary
        if not self._degraded and isinstance(primary, CombinedGuardStore):
            expected = self._to_primary(state.job_id, expected_revision)
            seconds = self._combined_budget(timeout)
            call = primary.consume_and_acquire(state, expected, guard, slot, entries, keep, timeout=seconds)
            result = await self._on_primary(state, expected_revision, seconds, call)
            if result is not None:
                return result
        saved = await self._save_degraded(state, expected_revision, entries, keep)
        return saved, (_acquire_alone() if saved else None), None

    async def release_and_save(
        self,
        state: JobState,
        expected_revision: int,
        guard: ExecutionGuard,
        lease: ExecutionLease,
        entries: Sequence[LedgerEntry] = (),
        keep: int = 0,
        *,
        timeout: float | None = None,
    ) -> tuple[bool, bool | ExecutionGuardError, str | None]:
        """The primary's combined call while healthy; else the mirror, and the release alone."""
        primary = self.primary
        seconds = self._combined_budget(timeout)
        if not self._degraded and isinstance(primary, CombinedGuardStore):
            expected = self._to_primary(state.job_id, expected_revision)
            call = primary.release_and_save(state, expected, guard, lease, entries, keep, timeout=seconds)
            result = await self._on_primary(state, expected_revision, seconds, call)
            if result is not None:
                return result
        saved = await self._save_degraded(state, expected_revision, entries, keep)
        return saved, await _release_alone(guard, lease, seconds), None

    async def _on_primary(
        self, state: JobState, expected_revision: int, seconds: float, call: Awaitable[_Combined]
    ) -> _Combined | None:
        """A combined call on the primary (bounded by the primary itself): its result, with the
        mirror following a save it made; None when it failed and the store is now degraded (a
        stray timeout is a CONNECTION error too)."""
        job_id = state.job_id
        try:
            result = await call
        except TimeoutError:
            detail = f"no answer within {seconds:g} s"
            self._degrade(
                StoreOperation.SAVE, job_id, StoreError(StoreErrorKind.CONNECTION, StoreOperation.SAVE, job_id, detail)
            )
            return None
        except StoreError as exc:
            self._degrade(StoreOperation.SAVE, job_id, exc)
            return None
        self._known.add(job_id)
        if result[0]:  # saved
            self._mirror[job_id] = state.with_revision(expected_revision + 1)
        return result

    async def _save_degraded(
        self, state: JobState, expected_revision: int, entries: Sequence[LedgerEntry], keep: int
    ) -> bool:
        """The conditional save on the mirror (the store is degraded), entries held with it."""
        saved = await self.save_if(state, expected_revision)
        if saved and entries:
            self._hold(entries, keep)
        return saved

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
        await self._write_back_ledger()
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


def _acquire_alone() -> ExecutionGuardError:
    """The acquire part of a combined call that could not be made (the store is degraded): the
    scheduler then asks the guard alone, under its guard error policy."""
    return ExecutionGuardError(
        ExecutionGuardErrorKind.CONNECTION, "the state store is unreachable: the lease is asked for alone"
    )


async def _release_alone(guard: ExecutionGuard, lease: ExecutionLease, seconds: float) -> bool | ExecutionGuardError:
    """Release ``lease`` with the guard's own call, within ``seconds``; failures are returned."""
    try:
        async with asyncio.timeout(seconds):
            released = await guard.release(lease)
    except TimeoutError:
        return ExecutionGuardError(ExecutionGuardErrorKind.CONNECTION, f"release: no answer within {seconds:g} s")
    except ExecutionGuardError as exc:
        return exc
    except Exception as exc:
        return ExecutionGuardError(ExecutionGuardErrorKind.UNKNOWN, f"release failed: {exc}")
    return released is not False


def _identity(entry: LedgerEntry) -> tuple[object, ...]:
    """What makes two ledger entries the same record of the same decision."""
    return (entry.scheduled_at, entry.last_scheduled_at, entry.fate, entry.source, entry.instance, entry.started_at)
