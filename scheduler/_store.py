"""The StateStore protocol, its optional capabilities, and the in-memory store."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ._ledger import DEFAULT_LEDGER_LIMIT, LedgerEntry, LedgerFate, check_query, select
from ._records import record
from ._state import JobState

if TYPE_CHECKING:
    from ._clock import Clock
    from ._errors import ExecutionGuardError
    from ._guard import ExecutionGuard, ExecutionLease, ExecutionSlot
    from .events import SchedulerEvent


@runtime_checkable
class StateStore(Protocol):
    """Persists one JobState per ``job_id``.

    Contract (checked by ``scheduler.testing.check_state_store``):

    * ``load`` returns the last saved state for the id (its ``revision`` set to the stored
      document's version counter), or None; never another job's.
    * ``save`` replaces the stored state for ``state.job_id`` unconditionally (tools, seeding,
      migrations) and bumps the stored revision; once it returns, a later ``load`` (from this
      or another process for shared stores) sees it.
    * ``delete`` removes it; deleting a missing id is not an error.
    * ``aclose`` releases resources the store created; calls after it are undefined.
    * Failures raise ``StoreError`` with a kind (CONNECTION for transient problems, DATA for
      content that cannot be read, including a document of a newer ``schema_version``, which
      is never written over), the operation, and the job id.

    Optional capabilities: :class:`ConditionalStateStore`, :class:`CreatingStateStore`,
    :class:`AttachableStore`, :class:`CombinedGuardStore`. Shared stores should provide the first two.
    """

    async def load(self, job_id: str) -> JobState | None: ...

    async def save(self, state: JobState) -> None: ...

    async def delete(self, job_id: str) -> None: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class ConditionalStateStore(Protocol):
    """A store that saves only over the version the writer last saw.

    ``save_if(state, expected_revision)``: atomically, on the server (inside a script, or an
    ``UPDATE ... WHERE revision = ?``; never a client-side load-compare-save), if the stored
    document's revision equals ``expected_revision`` (an absent document has revision 0),
    store ``state`` with revision ``expected_revision + 1`` and return True; otherwise store
    nothing and return False. ``state.revision`` is ignored. A stored document of a newer
    ``schema_version`` raises ``StoreError(DATA)`` and is left as it is.
    """

    async def save_if(self, state: JobState, expected_revision: int) -> bool: ...


@runtime_checkable
class CreatingStateStore(Protocol):
    """A store that can save a job's first state only if it has none (save-if-absent).

    ``create(state)`` returns the state now stored, with its revision: ``state`` itself at
    revision 1 when it was written, else the state another process created first. Instances
    of one job that start at the same moment then agree on one first occurrence.
    """

    async def create(self, state: JobState) -> JobState: ...


@runtime_checkable
class CombinedGuardStore(Protocol):
    """A store that runs its saves and a guard's lease calls together, one call each.

    ``shares_server_with(guard, job_id, resource_id)``: whether the combined calls work with
    this guard for this job (same server, and on a cluster one hash slot for all its keys).
    ``consume_and_acquire(state, expected_revision, guard, slot)``: atomically, the
    conditional save of ``save_if``, then, only if it saved, the guard's acquire; returns
    ``(saved, lease)`` where lease is None when contended (or not saved) and an
    ``ExecutionGuardError`` when the acquire part failed after the save (retry it alone).
    ``release_and_save(state, expected_revision, guard, lease)``: the conditional save and the
    release in one call; returns ``(saved, released)`` (released as ``release`` says it, or an
    ``ExecutionGuardError``). Failures of the call itself raise ``StoreError``.
    Both take the decision's run-ledger ``entries`` (appended in the same call, only if the
    state was saved, trimmed to ``keep``) and add a third item to their result: the text of a
    failed ledger append, or None (the save stands either way). ``timeout`` (seconds) bounds
    the call when given: running out is a CONNECTION ``StoreError``.
    """

    def shares_server_with(self, guard: ExecutionGuard, job_id: str, resource_id: str) -> bool: ...

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
    ) -> tuple[bool, ExecutionLease | ExecutionGuardError | None, str | None]: ...

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
    ) -> tuple[bool, bool | ExecutionGuardError, str | None]: ...


@record
class StoreAttachment:
    """What the scheduler hands a store for the duration of ``run``."""

    #: Where the store reports its own events (StoreDegraded, StoreRecovered).
    events: Callable[[SchedulerEvent], None]
    #: The scheduler's clock (probe timing and event timestamps).
    clock: Clock
    #: The scheduler's budget for one store call.
    call_timeout: timedelta


@runtime_checkable
class AttachableStore(Protocol):
    """A store that wants the scheduler's event sink, clock and call budget while it runs.

    ``attach(attachment)`` returns a function that detaches it again (the scheduler calls it
    when ``run`` ends); the store stops any background work it started for the attachment.
    """

    def attach(self, attachment: StoreAttachment) -> Callable[[], None]: ...


class InMemoryStateStore:
    """Keeps states in a dict. Share one instance between Schedulers to simulate a restart.

    Implements :class:`ConditionalStateStore`, :class:`CreatingStateStore` and the run
    ledger (``RunLedger``, ``LedgerSavingStore``); ``delete`` keeps a job's ledger.
    """

    def __init__(self) -> None:
        self._states: dict[str, JobState] = {}
        # Kept apart from the states so that a save stores the caller's object as it is.
        self._revisions: dict[str, int] = {}
        self._ledger: dict[str, deque[tuple[int, LedgerEntry]]] = {}
        self._appended = 0

    async def load(self, job_id: str) -> JobState | None:
        state = self._states.get(job_id)
        return None if state is None else state.with_revision(self._revisions[job_id])

    def _revision(self, job_id: str) -> int:
        return self._revisions.get(job_id, 0)

    async def save(self, state: JobState) -> None:
        # JobState is frozen, so storing the object itself cannot alias a mutable value.
        job_id = state.job_id
        self._states[job_id] = state
        self._revisions[job_id] = self._revisions.get(job_id, 0) + 1

    async def save_if(self, state: JobState, expected_revision: int) -> bool:
        return self.save_if_now(state, expected_revision)

    def save_if_now(self, state: JobState, expected_revision: int) -> bool:
        """``save_if`` without a coroutine: the run loop calls it directly (it never waits)."""
        job_id = state.job_id
        if self._revisions.get(job_id, 0) != expected_revision:
            return False
        self._states[job_id] = state
        self._revisions[job_id] = expected_revision + 1
        return True

    async def create(self, state: JobState) -> JobState:
        """Save ``state`` unless the job already has one; return the state now stored."""
        job_id = state.job_id
        if job_id not in self._states:
            self._states[job_id] = state
            self._revisions[job_id] = 1
        return self._states[job_id].with_revision(self._revisions[job_id])

    async def delete(self, job_id: str) -> None:
        self._states.pop(job_id, None)
        self._revisions.pop(job_id, None)

    async def append(self, entries: Sequence[LedgerEntry], *, keep: int = DEFAULT_LEDGER_LIMIT) -> None:
        self.append_now(entries, keep)

    def append_now(self, entries: Sequence[LedgerEntry], keep: int) -> None:
        """``append`` without a coroutine."""
        ledger = self._ledger
        for entry in entries:
            self._appended += 1
            kept = ledger.get(entry.job_id)
            if kept is None:
                kept = ledger[entry.job_id] = deque()
            kept.append((self._appended, entry))
            if keep > 0:
                # Oldest first out, one at a time: constant cost per append once full.
                while len(kept) > keep:
                    kept.popleft()

    async def history(
        self,
        job_id: str,
        *,
        limit: int = 100,
        before: datetime | None = None,
        after: datetime | None = None,
        fates: Iterable[LedgerFate] | None = None,
    ) -> list[LedgerEntry]:
        check_query(limit, before, after)
        return select(self._ledger.get(job_id, ()), limit=limit, before=before, after=after, fates=fates)

    async def save_with_ledger(
        self,
        state: JobState,
        entries: Sequence[LedgerEntry],
        *,
        expected_revision: int | None,
        keep: int,
    ) -> bool:
        if expected_revision is None:
            await self.save(state)
            self.append_now(entries, keep)
            return True
        return self.save_if_with_ledger_now(state, entries, expected_revision, keep)

    def save_if_with_ledger_now(
        self, state: JobState, entries: Sequence[LedgerEntry], expected_revision: int, keep: int
    ) -> bool:
        """The conditional ``save_with_ledger`` without a coroutine (``save_if_now`` inlined:
        the run loop calls this once per run)."""
        job_id = state.job_id
        if self._revisions.get(job_id, 0) != expected_revision:
            return False
        self._states[job_id] = state
        self._revisions[job_id] = expected_revision + 1
        self.append_now(entries, keep)
        return True

    async def aclose(self) -> None:
        return None

    def snapshot(self) -> dict[str, JobState]:
        """A copy of everything stored, each state at its revision (for tests)."""
        return {job_id: state.with_revision(self._revisions[job_id]) for job_id, state in self._states.items()}

    def __repr__(self) -> str:
        return f"InMemoryStateStore({len(self._states)} jobs)"
