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
* when a call is already in flight on it (overlapping runs), the generic path is used.

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
        self._pool = client.connection_pool
        self._connection: Any = None
        self._socket_timeout: float | None = None
        self._busy = False

    async def run(self, script: Any, keys: Sequence[str], args: Sequence[str]) -> Any:
        """The reply of ``script`` (an ``AsyncScript``) for ``keys`` and ``args``."""
        if self._busy:
            return await script(keys=keys, args=args)
        self._busy = True
        try:
            return await self._run(script, keys, args)
        finally:
            self._busy = False

    async def _run(self, script: Any, keys: Sequence[str], args: Sequence[str]) -> Any:
        from redis.exceptions import NoScriptError, ResponseError

        connection = self._connection
        if connection is None:
            connection = await self._take()
        reader = getattr(connection, "_reader", None)
        if reader is not None and reader.at_eof():  # closed by the server while idle
            await connection.disconnect(nowait=True)
        try:
            try:
                return await self._send(connection, "EVALSHA", script.sha, keys, args)
            except NoScriptError:
                return await self._send(connection, "EVAL", script.script, keys, args)
        except ResponseError:
            raise  # an error reply: the connection is still in step
        except BaseException:
            await connection.disconnect(nowait=True)
            raise

    @staticmethod
    async def _send(connection: Any, command: str, script: Any, keys: Sequence[str], args: Sequence[str]) -> Any:
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
        self._connection = connection
        return connection

    async def aclose(self) -> None:
        """Hand the connection back to the pool (the client may go on using it)."""
        connection, self._connection = self._connection, None
        if connection is not None and not self._busy:
            connection.socket_timeout = self._socket_timeout
            await self._pool.release(connection)


def direct_connection(client: Any) -> ScriptConnection | None:
    """A ScriptConnection for ``client``, or None when its connections are not redis-py's own
    (a test double, a subclass with its own behaviour): those keep the generic path."""
    pool = getattr(client, "connection_pool", None)
    connection_class = getattr(pool, "connection_class", None)
    if connection_class is None or not connection_class.__module__.startswith("redis.asyncio."):
        return None
    return ScriptConnection(client)
