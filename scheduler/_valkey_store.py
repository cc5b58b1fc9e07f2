"""ValkeyStateStore: one JSON string key per job on Valkey (or Redis), via redis.asyncio.

Beside each state key ``K`` a small hash, the version key, holds the document's ``revision``
(bumped by every write) and ``schema_version``: ``{K}:version`` (the hash tag is the whole
state key, so both live in one cluster slot; a state key containing ``}`` uses ``K:version``).
Writes compare and bump it inside one script; they never read or decode the document itself
(only a document that has no version key yet, written before revisions existed or by hand, is
decoded once to check that it is JSON of a supported ``schema_version``).

The run ledger is a stream per job, ``{K}:ledger`` (same hash tag, same slot), one entry per
stream item (field ``e``: the entry as JSON), trimmed with ``MAXLEN ~``. The script that saves
a state appends the entries of the same decision, so the ledger costs no extra call there.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

# The JSON model of JobState loads with the store, not on the first save of a run (importing
# pydantic takes longer than a short interval, and the run has already read its start time).
from . import _state_json  # noqa: F401
from ._errors import ExecutionGuardError, InvalidJobError, InvalidJobKind, StoreError, StoreErrorKind, StoreOperation
from ._ledger import DEFAULT_LEDGER_LIMIT, LedgerEntry, LedgerFate, check_query, select
from ._resilient import ResilientStateStore
from ._state import SCHEMA_VERSION, JobState, StateDocumentError, parse_document
from ._time import to_timedelta
from ._valkey_common import (
    CLUSTER_SUFFIX,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    client_label,
    create_client,
    create_cluster_client,
    describe,
    drop_idle_connections,
    is_cluster_client,
    is_redis_error,
    normalize_url,
    redact_url,
    server_identity,
    split_cluster,
    store_error_kind,
    url_secrets,
)
from ._valkey_direct import ScriptConnection, direct_connection
from ._valkey_keys import StateKeys, cluster_state_keys, single_server_state_keys

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ._clock import Clock
    from ._guard import ExecutionGuard, ExecutionLease, ExecutionSlot
    from ._store import StateStore
    from ._valkey_combined import CombinedScripts
    from ._valkey_guard import ValkeyExecutionGuard
    from .events import SchedulerEvent

DEFAULT_PREFIX = "scheduler:valkey:job-state:"
#: Where the reference system kept states before the ``valkey:`` segment; read-only fallback.
LEGACY_PREFIX = "scheduler:job-state:"

# Lua functions shared by the store's scripts and the combined store+guard scripts.
# stored_revision(state, version, newest): the stored revision (0 when absent), read from the
# version hash. Only a document without one (written before version keys existed, or by hand)
# is type-checked and decoded, once: the first write adds the version key. The document itself
# is never read on a save otherwise. Errors, before anything is written, when the key is not a
# string or the document is of a newer schema_version than ``newest``. Scripts are not rolled
# back, so the checks come first.
STORE_LUA = """
local function stored_revision(state, version, newest)
  local meta = redis.call('HMGET', version, 'revision', 'schema_version')
  local schema = tonumber(meta[2])
  if schema == nil then
    local kind = redis.call('TYPE', state)['ok']
    if kind == 'none' then return 0 end
    if kind ~= 'string' then
      return nil, redis.error_reply('WRONGTYPE the key holds a ' .. kind .. ', not a JobState document')
    end
    local ok, doc = pcall(cjson.decode, redis.call('GET', state))
    if not ok or type(doc) ~= 'table' then
      return nil, redis.error_reply('CORRUPTDATA the stored value is not a JSON document; not overwriting it')
    end
    schema = tonumber(doc['schema_version']) or 1
  end
  if schema > tonumber(newest) then
    return nil, redis.error_reply('NEWERSCHEMA the stored document has schema_version ' .. schema ..
      ', newer than ' .. newest .. '; not overwriting it')
  end
  return tonumber(meta[1]) or 0
end
local function write_state(state, version, doc, schema, revision)
  redis.call('SET', state, doc)
  redis.call('HSET', version, 'revision', revision, 'schema_version', schema)
  return revision
end
-- The new revision, -1 when the stored one is not ``expected`` ('' = unconditional), or nil, err.
local function save_state(state, version, doc, schema, expected)
  local current, err = stored_revision(state, version, schema)
  if err then return nil, err end
  if expected ~= '' and current ~= tonumber(expected) then return -1 end
  return write_state(state, version, doc, schema, current + 1)
