"""Ledger details per store: the resilient buffer, SQLite files of an older layout, a broken table."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest

from scheduler import (
    Interval,
    Job,
    JobState,
    LedgerEntry,
    LedgerFate,
    ResilientStateStore,
    Scheduler,
    SqliteStateStore,
    StoreError,
    StoreOperation,
)
from scheduler import _resilient as resilient_module
from scheduler.events import SchedulerEvent, StoreDegraded, StoreRecovered
from scheduler.testing import FakeClock, RecordingObserver

from .conftest import T0
from .test_resilient import FlakyStore, settle

S = timedelta(seconds=1)


class FlakyLedger(FlakyStore):
    """FlakyStore whose ledger fails with it."""

    async def append(self, entries: Sequence[LedgerEntry], *, keep: int = 1000) -> None:
        self._check(StoreOperation.LEDGER, entries[0].job_id)
        await super().append(entries, keep=keep)


def _entry(job: str, seconds: int) -> LedgerEntry:
    return LedgerEntry(job_id=job, scheduled_at=T0 + seconds * S, fate=LedgerFate.SUCCESS, attempts=1)


async def test_resilient_buffers_entries_and_writes_them_back(clock: FakeClock) -> None:
    clock.auto_advance = False
    primary = FlakyLedger()
    events: list[SchedulerEvent] = []
    store = ResilientStateStore(primary, probe_interval=5 * S, clock=clock, observer=events.append)
    await store.append([_entry("j", 0)])
    primary.down = True
    await store.append([_entry("j", 10)])
    await store.save_with_ledger(JobState(job_id="j"), [_entry("j", 20)], expected_revision=None, keep=1000)
    assert store.is_degraded
    assert [e.operation for e in events if isinstance(e, StoreDegraded)] == [StoreOperation.LEDGER]
    # While degraded, history shows what is buffered (the primary cannot be read).
    assert [e.scheduled_at for e in await store.history("j")] == [T0 + 20 * S, T0 + 10 * S]
    assert [e.scheduled_at for e in await primary.history("j")] == [T0]
    primary.down = False
    clock.advance(5 * S)
    await settle(store, clock)
    assert not store.is_degraded
    merged = await store.history("j")
    assert [e.scheduled_at for e in merged] == [T0 + 20 * S, T0 + 10 * S, T0]
    assert [e.scheduled_at for e in await primary.history("j")] == [T0 + 20 * S, T0 + 10 * S, T0]
    assert any(isinstance(e, StoreRecovered) for e in events)


async def test_resilient_buffer_is_bounded(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resilient_module, "MAX_BUFFERED_ENTRIES", 5)
    clock.auto_advance = False
    primary = FlakyLedger()
    store = ResilientStateStore(primary, probe_interval=S, clock=clock)
    primary.down = True
    await store.append([_entry("b", i) for i in range(12)])
    primary.down = False
    clock.advance(S)
    await settle(store, clock)
    assert not store.is_degraded
    kept = await primary.history("b")
    assert [e.scheduled_at for e in kept] == [T0 + i * S for i in range(11, 6, -1)]  # the newest five


async def test_resilient_without_a_primary_ledger_keeps_one_in_memory(clock: FakeClock) -> None:
    class Plain:
        def __init__(self) -> None:
            self.states: dict[str, JobState] = {}

        async def load(self, job_id: str) -> JobState | None:
            return self.states.get(job_id)

        async def save(self, state: JobState) -> None:
            self.states[state.job_id] = state

        async def delete(self, job_id: str) -> None:
            self.states.pop(job_id, None)

        async def aclose(self) -> None:
            return None

    store = ResilientStateStore(Plain(), clock=clock)
    job = Job("plain", Interval(10), lambda ctx: None, max_runs=3)
    await Scheduler(store=store, clock=clock).run(job)
    assert [e.fate for e in await store.history("plain")] == [LedgerFate.SUCCESS] * 3


async def test_sqlite_file_of_an_older_layout_gains_the_ledger(tmp_path: Path) -> None:
    """A file written before the ledger existed (no run_ledger table) opens, keeps its state."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE job_state (job_id TEXT PRIMARY KEY NOT NULL, state TEXT NOT NULL, "
        "revision INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL DEFAULT '') WITHOUT ROWID"
    )
    conn.execute("INSERT INTO job_state (job_id, state, revision) VALUES ('o', ?, 3)", ('{"job_id":"o"}',))
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    store = SqliteStateStore(path)
    try:
        loaded = await store.load("o")
        assert loaded is not None
        assert loaded.revision == 3
        await store.append([_entry("o", 0)])
        assert len(await store.history("o")) == 1
    finally:
        await store.aclose()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1  # additive: the version stays
    conn.close()


async def test_sqlite_broken_ledger_table_never_stops_the_job(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStateStore(path)
    events = RecordingObserver()
    clock = FakeClock(T0)
    try:
        await store.load("warm")  # creates the tables
        conn = sqlite3.connect(path)
        conn.execute("DROP TABLE run_ledger")
        conn.commit()
        conn.close()
        job = Job("broken", Interval(10), lambda ctx: None, max_runs=3)
        report = await Scheduler(store=store, clock=clock, observer=events).run(job)
        assert report.state.trigger_count == 3
        assert await store.load("broken") == report.state
        degraded = events.of_type(StoreDegraded)
        assert degraded
        assert all(e.operation is StoreOperation.LEDGER for e in degraded)
        with pytest.raises(StoreError) as info:
            await store.history("broken")
        assert info.value.operation is StoreOperation.LEDGER
    finally:
        await store.aclose()
