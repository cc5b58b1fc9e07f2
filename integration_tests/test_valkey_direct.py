"""The script connection's own packing, against a real server: what a script receives is what was sent."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from scheduler._valkey_direct import ScriptConnection

pytestmark = pytest.mark.valkey

_ECHO = """
local out = {}
for i = 1, #KEYS do out[#out + 1] = KEYS[i] end
for i = 1, #ARGV do out[#out + 1] = ARGV[i] end
return out
"""


async def test_keys_and_arguments_arrive_as_sent(client: Redis, uid: str) -> None:
    keys = [f"{{{uid}}}:é", f"{{{uid}}}:日本"]
    args = ["", "plain", "é" * 7000, '{"e":"\\u0000\\n"}', "x" * 6001]
    script = client.register_script(_ECHO)
    direct = ScriptConnection(client)
    try:
        for _ in range(2):  # EVAL the first time (the server does not know it), then EVALSHA
            reply = await direct.run(script, keys, args)
            assert [item.decode() for item in reply] == keys + args
    finally:
        await direct.aclose()
