"""The StateStore protocol and the in-memory store."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ._state import JobState


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


class InMemoryStateStore:
    """Keeps states in a dict. Share one instance between Schedulers to simulate a restart."""

    def __init__(self) -> None:
        self._states: dict[str, JobState] = {}

    async def load(self, job_id: str) -> JobState | None:
        return self._states.get(job_id)

    async def save(self, state: JobState) -> None:
        # JobState is frozen, so storing the object itself cannot alias a mutable value.
        self._states[state.job_id] = state

    async def create(self, state: JobState) -> JobState:
        """Save ``state`` unless the job already has one; return the state now stored."""
        return self._states.setdefault(state.job_id, state)

    async def delete(self, job_id: str) -> None:
        self._states.pop(job_id, None)

    async def aclose(self) -> None:
        return None

    def snapshot(self) -> dict[str, JobState]:
        """A copy of everything stored (for tests and the resilient store's write-back)."""
        return dict(self._states)

    def __repr__(self) -> str:
        return f"InMemoryStateStore({len(self._states)} jobs)"
