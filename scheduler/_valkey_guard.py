"""ValkeyExecutionGuard: leases with fencing tokens, one atomic Lua script per operation."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ._clock import Clock, SystemClock
from ._enums import GuardScope
from ._errors import ExecutionGuardError, ExecutionGuardErrorKind, InvalidJobError, InvalidJobKind
from ._guard import ExecutionLease, ExecutionSlot, LeaseTiming, lease_timing
from ._records import record
from ._time import format_utc_nanos, to_timedelta
from ._valkey_common import (
    CLUSTER_SUFFIX,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    client_label,
    create_client,
    create_cluster_client,
    describe,
    drop_idle_connections,
    guard_error_kind,
    is_cluster_client,
    is_redis_error,
    normalize_url,
    redact_url,
    server_identity,
    split_cluster,
    url_secrets,
)
from ._valkey_direct import direct_connection
from ._valkey_keys import guard_base

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

    from ._valkey_store import ValkeyStateStore

DEFAULT_PREFIX = "scheduler:valkey:execution-lease:"


@record
class AcquirePlan:
    """One acquire's keys and arguments, and what turns its reply into a lease."""

    slot: ExecutionSlot
    keys: list[str]
    args: list[str]
    key: str
    token: str
    started: datetime


# Lua functions shared by the guard's scripts and the combined store+guard scripts.
# now_ms: server time. index_add keeps the live-occurrence index alive at least as long as its
# latest member (expired members are pruned by score on every acquire); its expiry only grows.
# Scripts are not rolled back on error, so everything that can fail (a key of the wrong type)
# runs before a lease is written.
GUARD_LUA = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- ``existed``: whether the index key existed before this script (nil: unknown, look it up).
local function index_add(index, member, expiry, now, existed)
  redis.call('ZADD', index, string.format('%d', expiry), member)
  local keep = string.format('%d', expiry - now + 1000)
  if existed == false then
    redis.call('PEXPIRE', index, keep)  -- created just now: it has no expiry yet
  elseif existed then
    redis.call('PEXPIRE', index, keep, 'GT')  -- only ever lengthen it
  elseif redis.call('PTTL', index) < tonumber(keep) then
    redis.call('PEXPIRE', index, keep)
  end
end
-- The new fencing token, or 0 when contended.
local function acquire_occurrence(occurrence, lock, index, fence, token, ttl)
  -- The index is named three times so that the one EXISTS also says whether it exists
  -- (EXISTS counts a key once per mention): a count of 3 or more means it does.
  local seen = redis.call('EXISTS', lock, occurrence, index, index, index)
  local indexed = seen >= 3
  if seen - (indexed and 3 or 0) > 0 then return 0 end
  local now = now_ms()
  if indexed and redis.call('ZREMRANGEBYSCORE', index, '-inf', string.format('%d', now)) > 0 then
    indexed = redis.call('EXISTS', index) == 1  -- pruning its last member deleted it
  end
  local fenced = redis.call('INCR', fence)
  redis.call('SET', occurrence, token, 'PX', ttl)
  index_add(index, occurrence, now + tonumber(ttl), now, indexed)
  return fenced
end
-- The occurrence key is claimed too, so a RESOURCE run is also exactly-once per occurrence.
local function acquire_resource(lock, index, fence, occurrence, token, ttl)
  if redis.call('EXISTS', lock, occurrence) > 0 then return 0 end
  local now = now_ms()
  redis.call('ZREMRANGEBYSCORE', index, '-inf', string.format('%d', now))
  if redis.call('ZCARD', index) > 0 then return 0 end
  local fenced = redis.call('INCR', fence)
  redis.call('SET', occurrence, token, 'PX', ttl)
  redis.call('SET', lock, token, 'PX', ttl)
  return fenced
end
-- ``key``: the lease key; ``other``: the index (occurrence) or the occurrence key (resource).
-- An occurrence key is not deleted: it becomes a 'done:' marker with its remaining TTL, so a
-- late instance still finds the occurrence taken. 1 when released (now, or by an earlier call
-- of this token: the marker is ours), 0 when the lease is gone (expired, or another token's).
local function release_lease(key, other, token, scope)
  local marker = 'done:' .. token
  if scope == 'occurrence' then
    -- One command on the common path: swap in the marker, then undo it if the key was not ours.
    local held = redis.call('SET', key, marker, 'XX', 'KEEPTTL', 'GET')
    if held == token then
      redis.call('ZREM', other, key)
      return 1
    end
    if held and held ~= marker then redis.call('SET', key, held, 'KEEPTTL') end
    if held == marker then return 1 end
    return 0
  end
  local held = redis.call('GET', key)
  if held ~= token then
    if not held and redis.call('GET', other) == marker then return 1 end
    return 0
  end
  redis.call('DEL', key)
  if redis.call('GET', other) == token then redis.call('SET', other, marker, 'KEEPTTL') end
  return 1
end
"""

# KEYS: occurrence lease, resource lock, live-occurrence index, fence. ARGV: token, ttl ms.
_ACQUIRE_OCCURRENCE = GUARD_LUA + "return acquire_occurrence(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2])"

# KEYS: resource lock, live-occurrence index, fence, occurrence key. ARGV: token, ttl ms.
_ACQUIRE_RESOURCE = GUARD_LUA + "return acquire_resource(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2])"

# KEYS: lease key, then the index (occurrence) or the occurrence key (resource).
# ARGV: token, ttl ms, scope. Returns 1 when renewed, 0 when the token no longer holds it.
_RENEW = (
    GUARD_LUA
    + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if ARGV[3] == 'occurrence' then
  local now = now_ms()
  index_add(KEYS[2], KEYS[1], now + tonumber(ARGV[2]), now)
elseif redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 1
"""
)

