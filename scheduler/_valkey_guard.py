"""ValkeyExecutionGuard: leases with fencing tokens, one atomic Lua script per operation."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ._clock import Clock, SystemClock
from ._enums import GuardScope
from ._errors import ExecutionGuardError, ExecutionGuardErrorKind, InvalidJobError, InvalidJobKind
from ._guard import ExecutionLease, ExecutionSlot, LeaseTiming, lease_timing
from ._time import format_utc_nanos, to_timedelta
from ._valkey_common import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    client_label,
    create_client,
    describe,
    drop_idle_connections,
    guard_error_kind,
    is_redis_error,
    normalize_url,
    redact_url,
    url_secrets,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

DEFAULT_PREFIX = "scheduler:valkey:execution-lease:"

# Server time in ms, and keeping the index alive as long as its latest member (the index
# would otherwise live forever; expired members are pruned by score on every acquire).
_PRELUDE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function index_add(index, member, expiry, now)
  redis.call('ZADD', index, string.format('%d', expiry), member)
  local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  redis.call('PEXPIRE', index, string.format('%d', tonumber(last[2]) - now + 1000))
end
"""

# KEYS: occurrence lease, resource lock, live-occurrence index, fence. ARGV: token, ttl ms.
# Returns the new fencing token, or 0 when contended. Scripts are not rolled back on error,
# so everything that can fail (a key of the wrong type) runs before the lease is written.
_ACQUIRE_OCCURRENCE = (
    _PRELUDE
    + """
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', string.format('%d', now))
local fence = redis.call('INCR', KEYS[4])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
index_add(KEYS[3], KEYS[1], now + tonumber(ARGV[2]), now)
return fence
"""
)

# KEYS: resource lock, live-occurrence index, fence, occurrence key. ARGV: token, ttl ms.
# The occurrence key is claimed too, so a RESOURCE run is also exactly-once per occurrence.
_ACQUIRE_RESOURCE = (
    _PRELUDE
    + """
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%d', now))
if redis.call('ZCARD', KEYS[2]) > 0 then return 0 end
local fence = redis.call('INCR', KEYS[3])
redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return fence
"""
)

# KEYS: lease key, then the index (occurrence) or the occurrence key (resource).
# ARGV: token, ttl ms, scope. Returns 1 when renewed, 0 when the token no longer holds it.
_RENEW = (
    _PRELUDE
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

# KEYS as for renew. ARGV: token, scope. An occurrence key is not deleted: it becomes a
# 'done:' marker with its remaining TTL, so a late instance still finds the occurrence taken.
# Returns 1 when released (now, or by an earlier call of this token: the marker is ours),
# 0 when the lease is gone (expired, or another token holds the key).
_RELEASE = """
local marker = 'done:' .. ARGV[1]
local held = redis.call('GET', KEYS[1])
if held ~= ARGV[1] then
  if held == marker or (ARGV[2] ~= 'occurrence' and not held and redis.call('GET', KEYS[2]) == marker) then
    return 1
  end
  return 0
end
if ARGV[2] == 'occurrence' then
  redis.call('SET', KEYS[1], marker, 'KEEPTTL')
  redis.call('ZREM', KEYS[2], KEYS[1])
else
  redis.call('DEL', KEYS[1])
  if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('SET', KEYS[2], marker, 'KEEPTTL') end
end
return 1
"""


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
    ) -> None:
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
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._owns_client = client is None
        if client is None:
            normalized = normalize_url(url)
            self._secrets = url_secrets(normalized)
            self._label = redact_url(normalized)
            self._client: Redis = create_client(normalized, connect_timeout, call_timeout)
        else:
            self._secrets = ()
            self._label = client_label(client)
            self._client = client
        self._acquire_occurrence = self._client.register_script(_ACQUIRE_OCCURRENCE)
        self._acquire_resource = self._client.register_script(_ACQUIRE_RESOURCE)
        self._renew = self._client.register_script(_RENEW)
        self._release = self._client.register_script(_RELEASE)

    @property
    def client(self) -> Redis:
        return self._client

    def keys(self, resource_id: str) -> tuple[str, str, str]:
        """(resource lock, live-occurrence index, fence) keys of a resource."""
        base = f"{self.prefix}{{{resource_id}}}"
        return f"{base}:resource", f"{base}:occurrences", f"{base}:fence"

    def occurrence_key(self, slot: ExecutionSlot) -> str:
        return f"{self.prefix}{{{slot.resource_id}}}:occurrence:{format_utc_nanos(slot.scheduled_at)}"

    async def acquire(self, slot: ExecutionSlot) -> ExecutionLease | None:
        lock, index, fence = self.keys(slot.resource_id)
        occurrence = self.occurrence_key(slot)
        token = uuid.uuid4().hex
        args = [token, str(self._ttl_ms)]
        started = self._clock.now()
        if slot.scope is GuardScope.RESOURCE:
            key = lock
            result = await self._call(self._acquire_resource, [lock, index, fence, occurrence], args, key, "acquire")
        else:
            key = occurrence
            result = await self._call(self._acquire_occurrence, [occurrence, lock, index, fence], args, key, "acquire")
        fencing_token = self._int_reply(result, key, "acquire")
        if fencing_token == 0:
            return None
        return ExecutionLease(
            job_id=slot.job_id,
            resource_id=slot.resource_id,
            scope=slot.scope,
            scheduled_at=slot.scheduled_at,
            token=token,
            key=key,
            fencing_token=fencing_token,
            expires_at=started + self.ttl,
        )

    async def renew(self, lease: ExecutionLease) -> bool:
        keys = self._lease_keys(lease)
        args = [lease.token, str(self._ttl_ms), lease.scope.value]
        deadline = self.timing.renew_call_timeout.total_seconds()
        result = await self._call(self._renew, keys, args, lease.key, "renew", deadline)
        return self._int_reply(result, lease.key, "renew") == 1

    async def release(self, lease: ExecutionLease) -> bool:
        keys = self._lease_keys(lease)
        result = await self._call(self._release, keys, [lease.token, lease.scope.value], lease.key, "release")
        return self._int_reply(result, lease.key, "release") == 1

    def renew_interval(self, lease: ExecutionLease) -> timedelta | None:
        return self._renew_interval

    async def aclose(self) -> None:
        """Close the client the guard created (a client passed in is left open)."""
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
                return await script(keys=keys, args=args)
        except Exception as exc:
            if not is_redis_error(exc):
                raise
            kind = guard_error_kind(exc)
            if kind is ExecutionGuardErrorKind.CONNECTION:
                await drop_idle_connections(self._client)
            detail = describe(exc, self._secrets)
            if isinstance(exc, TimeoutError) and not str(exc):
                detail = f"no reply within {seconds:g} s"
            message = f"execution guard {op} failed: {detail} (key {key!r} on {self._label})"
            raise ExecutionGuardError(kind, message) from exc

    def _int_reply(self, reply: Any, key: str, op: str) -> int:
        if isinstance(reply, int) and not isinstance(reply, bool):
            return reply
        message = f"execution guard {op} got an unexpected reply {reply!r} (key {key!r} on {self._label})"
        raise ExecutionGuardError(ExecutionGuardErrorKind.DATA, message)

    def __repr__(self) -> str:
        return f"ValkeyExecutionGuard({self._label!r}, ttl={self.ttl}, renew_interval={self._renew_interval})"


def _secs(value: timedelta) -> str:
    return f"{value.total_seconds():g} s"
