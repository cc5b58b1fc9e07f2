"""Document versions: revisions, unknown fields kept, newer schema refused, invalid counters."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from scheduler import InMemoryStateStore, JobState, SqliteStateStore, StoreError, StoreErrorKind
from scheduler._state import SCHEMA_VERSION, StateDocumentError, parse_document
from scheduler._store import ConditionalStateStore, CreatingStateStore

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)

#: The table as the first release created it (before the revision column).
FIRST_LAYOUT = """
CREATE TABLE job_state (
    job_id     TEXT PRIMARY KEY NOT NULL,
    state      TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) WITHOUT ROWID;
PRAGMA user_version = 1;
"""


def doc(**fields: object) -> str:
    return json.dumps({"job_id": "v", "trigger_count": 4, **fields})


def test_unknown_fields_survive_evolve_copy_and_json() -> None:
    state = JobState.model_validate_json(doc(added_later={"a": [1, 2]}))
    assert state.model_extra == {"added_later": {"a": [1, 2]}}
    for derived in (state.model_copy(update={"trigger_count": 5}), state.model_copy(update={"trigger_count": 5})):
        assert json.loads(derived.to_json())["added_later"] == {"a": [1, 2]}
        assert JobState.from_json(derived.to_json()).model_extra == {"added_later": {"a": [1, 2]}}


def test_revision_is_not_part_of_the_document_or_equality() -> None:
    state = JobState(job_id="v", trigger_count=1).with_revision(7)
    assert "revision" not in json.loads(state.to_json())
    assert state == JobState(job_id="v", trigger_count=1)
    assert state.model_copy(update={"trigger_count": 2}).revision == 7


@pytest.mark.parametrize("field", ["trigger_count", "consecutive_failures", "revision"])
def test_negative_counters_are_invalid(field: str) -> None:
    with pytest.raises(ValidationError):
        JobState(job_id="v", **{field: -1})  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["trigger_count", "consecutive_failures"])
def test_negative_counters_in_a_document_are_invalid_data(field: str) -> None:
    with pytest.raises(StateDocumentError, match=field):
        parse_document(doc(**{field: -3}), "v")


def test_a_newer_schema_is_named_first() -> None:
    with pytest.raises(StateDocumentError, match=f"schema_version {SCHEMA_VERSION + 1} is newer"):
        parse_document(doc(schema_version=SCHEMA_VERSION + 1, trigger_count="not even a number"), "v")
    with pytest.raises(ValidationError):
        JobState(job_id="v", schema_version=SCHEMA_VERSION + 1)


@pytest.mark.parametrize("make", [InMemoryStateStore, lambda: SqliteStateStore(":memory:")])
async def test_stores_have_the_capabilities(make: object) -> None:
    store = make()  # type: ignore[operator]
    assert isinstance(store, ConditionalStateStore)
    assert isinstance(store, CreatingStateStore)
    await store.aclose()


def seed(path: Path, text: str, revision: int | None = None) -> None:
    conn = sqlite3.connect(path)
    try:
        if revision is None:
            conn.execute("INSERT OR REPLACE INTO job_state (job_id, state) VALUES ('v', ?)", (text,))
        else:
            conn.execute(
                "INSERT OR REPLACE INTO job_state (job_id, state, revision) VALUES ('v', ?, ?)", (text, revision)
            )
        conn.commit()
    finally:
        conn.close()


def stored_text(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return str(conn.execute("SELECT state FROM job_state WHERE job_id = 'v'").fetchone()[0])
    finally:
        conn.close()


async def test_sqlite_refuses_and_keeps_a_newer_document(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SqliteStateStore(path)
    await store.save(JobState(job_id="other"))  # creates the table
    newer = doc(schema_version=SCHEMA_VERSION + 1, shape="different")
    seed(path, newer, revision=5)
    with pytest.raises(StoreError) as caught:
        await store.load("v")
    assert caught.value.kind is StoreErrorKind.DATA
    assert f"schema_version {SCHEMA_VERSION + 1}" in str(caught.value)
    mine = JobState(job_id="v", trigger_count=9)
    for attempt in (store.save(mine), store.save_if(mine, 5), store.save_if(mine, 0), store.create(mine)):
        with pytest.raises(StoreError) as caught:
            await attempt
        assert caught.value.kind is StoreErrorKind.DATA
    assert stored_text(path) == newer
    await store.aclose()


async def test_sqlite_preserves_unknown_fields_on_save(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SqliteStateStore(path)
    await store.save(JobState(job_id="other"))
    seed(path, doc(added_later=[1, "x"]), revision=3)
    loaded = await store.load("v")
    assert loaded is not None
    assert loaded.revision == 3
    assert await store.save_if(loaded.model_copy(update={"trigger_count": 5}), 3)
    assert json.loads(stored_text(path))["added_later"] == [1, "x"]
    await store.aclose()


async def test_sqlite_adds_the_revision_column_to_a_first_layout_database(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(FIRST_LAYOUT)
    conn.execute("INSERT INTO job_state (job_id, state) VALUES ('v', ?)", (doc(),))
    conn.commit()
    conn.close()
    store = SqliteStateStore(path)
    loaded = await store.load("v")
    assert loaded is not None
    assert (loaded.trigger_count, loaded.revision) == (4, 0)
    # A row from before revisions has revision 0, so the reader's conditional save works once.
    assert await store.save_if(loaded.model_copy(update={"trigger_count": 5}), 0)
    assert not await store.save_if(loaded.model_copy(update={"trigger_count": 6}), 0)
    await store.save(loaded.model_copy(update={"trigger_count": 7}))
    assert (await store.load("v")).revision == 2  # type: ignore[union-attr]
    await store.aclose()
    # What an older release checks when it opens the file: the same user_version and its columns.
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        conn.execute("INSERT INTO job_state (job_id, state) VALUES ('w', '{}') ON CONFLICT (job_id) DO NOTHING")
        assert conn.execute("SELECT state FROM job_state WHERE job_id = 'v'").fetchone() is not None
    finally:
        conn.close()


async def test_sqlite_save_if_ignores_the_state_revision(tmp_path: Path) -> None:
    store = SqliteStateStore(tmp_path / "s.db")
    assert await store.save_if(JobState(job_id="v").with_revision(40), 0)
    assert (await store.load("v")).revision == 1  # type: ignore[union-attr]
    await store.aclose()
