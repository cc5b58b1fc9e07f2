"""The StateStore protocol, its optional capabilities, and the in-memory store."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ._ledger import DEFAULT_LEDGER_LIMIT, LedgerEntry, LedgerFate, check_query, select
from ._state import JobState

if TYPE_CHECKING:
    from ._clock import Clock
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
    :class:`AttachableStore`. Shared stores should provide the first two.
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


@dataclass(frozen=True, slots=True)
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
        self._ledger: dict[str, list[tuple[int, LedgerEntry]]] = {}
        self._appended = 0

    async def load(self, job_id: str) -> JobState | None:
        return self._states.get(job_id)

    def _revision(self, job_id: str) -> int:
        stored = self._states.get(job_id)
        return 0 if stored is None else stored.revision

    async def save(self, state: JobState) -> None:
        # JobState is frozen, so storing the object itself cannot alias a mutable value.
        self._states[state.job_id] = state.with_revision(self._revision(state.job_id) + 1)

    async def save_if(self, state: JobState, expected_revision: int) -> bool:
        if self._revision(state.job_id) != expected_revision:
            return False
        self._states[state.job_id] = state.with_revision(expected_revision + 1)
        return True

    async def create(self, state: JobState) -> JobState:
        """Save ``state`` unless the job already has one; return the state now stored."""
        return self._states.setdefault(state.job_id, state.with_revision(1))

    async def delete(self, job_id: str) -> None:
        self._states.pop(job_id, None)

    async def append(self, entries: Sequence[LedgerEntry], *, keep: int = DEFAULT_LEDGER_LIMIT) -> None:
        touched = set()
        for entry in entries:
            self._appended += 1
            self._ledger.setdefault(entry.job_id, []).append((self._appended, entry))
            touched.add(entry.job_id)
        if keep > 0:
            for job_id in touched:
                kept = self._ledger[job_id]
                if len(kept) > keep:
                    del kept[: len(kept) - keep]

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
        elif not await self.save_if(state, expected_revision):
            return False
        await self.append(entries, keep=keep)
        return True

    async def aclose(self) -> None:
        return None

    def snapshot(self) -> dict[str, JobState]:
        """A copy of everything stored (for tests)."""
        return dict(self._states)

    def __repr__(self) -> str:
        return f"InMemoryStateStore({len(self._states)} jobs)"
