"""The client's own work per run of a ``valkey_protocol`` variant, without the server's noise.

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python -m benchmarks.valkey_instructions combined 100
    (again with 600 runs; instructions per run = the difference of the two "Collected" / 500)

Wall time and CPU time on a shared host vary by more than a change to the client is worth, so
this counts instructions instead. A private server answers the warm-up runs (scripts loaded,
keys created); then the script connection's replies are stubbed at the redis-py connection
(nothing is sent; each reply comes one event-loop turn later, as a real reply would) and
``runs`` runs are made. The stub serves ``combined`` (a saved state, a granted lease, no
ledger error) and ``floor`` (a number); the other variants need real replies.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from . import valkey_protocol
from ._server import ValkeyServer


def _stub_script_replies(variant: str) -> None:
    """Replace the script connection's I/O (the one with no socket timeout) with canned replies."""
    from redis.asyncio import connection

    cls: Any = connection.AbstractConnection
    send, read = cls.send_packed_command, cls.read_response
    count = 0

    async def send_packed_command(self: Any, command: Any, check_health: bool = True) -> None:
        if self.socket_timeout is not None:  # a pooled connection: the real thing
            await send(self, command, check_health)

    async def read_response(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal count
        if self.socket_timeout is not None:
            return await read(self, *args, **kwargs)
        count += 1
        await asyncio.sleep(0)  # the reply arrives on a later turn of the loop
        return 1 if variant == "floor" else [count, count, b"", b""]

    cls.send_packed_command, cls.read_response = send_packed_command, read_response


def main() -> int:
    variant, runs = sys.argv[1], int(sys.argv[2])
    if variant not in ("combined", "floor"):
        raise SystemExit("usage: python -m benchmarks.valkey_instructions combined|floor RUNS")
    with ValkeyServer() as url:
        valkey_protocol.measure(variant, url, 20)
        _stub_script_replies(variant)
        valkey_protocol.measure(variant, url, 20)
        valkey_protocol.measure(variant, url, runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
