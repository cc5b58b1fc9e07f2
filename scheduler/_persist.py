"""The run loop's access to its state store: call deadlines and conditional saves.

Every call is bounded by the loop's budget, so a store that hangs becomes a CONNECTION error
instead of a stalled schedule. Saves carry the revision this process last saw; a store that
cannot compare revisions gets plain saves (the scheduler warns once at start).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import TypeVar

from ._errors import ExecutionGuardError, StoreError, StoreErrorKind, StoreOperation
from ._guard import ExecutionGuard, ExecutionLease, ExecutionSlot
from ._state import JobState
from ._store import CombinedGuardStore, ConditionalStateStore, CreatingStateStore, InMemoryStateStore, StateStore

T = TypeVar("T")


class Persistence:
    """Load, save (conditionally), create and delete one job's state."""

    def __init__(self, store: StateStore, job_id: str, call_timeout: timedelta) -> None:
        self.store = store
        self.job_id = job_id
        # Resolved once: a runtime-checkable Protocol's isinstance is slow for the hot path.
        self._save_if = store.save_if if isinstance(store, ConditionalStateStore) else None
        self.conditional = self._save_if is not None
        # The in-memory store cannot hang: skip the timer on the hot path.
        self._timeout = None if isinstance(store, InMemoryStateStore) else call_timeout.total_seconds()

    async def _bounded(self, call: Awaitable[T], operation: StoreOperation) -> T:
        if self._timeout is None:
            return await call
        try:
            async with asyncio.timeout(self._timeout):
                return await call
        except TimeoutError:
            raise StoreError(
                StoreErrorKind.CONNECTION, operation, self.job_id, f"no answer within {self._timeout:g}s"
            ) from None

    async def load(self) -> JobState | None:
        return await self._bounded(self.store.load(self.job_id), StoreOperation.LOAD)

    async def commit(self, state: JobState) -> JobState | None:
        """Save ``state``, the next version of the document, if the stored one is still at
        ``state.revision - 1`` (a state transition advances the revision by one).

        Returns ``state`` (now stored at its revision), or None when another process saved in
        between: the caller must re-read and decide again.
        """
        save_if = self._save_if
        if save_if is None:
            await self._bounded(self.store.save(state), StoreOperation.SAVE)
            return state
        if await self._bounded(save_if(state, state.revision - 1), StoreOperation.SAVE):
            return state
        return None

    def combines_with(self, guard: ExecutionGuard, job_id: str, resource_id: str) -> bool:
        """Whether the store runs its saves together with ``guard``'s calls (one call each)."""
        store = self.store
        return (
            self.conditional
            and isinstance(store, CombinedGuardStore)
            and store.shares_server_with(guard, job_id, resource_id)
        )

    async def commit_and_acquire(
        self, state: JobState, guard: ExecutionGuard, slot: ExecutionSlot
    ) -> tuple[JobState | None, ExecutionLease | ExecutionGuardError | None]:
        """``commit`` and, only if it saved, the acquire, in one call (see ``CombinedGuardStore``)."""
        store = self.store
        assert isinstance(store, CombinedGuardStore)
        saved, lease = await self._bounded(
            store.consume_and_acquire(state, state.revision, guard, slot), StoreOperation.SAVE
        )
        return (state.with_revision(state.revision + 1) if saved else None), lease

    async def commit_and_release(
        self, state: JobState, guard: ExecutionGuard, lease: ExecutionLease
    ) -> tuple[JobState | None, bool | ExecutionGuardError]:
        """``commit`` and the release of ``lease`` in one call (the release happens either way)."""
        store = self.store
        assert isinstance(store, CombinedGuardStore)
        saved, released = await self._bounded(
            store.release_and_save(state, state.revision, guard, lease), StoreOperation.SAVE
        )
        return (state.with_revision(state.revision + 1) if saved else None), released

    async def create(self, state: JobState) -> JobState:
        """Save a first state unless another process created one; returns what is stored."""
        store = self.store
        if isinstance(store, CreatingStateStore):
            return await self._bounded(store.create(state), StoreOperation.SAVE)
        committed = await self.commit(state.with_revision(1))
        if committed is not None:
            return committed
        stored = await self.load()  # created by another process a moment ago
        return state if stored is None else stored

    async def delete(self) -> None:
        await self._bounded(self.store.delete(self.job_id), StoreOperation.DELETE)
