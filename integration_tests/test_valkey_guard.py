"""ValkeyExecutionGuard against a real server: exclusion, markers, fencing, errors."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from scheduler import (
    ExecutionGuardError,
    ExecutionGuardErrorKind,
    ExecutionSlot,
    GuardScope,
    InvalidJobError,
    InvalidJobKind,
    ValkeyExecutionGuard,
)
from scheduler._clock import SystemClock
from scheduler.testing import acheck_execution_guard

pytestmark = pytest.mark.valkey

AT = datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
#: Upper bound for waiting on a server-side expiry (never a tight timing assert).
EXPIRY_WAIT_SECONDS = 10.0


@pytest.fixture
async def guard(valkey_url: str, uid: str) -> AsyncIterator[ValkeyExecutionGuard]:
    guard = ValkeyExecutionGuard(valkey_url, prefix=f"test:{uid}:lease:")
    try:
        yield guard
    finally:
        await guard.aclose()


def slot(resource: str, at: datetime = AT, scope: GuardScope = GuardScope.OCCURRENCE) -> ExecutionSlot:
    return ExecutionSlot(job_id="job", resource_id=resource, scope=scope, scheduled_at=at)


async def test_contract_suite(valkey_url: str, uid: str) -> None:
    await acheck_execution_guard(lambda: ValkeyExecutionGuard(valkey_url, prefix=f"test:{uid}:"))


async def test_contract_suite_with_shared_client(client: Redis, uid: str) -> None:
    await acheck_execution_guard(lambda: ValkeyExecutionGuard(client=client, prefix=f"test:{uid}:"))
    assert await client.ping()  # a client passed in is not closed


async def test_key_layout_uses_hash_tag_and_nanosecond_instant(client: Redis, valkey_url: str, uid: str) -> None:
    guard = ValkeyExecutionGuard(valkey_url)  # the default prefix
    resource = f"res-{uid}"
    try:
        lease = await guard.acquire(slot(resource))
        assert lease is not None
        base = f"scheduler:valkey:execution-lease:{{{resource}}}"
        assert lease.key == f"{base}:occurrence:2025-06-01T12:00:00.123456000Z"
        assert await client.get(lease.key) == lease.token.encode()
        assert await client.zscore(f"{base}:occurrences", lease.key) is not None
        assert int(await client.get(f"{base}:fence")) == lease.fencing_token
        keys = [lease.key, f"{base}:resource", f"{base}:occurrences", f"{base}:fence"]
        assert len({key_slot(k.encode()) for k in keys}) == 1
        assert 0 < await client.pttl(lease.key) <= 30_000
        assert lease.expires_at is not None
        assert abs((lease.expires_at - SystemClock().now()) - timedelta(seconds=30)) < timedelta(seconds=5)
        await guard.release(lease)
        await client.delete(*keys)
    finally:
        await guard.aclose()


async def test_many_concurrent_acquirers_exactly_one_wins(valkey_url: str, uid: str) -> None:
    guards = [ValkeyExecutionGuard(valkey_url, prefix=f"test:{uid}:") for _ in range(4)]
    try:
        for round_ in range(10):
            target = slot("shared", AT + timedelta(seconds=round_))
            leases = await asyncio.gather(*(g.acquire(target) for g in guards for _ in range(5)))
            winners = [lease for lease in leases if lease is not None]
            assert len(winners) == 1, f"round {round_}: {len(winners)} winners"
    finally:
        for g in guards:
            await g.aclose()


async def test_different_occurrences_both_acquire(guard: ValkeyExecutionGuard) -> None:
    first = await guard.acquire(slot("r"))
    second = await guard.acquire(slot("r", AT + timedelta(milliseconds=100)))
    assert first is not None
    assert second is not None
    assert second.fencing_token is not None
    assert first.fencing_token is not None
    assert second.fencing_token > first.fencing_token


async def test_foreign_token_cannot_renew_or_release(guard: ValkeyExecutionGuard, client: Redis) -> None:
    lease = await guard.acquire(slot("r"))
    assert lease is not None
    from dataclasses import replace

    foreign = replace(lease, token="someone-else")
    assert await guard.renew(foreign) is False
    await guard.release(foreign)
    assert await client.get(lease.key) == lease.token.encode()
    assert await guard.renew(lease) is True
    await guard.release(lease)
    assert await client.get(lease.key) == f"done:{lease.token}".encode()
    assert await guard.renew(lease) is False  # released: lost, and a second release is harmless
    await guard.release(lease)


async def test_released_occurrence_stays_taken_until_ttl(valkey_url: str, uid: str, client: Redis) -> None:
    guard = ValkeyExecutionGuard(valkey_url, prefix=f"test:{uid}:", ttl=0.3, renew_interval=0.1)
    try:
        lease = await guard.acquire(slot("r"))
        assert lease is not None
        await guard.release(lease)
        assert await guard.acquire(slot("r")) is None  # completed marker: a late instance is contended
        assert 0 < await client.pttl(lease.key) <= 300
        again = None
        deadline = asyncio.get_running_loop().time() + EXPIRY_WAIT_SECONDS
        while again is None and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
            again = await guard.acquire(slot("r"))
        assert again is not None, "the marker must expire with the lease's TTL"
    finally:
        await guard.aclose()


async def test_renew_extends_ttl_and_index(valkey_url: str, uid: str, client: Redis) -> None:
    guard = ValkeyExecutionGuard(valkey_url, prefix=f"test:{uid}:", ttl=0.5, renew_interval=0.1)
    try:
        lease = await guard.acquire(slot("r"))
        assert lease is not None
        for _ in range(8):  # 0.8 s in total: without renewal the 0.5 s lease would be gone
            await asyncio.sleep(0.1)
            assert await guard.renew(lease) is True
        assert await client.get(lease.key) == lease.token.encode()
    finally:
        await guard.aclose()


async def test_resource_scope_excludes_overlapping_occurrences(guard: ValkeyExecutionGuard) -> None:
    occurrence = await guard.acquire(slot("r"))
    assert occurrence is not None
    assert await guard.acquire(slot("r", AT + timedelta(minutes=1), GuardScope.RESOURCE)) is None
    await guard.release(occurrence)
    held = await guard.acquire(slot("r", AT + timedelta(minutes=1), GuardScope.RESOURCE))
    assert held is not None
    assert await guard.acquire(slot("r", AT + timedelta(minutes=2))) is None
    assert await guard.acquire(slot("r", AT + timedelta(minutes=3), GuardScope.RESOURCE)) is None
    assert await guard.renew(held) is True
    await guard.release(held)
    # The RESOURCE run's occurrence stays taken (exactly once), other occurrences are free.
    assert await guard.acquire(slot("r", AT + timedelta(minutes=1), GuardScope.RESOURCE)) is None
    assert await guard.acquire(slot("r", AT + timedelta(minutes=1))) is None
    free = await guard.acquire(slot("r", AT + timedelta(minutes=2)))
    assert free is not None
    assert free.fencing_token is not None
    assert held.fencing_token is not None
    assert free.fencing_token > held.fencing_token


async def test_expired_occurrence_does_not_block_resource(valkey_url: str, uid: str) -> None:
    guard = ValkeyExecutionGuard(valkey_url, prefix=f"test:{uid}:", ttl=0.2, renew_interval=0.05)
    try:
        assert await guard.acquire(slot("r")) is not None  # never released: its holder "died"
        lease = None
        deadline = asyncio.get_running_loop().time() + EXPIRY_WAIT_SECONDS
        while lease is None and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
            lease = await guard.acquire(slot("r", AT + timedelta(minutes=1), GuardScope.RESOURCE))
        assert lease is not None
    finally:
        await guard.aclose()


_FENCE_WORKER = """
import asyncio, json, sys
from datetime import UTC, datetime, timedelta
from scheduler import ExecutionSlot, GuardScope, ValkeyExecutionGuard