# KEYS as for renew. ARGV: token, scope.
_RELEASE = GUARD_LUA + "return release_lease(KEYS[1], KEYS[2], ARGV[1], ARGV[2])"


class ValkeyExecutionGuard:
    """Leases on Valkey so that each occurrence runs once across all instances.

    Keys (P = prefix, R = resource id; the ``{R}`` hash tag keeps them in one cluster slot):
    occurrence lease ``P{R}:occurrence:<scheduled_at, RFC 3339 UTC, 9 digits>Z``, resource
    lock ``P{R}:resource``, live-occurrence index ``P{R}:occurrences`` (sorted set scored by
    expiry in server ms), fencing counter ``P{R}:fence`` (never expires).

    Contract, beyond :class:`scheduler.ExecutionGuard`:

    * Every operation is one atomic script (EVALSHA): one round trip each.
    * OCCURRENCE: contended if the resource lock is held or the occurrence key exists (live
      lease or completed marker). RESOURCE: contended if the lock is held, any live
      occurrence lease exists, or this occurrence was already taken; it claims the
      occurrence key too, so RESOURCE runs are also exactly-once per occurrence.
    * Both increment ``P{R}:fence`` and return it as ``fencing_token`` (strictly increasing
      per resource across every instance, since the counter never expires).
    * ``renew`` and ``release`` compare the token first: a foreign lease is never extended
      or removed. Releasing an occurrence turns its key into a ``done:`` marker that keeps
      the remaining TTL; it is idempotent and safe to call again after a cancellation.
    * ``expires_at`` is the local clock before the call plus ``ttl``: never later than the
      server-side expiry, so "retry until expiry" stops in time.
    * ``release`` returns True when this token's lease was released (also by an earlier call),
      False when it was already gone (expired, or another holder has the key).
    * Timing (see :func:`scheduler._guard.lease_timing`): a renewal call has a deadline of
      ``min(renew_interval / 2, 5 s)``; the lease counts as lost at ``expires_at`` minus the
      safety margin ``max(ttl / 10, that deadline)``; construction requires
      ``renew_interval + renewal deadline < ttl - margin`` (else InvalidJobError, kind OTHER).
      After a successful ``renew`` the lease expires no earlier than the local time at which
      the renew call started plus ``ttl``.
    * Acquire and release have a deadline of ``timeout`` (default 5 s); a hung server fails
      them with CONNECTION, never retried blindly.
    * The fence counter is as durable as the server: one without persistence starts again at
      1 after a restart. Enable AOF (or RDB with care) where fencing must survive restarts.
    * ``url`` None means ``redis://127.0.0.1:6379/0``.
    * Valkey Cluster: ``cluster=True``, a ``valkey+cluster://`` URL or a ``RedisCluster``
      client; the hash tag is then the resource id with ``%``, ``{``, ``}`` escaped (the same
      keys as above for an id without them).
    * ``store=`` a :class:`ValkeyStateStore`: the guard uses the store's client, and the
      scheduler then runs the combined before-run and after-run scripts (one call each).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        ttl: timedelta | float = timedelta(seconds=30),
        renew_interval: timedelta | float = timedelta(seconds=10),
        prefix: str = DEFAULT_PREFIX,
        clock: Clock | None = None,
        connect_timeout: timedelta | float = DEFAULT_CONNECT_TIMEOUT,
        timeout: timedelta | float | None = None,
        cluster: bool = False,
        store: ValkeyStateStore | None = None,
    ) -> None:
        if not isinstance(cluster, bool):
            raise TypeError(f"cluster must be a bool, got {cluster!r}")
        if store is not None and (url is not None or client is not None):
            raise InvalidJobError(InvalidJobKind.OTHER, "pass one of url, client or store to ValkeyExecutionGuard")
        #: The store this guard was given: they share a server (and its client) by construction.
        self.store = store
        if store is not None:
            client = store.client
        url, named_cluster = split_cluster(url)
        self.ttl = to_timedelta(ttl, "ttl")
        self._renew_interval = to_timedelta(renew_interval, "renew_interval")
        self._ttl_ms = int(self.ttl.total_seconds() * 1000)
        if self._ttl_ms < 1:
            raise InvalidJobError(InvalidJobKind.OTHER, f"ttl must be at least 1 ms, got {self.ttl}")
        if self._renew_interval <= timedelta(0) or self._renew_interval >= self.ttl:
            raise InvalidJobError(
                InvalidJobKind.OTHER,
                f"renew_interval must be positive and shorter than ttl: {self._renew_interval} vs {self.ttl}",
            )
        self.timing: LeaseTiming = lease_timing(self.ttl, self._renew_interval)
        call, margin = self.timing.renew_call_timeout, self.timing.safety_margin
        if self._renew_interval + call >= self.ttl - margin:
            raise InvalidJobError(
                InvalidJobKind.OTHER,
                f"renew_interval {_secs(self._renew_interval)} + renewal call deadline {_secs(call)} must be "
                f"shorter than ttl {_secs(self.ttl)} - safety margin {_secs(margin)}: "
                "use a shorter renew_interval or a longer ttl",
            )
        call_timeout = to_timedelta(timeout if timeout is not None else DEFAULT_TIMEOUT, "timeout")
        if call_timeout <= timedelta(0):
            raise InvalidJobError(InvalidJobKind.OTHER, f"timeout must be positive, got {timeout!r}")
        self._timeout = call_timeout.total_seconds()
        if client is not None and url is not None:
            raise InvalidJobError(InvalidJobKind.OTHER, "pass either url or client to ValkeyExecutionGuard, not both")
        self.prefix = prefix
        self._keys: dict[str, tuple[str, str, str, str]] = {}
        self._ttl_arg = str(self._ttl_ms)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._owns_client = client is None
        self.cluster = cluster or named_cluster or is_cluster_client(client) or (store is not None and store.cluster)
        if client is None:
            normalized = normalize_url(url)
            self._secrets = url_secrets(normalized)
            self._label = redact_url(normalized)
            if self.cluster:
                self._label = self._label.replace("://", CLUSTER_SUFFIX + "://", 1)
                self._client: Redis = create_cluster_client(normalized, connect_timeout, call_timeout)
            else:
                self._client = create_client(normalized, connect_timeout, call_timeout)
        else:
            self._secrets = ()
            self._label = client_label(client)
            self._client = client
        self.server = server_identity(self._client)
        # A guard given the store shares the store's connection (the combined scripts use it).
        self._direct = None if self.cluster or store is not None else direct_connection(self._client)
        self._acquire_occurrence = self._client.register_script(_ACQUIRE_OCCURRENCE)
        self._acquire_resource = self._client.register_script(_ACQUIRE_RESOURCE)
        self._renew = self._client.register_script(_RENEW)
        self._release = self._client.register_script(_RELEASE)

    @property
    def client(self) -> Redis:
        return self._client

    def _resource_keys(self, resource_id: str) -> tuple[str, str, str, str]:
        """(key base, resource lock, live-occurrence index, fence), built once per resource:
        they are part of every acquire and release."""
        found = self._keys.get(resource_id)
        if found is None:
            base = guard_base(self.prefix, resource_id, self.cluster)
            if len(self._keys) >= 64:
                self._keys.clear()
            found = self._keys[resource_id] = (base, f"{base}:resource", f"{base}:occurrences", f"{base}:fence")
        return found

    def keys(self, resource_id: str) -> tuple[str, str, str]:
        """(resource lock, live-occurrence index, fence) keys of a resource."""
        return self._resource_keys(resource_id)[1:]

    def occurrence_key(self, slot: ExecutionSlot) -> str:
        base = self._resource_keys(slot.resource_id)[0]
        return f"{base}:occurrence:{format_utc_nanos(slot.scheduled_at)}"

    def plan_acquire(self, slot: ExecutionSlot) -> AcquirePlan:
        """Keys and arguments of an acquire (for this guard's script or a combined one)."""
        base, lock, index, fence = self._resource_keys(slot.resource_id)
        occurrence = f"{base}:occurrence:{format_utc_nanos(slot.scheduled_at)}"
        token = os.urandom(16).hex()  # 128 random bits, as a uuid4 had (less its version digits)
        if slot.scope is GuardScope.RESOURCE:
            keys, key = [lock, index, fence, occurrence], lock
        else:
            keys, key = [occurrence, lock, index, fence], occurrence
        return AcquirePlan(slot, keys, [token, self._ttl_arg], key, token, self._clock.now())

    def granted(self, plan: AcquirePlan, reply: Any) -> ExecutionLease | None:
        """The lease an acquire reply (a fencing token, 0 when contended) stands for."""
        fencing_token = self._int_reply(reply, plan.key, "acquire")
        if fencing_token == 0:
            return None
        slot = plan.slot
        return ExecutionLease(
            job_id=slot.job_id,
            resource_id=slot.resource_id,
            scope=slot.scope,
            scheduled_at=slot.scheduled_at,
            token=plan.token,
            key=plan.key,
            fencing_token=fencing_token,
            expires_at=plan.started + self.ttl,
        )

    def release_arguments(self, lease: ExecutionLease) -> tuple[list[str], list[str]]:
        """Keys and arguments of a release (for this guard's script or a combined one)."""
        # ``_value_``: the member's value without the ``value`` property's call (twice per run).
        return self._lease_keys(lease), [lease.token, lease.scope._value_]

    async def acquire(self, slot: ExecutionSlot) -> ExecutionLease | None:
        plan = self.plan_acquire(slot)
        script = self._acquire_resource if slot.scope is GuardScope.RESOURCE else self._acquire_occurrence
        return self.granted(plan, await self._call(script, plan.keys, plan.args, plan.key, "acquire"))

    async def renew(self, lease: ExecutionLease) -> bool:
        keys = self._lease_keys(lease)
        args = [lease.token, str(self._ttl_ms), lease.scope.value]
        deadline = self.timing.renew_call_timeout.total_seconds()
        result = await self._call(self._renew, keys, args, lease.key, "renew", deadline)
        return self._int_reply(result, lease.key, "renew") == 1

    async def release(self, lease: ExecutionLease) -> bool:
        keys, args = self.release_arguments(lease)
        result = await self._call(self._release, keys, args, lease.key, "release")
        return self._int_reply(result, lease.key, "release") == 1

    def renew_interval(self, lease: ExecutionLease) -> timedelta | None:
        return self._renew_interval

    async def aclose(self) -> None:
        """Close the client the guard created (a client passed in is left open)."""
        if self._direct is not None:
            await self._direct.aclose()
        if self._owns_client:
            await self._client.aclose()

    def _lease_keys(self, lease: ExecutionLease) -> list[str]:
        _, index, _ = self.keys(lease.resource_id)
        if lease.scope is GuardScope.RESOURCE:
            slot = ExecutionSlot(lease.job_id, lease.resource_id, lease.scope, lease.scheduled_at)
            return [lease.key, self.occurrence_key(slot)]
        return [lease.key, index]

    async def _call(
        self, script: AsyncScript, keys: list[str], args: list[str], key: str, op: str, deadline: float | None = None
    ) -> Any:
        seconds = self._timeout if deadline is None else deadline
        try:
            async with asyncio.timeout(seconds):
                direct = self._direct
                return await (script(keys=keys, args=args) if direct is None else direct.run(script, keys, args))
        except Exception as exc:
            if not is_redis_error(exc):
                raise
            error = self.guard_error(exc, key, op, seconds)
            if error.kind is ExecutionGuardErrorKind.CONNECTION:
                await drop_idle_connections(self._client)
            raise error from exc

    def guard_error(self, exc: BaseException, key: str, op: str, seconds: float | None = None) -> ExecutionGuardError:
        """The ExecutionGuardError for a failed call (secrets scrubbed, MOVED explained)."""
        kind = guard_error_kind(exc)
        detail = describe(exc, self._secrets)
        if isinstance(exc, TimeoutError) and not str(exc):
            detail = f"no reply within {self._timeout if seconds is None else seconds:g} s"
        return ExecutionGuardError(kind, f"execution guard {op} failed: {detail} (key {key!r} on {self._label})")

    def _int_reply(self, reply: Any, key: str, op: str) -> int:
        if isinstance(reply, int) and not isinstance(reply, bool):
            return reply
        message = f"execution guard {op} got an unexpected reply {reply!r} (key {key!r} on {self._label})"
        raise ExecutionGuardError(ExecutionGuardErrorKind.DATA, message)

    def __repr__(self) -> str:
        return f"ValkeyExecutionGuard({self._label!r}, ttl={self.ttl}, renew_interval={self._renew_interval})"


def _secs(value: timedelta) -> str:
    return f"{value.total_seconds():g} s"


def open_valkey_guard(url: str, ttl: timedelta) -> ValkeyExecutionGuard:
    """The guard a command-line URL names (``+cluster`` selects a cluster); renews 3 times per TTL."""
    if url.strip().lower().startswith("resilient+"):
        raise InvalidJobError(InvalidJobKind.OTHER, "resilient+ applies to the state store, not to the guard URL")
    # Two renewals may fail before the lease is in danger.
    return ValkeyExecutionGuard(url, ttl=ttl, renew_interval=ttl / 3)