end
"""

# KEYS: state key, version key [, ledger stream]. ARGV: document, schema version, expected
# revision ('' for an unconditional save) [, entries to keep (0: no trim), entry...]. Returns
# the new revision, or -1 when the stored one differs (conflict). The entries are appended only
# once the state is written; a failing append (the ledger key is not a stream) does not undo
# the save: the reply is then {revision, error text}.
_WRITE = (
    STORE_LUA
    + """
local revision, err = save_state(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
if err then return err end
if revision == -1 then return -1 end
if #ARGV > 4 then
  local keep = tonumber(ARGV[4])
  for i = 5, #ARGV do
    local added
    if keep > 0 then
      added = redis.pcall('XADD', KEYS[3], 'MAXLEN', '~', keep, '*', 'e', ARGV[i])
    else
      added = redis.pcall('XADD', KEYS[3], '*', 'e', ARGV[i])
    end
    if type(added) == 'table' and added['err'] then return {revision, added['err']} end
  end
end
return revision
"""
)

# KEYS, ARGV[1..2] as for _WRITE; ARGV[3]: the revision to write (1 for a new job, the old
# revision when a layout migration copies a document). Writes only if the state key is absent
# and returns that revision; else returns {revision, stored document} (another instance was first).
_CREATE = (
    STORE_LUA
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return write_state(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3]) end
local current, err = stored_revision(KEYS[1], KEYS[2], ARGV[2])
if err then return err end
return {current, redis.call('GET', KEYS[1])}
"""
)


# KEYS: old state key, old version key. ARGV: the revision a migration copied. Deletes both
# only while they still hold it (a writer of the old layout after the copy keeps its document).
_DROP_IF = """
if (tonumber(redis.call('HGET', KEYS[2], 'revision')) or 0) ~= tonumber(ARGV[1]) then return 0 end
return redis.call('DEL', KEYS[1], KEYS[2])
"""


def version_key(state_key: str) -> str:
    """The hash beside a single-server ``state_key`` holding its revision and schema_version."""
    return f"{{{state_key}}}:version" if "}" not in state_key else f"{state_key}:version"


def _encode(entry: LedgerEntry) -> str:
    return entry.to_json()


def _decode_entry(fields: dict[Any, Any] | None) -> LedgerEntry:
    """A stream item's entry (the client may or may not decode replies to str)."""
    if not fields:
        raise ValueError("empty stream item")
    raw = fields.get(b"e", fields.get("e"))
    if raw is None:
        raise KeyError("e")
    return LedgerEntry.from_dict(json.loads(raw))