async def main(url, prefix, worker):
    guard = ValkeyExecutionGuard(url, prefix=prefix)
    tokens = []
    base = datetime(2025, 1, 1, tzinfo=UTC)
    for i in range(50):
        at = base + timedelta(seconds=i * 10 + worker)
        lease = await guard.acquire(ExecutionSlot("job", "fenced", GuardScope.OCCURRENCE, at))
        tokens.append(lease.fencing_token)
        await guard.release(lease)
    await guard.aclose()
    print(json.dumps(tokens))

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def test_fencing_tokens_strictly_increase_across_processes(valkey_url: str, uid: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _FENCE_WORKER, valkey_url, f"test:{uid}:", str(n)],
            stdout=subprocess.PIPE,
            env=env,
        )
        for n in range(4)
    ]
    sequences = []
    for worker in workers:
        out, _ = worker.communicate(timeout=50)
        assert worker.returncode == 0
        sequences.append(json.loads(out))
    for tokens in sequences:
        assert tokens == sorted(tokens)
        assert len(set(tokens)) == len(tokens)
    everything = [t for tokens in sequences for t in tokens]
    assert sorted(everything) == list(range(1, 201))  # unique across processes, no gaps


def test_renew_interval_must_be_shorter_than_ttl() -> None:
    for ttl, renew in ((10, 10), (10, 20), (10, 0)):
        with pytest.raises(InvalidJobError) as caught:
            ValkeyExecutionGuard("redis://h:1/0", ttl=ttl, renew_interval=renew)
        assert caught.value.kind is InvalidJobKind.OTHER
    with pytest.raises(InvalidJobError):
        ValkeyExecutionGuard("redis://h:1/0", client=Redis())
    guard = ValkeyExecutionGuard("valkeys://u:hunter22@h:1/0", ttl=3, renew_interval=1)
    assert "hunter22" not in repr(guard)


