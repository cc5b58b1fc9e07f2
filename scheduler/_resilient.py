"""ResilientStateStore: keep running from memory while the primary store is unreachable."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta

from ._clock import Clock, SystemClock
from ._errors import StoreError, StoreErrorKind, StoreOperation
from ._ledger import DEFAULT_LEDGER_LIMIT, LedgerEntry, LedgerFate, LedgerSavingStore, RunLedger, check_query, select
from ._state import JobState
from ._store import InMemoryStateStore, StateStore, StoreAttachment
from ._time import to_timedelta
from .events import SchedulerEvent, StoreDegraded, StoreRecovered

EventSink = Callable[[SchedulerEvent], None]
#: Ledger entries kept while the primary is unreachable; beyond it the oldest are dropped
#: (and counted in a warning when written back).
MAX_BUFFERED_ENTRIES = 10_000
_log = logging.getLogger("scheduler")


class ResilientStateStore:
    """Wraps a primary store; on a CONNECTION error serves and records from a mirror.

    The mirror is kept in step with every successful primary call. While degraded, the
    primary is probed at most every ``probe_interval``; when it answers, states recorded
    during the outage are written back (unless the primary already holds a state with a
    higher ``trigger_count``, written by another instance) and ``StoreRecovered`` is emitted.
    DATA and UNKNOWN errors are never masked: they propagate.

    Run ledger: entries are written through to the primary's ledger; while degraded they are
    buffered (at most ``MAX_BUFFERED_ENTRIES``, the oldest dropped first) and appended on
    recovery after the states. A primary without a ledger gets one in memory here.
    """

    def __init__(
        self,
        primary: StateStore,
        *,
        probe_interval: timedelta | float = timedelta(seconds=5),
        clock: Clock | None = None,
        observer: EventSink | None = None,
    ) -> None:
        self.primary = primary
        self.probe_interval = to_timedelta(probe_interval, "probe_interval")
        self._clock = clock
        self._sinks: list[EventSink] = [observer] if observer else []
        self._mirror: dict[str, JobState] = {}
        self._dirty: set[str] = set()
        self._deleted: set[str] = set()
        self._degraded = False
        self._next_probe: datetime | None = None
        self._buffer: deque[tuple[LedgerEntry, int]] = deque(maxlen=MAX_BUFFERED_ENTRIES)
        self._buffered_total = 0
        self._ledger: RunLedger = primary if isinstance(primary, RunLedger) else InMemoryStateStore()

    @property
    def is_degraded(self) -> bool:
        """True while calls are served from the in-process mirror."""
        return self._degraded

    def attach(self, attachment: StoreAttachment) -> Callable[[], None]:
        """Send StoreDegraded/StoreRecovered to the scheduler's sink; returns a detach function.

        The scheduler attaches itself for the duration of ``run``. Its clock is used for
        probe timing unless the store was built with one.
        """
        sink = attachment.events
        self._sinks.append(sink)
        if self._clock is None:
            self._clock = attachment.clock

        def detach() -> None:
            if sink in self._sinks:
                self._sinks.remove(sink)

        return detach

    def _now(self) -> datetime:
        if self._clock is None:
            self._clock = SystemClock()
        return self._clock.now()

    def _emit(self, event: SchedulerEvent) -> None:
        for sink in list(self._sinks):
            try:
                sink(event)
            except Exception:  # an observer bug must not turn into a store failure
                _log.exception("store event observer %r failed on %s; ignored", sink, event.name)

    def _degrade(self, operation: StoreOperation, job_id: str, error: StoreError) -> None:
        now = self._now()
        self._next_probe = now + self.probe_interval
        if not self._degraded:
            self._degraded = True
            self._emit(StoreDegraded(job_id=job_id, at=now, operation=operation, error=str(error)))

    async def _try_recover(self, job_id: str) -> bool:
        """Probe the primary if due; True when calls should go to the primary again."""
        if not self._degraded:
            return True
        if self._next_probe is not None and self._now() < self._next_probe:
            return False
        try:
            await self.primary.load(job_id)  # the probe: any answer proves the primary is back
            written = await self._write_back()
        except StoreError as exc:
            if exc.kind is not StoreErrorKind.CONNECTION:
                raise
            self._next_probe = self._now() + self.probe_interval
            return False
        self._degraded = False
        self._emit(StoreRecovered(job_id=job_id, at=self._now(), written_back=written))
        return True

    async def _write_back(self) -> int:
        written = 0
        await self._write_back_ledger()
        for job_id in sorted(self._deleted):
            await self.primary.delete(job_id)
            self._deleted.discard(job_id)
            written += 1
        for job_id in sorted(self._dirty):
            ours = self._mirror.get(job_id)
            theirs = await self.primary.load(job_id)
            if ours is not None and (theirs is None or theirs.trigger_count <= ours.trigger_count):
                await self.primary.save(ours)
                written += 1
            elif theirs is not None:
                self._mirror[job_id] = theirs
            self._dirty.discard(job_id)
        return written

    async def _write_back_ledger(self) -> None:
        lost = self._buffered_total - len(self._buffer)
        if lost > 0:
            _log.warning("run ledger: %d entries recorded during the outage were dropped (buffer full)", lost)
        while self._buffer:
            entry, keep = self._buffer[0]
            batch = [entry]
            for other, other_keep in list(self._buffer)[1:200]:
                if other_keep != keep:
                    break
                batch.append(other)
            await self._ledger.append(batch, keep=keep)
            for _ in batch:
                self._buffer.popleft()
        self._buffered_total = 0

    def _hold(self, entries: Sequence[LedgerEntry], keep: int) -> None:
        self._buffer.extend((entry, keep) for entry in entries)
        self._buffered_total += len(entries)

    async def append(self, entries: Sequence[LedgerEntry], *, keep: int = DEFAULT_LEDGER_LIMIT) -> None:
        if not entries:
            return
        job_id = entries[0].job_id
        if await self._try_recover(job_id):
            try:
                await self._ledger.append(entries, keep=keep)
                return
            except StoreError as exc:
                if exc.kind is not StoreErrorKind.CONNECTION:
                    raise
                self._degrade(StoreOperation.LEDGER, job_id, exc)
        self._hold(entries, keep)

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
        fates = None if fates is None else list(fates)
        stored: list[LedgerEntry] = []
        if await self._try_recover(job_id):
            try:
                stored = await self._ledger.history(job_id, limit=limit, before=before, after=after, fates=fates)
            except StoreError as exc:
                if exc.kind is not StoreErrorKind.CONNECTION:
                    raise
                self._degrade(StoreOperation.LEDGER, job_id, exc)
        held = [entry for entry, _ in self._buffer if entry.job_id == job_id]
        if not held:
            return stored
        # Stored entries were appended before the buffered ones.
        pairs = [(-i, e) for i, e in enumerate(stored)] + [(i + 1, e) for i, e in enumerate(held)]
        return select(pairs, limit=limit, before=before, after=after, fates=fates)

    async def save_with_ledger(
        self,
        state: JobState,
        entries: Sequence[LedgerEntry],
        *,
        expected_revision: int | None,
        keep: int,
    ) -> bool:
        """Through the primary's combined write when it has one; else ``save`` then ``append``.

        This store saves unconditionally (it is not a conditional store): a given
        ``expected_revision`` is compared only by a primary that writes both at once.
        """
        primary = self.primary
        if isinstance(primary, LedgerSavingStore) and await self._try_recover(state.job_id):
            try:
                saved = await primary.save_with_ledger(state, entries, expected_revision=expected_revision, keep=keep)
            except StoreError as exc:
                if exc.operation is StoreOperation.LEDGER:  # the state was saved
                    self._mirror[state.job_id] = state
                    raise
                if exc.kind is not StoreErrorKind.CONNECTION:
                    raise
                self._degrade(StoreOperation.SAVE, state.job_id, exc)
            else:
                if saved:
                    self._mirror[state.job_id] = state
                    self._deleted.discard(state.job_id)
                return saved
        await self.save(state)
        await self.append(entries, keep=keep)
        return True

    async def load(self, job_id: str) -> JobState | None:
        if await self._try_recover(job_id):
            try:
                state = await self.primary.load(job_id)
            except StoreError as exc:
                if exc.kind is not StoreErrorKind.CONNECTION:
                    raise
                self._degrade(StoreOperation.LOAD, job_id, exc)
                return self._mirror.get(job_id)
            if state is None:
                self._mirror.pop(job_id, None)
            else:
                self._mirror[job_id] = state
            return state
        return self._mirror.get(job_id)

    async def save(self, state: JobState) -> None:
        self._mirror[state.job_id] = state
        self._deleted.discard(state.job_id)
        if await self._try_recover(state.job_id):
            try:
                await self.primary.save(state)
                return
            except StoreError as exc:
                if exc.kind is not StoreErrorKind.CONNECTION:
                    raise
                self._degrade(StoreOperation.SAVE, state.job_id, exc)
        self._dirty.add(state.job_id)

    async def create(self, state: JobState) -> JobState:
        """Create-if-absent on the primary (when it supports it); degrade like ``save``."""
        create = getattr(self.primary, "create", None)
        if not callable(create) or not await self._try_recover(state.job_id):
            await self.save(state)
            return state
        try:
            stored: JobState = await create(state)
        except StoreError as exc:
            if exc.kind is not StoreErrorKind.CONNECTION:
                raise
            self._degrade(StoreOperation.SAVE, state.job_id, exc)
            self._mirror[state.job_id] = state
            self._dirty.add(state.job_id)
            return state
        self._mirror[state.job_id] = stored
        return stored

    async def delete(self, job_id: str) -> None:
        self._mirror.pop(job_id, None)
        self._dirty.discard(job_id)
        if await self._try_recover(job_id):
            try:
                await self.primary.delete(job_id)
                return
            except StoreError as exc:
                if exc.kind is not StoreErrorKind.CONNECTION:
                    raise
                self._degrade(StoreOperation.DELETE, job_id, exc)
        self._deleted.add(job_id)

    async def aclose(self) -> None:
        await self.primary.aclose()

    def __repr__(self) -> str:
        mode = "degraded" if self._degraded else "healthy"
        return f"ResilientStateStore({self.primary!r}, {mode})"
