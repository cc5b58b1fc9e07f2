"""Test helpers shipped with the library (not imported by ``import scheduler``).

* :class:`FakeClock`: a Clock whose time moves only when told to, or (``auto_advance``) jumps
  to the next deadline whenever the event loop has nothing else to do.
* :class:`RecordingObserver`: keeps every event.
* :func:`check_state_store` / :func:`check_execution_guard`: contract suites for your own
  implementations (plain asserts, no pytest import).
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from ._enums import GuardScope, RunSkipReason, RunStatus, TriggerSource
from ._guard import ExecutionGuard, ExecutionLease, ExecutionSlot
from ._ledger import LedgerEntry, LedgerFate, LedgerSavingStore, RunLedger
from ._state import InFlight, JobState
from ._store import ConditionalStateStore, CreatingStateStore, StateStore
from ._time import require_aware
from .events import SchedulerEvent

__all__ = [
    "FakeClock",
    "RecordingObserver",
    "acheck_execution_guard",
    "acheck_state_store",
    "check_execution_guard",
    "check_state_store",
]

#: Consecutive idle loop iterations before auto-advance jumps: enough for callbacks queued by
#: a just-finished step (done callbacks, call_soon chains) to run first.
IDLE_ROUNDS = 4
#: While real timers are pending (asyncio.sleep in a task, a timeout), re-check this often.
BUSY_RECHECK_SECONDS = 0.001
#: Real timers due within this many seconds keep the fake clock from jumping.
NEAR_TIMER_SECONDS = 0.25
DEFAULT_START = datetime(2025, 1, 1, tzinfo=UTC)

E = TypeVar("E", bound=SchedulerEvent)


class FakeClock:
    """A Clock for tests. ``advance(delta)`` moves time and wakes due sleepers.

    With ``auto_advance`` (the default) the clock jumps to the earliest pending deadline
    whenever the event loop is idle: no ready callbacks and no real timer due within 0.25 s.
    Work in a worker thread does not keep the loop busy, so prefer async tasks under
    auto-advance (or turn it off and call ``advance``).
    Needs the stock asyncio event loop (it inspects the loop's queues).
    """

    def __init__(self, start: datetime | None = None, *, auto_advance: bool = True) -> None:
        self._now = require_aware(start, "start") if start is not None else DEFAULT_START
        self.auto_advance = auto_advance
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()
        self._watch: asyncio.Handle | None = None
        self._idle_rounds = 0
        self.jumps = 0

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, instant: datetime) -> None:
        if instant <= self._now:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._sleepers, (instant, next(self._counter), future))
        if self.auto_advance:
            self._ensure_watch(loop)
        try:
            await future
        finally:
            if not future.done():
                future.cancel()

    def advance(self, delta: timedelta | float) -> None:
        """Move time forward by ``delta`` and wake every sleeper whose deadline passed."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        if step < timedelta(0):
            raise ValueError("FakeClock cannot go backwards")
        self._now += step
        self._wake_due()

    def set(self, instant: datetime) -> None:
        """Jump to ``instant`` (forward or back; back-jumps simulate a wall-clock step)."""
        self._now = require_aware(instant, "instant")
        self._wake_due()

    async def settle(self, *, max_rounds: int = 10_000) -> None:
        """Return once every task on the event loop is blocked (nothing left to run now).

        Use it instead of ``asyncio.sleep(...)`` to let the scheduler react to a command or a
        time step before asserting. It does not move the fake clock, and it cannot see work
        in worker threads (``Task.from_blocking``): wait for those with your own event.
        Raises RuntimeError when the loop is still busy after ``max_rounds`` iterations (a
        task that never blocks, or real timers that keep firing).
        """
        loop = asyncio.get_running_loop()
        quiet = 0
        for _ in range(max_rounds):
            await asyncio.sleep(0)
            ready = getattr(loop, "_ready", None)
            if ready is None:
                raise RuntimeError("FakeClock.settle needs the stock asyncio event loop")
            if any(not _is_watch(handle) for handle in ready):
                quiet = 0
            else:
                quiet += 1
                if quiet >= IDLE_ROUNDS:
                    return
        raise RuntimeError(f"the event loop did not settle within {max_rounds} iterations")

    def next_deadline(self) -> datetime | None:
        self._drop_cancelled()
        return self._sleepers[0][0] if self._sleepers else None

    def _drop_cancelled(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)

    def _wake_due(self) -> None:
        while self._sleepers and (self._sleepers[0][2].done() or self._sleepers[0][0] <= self._now):
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    def _ensure_watch(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._watch is None:
            self._idle_rounds = 0
            self._watch = loop.call_soon(self._check_idle, loop)

    def _busy(self, loop: asyncio.AbstractEventLoop) -> str | None:
        """'ready' if callbacks are queued, 'timers' if real timers are pending, else None."""
        ready = getattr(loop, "_ready", None)
        scheduled = getattr(loop, "_scheduled", None)
        if ready is None or scheduled is None:  # not the stock loop: treat as idle
            return None
        if any(not _is_watch(handle) for handle in ready):
            return "ready"
        # Real timers due soon (a task's short asyncio.sleep, a retry poll) mean work is in
        # progress; far-off ones (a test's wait_for guard, a long timeout) do not.
        horizon = loop.time() + NEAR_TIMER_SECONDS
        near = any(not h.cancelled() and h.when() <= horizon for h in scheduled if h is not self._watch)
        return "timers" if near else None

    def _check_idle(self, loop: asyncio.AbstractEventLoop) -> None:
        self._watch = None
        deadline = self.next_deadline()
        if deadline is None or not self.auto_advance or loop.is_closed():
            return
        busy = self._busy(loop)
        if busy is None:
            self._idle_rounds += 1
            if self._idle_rounds >= IDLE_ROUNDS:
                self._idle_rounds = 0
                if deadline > self._now:
                    self._now = deadline
                    self.jumps += 1
                self._wake_due()
        else:
            self._idle_rounds = 0
        if busy == "timers":
            self._watch = loop.call_later(BUSY_RECHECK_SECONDS, self._check_idle, loop)
        else:
            self._watch = loop.call_soon(self._check_idle, loop)

    def __repr__(self) -> str:
        return f"FakeClock({self._now.isoformat()})"


def _is_watch(handle: asyncio.Handle) -> bool:
    """Whether a queued callback is some FakeClock's idle check (several clocks may share a loop)."""
    callback = getattr(handle, "_callback", None)
    return getattr(callback, "__func__", None) is FakeClock._check_idle


class RecordingObserver:
    """Records every event, in order."""

    def __init__(self) -> None:
        self.events: list[SchedulerEvent] = []

    def on_event(self, event: SchedulerEvent) -> None:
        self.events.append(event)

    def of_type(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    def names(self) -> list[str]:
        return [type(e).__name__ for e in self.events]

    def clear(self) -> None:
        self.events.clear()

    def __iter__(self) -> Iterator[SchedulerEvent]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)


T = TypeVar("T")
Factory = Callable[[], T | Awaitable[T]]


async def _make(factory: Factory[T]) -> T:
    made = factory()
    if inspect.isawaitable(made):
        return await made
    return made


def _same(loaded: JobState | None, saved: JobState) -> bool:
    """Equal as documents: the revision is the store's to set."""
    return loaded is not None and loaded.with_revision(0) == saved.with_revision(0)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


async def acheck_state_store(factory: Factory[StateStore]) -> None:
    """Async form of :func:`check_state_store`, for use inside a running event loop."""
    store = await _make(factory)
    try:
        base = datetime(2025, 3, 30, 1, 30, 15, 123456, tzinfo=UTC)
        _check(await store.load("contract-missing") is None, "load of an unknown job_id must return None")
        first = JobState(job_id="contract-a", trigger_count=1, next_run_at=base)
        await store.save(first)
        loaded = await store.load("contract-a")
        _check(
            loaded is not None and loaded.with_revision(0) == first,
            f"load must return what save stored: {loaded!r} != {first!r}",
        )
        full = JobState(
            job_id="contract-a",
            trigger_count=7,
            last_run_at=base,
            last_success_at=base + timedelta(seconds=2),
            next_run_at=base + timedelta(minutes=1),
            last_error="ValueError: boom",
            last_status=RunStatus.FAILED,
            consecutive_failures=2,
            schedule_fingerprint="interval:60s",
            in_flight=InFlight(occurrence=base, started_at=base, attempt=2),
        )
        await store.save(full)
        loaded = await store.load("contract-a")
        _check(
            loaded is not None and loaded.with_revision(0) == full,
            f"save must replace the previous state with every field: {loaded!r}",
        )
        other = JobState(job_id="contract-b:ü/ spaced", trigger_count=3, next_run_at=None)
        await store.save(other)
        odd = await store.load("contract-b:ü/ spaced")
        _check(odd is not None and odd.with_revision(0) == other, "job ids with unusual characters must round-trip")
        _check(_same(await store.load("contract-a"), full), "saving one job must not change another")
        await store.delete("contract-a")
        _check(await store.load("contract-a") is None, "load after delete must return None")
        _check(_same(await store.load("contract-b:ü/ spaced"), other), "delete must remove only its own job")
        await store.delete("contract-a")  # deleting a missing id is not an error
        await store.delete("contract-b:ü/ spaced")
        await _check_revisions(store, base)
        if isinstance(store, ConditionalStateStore):
            await _check_save_if(store, base)
        if isinstance(store, CreatingStateStore):
            await _check_create(store)
        if isinstance(store, RunLedger):
            await _check_ledger(store, base)
        if isinstance(store, RunLedger) and isinstance(store, LedgerSavingStore):
            await _check_save_with_ledger(store, base)
    finally:
        await store.aclose()


async def _check_revisions(store: StateStore, base: datetime) -> None:
    job = "contract-revision"
    await store.save(JobState(job_id=job, trigger_count=1, next_run_at=base))
    first = await store.load(job)
    assert first is not None
    _check(first.revision >= 1, f"a stored state must have a revision >= 1, got {first.revision}")
    await store.save(first.model_copy(update={"trigger_count": 2}))
    second = await store.load(job)
    assert second is not None
    _check(second.revision == first.revision + 1, "an unconditional save must bump the stored revision by one")
    # A document written by a newer release of the same schema_version: its fields survive.
    extended = JobState.model_validate({"job_id": job, "trigger_count": 3, "contract_future_field": {"n": 1}})
    await store.save(extended)
    kept = await store.load(job)
    _check(
        kept is not None and (kept.model_extra or {}).get("contract_future_field") == {"n": 1},
        f"unknown fields of a same-version document must be preserved on save: {kept!r}",
    )
    await store.delete(job)
    _check(await store.load(job) is None, "delete must remove a state that has a revision")


async def _check_save_if(store: ConditionalStateStore, base: datetime) -> None:
    plain: StateStore = store  # type: ignore[assignment]
    job = "contract-conditional"
    state = JobState(job_id=job, trigger_count=1, next_run_at=base)
    _check(await store.save_if(state, 3) is False, "save_if over an absent document expecting revision 3 must fail")
    _check(await plain.load(job) is None, "a failed save_if must store nothing")
    _check(await store.save_if(state, 0) is True, "save_if expecting 0 must create an absent document")
    loaded = await plain.load(job)
    _check(
        loaded == state and loaded is not None and loaded.revision == 1, f"save_if(…, 0) stores revision 1: {loaded!r}"
    )
    _check(await store.save_if(state, 0) is False, "save_if expecting 0 must fail once the document exists")
    newer = state.model_copy(update={"trigger_count": 2})
    _check(await store.save_if(newer, 1) is True, "save_if with the stored revision must succeed")
    stale = state.model_copy(update={"trigger_count": 9})
    _check(await store.save_if(stale, 1) is False, "save_if with a stale revision must fail (conflict)")
    loaded = await plain.load(job)
    _check(
        loaded == newer and loaded is not None and loaded.revision == 2, f"a conflict must store nothing: {loaded!r}"
    )
    extended = JobState.model_validate({"job_id": job, "trigger_count": 3, "contract_future_field": [1, 2]})
    _check(await store.save_if(extended, 2) is True, "save_if must accept any state of the job")
    kept = await plain.load(job)
    _check(
        kept is not None and (kept.model_extra or {}).get("contract_future_field") == [1, 2] and kept.revision == 3,
        f"save_if must preserve unknown fields and bump the revision: {kept!r}",
    )
    await plain.delete(job)
    _check(await store.save_if(state, 3) is False, "after delete the document is absent (revision 0)")
    _check(await store.save_if(state, 0) is True, "after delete save_if expecting 0 must succeed")
    await plain.delete(job)


async def _check_create(store: CreatingStateStore) -> None:
    plain: StateStore = store  # type: ignore[assignment]
    job = "contract-create"
    ours = JobState(job_id=job, trigger_count=0, schedule_fingerprint="ours")
    created = await store.create(ours)
    _check(
        created == ours and created.revision == 1, f"create of an absent job must store it at revision 1: {created!r}"
    )
    theirs = JobState(job_id=job, trigger_count=0, schedule_fingerprint="theirs")
    again = await store.create(theirs)
    _check(again == ours and again.revision >= 1, f"create must return the state already stored: {again!r}")
    loaded = await plain.load(job)
    _check(loaded == ours, "create must not replace an existing state")
    await plain.delete(job)


def _entry(job: str, at: datetime, fate: LedgerFate, **fields: object) -> LedgerEntry:
    if fate in (LedgerFate.SKIPPED, LedgerFate.MISSED) and "reason" not in fields:
        fields["reason"] = RunSkipReason.OVERLAP
    return LedgerEntry(job_id=job, scheduled_at=at, fate=fate, instance="contract:1", **fields)  # type: ignore[arg-type]


async def _check_ledger(ledger: RunLedger, base: datetime) -> None:
    # Fresh ids each time: a ledger outlives ``delete`` of the job's state.
    job, other = f"contract-ledger-{uuid.uuid4().hex[:8]}", f"contract-ledger-other-{uuid.uuid4().hex[:8]}"
    minute = timedelta(minutes=1)
    full = _entry(
        job,
        base,
        LedgerFate.FAILED,
        source=TriggerSource.MANUAL,
        catch_up=True,
        started_at=base + timedelta(seconds=1),
        finished_at=base + timedelta(seconds=3),
        attempts=2,
        error="CommandFailed: exit code 3",
        exit_code=3,
        fencing_token=42,
    )
    singles = [
        full,
        _entry(job, base + minute, LedgerFate.SUCCESS, attempts=1),
        _entry(job, base + 2 * minute, LedgerFate.SKIPPED, reason=RunSkipReason.OUTSIDE_TIME_WINDOW),
        _entry(job, base + 3 * minute, LedgerFate.INTERRUPTED),
    ]
    span = _entry(
        job,
        base + 10 * minute,
        LedgerFate.MISSED,
        reason=RunSkipReason.MISSED,
        count=11,
        last_scheduled_at=base + 20 * minute,
    )
    # Appended out of scheduled order: history orders by scheduled_at, not by append.
    await ledger.append([singles[1], singles[0], span])
    await ledger.append(singles[2:])
    await ledger.append([_entry(other, base, LedgerFate.SUCCESS)])
    newest = await ledger.history(job)
    _check(newest == [span, *reversed(singles)], f"history must list every entry newest first: {newest!r}")
    _check(newest[-1] == full, f"an entry must round-trip with every field: {newest[-1]!r} != {full!r}")
    _check(await ledger.history(job, limit=2) == [span, singles[3]], "history must honour limit")
    _check(await ledger.history(job, limit=0) == [], "limit=0 returns nothing")
    before = await ledger.history(job, before=base + minute)
    _check(before == [singles[1], singles[0]], f"before is an inclusive bound on scheduled_at: {before!r}")
    _check(await ledger.history(job, after=base + 15 * minute) == [span], "a range matches when its end is after")
    inside = await ledger.history(job, before=base + 12 * minute, after=base + 12 * minute)
    _check(inside == [span], f"an instant inside a range finds the range: {inside!r}")
    skipped = await ledger.history(job, fates=[LedgerFate.SKIPPED, LedgerFate.MISSED])
    _check(skipped == [span, singles[2]], f"fates must filter: {skipped!r}")
    _check(len(await ledger.history(other)) == 1, "a job's history must not include another job's")
    tie_a = _entry(job, base + 30 * minute, LedgerFate.SKIPPED, reason=RunSkipReason.OVERLAP)
    tie_b = _entry(job, base + 30 * minute, LedgerFate.SUCCESS, attempts=1)
    await ledger.append([tie_a])
    await ledger.append([tie_b])
    tied = await ledger.history(job, limit=2)
    _check(tied == [tie_b, tie_a], f"among equal scheduled_at the later appended comes first: {tied!r}")
    # Retention: the newest ``keep`` always remain; older ones go (a store may trim roughly).
    trimmed = f"contract-ledger-trim-{uuid.uuid4().hex[:8]}"
    many = [_entry(trimmed, base + i * minute, LedgerFate.SUCCESS, attempts=1) for i in range(300)]
    for start in range(0, 300, 50):
        await ledger.append(many[start : start + 50], keep=10)
    kept = await ledger.history(trimmed, limit=1000)
    _check(kept[:10] == list(reversed(many[-10:])), "retention must keep the newest entries")
    _check(len(kept) < 300, f"retention must trim old entries (kept {len(kept)} of 300 with keep=10)")


async def _check_save_with_ledger(store: RunLedger, base: datetime) -> None:
    saving: LedgerSavingStore = store  # type: ignore[assignment]
    plain: StateStore = store  # type: ignore[assignment]
    job = f"contract-ledger-save-{uuid.uuid4().hex[:8]}"
    state = JobState(job_id=job, trigger_count=1, next_run_at=base)
    entry = _entry(job, base, LedgerFate.SUCCESS, attempts=1)
    _check(
        await saving.save_with_ledger(state, [entry], expected_revision=None, keep=100) is True,
        "an unconditional save_with_ledger must save",
    )
    _check(_same(await plain.load(job), state), "save_with_ledger must store the state")
    _check(await store.history(job) == [entry], "save_with_ledger must append the entries")
    if isinstance(store, ConditionalStateStore):
        stale = _entry(job, base + timedelta(minutes=1), LedgerFate.SUCCESS, attempts=1)
        newer = state.model_copy(update={"trigger_count": 2})
        saved = await saving.save_with_ledger(newer, [stale], expected_revision=7, keep=100)
        _check(saved is False, "save_with_ledger with a stale revision must fail")
        _check(await store.history(job) == [entry], "a failed conditional save must append nothing")
        loaded = await plain.load(job)
        assert loaded is not None
        _check(
            await saving.save_with_ledger(newer, [stale], expected_revision=loaded.revision, keep=100) is True,
            "save_with_ledger with the stored revision must save",
        )
        _check(await store.history(job) == [stale, entry], "a conditional save must append its entries")
    await plain.delete(job)


def check_state_store(factory: Factory[StateStore]) -> None:
    """Check a StateStore against the contract; raises AssertionError naming the broken rule.

    Covers revisions (each save bumps the stored one), unknown-field preservation, and the
    optional capabilities the store implements: ``save_if`` (success, conflict, absent
    document = revision 0) and ``create``. ``factory`` returns a fresh, empty store (or an
    awaitable of one); it is called inside the event loop the checks run on. Uses job ids starting with ``contract-``.
    """
    asyncio.run(acheck_state_store(factory))


async def acheck_execution_guard(factory: Factory[ExecutionGuard], *, exclusive: bool = True) -> None:
    """Async form of :func:`check_execution_guard`."""
    guard = await _make(factory)
    at = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    slot = ExecutionSlot("contract-job", "contract-resource", GuardScope.OCCURRENCE, at)
    try:
        lease = await guard.acquire(slot)
        _check(lease is not None, "acquire of a free slot must return a lease")
        assert lease is not None
        _check(
            (lease.job_id, lease.resource_id, lease.scope, lease.scheduled_at)
            == (slot.job_id, slot.resource_id, slot.scope, slot.scheduled_at),
            "the lease must describe the slot it was acquired for",
        )
        interval = guard.renew_interval(lease)
        _check(interval is None or interval > timedelta(0), "renew_interval must be None or positive")
        _check(await guard.renew(lease) is True, "renew of a held lease must return True")
        if not exclusive:
            released = await guard.release(lease)
            _check(released is not False, f"release of a held lease must return True or None, got {released!r}")
            return
        _check(await guard.acquire(slot) is None, "a second acquire of a held occurrence must be contended")
        later = ExecutionSlot(slot.job_id, slot.resource_id, slot.scope, at + timedelta(minutes=1))
        lease2 = await guard.acquire(later)
        _check(lease2 is not None, "a different occurrence of the same resource must be acquirable")
        assert lease2 is not None
        if lease.fencing_token is not None and lease2.fencing_token is not None:
            _check(lease2.fencing_token > lease.fencing_token, "fencing tokens must strictly increase")
        foreign = _with_token(lease, "not-the-owner")
        _check(await guard.renew(foreign) is False, "renew with a foreign token must return False")
        released = await guard.release(foreign)
        _check(released is not True, f"release with a foreign token must return False or None, got {released!r}")
        _check(await guard.renew(lease) is True, "release with a foreign token must not remove the lease")
        released = await guard.release(lease)
        _check(released is not False, f"release of a held lease must return True or None, got {released!r}")
        _check(await guard.acquire(slot) is None, "a released occurrence must stay taken (completed marker)")
        resource = ExecutionSlot(slot.job_id, slot.resource_id, GuardScope.RESOURCE, at + timedelta(minutes=2))
        _check(await guard.acquire(resource) is None, "a RESOURCE lease must wait for live occurrence leases")
        await guard.release(lease2)
        other_resource = ExecutionSlot(slot.job_id, "contract-other", GuardScope.RESOURCE, at)
        held = await guard.acquire(other_resource)
        _check(held is not None, "a RESOURCE lease on a free resource must be acquirable")
        assert held is not None
        blocked = ExecutionSlot(slot.job_id, "contract-other", GuardScope.OCCURRENCE, at + timedelta(minutes=5))
        _check(await guard.acquire(blocked) is None, "a RESOURCE lease must exclude occurrence leases")
        await guard.release(held)
        again = await guard.acquire(blocked)
        _check(again is not None, "releasing a RESOURCE lease must free the resource")
        assert again is not None
        await guard.release(again)
    finally:
        closer = getattr(guard, "aclose", None)
        if closer is not None:
            await closer()


def _with_token(lease: ExecutionLease, token: str) -> ExecutionLease:
    from dataclasses import replace

    return replace(lease, token=token)


def check_execution_guard(factory: Factory[ExecutionGuard], *, exclusive: bool = True) -> None:
    """Check an ExecutionGuard against the contract; raises AssertionError naming the rule.

    ``exclusive=False`` checks only the shape of the protocol (for guards that always grant,
    like ``NoopExecutionGuard``). Uses resources named ``contract-*``.
    """
    asyncio.run(acheck_execution_guard(factory, exclusive=exclusive))
