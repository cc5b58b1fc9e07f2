"""One script before a run, one after: the store and the guard on one Valkey server.

When a ``ValkeyStateStore`` and a ``ValkeyExecutionGuard`` share a server, the conditional
consume-save, the lease acquire and the fence increment run in one script, and the lease
release and the outcome save in another: two client calls per guarded run instead of four.
The acquire runs only when the save succeeded; a failure of the guard's part (a key of the
wrong type) is caught inside the script, after the save, and reported as a guard error so
that the caller can retry the acquire alone under its guard error policy.

They share a server when host, port, db and user match (and both or neither are in cluster
mode), or when the guard was built with ``store=``. On a cluster every key must sit in one
hash slot, so the combined scripts are used there only when the resource id is the job id
(the hash tag of both is derived from it); otherwise the per-component calls are used.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ._errors import ExecutionGuardError, ExecutionGuardErrorKind, StoreOperation
from ._guard import ExecutionLease, ExecutionSlot
from ._state import SCHEMA_VERSION, JobState
from ._valkey_common import is_redis_error
from ._valkey_guard import GUARD_LUA, ValkeyExecutionGuard

if TYPE_CHECKING:
    from ._valkey_store import ValkeyStateStore

# Lua's pcall gives redis.call errors as a table with an 'err' field.
_ERROR_TEXT = """
local function error_text(e)
  if type(e) == 'table' and e.err then return e.err end
  return tostring(e)
end
-- Append ARGV[first+1..] to the ledger stream, trimmed to ARGV[first] entries (0: no trim).
-- '' when done (or nothing to append), else the error text: the save stands either way.
local function append_ledger(stream, first)
  if #ARGV <= first then return '' end
  local keep = tonumber(ARGV[first])
  for i = first + 1, #ARGV do
    local added
    if keep > 0 then
      added = redis.pcall('XADD', stream, 'MAXLEN', '~', keep, '*', 'e', ARGV[i])
    else
      added = redis.pcall('XADD', stream, '*', 'e', ARGV[i])
    end
    if type(added) == 'table' and added.err then return added.err end
  end
  return ''
end
"""

# The store's Lua functions (``STORE_LUA`` of ``_valkey_store``) come first in both scripts.

# KEYS: state, version, then the acquire's four keys (the guard's order for the scope)
# [, ledger stream]. ARGV: document, schema version, expected revision, token, ttl ms, scope
# [, entries to keep, entry...]. Returns {new revision or -1 (conflict: nothing saved, nothing
# acquired), fencing token (0: contended) or -1, guard error text, ledger error text}.
_BEFORE_RUN = (
    GUARD_LUA
    + _ERROR_TEXT
    + """