def test_renewal_must_leave_a_safety_margin() -> None:
    """renew_interval + renewal call deadline must be shorter than ttl - safety margin."""
    for ttl, renew in ((30, 10), (3, 1), (0.3, 0.1)):
        ValkeyExecutionGuard("redis://h:1/0", ttl=ttl, renew_interval=renew)
    default = ValkeyExecutionGuard("redis://h:1/0")
    assert (default.timing.renew_call_timeout, default.timing.safety_margin) == (timedelta(seconds=5),) * 2
    with pytest.raises(InvalidJobError) as caught:
        ValkeyExecutionGuard("redis://h:1/0", ttl=30, renew_interval=20)  # 20 + 5 >= 30 - 5
    assert caught.value.kind is InvalidJobKind.OTHER
    assert "renew_interval 20 s + renewal call deadline 5 s" in str(caught.value)
    assert "ttl 30 s - safety margin 5 s" in str(caught.value)


async def test_unreachable_server_is_a_connection_error(uid: str) -> None:
    from valkey_server import free_port

    guard = ValkeyExecutionGuard(f"redis://u:hunter22@127.0.0.1:{free_port()}/0", connect_timeout=2)
    try:
        with pytest.raises(ExecutionGuardError) as caught:
            await guard.acquire(slot(f"r-{uid}"))
        assert caught.value.kind is ExecutionGuardErrorKind.CONNECTION
        assert "hunter22" not in str(caught.value)
        assert f"{{r-{uid}}}:occurrence:" in str(caught.value)
    finally:
        await guard.aclose()


async def test_wrong_key_type_is_a_data_error(guard: ValkeyExecutionGuard, client: Redis) -> None:
    _, _, fence = guard.keys("r")
    await client.rpush(fence, "x")
    with pytest.raises(ExecutionGuardError) as caught:
        await guard.acquire(slot("r"))
    assert caught.value.kind is ExecutionGuardErrorKind.DATA
    assert fence in str(caught.value) or guard.occurrence_key(slot("r")) in str(caught.value)
    # Nothing was left half-written: once the counter is repaired the occurrence is free.
    await client.delete(fence)
    assert await guard.acquire(slot("r")) is not None
