"""Shared plumbing for the Valkey store and guard: URLs, redaction, clients, error kinds.

Only the Valkey modules import this one, so ``import scheduler`` never imports ``redis``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from ._errors import ExecutionGuardErrorKind, InvalidJobError, InvalidJobKind, StoreErrorKind
from ._time import to_timedelta

if TYPE_CHECKING:
    from redis.asyncio import Redis

DEFAULT_URL = "redis://127.0.0.1:6379/0"
#: Bounded so a dead or black-holed server turns into a CONNECTION error, not a hang.
DEFAULT_CONNECT_TIMEOUT = timedelta(seconds=5)
DEFAULT_TIMEOUT = timedelta(seconds=5)
#: valkey:// and valkeys:// are spelled for redis-py, which speaks the same protocol.
_SCHEMES = {"redis": "redis", "rediss": "rediss", "valkey": "redis", "valkeys": "rediss", "unix": "unix"}
#: Server replies that mean "not now" (loading a dataset, failover, resharding): transient.
_TRANSIENT_REPLIES = ("LOADING", "CLUSTERDOWN", "MASTERDOWN", "TRYAGAIN", "READONLY")
_SECRET_QUERY_KEYS = {"password", "username"}
REDACTED = "***"


def normalize_url(url: str | None) -> str:
    """The URL redis-py understands; InvalidJobError (OTHER) for an unknown scheme or a URL
    that does not parse: bad host or port, or a database path that is not a number (``/`` or
    no path means database 0). The message never shows credentials."""
    text = DEFAULT_URL if url is None else url.strip()
    scheme, sep, rest = text.partition("://")
    target = _SCHEMES.get(scheme.lower()) if sep else None
    if target is None:
        raise InvalidJobError(
            InvalidJobKind.OTHER,
            f"unsupported Valkey URL {redact_url(text)!r}: use redis://, rediss://, valkey:// or valkeys://",
        )
    normalized = f"{target}://{rest}"
    if target != "unix":
        _check_parts(normalized, text)
    return normalized


def _check_parts(url: str, original: str) -> None:
    try:
        parts = urlsplit(url)
        port = parts.port  # parses (and range-checks) the port
    except ValueError as exc:
        problem = "bad port" if "port" in str(exc).lower() else "malformed host"
        raise InvalidJobError(
            InvalidJobKind.OTHER, f"invalid Valkey URL {redact_url_text(original)!r}: {problem}"
        ) from None
    if not parts.hostname:
        raise InvalidJobError(InvalidJobKind.OTHER, f"invalid Valkey URL {redact_url_text(original)!r}: no host")
    if port == 0:
        raise InvalidJobError(InvalidJobKind.OTHER, f"invalid Valkey URL {redact_url_text(original)!r}: port 0")
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise InvalidJobError(
            InvalidJobKind.OTHER,
            f"invalid Valkey URL {redact_url_text(original)!r}: database {database!r} is not a number "
            "(use /0, /1, ...)",
        )


def redact_url_text(url: str) -> str:
    """Like :func:`redact_url`, but also for text that does not parse as a URL at all."""
    redacted = redact_url(url)
    if redacted != REDACTED:
        return redacted
    scheme, sep, rest = url.partition("://")
    host = rest.rpartition("@")[2] if "@" in rest else rest
    return f"{scheme}{sep}{REDACTED + '@' if '@' in rest else ''}{host}"


def redact_url(url: str) -> str:
    """``url`` with user, password and password-like query values replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED  # unparseable: show nothing rather than risk showing a secret
    netloc = parts.netloc
    if "@" in netloc:
        netloc = REDACTED + "@" + netloc.rpartition("@")[2]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, REDACTED if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_secrets(url: str) -> tuple[str, ...]:
    """The secret strings a URL carries (raw and percent-decoded), for scrubbing messages."""
    found: list[str] = []
    try:
        parts = urlsplit(url)
        candidates = [parts.password or "", parts.username or ""]
        candidates += [v for k, v in parse_qsl(parts.query) if k.lower() in _SECRET_QUERY_KEYS]
    except ValueError:
        return ()
    for value in candidates:
        if len(value) >= 3:  # scrubbing 1-2 character strings would mangle every message
            found.extend({value, quote(value, safe="")})
    return tuple(found)


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Replace every known secret in ``text`` (belt and braces over redact_url)."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def create_client(url: str | None, connect_timeout: timedelta | float, timeout: timedelta | float) -> Redis:
    """An asyncio client with bounded timeouts and no retry.

    No retry: a retried call on a hung server waits the timeout twice, and a call the server
    may already have applied must not be sent again blindly. A pooled connection that a
    server restart closed is noticed when the pool hands it out and replaced; after a
    connection failure the callers also drop every idle connection (``drop_idle_connections``),
    so one outage costs one failed call, not one per pooled connection.
    """
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    connect_s = _seconds(connect_timeout, "connect_timeout")
    timeout_s = _seconds(timeout, "timeout")
    return Redis.from_url(
        normalize_url(url),
        socket_connect_timeout=connect_s,
        socket_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        decode_responses=False,
        # RESP2: with RESP3, redis-py enables maintenance notifications and then skips its
        # check that a pooled connection is still open, so a restart would fail a call.
        protocol=2,
    )