class ValkeyStateStore:
    """Stores each job's JobState as JSON under ``prefix + job_id`` (no TTL).

    Contract, beyond :class:`scheduler.StateStore` (it implements ``ConditionalStateStore``
    and ``CreatingStateStore``):

    * The version key ``{prefix + job_id}:version`` (a hash: ``revision``, ``schema_version``)
      sits beside the state key; every write bumps ``revision`` in the same script.
      ``save_if`` compares it there, atomically. A missing state key has revision 0.
    * With the default prefix, a load that finds nothing also reads the legacy key
      ``scheduler:job-state:<job_id>`` (documents written by the reference system load as
      they are, at revision 0); ``delete`` removes both keys and the version key. Writes
      touch only the new keys.
    * ``load`` is one round trip (the reads are pipelined), each write one script call
      (EVALSHA) and ``delete`` one round trip.
    * The run ledger (``RunLedger``): the stream ``{prefix + job_id}:ledger``;
      ``save_with_ledger`` appends in the write script itself. ``delete`` keeps it.
    * Errors raise :class:`scheduler.StoreError` naming the job id and the key. Connection
      refused/reset/timeouts and the transient replies LOADING, CLUSTERDOWN, MASTERDOWN,
      TRYAGAIN (and READONLY during a failover) are CONNECTION; undecodable JSON, a document
      that fails validation, names another job or has a newer ``schema_version``, and
      WRONGTYPE are DATA; wrong credentials and anything else are UNKNOWN.
    * Writes refuse (DATA) to replace a key that is not a string or a document of a newer
      ``schema_version``. They do not read a document that has a version key, so its
      corruption is found by ``load`` (the scheduler loads before it saves); a document
      without one (hand-written, or from before version keys) must be JSON. Repair or delete
      a refused key (``scheduler reset``).
    * Every call has a deadline of ``timeout`` (default 5 s): a hung server fails the call
      with CONNECTION in that time, never retried blindly (a retry would double the wait).
      A call cancelled by its caller leaves the client usable. A pooled connection that a
      server restart closed is replaced when the next call takes it.
    * A ``client`` passed in is used as is and is not closed by :meth:`aclose`; a client the
      store created from ``url`` has bounded connect/read timeouts and is closed.
    * Credentials in the URL never appear in ``repr``, messages or events.
    * ``url`` None means ``redis://127.0.0.1:6379/0``.
    * Valkey Cluster: ``cluster=True``, a ``valkey+cluster://`` URL or a ``RedisCluster``
      client. Keys then carry a hash tag derived from the job id (see ``_valkey_keys``):
      state ``prefix{tag}:<job_id>``, version ``prefix{tag}:version:<job_id>``. A load that
      finds no such key but a state in the single-server layout moves it, once: create the
      new key if absent (same document and revision), then delete the old keys if they still
      hold that revision. Two replicas may do this at once; both end up on the new key.
    * A single-server client redirected by a cluster node (MOVED/ASK) fails with UNKNOWN and
      a message that says to use a cluster URL.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        prefix: str = DEFAULT_PREFIX,
        connect_timeout: timedelta | float = DEFAULT_CONNECT_TIMEOUT,
        timeout: timedelta | float = DEFAULT_TIMEOUT,
        cluster: bool = False,
    ) -> None:
        if client is not None and url is not None:
            raise InvalidJobError(InvalidJobKind.OTHER, "pass either url or client to ValkeyStateStore, not both")
        if not isinstance(cluster, bool):
            raise TypeError(f"cluster must be a bool, got {cluster!r}")
        url, named_cluster = split_cluster(url)
        if not isinstance(prefix, str):
            raise InvalidJobError(InvalidJobKind.OTHER, f"prefix must be a string, got {prefix!r}")
        self.prefix = prefix
        self._owns_client = client is None
        self._timeout = to_timedelta(timeout, "timeout").total_seconds()
        if self._timeout <= 0:
            raise InvalidJobError(InvalidJobKind.OTHER, f"timeout must be positive, got {timeout!r}")
        self.cluster = cluster or named_cluster or is_cluster_client(client)
        if client is None:
            normalized = normalize_url(url)
            self._secrets = url_secrets(normalized)
            self._label = redact_url(normalized)
            if self.cluster:
                self._label = self._label.replace("://", CLUSTER_SUFFIX + "://", 1)
                self._client: Redis = create_cluster_client(normalized, connect_timeout, timeout)
            else:
                self._client = create_client(normalized, connect_timeout, timeout)
        else:
            self._secrets = ()
            self._label = client_label(client)
            self._client = client
        self.server = server_identity(self._client)
        self._write = self._client.register_script(_WRITE)
        self._create = self._client.register_script(_CREATE)
        self._drop_if = self._client.register_script(_DROP_IF)
        self._combined: CombinedScripts | None = None
        #: The scripts' own connection (see ``_valkey_direct``; None on a cluster).
        self.direct: ScriptConnection | None = None if self.cluster else direct_connection(self._client)

    @classmethod
    def resilient(
        cls,
        url: str | None = None,
        *,
        probe_interval: timedelta | float = timedelta(seconds=5),
        clock: Clock | None = None,
        observer: Callable[[SchedulerEvent], None] | None = None,
        **kwargs: Any,
    ) -> ResilientStateStore:
        """``ResilientStateStore(ValkeyStateStore(url, **kwargs))``: keeps running in an outage."""
        store = cls(url, **kwargs)
        return ResilientStateStore(store, probe_interval=probe_interval, clock=clock, observer=observer)

    @property
    def client(self) -> Redis:
        """The underlying redis.asyncio client (for tests and advanced use)."""
        return self._client

    def keys(self, job_id: str) -> StateKeys:
        """The state and version keys of ``job_id`` in this store's layout."""
        if self.cluster:
            return cluster_state_keys(self.prefix, job_id)
        return single_server_state_keys(self.prefix, job_id)

    def key(self, job_id: str) -> str:
        return self.keys(job_id).state

    def version_key(self, job_id: str) -> str:
        return self.keys(job_id).version

    def _old_layout(self, job_id: str) -> StateKeys | None:
        """Where a single-server deployment kept the job (moved on load in cluster mode)."""
        return single_server_state_keys(self.prefix, job_id) if self.cluster else None

    def ledger_key(self, job_id: str) -> str:
        return self.keys(job_id).ledger

    def _legacy_key(self, job_id: str) -> str | None:
        return LEGACY_PREFIX + job_id if self.prefix == DEFAULT_PREFIX else None

    def _error(self, kind: StoreErrorKind, op: StoreOperation, job_id: str, key: str, detail: str) -> StoreError:
        return StoreError(kind, op, job_id, f"{detail} (key {key!r} on {self._label})")

    @property
    def call_timeout(self) -> float:
        """Seconds one call may take (the deadline of every call)."""
        return self._timeout

    def failed_reply(self, job_id: str, key: str, reply: object) -> StoreError:
        return self._error(StoreErrorKind.DATA, StoreOperation.SAVE, job_id, key, f"unexpected reply {reply!r}")

    async def failed(
        self, exc: BaseException, op: StoreOperation, job_id: str, key: str, seconds: float | None = None
    ) -> StoreError:
        """The StoreError for a failed call (also for the combined scripts; ``seconds``: its deadline)."""
        return await self._failed(exc, op, job_id, key, seconds)

    # -- combined with a guard on the same server (see _valkey_combined) ------------------

    def shares_server_with(self, guard: ExecutionGuard, job_id: str, resource_id: str) -> bool:
        """True when ``guard`` is a Valkey guard on this server that one script can use with us."""
        from ._valkey_combined import shares_server

        return shares_server(self, guard, job_id, resource_id)

    def _combined_scripts(self) -> CombinedScripts:
        if self._combined is None:
            from ._valkey_combined import CombinedScripts

            self._combined = CombinedScripts(self, STORE_LUA)
        return self._combined

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
    ) -> tuple[bool, ExecutionLease | ExecutionGuardError | None, str | None]:
        """One script: ``save_if(state, expected_revision)``, then, only if it saved, acquire.

        ``timeout``: seconds the call may take, when shorter than the store's own deadline.
        """
        scripts = self._combined or self._combined_scripts()
        encoded = [_encode(e) for e in entries] if entries else []
        return await scripts.consume_and_acquire(state, expected_revision, _valkey(guard), slot, encoded, keep, timeout)

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
    ) -> tuple[bool, bool | ExecutionGuardError, str | None]:
        """One script: ``save_if(state, expected_revision)`` and release ``lease`` (either way)."""
        scripts = self._combined or self._combined_scripts()
        encoded = [_encode(e) for e in entries] if entries else []
        return await scripts.release_and_save(state, expected_revision, _valkey(guard), lease, encoded, keep, timeout)

    async def _failed(
        self, exc: BaseException, op: StoreOperation, job_id: str, key: str, seconds: float | None = None
    ) -> StoreError:
        """The StoreError for a failed call; drops idle pooled connections after a connection failure."""
        kind = store_error_kind(exc)
        if kind is StoreErrorKind.CONNECTION:
            await drop_idle_connections(self._client)
        detail = describe(exc, self._secrets)
        if isinstance(exc, TimeoutError) and not str(exc):
            detail = f"no reply within {self._timeout if seconds is None else seconds:g} s"
        return self._error(kind, op, job_id, key, detail)

    async def load(self, job_id: str) -> JobState | None:
        keys = self.keys(job_id)
        old = self._old_layout(job_id)
        legacy = self._legacy_key(job_id)
        try:
            async with asyncio.timeout(self._timeout):
                # One round trip for all: the fallback reads cost nothing extra on a miss.
                async with self._client.pipeline(transaction=False) as pipe:
                    pipe.get(keys.state)
                    pipe.hmget(keys.version, ["revision", "schema_version"])
                    if old is not None:
                        pipe.get(old.state)
                        pipe.hmget(old.version, ["revision", "schema_version"])
                    if legacy is not None:
                        pipe.get(legacy)
                    replies: list[Any] = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            if not is_redis_error(exc):
                raise
            raise await self._failed(exc, StoreOperation.LOAD, job_id, keys.state) from exc
        for reply in replies:
            if isinstance(reply, BaseException):
                raise await self._failed(reply, StoreOperation.LOAD, job_id, keys.state) from reply
        found = self._found(job_id, keys.state, replies[0], replies[1])
        if found is not None:
            return found
        if old is not None:
            moved = self._found(job_id, old.state, replies[2], replies[3])
            if moved is not None:
                return await self._migrate(moved, old)
        if legacy is not None and replies[-1] is not None:
            return self._decode(job_id, legacy, replies[-1], 0, StoreOperation.LOAD)
        return None

    def _found(self, job_id: str, key: str, raw: bytes | None, meta: list[Any]) -> JobState | None:
        if raw is None:
            return None
        revision, schema = meta
        if schema is not None and int(schema) > SCHEMA_VERSION:
            detail = f"the version key says schema_version {int(schema)}, newer than {SCHEMA_VERSION}"
            raise self._error(StoreErrorKind.DATA, StoreOperation.LOAD, job_id, key, detail)
        return self._decode(job_id, key, raw, int(revision or 0), StoreOperation.LOAD)

    async def _migrate(self, state: JobState, old: StateKeys) -> JobState:
        """Move a single-server document to the cluster layout: create if absent, then drop the old.

        Race-safe: the create is atomic on the new key, so replicas migrating at once agree on
        one document; the old keys go only while they still hold the revision that was copied.
        """
        stored = await self._create_state(state, state.revision)
        try:
            async with asyncio.timeout(self._timeout):
                if "}" in old.state:  # the old pair straddles two slots: no script can hold both
                    await self._client.delete(old.state)
                    await self._client.delete(old.version)
                else:
                    await self._drop_if(keys=[old.state, old.version], args=[str(state.revision)])
        except Exception as exc:
            if not is_redis_error(exc):
                raise
            raise await self._failed(exc, StoreOperation.SAVE, state.job_id, old.state) from exc
        return stored

    def _decode(self, job_id: str, key: str, raw: bytes | str, revision: int, op: StoreOperation) -> JobState:
        try:
            return parse_document(raw, job_id, revision)
        except StateDocumentError as exc:
            raise self._error(StoreErrorKind.DATA, op, job_id, key, str(exc)) from exc

    async def _run_write(
        self, state: JobState, expected: str, entries: Sequence[LedgerEntry] = (), keep: int = 0
    ) -> int:
        job_id = state.job_id
        state_keys = self.keys(job_id)
        key = state_keys.state
        keys = [key, state_keys.version]
        args = [state.to_json(), str(SCHEMA_VERSION), expected]
        if entries:
            keys.append(state_keys.ledger)
            args.append(str(int(keep)))
            args.extend(_encode(e) for e in entries)
        try:
            async with asyncio.timeout(self._timeout):
                direct = self.direct
                reply = await (
                    self._write(keys=keys, args=args) if direct is None else direct.run(self._write, keys, args)
                )
        except Exception as exc:
            if not is_redis_error(exc):
                raise
            raise await self._failed(exc, StoreOperation.SAVE, job_id, key) from exc
        if isinstance(reply, list):  # saved, but the ledger append failed
            detail = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
            raise self._error(StoreErrorKind.DATA, StoreOperation.LEDGER, job_id, state_keys.ledger, detail)
        return int(reply)

    async def save_with_ledger(
        self,
        state: JobState,
        entries: Sequence[LedgerEntry],
        *,
        expected_revision: int | None,
        keep: int,
    ) -> bool:
        """Save (conditionally unless ``expected_revision`` is None) and append, in one script.

        Raises ``StoreError`` with operation LEDGER when the state was saved but the entries
        could not be appended.
        """
        expected = "" if expected_revision is None else str(int(expected_revision))
        return await self._run_write(state, expected, entries, keep) >= 0

    async def append(self, entries: Sequence[LedgerEntry], *, keep: int = DEFAULT_LEDGER_LIMIT) -> None:
        """Append to each job's stream (one round trip, pipelined)."""
        if not entries:
            return
        first = entries[0].job_id
        try:
            async with asyncio.timeout(self._timeout):
                async with self._client.pipeline(transaction=False) as pipe:
                    for entry in entries:
                        trim = {"maxlen": keep, "approximate": True} if keep > 0 else {}
                        pipe.xadd(self.ledger_key(entry.job_id), {"e": _encode(entry)}, **trim)  # type: ignore[arg-type]
                    await pipe.execute()
        except Exception as exc:
            if not is_redis_error(exc):
                raise
            raise await self._failed(exc, StoreOperation.LEDGER, first, self.ledger_key(first)) from exc

    async def history(
        self,
        job_id: str,
        *,
        limit: int = 100,
        before: datetime | None = None,
        after: datetime | None = None,
        fates: Iterable[LedgerFate] | None = None,
    ) -> list[LedgerEntry]:
        """Reads the job's whole stream (at most about ``ledger_limit`` items) and filters it."""
        check_query(limit, before, after)
        key = self.ledger_key(job_id)
        try:
            async with asyncio.timeout(self._timeout):
                items = await self._client.xrange(key)
        except Exception as exc:
            if not is_redis_error(exc):
                raise
            raise await self._failed(exc, StoreOperation.LEDGER, job_id, key) from exc
        try:
            pairs = [(seq, _decode_entry(fields)) for seq, (_, fields) in enumerate(items or [])]
        except (ValueError, KeyError, TypeError) as exc:
            raise self._error(StoreErrorKind.DATA, StoreOperation.LEDGER, job_id, key, f"bad entry: {exc}") from exc
        return select(pairs, limit=limit, before=before, after=after, fates=fates)

    async def save(self, state: JobState) -> None:
        await self._run_write(state, "")

    async def save_if(self, state: JobState, expected_revision: int) -> bool:
        """Save only if the stored revision is ``expected_revision`` (0: no document)."""
        return await self._run_write(state, str(int(expected_revision))) >= 0

    async def create(self, state: JobState) -> JobState:
        """Save ``state`` only if the job has no state yet; return the state now stored.

        One script (write if absent, else read back), so instances starting together agree.
        """
        return await self._create_state(state, 1)

    async def _create_state(self, state: JobState, revision: int) -> JobState:
        keys = self.keys(state.job_id)
        key = keys.state
        args = [state.to_json(), str(SCHEMA_VERSION), str(revision)]
        try:
            async with asyncio.timeout(self._timeout):
                reply = await self._create(keys=[key, keys.version], args=args)
        except Exception as exc:
            if not is_redis_error(exc):
                raise
            raise await self._failed(exc, StoreOperation.SAVE, state.job_id, key) from exc
        if isinstance(reply, list):
            return self._decode(state.job_id, key, reply[1], int(reply[0]), StoreOperation.SAVE)
        return state.with_revision(int(reply))

    async def delete(self, job_id: str) -> None:
        keys = self.keys(job_id)
        key = keys.state
        old = self._old_layout(job_id)
        legacy = self._legacy_key(job_id)
        try:
            async with asyncio.timeout(self._timeout):
                # Separate DELs, not one multi-key DEL: the keys may live in different cluster slots.
                async with self._client.pipeline(transaction=False) as pipe:
                    for name in (keys.state, keys.version, *(() if old is None else (old.state, old.version))):
                        pipe.delete(name)
                    if legacy is not None:
                        pipe.delete(legacy)
                    await pipe.execute()
        except Exception as exc:
            if not is_redis_error(exc):
                raise
            raise await self._failed(exc, StoreOperation.DELETE, job_id, key) from exc

    async def aclose(self) -> None:
        if self.direct is not None:
            await self.direct.aclose()
        if self._owns_client:
            await self._client.aclose()

    def __repr__(self) -> str:
        return f"ValkeyStateStore({self._label!r}, prefix={self.prefix!r})"


def _valkey(guard: ExecutionGuard) -> ValkeyExecutionGuard:
    if type(guard) is _guard_class():  # the usual case, without isinstance's walk
        return guard
    if not isinstance(guard, _guard_class()):
        raise TypeError(f"the combined scripts need a ValkeyExecutionGuard, got {guard!r}")
    return guard


@functools.cache
def _guard_class() -> type[ValkeyExecutionGuard]:
    from ._valkey_guard import ValkeyExecutionGuard  # imports this module: not at the top

    return ValkeyExecutionGuard


def open_valkey_store(url: str) -> StateStore:
    """The store a command-line URL names: ``[resilient+](valkey|redis)[s][+cluster]://...``."""
    text = url.strip()
    if text.lower().startswith("resilient+"):
        return ValkeyStateStore.resilient(text[len("resilient+") :])
    return ValkeyStateStore(text)
