"""ValkeyStateStore: one JSON string key per job on Valkey (or Redis), via redis.asyncio."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ._errors import InvalidJobError, InvalidJobKind, StoreError, StoreErrorKind, StoreOperation
from ._resilient import ResilientStateStore
from ._state import JobState
from ._valkey_common import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    client_label,
    create_client,
    describe,
    is_redis_error,
    normalize_url,
    redact_url,
    store_error_kind,
    url_secrets,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from ._clock import Clock
    from .events import SchedulerEvent

DEFAULT_PREFIX = "scheduler:valkey:job-state:"
#: Where the reference system kept states before the ``valkey:`` segment; read-only fallback.
LEGACY_PREFIX = "scheduler:job-state:"

# KEYS: the state key. ARGV: the JSON document. Refuses (DATA) to replace a value that is not
# a string or not JSON: a corrupted document is evidence, never overwritten silently.
_SAVE = """
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' then
  if kind ~= 'string' then
    return redis.error_reply('WRONGTYPE the key holds a ' .. kind .. ', not a JobState document')
  end
  if not pcall(cjson.decode, redis.call('GET', KEYS[1])) then
    return redis.error_reply('CORRUPTDATA the stored value is not JSON; not overwriting it')
  end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


# KEYS: the state key. ARGV: the JSON document. Writes it only if the key is absent; returns
# nil when written, else the value already stored (another instance created it first).
_CREATE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  return false
end
return redis.call('GET', KEYS[1])
"""


class ValkeyStateStore:
    """Stores each job's JobState as JSON under ``prefix + job_id`` (no TTL).

    Contract, beyond :class:`scheduler.StateStore`:

    * With the default prefix, a load that finds nothing also reads the legacy key
      ``scheduler:job-state:<job_id>`` (documents written by the reference system load as
      they are); ``delete`` removes both keys. ``save`` writes only the new key.
    * ``load`` is one round trip (the two GETs are pipelined), ``save`` and ``delete`` one each.
    * Errors raise :class:`scheduler.StoreError` naming the job id and the key. Connection
      refused/reset/timeouts and the transient replies LOADING, CLUSTERDOWN, MASTERDOWN,
      TRYAGAIN (and READONLY during a failover) are CONNECTION; undecodable JSON, a document
      that fails validation or names another job, and WRONGTYPE are DATA; wrong credentials
      and anything else are UNKNOWN.
    * ``save`` is one script (EVALSHA) that refuses to replace a value that is not a string
      or not JSON (DATA error): a corrupted value is never overwritten silently. The
      scheduler also loads before it saves, so a DATA error on that load stops the run
      first. Repair the key by hand or delete it (``scheduler reset``).
    * A ``client`` passed in is used as is and is not closed by :meth:`aclose`; a client the
      store created from ``url`` has bounded connect/read timeouts and is closed.
    * Credentials in the URL never appear in ``repr``, messages or events.
    * ``url`` None means ``redis://127.0.0.1:6379/0``. Connect and read timeouts default to
      5 s; a dead pooled connection (server restart) is retried once, immediately.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        prefix: str = DEFAULT_PREFIX,
        connect_timeout: timedelta | float = DEFAULT_CONNECT_TIMEOUT,
        timeout: timedelta | float = DEFAULT_TIMEOUT,
    ) -> None:
        if client is not None and url is not None:
            raise InvalidJobError(InvalidJobKind.OTHER, "pass either url or client to ValkeyStateStore, not both")
        if not isinstance(prefix, str):
            raise InvalidJobError(InvalidJobKind.OTHER, f"prefix must be a string, got {prefix!r}")
        self.prefix = prefix
        self._owns_client = client is None
        if client is None:
            normalized = normalize_url(url)
            self._secrets = url_secrets(normalized)
            self._label = redact_url(normalized)
            self._client: Redis = create_client(normalized, connect_timeout, timeout)
        else:
            self._secrets = ()
            self._label = client_label(client)
            self._client = client
        self._save = self._client.register_script(_SAVE)
        self._create = self._client.register_script(_CREATE)

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

    def key(self, job_id: str) -> str:
        return self.prefix + job_id

    def _legacy_key(self, job_id: str) -> str | None:
        return LEGACY_PREFIX + job_id if self.prefix == DEFAULT_PREFIX else None

    def _error(self, kind: StoreErrorKind, op: StoreOperation, job_id: str, key: str, detail: str) -> StoreError:
        return StoreError(kind, op, job_id, f"{detail} (key {key!r} on {self._label})")

    def _wrap(self, exc: BaseException, op: StoreOperation, job_id: str, key: str) -> StoreError:
        return self._error(store_error_kind(exc), op, job_id, key, describe(exc, self._secrets))

    async def load(self, job_id: str) -> JobState | None:
        key = self.key(job_id)
        legacy = self._legacy_key(job_id)
        try:
            if legacy is None:
                replies: list[Any] = [await self._client.get(key)]
            else:
                # One round trip for both: the legacy read costs nothing extra on a miss.
                async with self._client.pipeline(transaction=False) as pipe:
                    pipe.get(key)
                    pipe.get(legacy)
                    replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            if not is_redis_error(exc):
                raise
            raise self._wrap(exc, StoreOperation.LOAD, job_id, key) from exc
        for reply_key, reply in zip((key, legacy), replies, strict=False):
            assert reply_key is not None
            if isinstance(reply, BaseException):
                raise self._wrap(reply, StoreOperation.LOAD, job_id, reply_key) from reply
            if reply is not None:
                return self._decode(job_id, reply_key, reply)
        return None

    def _decode(self, job_id: str, key: str, raw: bytes | str) -> JobState:
        try:
            state = JobState.model_validate_json(raw)
        except ValidationError as exc:
            # Summarise without the input: the stored value could be huge or sensitive.
            errors = exc.errors(include_input=False, include_url=False)
            summary = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'document'}: {e['msg']}" for e in errors[:3])
            detail = f"stored value is not a valid JobState document ({summary})"
            raise self._error(StoreErrorKind.DATA, StoreOperation.LOAD, job_id, key, detail) from exc
        if state.job_id != job_id:
            detail = f"stored document belongs to job {state.job_id!r}"
            raise self._error(StoreErrorKind.DATA, StoreOperation.LOAD, job_id, key, detail)
        return state

    async def save(self, state: JobState) -> None:
        key = self.key(state.job_id)
        payload = state.model_dump_json()
        try:
            await self._save(keys=[key], args=[payload])
        except Exception as exc:
            if not is_redis_error(exc):
                raise
            raise self._wrap(exc, StoreOperation.SAVE, state.job_id, key) from exc

    async def create(self, state: JobState) -> JobState:
        """Save ``state`` only if the job has no state yet; return the state now stored.

        One script (SET NX, else GET), so instances starting together agree on one state.
        """
        key = self.key(state.job_id)
        try:
            existing = await self._create(keys=[key], args=[state.model_dump_json()])
        except Exception as exc:
            if not is_redis_error(exc):
                raise
            raise self._wrap(exc, StoreOperation.SAVE, state.job_id, key) from exc
        return state if existing is None else self._decode(state.job_id, key, existing)

    async def delete(self, job_id: str) -> None:
        key = self.key(job_id)
        legacy = self._legacy_key(job_id)
        try:
            if legacy is None:
                await self._client.delete(key)
            else:
                # Two DELs, not one multi-key DEL: the keys may live in different cluster slots.
                async with self._client.pipeline(transaction=False) as pipe:
                    pipe.delete(key)
                    pipe.delete(legacy)
                    await pipe.execute()
        except Exception as exc:
            if not is_redis_error(exc):
                raise
            raise self._wrap(exc, StoreOperation.DELETE, job_id, key) from exc

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    def __repr__(self) -> str:
        return f"ValkeyStateStore({self._label!r}, prefix={self.prefix!r})"