async def drop_idle_connections(client: Any) -> None:
    """Close the pool's idle connections (after a connection failure they are likely dead)."""
    pool = getattr(client, "connection_pool", None)
    disconnect = getattr(pool, "disconnect", None)
    if disconnect is None:
        return
    try:
        await disconnect(inuse_connections=False)
    except Exception:  # best effort: the next call reconnects anyway
        pass


def _seconds(value: timedelta | float, what: str) -> float:
    seconds = to_timedelta(value, what).total_seconds()
    if seconds <= 0:
        raise InvalidJobError(InvalidJobKind.OTHER, f"{what} must be positive, got {value!r}")
    return seconds


def _kind(exc: BaseException) -> str:
    """'connection', 'data' or 'unknown' for a redis-py (or socket) exception."""
    from redis import exceptions as rx

    if isinstance(exc, rx.AuthenticationError | rx.AuthorizationError | rx.NoPermissionError):
        return "unknown"  # wrong credentials or ACL: configuration, retrying will not help
    if isinstance(exc, rx.ConnectionError | rx.TimeoutError | OSError | TimeoutError):
        return "connection"
    if isinstance(exc, rx.ResponseError):
        reply = str(exc).lstrip()
        if reply.startswith(_TRANSIENT_REPLIES) or isinstance(exc, rx.ClusterDownError | rx.TryAgainError):
            return "connection"
        # Inside a script the reply may carry a prefix, so look for the code anywhere.
        if "WRONGTYPE" in reply or "CORRUPTDATA" in reply or "NEWERSCHEMA" in reply:
            return "data"
    return "unknown"


def store_error_kind(exc: BaseException) -> StoreErrorKind:
    return StoreErrorKind(_kind(exc))


def guard_error_kind(exc: BaseException) -> ExecutionGuardErrorKind:
    return ExecutionGuardErrorKind(_kind(exc))


def describe(exc: BaseException, secrets: tuple[str, ...]) -> str:
    """``ExcType: message`` with secrets scrubbed."""
    message = str(exc) or repr(exc)
    return scrub(f"{type(exc).__name__}: {message}", secrets)


def is_redis_error(exc: BaseException) -> bool:
    from redis.exceptions import RedisError

    return isinstance(exc, RedisError | OSError | TimeoutError)


def client_label(client: Any) -> str:
    """A credential-free description of a client passed in by the caller."""
    try:
        kwargs = client.connection_pool.connection_kwargs
        host, port, db = kwargs.get("host", "?"), kwargs.get("port", "?"), kwargs.get("db", 0)
        return f"redis://{host}:{port}/{db}"
    except AttributeError:
        return type(client).__name__
