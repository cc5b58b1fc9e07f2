"""SqliteStateStore: the embedded, single-host persistent store (stdlib ``sqlite3``).

Durability: WAL journal with ``synchronous=FULL``. In WAL mode ``NORMAL`` only syncs at
checkpoints, so a power cut could lose the last commits; ``FULL`` fsyncs the WAL on every
commit, so a ``save`` that returned survives kill -9 *and* a power loss. One save per
occurrence makes the fsync cost irrelevant.

Threading: sqlite3 calls block, so every call runs on one dedicated worker thread that owns
the connection. One thread also serialises the calls, which is what a single connection
needs, and keeps the event loop free while SQLite waits on a lock or on the disk.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

# The JSON model of JobState loads with the store, not on the first save of a run (importing
# pydantic takes longer than a short interval, and the run has already read its start time).
from . import _state_json  # noqa: F401
from ._errors import StoreError, StoreErrorKind, StoreOperation
from ._ledger import DEFAULT_LEDGER_LIMIT, LedgerEntry, LedgerFate, check_query
from ._state import SCHEMA_VERSION as DOCUMENT_VERSION
from ._state import JobState, StateDocumentError, parse_document

T = TypeVar("T")

#: Version of the table layout below, kept in ``PRAGMA user_version``. Bump it (and add a
#: migration step in ``_migrate``) only for a breaking change: an older release refuses a
#: newer user_version. Additive columns keep it and are added when missing (``_ADDITIVE``).
SCHEMA_VERSION = 1
#: How long a statement waits for another process's write lock before failing CONNECTION.
BUSY_TIMEOUT_MS = 5000

_CREATE = """
CREATE TABLE IF NOT EXISTS job_state (
    job_id     TEXT PRIMARY KEY NOT NULL,
    state      TEXT NOT NULL,
    revision   INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) WITHOUT ROWID
"""
#: The run ledger: one row per entry, in append order (``seq``). Adding it is additive: an
#: older release never names the table, so it still opens the file.
_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS run_ledger (
    seq          INTEGER PRIMARY KEY,
    job_id       TEXT NOT NULL,
    scheduled_us INTEGER NOT NULL,
    last_us      INTEGER NOT NULL,
    fate         TEXT NOT NULL,
    entry        TEXT NOT NULL
)
"""
_CREATE_LEDGER_INDEX = "CREATE INDEX IF NOT EXISTS run_ledger_job ON run_ledger (job_id, seq)"
_INSERT_ENTRY = "INSERT INTO run_ledger (job_id, scheduled_us, last_us, fate, entry) VALUES (?, ?, ?, ?, ?)"
# Keeps the newest ``keep`` rows of a job (by append order).
_TRIM = (
    "DELETE FROM run_ledger WHERE job_id = ? AND seq <= "
    "(SELECT seq FROM run_ledger WHERE job_id = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)"
)
#: Columns added after the first layout: (name, definition). An older release never names
#: them, so it still reads and writes the table (its writes just leave ``revision`` alone).
_ADDITIVE = (("revision", "INTEGER NOT NULL DEFAULT 0"),)
_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
#: True when the stored document may be written over: not of a newer schema_version.
_WRITABLE = f"coalesce(json_extract(job_state.state, '$.schema_version'), 1) <= {DOCUMENT_VERSION}"

# Messages that mean "try again later / cannot reach the file", not "the data is bad".
_TRANSIENT = ("locked", "busy", "unable to open", "disk i/o", "readonly", "read-only", "full")
_CORRUPT = ("malformed", "not a database", "corrupt")


