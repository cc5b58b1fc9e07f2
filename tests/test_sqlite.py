"""SqliteStateStore: contract, durability across processes, schema and error classification."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from scheduler import JobState, SqliteStateStore, StoreError, StoreErrorKind, StoreOperation
from scheduler._sqlite import SCHEMA_VERSION
from scheduler.testing import acheck_state_store, check_state_store

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def test_contract_on_file(tmp_path: Path) -> None:
    check_state_store(lambda: SqliteStateStore(tmp_path / "state.db"))


def test_contract_in_memory() -> None:
    check_state_store(lambda: SqliteStateStore(":memory:"))


async def test_contract_inside_running_loop(tmp_path: Path) -> None:
    await acheck_state_store(lambda: SqliteStateStore(tmp_path / "a" / "b" / "state.db"))


async def test_creates_parent_dirs_wal_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "state.db"
    store = SqliteStateStore(path)
    await store.save(JobState(job_id="j", next_run_at=T0))
    await store.aclose()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        conn.close()


async def test_state_visible_to_a_second_store_on_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    first, second = SqliteStateStore(path), SqliteStateStore(path)
    state = JobState(job_id="shared", trigger_count=4, next_run_at=T0)
    await first.save(state)
    assert await second.load("shared") == state
    await second.delete("shared")
    assert await first.load("shared") is None
    await first.aclose()
    await second.aclose()


async def test_work_runs_off_the_event_loop_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SqliteStateStore(tmp_path / "state.db")
    seen: list[str] = []
    original = store._save

    def spy(job_id: str, text: str) -> None:
        seen.append(threading.current_thread().name)
        original(job_id, text)

    monkeypatch.setattr(store, "_save", spy)
    await store.save(JobState(job_id="j"))
    await store.aclose()
    assert seen
    assert seen[0].startswith("scheduler-sqlite")


async def test_undecodable_row_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStateStore(path)
    await store.save(JobState(job_id="bad"))
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE job_state SET state = '{not json' WHERE job_id = 'bad'")
    conn.close()
    with pytest.raises(StoreError) as info:
        await store.load("bad")
    await store.aclose()
    assert info.value.kind is StoreErrorKind.DATA
    assert info.value.operation is StoreOperation.LOAD
    assert "bad" in str(info.value)


async def test_newer_schema_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    store = SqliteStateStore(path)
    with pytest.raises(StoreError) as info:
        await store.load("j")
    await store.aclose()
    assert info.value.kind is StoreErrorKind.DATA
    assert "newer" in str(info.value)


async def test_not_a_database_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not sqlite at all, just text" * 200)
    store = SqliteStateStore(path)
    with pytest.raises(StoreError) as info:
        await store.save(JobState(job_id="j"))
    await store.aclose()
    assert info.value.kind is StoreErrorKind.DATA


async def test_unopenable_path_is_a_connection_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = SqliteStateStore(blocker / "sub" / "state.db")  # parent is a regular file
    with pytest.raises(StoreError) as info:
        await store.load("j")
    await store.aclose()
    assert info.value.kind is StoreErrorKind.CONNECTION
    assert info.value.job_id == "j"


async def test_locked_database_is_a_connection_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("scheduler._sqlite.BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "state.db"
    store = SqliteStateStore(path)
    await store.save(JobState(job_id="j"))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        other = SqliteStateStore(path)
        with pytest.raises(StoreError) as info:
            await other.save(JobState(job_id="j", trigger_count=2))
        await other.aclose()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    await store.aclose()
    assert info.value.kind is StoreErrorKind.CONNECTION
    assert info.value.operation is StoreOperation.SAVE


async def test_closed_store_raises(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "state.db")
    await store.aclose()
    await store.aclose()  # idempotent
    with pytest.raises(StoreError):
        await store.load("j")


async def test_concurrent_saves_are_serialised(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "state.db")
    await asyncio.gather(*(store.save(JobState(job_id=f"j{i}", trigger_count=i)) for i in range(50)))
    loaded = await asyncio.gather(*(store.load(f"j{i}") for i in range(50)))
    await store.aclose()
    assert [s.trigger_count if s else None for s in loaded] == list(range(50))


def test_committed_save_survives_sigkill(tmp_path: Path) -> None:
    """A child process saves, reports, then blocks; we SIGKILL it and read the file."""
    path = tmp_path / "state.db"
    script = textwrap.dedent(
        f"""
        import asyncio, sys, time
        from scheduler import JobState, SqliteStateStore

        async def main():
            store = SqliteStateStore({str(path)!r})
            for i in range(1, 6):
                await store.save(JobState(job_id="durable", trigger_count=i))
            print("saved", flush=True)
            time.sleep(60)

        asyncio.run(main())
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "saved"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if proc.stdout:
            proc.stdout.close()

    async def read() -> JobState | None:
        store = SqliteStateStore(path)
        try:
            return await store.load("durable")
        finally:
            await store.aclose()

    state = asyncio.run(read())
    assert state is not None
    assert state.trigger_count == 5


async def test_create_is_save_if_absent(tmp_path: Path) -> None:
    """create() inserts only when the job has no row and returns the stored state otherwise."""
    store = SqliteStateStore(tmp_path / "c.db")
    try:
        first = JobState(job_id="c", trigger_count=1)
        assert await store.create(first) == first
        assert await store.create(JobState(job_id="c", trigger_count=2)) == first
        assert await store.load("c") == first
    finally:
        await store.aclose()
