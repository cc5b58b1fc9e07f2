"""The StateStore protocol and the in-memory store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol, runtime_checkable

from ._clock import Clock
from ._state import JobState
from .events import SchedulerEvent


@runtime_checkable
class StateStore(Protocol):
    """Persists one JobState per ``job_id``.

    Contract (checked by ``scheduler.testing.check_state_store``):

    * ``load`` returns the last saved state for the id, or None; never another job's.
    * ``save`` replaces the stored state for ``state.job_id``; once it returns, a later
      ``load`` (from this or another process for shared stores) sees it.
    * ``delete`` removes it; deleting a missing id is not an error.
    * ``aclose`` releases resources the store created; calls after it are undefined.
    * Failures raise ``StoreError`` with a kind (CONNECTION for transient problems, DATA for
      content that cannot be read), the operation, and the job id.

    Optional: ``async create(state) -> JobState`` saves ``state`` only if the job has no state
    yet and returns the state now stored (ours, or the one another process created first).
    Shared stores should provide it: instances of one job that start at the same moment then
    agree on one first occurrence. Without it the scheduler falls back to ``save``.
    """

    async def load(self, job_id: str) -> JobState | None: ...

    async def save(self, state: JobState) -> None: ...

    async def delete(self, job_id: str) -> None: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class ConditionalStateStore(Protocol):
    """A store that can save only if nobody else saved since (compare-and-set on a revision).

    ``save_if(state, expected_revision)`` atomically stores ``state`` with revision
    ``expected_revision + 1`` and returns True when the stored document's revision equals
    ``expected_revision`` (an absent document has revision 0); otherwise it stores nothing
    and returns False.
    """

    async def save_if(self, state: JobState, expected_revision: int) -> bool: ...


@runtime_checkable
class CreatingStateStore(Protocol):
    """A store that can save a state only if the job has none yet (returns the state now stored)."""

    async def create(self, state: JobState) -> JobState: ...


@dataclass(frozen=True, slots=True)
class StoreAttachment:
    """What a running scheduler lends an attachable store: its event sink, clock and call budget."""

    events: Callable[[SchedulerEvent], None]
    clock: Clock
    call_timeout: timedelta


@runtime_checkable
class AttachableStore(Protocol):
    """A store that reports events and paces itself by the scheduler; ``attach`` returns detach."""

    def attach(self, attachment: StoreAttachment) -> Callable[[], None]: ...


class InMemoryStateStore:
    """Keeps states in a dict. Share one instance between Schedulers to simulate a restart."""

    def __init__(self) -> None:
        self._states: dict[str, JobState] = {}

    async def load(self, job_id: str) -> JobState | None:
        return self._states.get(job_id)

    async def save(self, state: JobState) -> None:
        # JobState is frozen, so storing the object itself cannot alias a mutable value.
        stored = self._states.get(state.job_id)
        self._states[state.job_id] = state.with_revision(1 if stored is None else stored.revision + 1)

    async def save_if(self, state: JobState, expected_revision: int) -> bool:
        stored = self._states.get(state.job_id)
        if (0 if stored is None else stored.revision) != expected_revision:
            return False
        self._states[state.job_id] = state.with_revision(expected_revision + 1)
        return True

    async def create(self, state: JobState) -> JobState:
        """Save ``state`` unless the job already has one; return the state now stored."""
        stored = self._states.get(state.job_id)
        if stored is None:
            stored = self._states[state.job_id] = state.with_revision(1)
        return stored

    async def delete(self, job_id: str) -> None:
        self._states.pop(job_id, None)

    async def aclose(self) -> None:
        return None

    def snapshot(self) -> dict[str, JobState]:
        """A copy of everything stored (for tests and the resilient store's write-back)."""
        return dict(self._states)

    def __repr__(self) -> str:
        return f"InMemoryStateStore({len(self._states)} jobs)"