class SqliteStateStore:
    """Persists each job's ``JobState`` as JSON in one SQLite row keyed by ``job_id``.

    The row's ``revision`` column counts its writes (conditional saves compare it in the
    ``UPDATE``'s WHERE). A row whose document has a newer ``schema_version`` is never written
    over (checked in the same statement). Implements ``ConditionalStateStore``,
    ``CreatingStateStore`` and the run ledger (``RunLedger``; table ``run_ledger`` in the
    same file): ``save_with_ledger`` writes the state and the entries in one transaction.
    ``delete`` keeps a job's ledger.

    ``path`` is created on first use (parent directories included). Several processes may
    share one file; SQLite's locking serialises their writes. ``":memory:"`` gives a private
    in-memory database (useful in tests).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path) if str(path) == ":memory:" else str(Path(path).expanduser())
        # One worker thread owns the connection: sqlite3 objects must stay on one thread.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scheduler-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"SqliteStateStore({self.path!r})"

    # -- worker-thread side -------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so nothing is left open.
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if self.path != ":memory:":
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
                if mode is None or str(mode[0]).lower() != "wal":
                    raise sqlite3.OperationalError(f"cannot enable WAL journal (got {mode!r})")
            conn.execute("PRAGMA synchronous = FULL")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise _NewerSchema(f"database schema version {version} is newer than supported {SCHEMA_VERSION}")
        if version == SCHEMA_VERSION and not SqliteStateStore._missing_columns(conn) and _has_ledger(conn):
            return
        # IMMEDIATE takes the write lock first, so two processes cannot both migrate.
        conn.execute("BEGIN IMMEDIATE")
        try:
            if int(conn.execute("PRAGMA user_version").fetchone()[0]) < 1:
                conn.execute(_CREATE)
            for name, definition in SqliteStateStore._missing_columns(conn):
                conn.execute(f"ALTER TABLE job_state ADD COLUMN {name} {definition}")
            conn.execute(_CREATE_LEDGER)
            conn.execute(_CREATE_LEDGER_INDEX)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _missing_columns(conn: sqlite3.Connection) -> list[tuple[str, str]]:
        present = {str(row[1]) for row in conn.execute("PRAGMA table_info(job_state)")}
        if not present:
            return []  # no table yet: created below with every column
        return [(name, definition) for name, definition in _ADDITIVE if name not in present]

    def _load(self, job_id: str) -> tuple[str, int] | None:
        row = self._connect().execute("SELECT state, revision FROM job_state WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    def _refuse_newer(self, conn: sqlite3.Connection, job_id: str) -> None:
        """Raise when the stored document is of a newer schema_version (nothing was written)."""
        row = conn.execute(f"SELECT {_WRITABLE} FROM job_state WHERE job_id = ?", (job_id,)).fetchone()
        if row is not None and not row[0]:
            raise _NewerSchema(f"stored state has a schema_version newer than {DOCUMENT_VERSION}; not overwriting it")

    def _save(self, job_id: str, text: str) -> None:
        conn = self._connect()
        # A single autocommit statement is its own transaction; it is durable when it returns.
        written = conn.execute(
            "INSERT INTO job_state (job_id, state, revision) VALUES (?, ?, 1) "
            f"ON CONFLICT (job_id) DO UPDATE SET state = excluded.state, revision = job_state.revision + 1, "
            f"updated_at = {_NOW} WHERE {_WRITABLE}",
            (job_id, text),
        ).rowcount
        if not written:
            self._refuse_newer(conn, job_id)

    def _save_if(self, job_id: str, text: str, expected: int) -> bool:
        conn = self._connect()
        # One statement: the compare and the write are atomic (the write lock is held). A row
        # written before revisions were counted has revision 0, like an absent one.
        updated = conn.execute(
            f"UPDATE job_state SET state = ?, revision = revision + 1, updated_at = {_NOW} "
            f"WHERE job_id = ? AND revision = ? AND {_WRITABLE}",
            (text, job_id, expected),
        ).rowcount
        if not updated and expected == 0:
            updated = conn.execute(
                "INSERT INTO job_state (job_id, state, revision) VALUES (?, ?, 1) ON CONFLICT (job_id) DO NOTHING",
                (job_id, text),
            ).rowcount
        if not updated:
            self._refuse_newer(conn, job_id)
        return bool(updated)

    def _save_with_ledger(
        self, job_id: str, text: str, expected: int | None, rows: list[tuple[str, int, int, str, str]], keep: int
    ) -> tuple[bool, str | None]:
        """One transaction: the state (conditionally when ``expected`` is set), then the entries.

        Returns (saved, ledger error). A failing ledger insert is rolled back to its savepoint
        and the state is still committed: the ledger never fails a save.
        """
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if expected is None:
                self._save(job_id, text)
                saved = True
            else:
                saved = self._save_if(job_id, text, expected)
            problem = None
            if saved:
                conn.execute("SAVEPOINT ledger")
                try:
                    self._insert_entries(conn, rows, keep)
                    conn.execute("RELEASE ledger")
                except sqlite3.Error as exc:
                    conn.execute("ROLLBACK TO ledger")
                    conn.execute("RELEASE ledger")
                    problem = str(exc)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return saved, problem

    @staticmethod
    def _insert_entries(conn: sqlite3.Connection, rows: list[tuple[str, int, int, str, str]], keep: int) -> None:
        conn.executemany(_INSERT_ENTRY, rows)
        if keep > 0:
            for job_id in {row[0] for row in rows}:
                conn.execute(_TRIM, (job_id, job_id, keep))

    def _append(self, rows: list[tuple[str, int, int, str, str]], keep: int) -> None:
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._insert_entries(conn, rows, keep)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _history(
        self, job_id: str, limit: int, before: int | None, after: int | None, fates: list[str] | None
    ) -> list[str]:
        sql = "SELECT entry FROM run_ledger WHERE job_id = ?"
        args: list[object] = [job_id]
        if before is not None:
            sql += " AND scheduled_us <= ?"
            args.append(before)
        if after is not None:
            sql += " AND last_us >= ?"
            args.append(after)
        if fates is not None:
            sql += f" AND fate IN ({','.join('?' * len(fates))})"
            args.extend(fates)
        sql += " ORDER BY scheduled_us DESC, seq DESC LIMIT ?"
        args.append(limit)
        return [str(row[0]) for row in self._connect().execute(sql, args)]

    def _create(self, job_id: str, text: str) -> tuple[str, int] | None:
        conn = self._connect()
        inserted = conn.execute(
            "INSERT INTO job_state (job_id, state, revision) VALUES (?, ?, 1) ON CONFLICT (job_id) DO NOTHING",
            (job_id, text),
        ).rowcount
        return None if inserted else self._load(job_id)

    def _delete(self, job_id: str) -> None:
        self._connect().execute("DELETE FROM job_state WHERE job_id = ?", (job_id,))

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- event-loop side ----------------------------------------------------------------

    async def _call(self, operation: StoreOperation, job_id: str, fn: Callable[[], T]) -> T:
        if self._closed:
            raise StoreError(StoreErrorKind.UNKNOWN, operation, job_id, f"{self!r} is closed")
        loop = asyncio.get_running_loop()
        try:
            # Not shielded on purpose: a cancelled caller stops waiting, but the worker still
            # finishes the statement, so a save is either fully committed or not at all.
            return await loop.run_in_executor(self._executor, fn)
        except _NewerSchema as exc:
            raise StoreError(StoreErrorKind.DATA, operation, job_id, f"{self.path}: {exc}") from exc
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(_classify(exc), operation, job_id, f"{self.path}: {exc}") from exc

    async def load(self, job_id: str) -> JobState | None:
        row = await self._call(StoreOperation.LOAD, job_id, lambda: self._load(job_id))
        return None if row is None else self._decode(job_id, row, StoreOperation.LOAD)

    def _decode(self, job_id: str, row: tuple[str, int], operation: StoreOperation) -> JobState:
        try:
            return parse_document(row[0], job_id, row[1])
        except StateDocumentError as exc:
            raise StoreError(StoreErrorKind.DATA, operation, job_id, f"{self.path}: {exc}") from exc

    async def save(self, state: JobState) -> None:
        text = state.to_json()
        await self._call(StoreOperation.SAVE, state.job_id, lambda: self._save(state.job_id, text))

    async def save_if(self, state: JobState, expected_revision: int) -> bool:
        """Save only over the stored revision ``expected_revision`` (0: no row yet)."""
        text = state.to_json()
        job_id = state.job_id
        return await self._call(StoreOperation.SAVE, job_id, lambda: self._save_if(job_id, text, expected_revision))

    async def create(self, state: JobState) -> JobState:
        """Save ``state`` only if the job has no row yet; return the state now stored."""
        text = state.to_json()
        existing = await self._call(StoreOperation.SAVE, state.job_id, lambda: self._create(state.job_id, text))
        if existing is None:
            return state.with_revision(1)
        return self._decode(state.job_id, existing, StoreOperation.SAVE)

    async def delete(self, job_id: str) -> None:
        await self._call(StoreOperation.DELETE, job_id, lambda: self._delete(job_id))

    async def save_with_ledger(
        self,
        state: JobState,
        entries: Sequence[LedgerEntry],
        *,
        expected_revision: int | None,
        keep: int,
    ) -> bool:
        """Save (conditionally unless ``expected_revision`` is None) and append, in one transaction.

        Raises ``StoreError`` with operation LEDGER when the state was saved but the entries
        could not be written.
        """
        text, job_id, rows = state.to_json(), state.job_id, _rows(entries)
        saved, problem = await self._call(
            StoreOperation.SAVE, job_id, lambda: self._save_with_ledger(job_id, text, expected_revision, rows, keep)
        )
        if problem is not None:
            raise StoreError(StoreErrorKind.UNKNOWN, StoreOperation.LEDGER, job_id, f"{self.path}: {problem}")
        return saved

    async def append(self, entries: Sequence[LedgerEntry], *, keep: int = DEFAULT_LEDGER_LIMIT) -> None:
        if not entries:
            return
        rows = _rows(entries)
        await self._call(StoreOperation.LEDGER, entries[0].job_id, lambda: self._append(rows, keep))

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
        wanted = None if fates is None else sorted({LedgerFate(f).value for f in fates})
        lo, hi = None if after is None else _micros(after), None if before is None else _micros(before)
        texts = await self._call(StoreOperation.LEDGER, job_id, lambda: self._history(job_id, limit, hi, lo, wanted))
        try:
            return [LedgerEntry.from_dict(json.loads(text)) for text in texts]
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(
                StoreErrorKind.DATA, StoreOperation.LEDGER, job_id, f"{self.path}: bad entry: {exc}"
            ) from exc

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        finally:
            self._executor.shutdown(wait=False)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(instant: datetime) -> int:
    """Microseconds since the epoch: integers sort exactly, unlike formatted text."""
    delta = instant - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def _rows(entries: Sequence[LedgerEntry]) -> list[tuple[str, int, int, str, str]]:
    return [
        (
            e.job_id,
            _micros(e.scheduled_at),
            _micros(e.last_scheduled_at),
            e.fate.value,
            e.to_json(),
        )
        for e in entries
    ]


def _has_ledger(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'run_ledger'").fetchone()
    return row is not None


class _NewerSchema(Exception):
    """The file was written by a newer version of this library."""


def _classify(exc: BaseException) -> StoreErrorKind:
    text = str(exc).lower()
    if isinstance(exc, OSError) or any(word in text for word in _TRANSIENT):
        return StoreErrorKind.CONNECTION
    if isinstance(exc, sqlite3.DatabaseError) and any(word in text for word in _CORRUPT):
        return StoreErrorKind.DATA
    return StoreErrorKind.UNKNOWN
