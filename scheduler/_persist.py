"""The run loop's access to its state store: call deadlines and conditional saves.

Every call is bounded by the loop's budget, so a store that hangs becomes a CONNECTION error
instead of a stalled schedule. Saves carry the revision this process last saw; a store that
cannot compare revisions gets plain saves (the scheduler warns once at start).

Ledger entries ride with the save of the same decision when the store can write both in one
transaction or script (``LedgerSavingStore``); otherwise, and for entries that belong to no
save, they are appended in the background. A failed ledger write never fails the save or the
job: it is reported as ``StoreDegraded(operation="ledger")``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from ._errors import ExecutionGuardError, StoreError, StoreErrorKind, StoreOperation
from ._guard import ExecutionGuard, ExecutionLease, ExecutionSlot
from ._ledger import LedgerEntry, LedgerSavingStore, RunLedger
from ._state import JobState
from ._store import CombinedGuardStore, ConditionalStateStore, CreatingStateStore, InMemoryStateStore, StateStore
from .events import SchedulerEvent, StoreDegraded

T = TypeVar("T")
_log = logging.getLogger("scheduler")


class Persistence:
    """Load, save (conditionally), create and delete one job's state."""

    def __init__(
        self,
        store: StateStore,
        job_id: str,
        call_timeout: timedelta,
        *,
        ledger_keep: int = 0,
        emit: Callable[[SchedulerEvent], None] | None = None,
        now: Callable[[], datetime] | None = None,
        load_timeout: timedelta | None = None,
    ) -> None:
        self.store = store
        self.job_id = job_id
        # Typed references checked once: isinstance on a runtime protocol is slow per call.
        self._conditional_store = store if isinstance(store, ConditionalStateStore) else None
        self.conditional = self._conditional_store is not None
        # The in-memory store cannot hang: skip the timer on the hot path.
        self._timeout = None if isinstance(store, InMemoryStateStore) else call_timeout.total_seconds()
        #: Loads may be given longer (``load_timeout``): the first one opens the connection.
        self._load_timeout = max(call_timeout, load_timeout or call_timeout).total_seconds()
        # Exactly the in-memory store (a subclass may override its coroutines): its saves are
        # called directly, as the coroutines would only wrap them.
        self._memory = store if type(store) is InMemoryStateStore else None
        #: The store's ledger, or None (no ledger capability, or ``ledger_keep`` 0).
        self.ledger: RunLedger | None = store if ledger_keep > 0 and isinstance(store, RunLedger) else None
        self._saver = store if self.ledger is not None and isinstance(store, LedgerSavingStore) else None
        self._keep = ledger_keep
        self._emit = emit
        self._now = now
        self._appends: set[asyncio.Task[None]] = set()
        #: The store as a CombinedGuardStore (checked once), or None.
        self._combined = store if self.conditional and isinstance(store, CombinedGuardStore) else None

    async def _bounded(self, call: Awaitable[T], operation: StoreOperation, timeout: float | None = None) -> T:
        if self._timeout is None:
            return await call
        budget = self._timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(budget):
                return await call
        except TimeoutError:
            detail = f"no answer within {budget:g}s"
            raise StoreError(StoreErrorKind.CONNECTION, operation, self.job_id, detail) from None

    async def load(self) -> JobState | None:
        return await self._bounded(self.store.load(self.job_id), StoreOperation.LOAD, self._load_timeout)

    async def commit(self, state: JobState, entries: Sequence[LedgerEntry] | None = None) -> JobState | None:
        """Save ``state`` if the stored document is still at ``state.revision``.

        Returns the state as now stored (its revision advanced), or None when another process
        saved in between: the caller must re-read and decide again. ``entries`` are written
        to the ledger only if the state is saved (with it, when the store can).
        """
        memory = self._memory
        if memory is not None:
            expected = state.revision
            if entries and self.ledger is not None:
                saved = memory.save_if_with_ledger_now(state, entries, expected, self._keep)
            else:
                saved = memory.save_if_now(state, expected)
            return state.with_revision(expected + 1) if saved else None
        if entries and self.ledger is not None:
            if self._saver is not None:
                return await self._commit_with_ledger(state, entries)
            committed = await self.commit(state)
            if committed is not None:
                self.append_later(entries)
            return committed
        if not self.conditional:
            await self._bounded(self.store.save(state), StoreOperation.SAVE)
            return state
        assert self._conditional_store is not None
        if await self._bounded(self._conditional_store.save_if(state, state.revision), StoreOperation.SAVE):
            return state.with_revision(state.revision + 1)
        return None

    async def _commit_with_ledger(self, state: JobState, entries: Sequence[LedgerEntry]) -> JobState | None:
        assert self._saver is not None
        expected = state.revision if self.conditional else None
        call = self._saver.save_with_ledger(state, entries, expected_revision=expected, keep=self._keep)
        try:
            saved = await self._bounded(call, StoreOperation.SAVE)
        except StoreError as exc:
            if exc.operation is not StoreOperation.LEDGER:
                raise
            self._ledger_failed(exc)  # the state was saved; only the entries are lost
            saved = True
        if not saved:
            return None
        return state if expected is None else state.with_revision(expected + 1)

    def append_later(self, entries: Sequence[LedgerEntry]) -> None:
        """Append ``entries`` in the background: the caller never waits for the ledger."""
        if self.ledger is None or not entries:
            return
        task = asyncio.get_running_loop().create_task(self._append(entries))
        self._appends.add(task)
        task.add_done_callback(self._appends.discard)

    async def _append(self, entries: Sequence[LedgerEntry]) -> None:
        assert self.ledger is not None
        try:
            await self._bounded(self.ledger.append(entries, keep=self._keep), StoreOperation.LEDGER)
        except StoreError as exc:
            self._ledger_failed(exc)
        except Exception as exc:  # a ledger of the user's own must not stop the job either
            self._ledger_failed(exc)

    def _ledger_failed(self, error: Exception) -> None:
        _log.warning("job %s: run ledger write failed: %s", self.job_id, error)
        if self._emit is not None and self._now is not None:
            self._emit(
                StoreDegraded(job_id=self.job_id, at=self._now(), operation=StoreOperation.LEDGER, error=str(error))
            )

    async def entries_at(self, instant: datetime) -> list[LedgerEntry]:
        """The ledger's entries covering ``instant`` (none when it cannot be read)."""
        if self.ledger is None:
            return []
        query = self.ledger.history(self.job_id, limit=10, before=instant, after=instant)
        try:
            return await self._bounded(query, StoreOperation.LEDGER)
        except StoreError as exc:
            self._ledger_failed(exc)
            return []

    async def drain(self) -> None:
        """Wait for background ledger appends (each is bounded by the call deadline)."""
        while self._appends:
            await asyncio.gather(*list(self._appends), return_exceptions=True)

    def combines_with(self, guard: ExecutionGuard, job_id: str, resource_id: str) -> bool:
        """Whether the store runs its saves together with ``guard``'s calls (one call each)."""
        store = self._combined
        return store is not None and store.shares_server_with(guard, job_id, resource_id)

    async def commit_and_acquire(
        self,
        state: JobState,
        guard: ExecutionGuard,
        slot: ExecutionSlot,
        entries: Sequence[LedgerEntry] | None = None,
    ) -> tuple[JobState | None, ExecutionLease | ExecutionGuardError | None]:
        """``commit`` and, only if it saved, the acquire, in one call (see ``CombinedGuardStore``).

        The decision's ledger entries are appended by the same call. The call deadline is
        passed to the store (one timer per call, not one here and one in the store).
        """
        store = self._combined
        assert store is not None
        revision = state.revision
        saved, lease, ledger_error = await store.consume_and_acquire(
            state, revision, guard, slot, self._entries(entries), self._keep, timeout=self._timeout
        )
        if ledger_error is not None:
            self._ledger_reply(ledger_error)
        return (state.with_revision(revision + 1) if saved else None), lease

    async def commit_and_release(
        self,
        state: JobState,
        guard: ExecutionGuard,
        lease: ExecutionLease,
        entries: Sequence[LedgerEntry] | None = None,
    ) -> tuple[JobState | None, bool | ExecutionGuardError]:
        """``commit`` and the release of ``lease`` in one call (the release happens either way)."""
        store = self._combined
        assert store is not None
        revision = state.revision
        saved, released, ledger_error = await store.release_and_save(
            state, revision, guard, lease, self._entries(entries), self._keep, timeout=self._timeout
        )
        if ledger_error is not None:
            self._ledger_reply(ledger_error)
        return (state.with_revision(revision + 1) if saved else None), released

    def _entries(self, entries: Sequence[LedgerEntry] | None) -> Sequence[LedgerEntry]:
        return entries if entries and self.ledger is not None else ()

    def _ledger_reply(self, error: str | None) -> None:
        if error is not None:
            self._ledger_failed(StoreError(StoreErrorKind.DATA, StoreOperation.LEDGER, self.job_id, error))

    async def create(self, state: JobState) -> JobState:
        """Save a first state unless another process created one; returns what is stored."""
        store = self.store
        if isinstance(store, CreatingStateStore):
            return await self._bounded(store.create(state), StoreOperation.SAVE)
        committed = await self.commit(state)
        if committed is not None:
            return committed
        stored = await self.load()  # created by another process a moment ago
        return state if stored is None else stored

    async def delete(self) -> None:
        await self._bounded(self.store.delete(self.job_id), StoreOperation.DELETE)
