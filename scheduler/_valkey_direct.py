"""A connection of its own for the two scripts of every guarded run.

redis-py's generic call path costs, per call, about as much client CPU as the round trip
itself: a pool checkout (an asyncio lock, a liveness read, observability hooks), a retry
wrapper, the script helper's checks, and a timer task for every socket write (its socket
timeout). The combined before-run and after-run scripts are the whole per-run cost of a
guarded job, so they go through one connection kept open here instead:

* no socket timeout on it: the caller's ``asyncio.timeout`` is the call's only deadline;
* ``EVALSHA``, and ``EVAL`` once when the server does not know the script (first call, or
  after a restart or ``SCRIPT FLUSH``: the script did not run, so sending it is safe);
* any failure other than an error reply closes it (a reply may still be on its way, or the
  server is gone); the next call opens it again;
* a connection the server closed while idle is noticed before it is used (its reader saw
  the end of the stream), so a server restart costs no failed call;
* when a call is already in flight on it (overlapping runs), the generic path is used;
* the command is packed here (``pack_call``): the same bytes as redis-py's ``pack_command``,
  which checks and encodes each of the thirty-odd arguments on its own, at a quarter of its
  cost (a client encoding other than strict UTF-8 keeps redis-py's packing).

The connection is taken from the client's pool at the first call and kept (so closing the
client closes it too); ``aclose`` hands it back.

A cluster client keeps the generic path: its calls are routed per slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class ScriptConnection:
    """Runs registered scripts of one (single-server) client on a dedicated connection."""

    def __init__(self, client: Any) -> None:
        from redis.exceptions import NoScriptError, ResponseError  # loaded with the client already

        self._no_script: type[Exception] = NoScriptError
        self._error_reply: type[Exception] = ResponseError
        self._pool = client.connection_pool
        self._connection: Any = None
        self._socket_timeout: float | None = None
        self._busy = False
        #: Whether ``pack_call`` writes what the connection's encoder would.
        self._packs = False

    async def run(self, script: Any, keys: Sequence[str], args: Sequence[str]) -> Any:
        """The reply of ``script`` (an ``AsyncScript``) for ``keys`` and ``args``."""
        if self._busy:
            return await script(keys=keys, args=args)
        # One coroutine for the whole common path (every frame is paid twice per call: on the
        # way to the socket and on the way back with the reply).
        self._busy = True
        try:
            connection = self._connection
            if connection is None:
                connection = await self._take()
            reader = getattr(connection, "_reader", None)
            if reader is not None and reader.at_eof():  # closed by the server while idle
                await connection.disconnect(nowait=True)
            try:
                try:
                    packed = pack_call("EVALSHA", script.sha, keys, args) if self._packs else None
                    if packed is None:
                        packed = connection.pack_command("EVALSHA", script.sha, len(keys), *keys, *args)
                    await connection.send_packed_command(packed, check_health=False)
                    return await connection.read_response()
                except self._no_script:
                    return await self._send(connection, "EVAL", script.script, keys, args)
            except self._error_reply:
                raise  # an error reply: the connection is still in step
            except BaseException:
                await connection.disconnect(nowait=True)
                raise
        finally:
            self._busy = False

    async def _send(self, connection: Any, command: str, script: str, keys: Sequence[str], args: Sequence[str]) -> Any:
        packed = pack_call(command, script, keys, args) if self._packs else None
        if packed is None:
            packed = connection.pack_command(command, script, len(keys), *keys, *args)
        await connection.send_packed_command(packed, check_health=False)
        return await connection.read_response()

    async def _take(self) -> Any:
        pool = self._pool
        try:
            connection = await pool.get_connection()
        except TypeError:  # redis-py before 5.3 wants a command name
            connection = await pool.get_connection("EVALSHA")
        self._socket_timeout = connection.socket_timeout
        connection.socket_timeout = None  # the caller's deadline bounds every call
        encoder = getattr(connection, "encoder", None)
        encoding = str(getattr(encoder, "encoding", "")).lower().replace("-", "").replace("_", "")
        self._packs = encoding == "utf8" and getattr(encoder, "encoding_errors", None) == "strict"
        self._connection = connection
        return connection

    async def aclose(self) -> None:
        """Hand the connection back to the pool (the client may go on using it)."""
        connection, self._connection = self._connection, None
        if connection is not None and not self._busy:
            connection.socket_timeout = self._socket_timeout
            await self._pool.release(connection)


def pack_call(command: str, script: str, keys: Sequence[str], args: Sequence[str]) -> bytes | None:
    """``command script numkeys *keys *args`` as a RESP array of bulk strings, UTF-8 encoded:
    the bytes redis-py's ``pack_command`` gives for the same strings, joined. None when an
    item is not a ``str`` (redis-py's own packing then deals with it).

    Every piece is separated by CRLF, so the whole command is one join of the count, then each
    item's ``$length`` head and the item. The per-item work stays in C (``map``, slice
    assignment, one join); writing a length as text is what costs most, so each head is
    remembered (``_HEADS``). The lengths are those of the text, which are the byte lengths
    when the command is ASCII (a flag lookup on the joined text); otherwise the heads are
    written again from the encoded items.
    """
    items = [command, script, str(len(keys)), *keys, *args]
    count = len(items)
    parts = [""] * (2 * count + 2)  # the count, head and item per item, "" for the last CRLF
    parts[0] = f"*{count}"
    try:
        parts[1:-1:2] = map(_HEADS.__getitem__, map(len, items))  # TypeError: an int, say
        parts[2::2] = items
        text = "\r\n".join(parts)  # TypeError: bytes, say
    except TypeError:
        return None
    if not text.isascii():
        parts[1:-1:2] = [f"${len(item.encode())}" for item in items]
        text = "\r\n".join(parts)
    return text.encode()


class _Heads(dict[int, str]):
    """``$length`` by length, remembered (bounded: a few lengths recur, call after call)."""

    def __missing__(self, length: int) -> str:
        head = f"${length}"
        if len(self) < 4096:
            self[length] = head
        return head


_HEADS = _Heads()


def direct_connection(client: Any) -> ScriptConnection | None:
    """A ScriptConnection for ``client``, or None when its connections are not redis-py's own
    (a test double, a subclass with its own behaviour): those keep the generic path."""
    pool = getattr(client, "connection_pool", None)
    connection_class = getattr(pool, "connection_class", None)
    if connection_class is None or not connection_class.__module__.startswith("redis.asyncio."):
        return None
    return ScriptConnection(client)