local revision, err = save_state(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
if err then return err end
if revision < 0 then return {-1, 0, '', ''} end
local ledger = append_ledger(KEYS[7], 7)
local acquire = acquire_occurrence
if ARGV[6] == 'resource' then acquire = acquire_resource end
local ok, fenced = pcall(acquire, KEYS[3], KEYS[4], KEYS[5], KEYS[6], ARGV[4], ARGV[5])
if not ok then return {revision, -1, error_text(fenced), ledger} end
return {revision, fenced, '', ledger}
"""
)

# KEYS: state, version, lease key, index (occurrence) or occurrence key (resource)
# [, ledger stream]. ARGV: document, schema version, expected revision, token, scope
# [, entries to keep, entry...]. Returns {new revision or -1 (conflict: not saved), 1 released /
# 0 already gone / -1, guard error text, ledger error text}. The lease is released whether or
# not the save conflicted; the entries are appended only when it saved.
_AFTER_RUN = (
    GUARD_LUA
    + _ERROR_TEXT
    + """
local revision, err = save_state(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
if err then return err end
local ledger = ''
if revision >= 0 then ledger = append_ledger(KEYS[5], 6) end
local ok, released = pcall(release_lease, KEYS[3], KEYS[4], ARGV[4], ARGV[5])
if not ok then return {revision, -1, error_text(released), ledger} end
return {revision, released, '', ledger}
"""
)


def shares_server(store: ValkeyStateStore, guard: object, job_id: str, resource_id: str) -> bool:
    """True when one script can hold this job's state and its lease keys."""
    if not isinstance(guard, ValkeyExecutionGuard):
        return False
    if guard.store is not store and (store.server is None or store.server != guard.server):
        return False
    if store.cluster != guard.cluster:
        return False
    return not store.cluster or resource_id == job_id


class CombinedScripts:
    """The two scripts, registered on the store's client, run on the store's script connection
    (see ``_valkey_direct``; a cluster client keeps redis-py's routed calls)."""

    def __init__(self, store: ValkeyStateStore, store_lua: str) -> None:
        self._store = store
        self._before = store.client.register_script(store_lua + _BEFORE_RUN)
        self._after = store.client.register_script(store_lua + _AFTER_RUN)
        self._direct = store.direct
        #: Per job: its state and version keys (built once: they never change).
        self._keys: dict[str, tuple[str, str, str]] = {}

    def _job_keys(self, job_id: str) -> tuple[str, str, str]:
        found = self._keys.get(job_id)
        if found is None:
            keys = self._store.keys(job_id)
            if len(self._keys) >= 64:  # one job per process in practice; stay bounded anyway
                self._keys.clear()
            found = self._keys[job_id] = (keys.state, keys.version, keys.ledger)
        return found

    async def _call(
        self, script: Any, keys: list[str], args: list[str], job_id: str, timeout: float | None
    ) -> list[Any]:
        """Run one script under the call deadline; a Valkey failure is a store error (SAVE)."""
        store = self._store
        limit = store.call_timeout  # a property: read once
        seconds = limit if timeout is None or timeout >= limit else timeout
        direct = self._direct
        try:
            async with asyncio.timeout(seconds):
                if direct is not None:
                    reply = await direct.run(script, keys, args)
                else:
                    reply = await script(keys=keys, args=args)
        except Exception as exc:
            if not is_redis_error(exc):
                raise
            raise await store.failed(exc, StoreOperation.SAVE, job_id, keys[0], seconds) from exc
        if not isinstance(reply, list) or len(reply) < 2:
            raise store.failed_reply(job_id, keys[0], reply)
        return reply

    async def consume_and_acquire(
        self,
        state: JobState,
        expected_revision: int,
        guard: ValkeyExecutionGuard,
        slot: ExecutionSlot,
        entries: list[str],
        keep: int,
        timeout: float | None = None,
    ) -> tuple[bool, ExecutionLease | ExecutionGuardError | None, str | None]:
        job_id = state.job_id  # read once: a document's attribute costs a lookup hook
        state_key, version_key, ledger_key = self._job_keys(job_id)
        plan = guard.plan_acquire(slot)
        args = [state.to_json(), _SCHEMA, str(expected_revision), *plan.args, slot.scope._value_]
        script_keys = [state_key, version_key, *plan.keys]
        if entries:
            script_keys.append(ledger_key)
            args.append(str(keep))
            args += entries
        reply = await self._call(self._before, script_keys, args, job_id, timeout)
        if reply[0] < 0:
            return False, None, None
        ledger = _text(reply, 3)
        fenced = reply[1]
        if fenced < 0:
            return True, _guard_error(reply, plan.key, "acquire"), ledger
        return True, guard.granted(plan, fenced), ledger

    async def release_and_save(
        self,
        state: JobState,
        expected_revision: int,
        guard: ValkeyExecutionGuard,
        lease: ExecutionLease,
        entries: list[str],
        keep: int,
        timeout: float | None = None,
    ) -> tuple[bool, bool | ExecutionGuardError, str | None]:
        job_id = state.job_id
        state_key, version_key, ledger_key = self._job_keys(job_id)
        lease_keys, lease_args = guard.release_arguments(lease)
        args = [state.to_json(), _SCHEMA, str(expected_revision), *lease_args]
        script_keys = [state_key, version_key, *lease_keys]
        if entries:
            script_keys.append(ledger_key)
            args.append(str(keep))
            args += entries
        reply = await self._call(self._after, script_keys, args, job_id, timeout)
        released = reply[1]
        saved = reply[0] >= 0
        ledger = _text(reply, 3)
        if released < 0:
            return saved, _guard_error(reply, lease.key, "release"), ledger
        return saved, released == 1, ledger


_SCHEMA = str(SCHEMA_VERSION)


def _text(reply: list[Any], index: int) -> str | None:
    """Item ``index`` of a script reply as text, None when absent or empty."""
    raw = reply[index] if len(reply) > index else b""
    if not raw:
        return None
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    return text or None


def _guard_error(reply: list[Any], key: str, op: str) -> ExecutionGuardError:
    raw = reply[2] if len(reply) > 2 else b"unknown error"
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    kind = ExecutionGuardErrorKind.DATA if "WRONGTYPE" in text else ExecutionGuardErrorKind.UNKNOWN
    return ExecutionGuardError(kind, f"execution guard {op} failed inside the combined script: {text} (key {key!r})")
