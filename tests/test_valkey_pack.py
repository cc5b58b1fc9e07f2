"""The script calls' own packing writes the bytes redis-py's ``pack_command`` writes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio.connection import Connection

from scheduler._valkey_direct import pack_call

# Any text but lone surrogates (not UTF-8), sometimes past redis-py's 6000-byte chunking.
texts = st.text(st.characters(codec="utf-8"), max_size=20) | st.builds(
    lambda text, times: text * times, st.text(min_size=1, max_size=3), st.integers(6000, 7000)
)


def _redis_py(command: str, script: str, keys: list[str], args: list[str]) -> bytes:
    return b"".join(Connection().pack_command(command, script, len(keys), *keys, *args))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["EVALSHA", "EVAL"]), texts, st.lists(texts, max_size=8), st.lists(texts, max_size=30))
def test_the_bytes_are_redis_pys(command: str, script: str, keys: list[str], args: list[str]) -> None:
    assert pack_call(command, script, keys, args) == _redis_py(command, script, keys, args)


def test_a_call_as_the_combined_script_makes_it() -> None:
    keys = ["scheduler:valkey:job-state:é", "{scheduler:valkey:job-state:é}:version", "lease", "index", "fence"]
    args = ['{"job_id":"é","last_error":"日本\\u0000"}', "1", "0", "0123abcd", "30000", "occurrence", "1000", ""]
    assert pack_call("EVALSHA", "f" * 40, keys, args) == _redis_py("EVALSHA", "f" * 40, keys, args)


def test_an_item_that_is_not_text_is_left_to_redis_py() -> None:
    assert pack_call("EVALSHA", "f" * 40, ["k"], [b"raw"]) is None  # type: ignore[list-item]
    assert pack_call("EVALSHA", "f" * 40, ["k"], [7]) is None  # type: ignore[list-item]


def test_the_remembered_heads_stay_few_and_right() -> None:
    from scheduler._valkey_direct import _HEADS

    for length in range(5000):
        assert pack_call("EVAL", "x" * length, [], []) == _redis_py("EVAL", "x" * length, [], [])
    assert len(_HEADS) <= 4096
    assert all(head == f"${length}" for length, head in _HEADS.items())
