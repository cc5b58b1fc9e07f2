"""ValkeyStateStore against a real server: keys, legacy read, codec, error classification."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from scheduler import (
    InvalidJobError,
    JobState,
    ResilientStateStore,
    StoreError,
    StoreErrorKind,
    StoreOperation,
    ValkeyStateStore,
)
from scheduler._valkey_common import redact_url
from scheduler.testing import acheck_state_store

pytestmark = pytest.mark.valkey

T0 = datetime(2025, 3, 30, 1, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture
async def store(valkey_url: str) -> AsyncIterator[ValkeyStateStore]:
    store = ValkeyStateStore(valkey_url)
    try:
        yield store
    finally:
        await store.aclose()


async def test_contract_suite_default_prefix(valkey_url: str, client: Redis) -> None:
    await client.delete(*[f"scheduler:valkey:job-state:contract-{s}" for s in ("a", "b:ü/ spaced", "missing")])
    await acheck_state_store(lambda: ValkeyStateStore(valkey_url))


async def test_contract_suite_custom_prefix_and_shared_client(valkey_url: str, client: Redis, uid: str) -> None:
    await acheck_state_store(lambda: ValkeyStateStore(client=client, prefix=f"test:{uid}:"))
    assert await client.ping()  # aclose() of the store left the caller's client open


async def test_round_trip_key_and_json_without_ttl(store: ValkeyStateStore, client: Redis, uid: str) -> None:
    state = JobState(job_id=f"job-{uid}", trigger_count=4, last_run_at=T0, next_run_at=T0)
    await store.save(state)
    key = f"scheduler:valkey:job-state:job-{uid}"
    assert await client.ttl(key) == -1
    assert JobState.model_validate_json(await client.get(key)) == state
    assert await store.load(state.job_id) == state


async def test_legacy_key_is_read_when_new_key_missing(store: ValkeyStateStore, client: Redis, uid: str) -> None:
    legacy = JobState(job_id=f"job-{uid}", trigger_count=9, next_run_at=T0)
    await client.set(f"scheduler:job-state:job-{uid}", legacy.model_dump_json())
    assert await store.load(legacy.job_id) == legacy
    newer = legacy.model_copy(update={"trigger_count": 10})
    await store.save(newer)
    assert await store.load(legacy.job_id) == newer  # the new key wins once written


async def test_legacy_key_ignored_with_custom_prefix(valkey_url: str, client: Redis, uid: str) -> None:
    await client.set(f"scheduler:job-state:job-{uid}", JobState(job_id=f"job-{uid}").model_dump_json())
    store = ValkeyStateStore(valkey_url, prefix=f"custom:{uid}:")
    try:
        assert await store.load(f"job-{uid}") is None
    finally:
        await store.aclose()
        await client.delete(f"scheduler:job-state:job-{uid}")


async def test_delete_removes_new_and_legacy_keys(store: ValkeyStateStore, client: Redis, uid: str) -> None:
    job_id = f"job-{uid}"
    await client.set(f"scheduler:job-state:{job_id}", JobState(job_id=job_id).model_dump_json())
    await store.save(JobState(job_id=job_id, trigger_count=1))
    await store.delete(job_id)
    assert await client.exists(f"scheduler:job-state:{job_id}", f"scheduler:valkey:job-state:{job_id}") == 0
    assert await store.load(job_id) is None


async def test_reference_format_document_loads(store: ValkeyStateStore, client: Redis, uid: str) -> None:
    job_id = f"job-{uid}"
    document = (
        f'{{"job_id":"{job_id}","trigger_count":42,"last_run_at":"2025-03-30T01:30:15.123456789Z",'
        '"last_success_at":"2025-03-30T01:30:16.000000001Z","next_run_at":"2025-03-30T01:31:15.123456789Z",'
        '"last_error":null}'
    )
    await client.set(f"scheduler:valkey:job-state:{job_id}", document)
    state = await store.load(job_id)
    assert state is not None
    assert state.trigger_count == 42
    assert state.last_run_at == datetime(2025, 3, 30, 1, 30, 15, 123456, tzinfo=UTC)
    assert state.next_run_at == datetime(2025, 3, 30, 1, 31, 15, 123456, tzinfo=UTC)
    assert state.last_error is None
    assert state.in_flight is None


async def test_corrupted_json_is_a_data_error_and_is_left_alone(
    store: ValkeyStateStore, client: Redis, uid: str
) -> None:
    job_id = f"job-{uid}"
    key = f"scheduler:valkey:job-state:{job_id}"
    await client.set(key, b"{not json")
    with pytest.raises(StoreError) as caught:
        await store.load(job_id)
    error = caught.value
    assert (error.kind, error.operation, error.job_id) == (StoreErrorKind.DATA, StoreOperation.LOAD, job_id)
    assert key in str(error)
    assert job_id in str(error)
    with pytest.raises(StoreError) as caught:
        await store.save(JobState(job_id=job_id, trigger_count=1))
    assert (caught.value.kind, caught.value.operation) == (StoreErrorKind.DATA, StoreOperation.SAVE)
    assert key in str(caught.value)
    assert await client.get(key) == b"{not json"
    await store.delete(job_id)  # the way out: delete (scheduler reset), then save works again
    await store.save(JobState(job_id=job_id, trigger_count=1))


async def test_failed_validation_and_foreign_job_id_are_data_errors(
    store: ValkeyStateStore, client: Redis, uid: str
) -> None:
    job_id = f"job-{uid}"
    key = f"scheduler:valkey:job-state:{job_id}"
    for bad in (f'{{"job_id": "{job_id}", "trigger_count": "many"}}', '{"job_id": "someone-else"}', "[]"):
        await client.set(key, bad)
        with pytest.raises(StoreError) as caught:
            await store.load(job_id)
        assert caught.value.kind is StoreErrorKind.DATA
        assert await client.get(key) == bad.encode()


async def test_wrong_key_type_is_a_data_error(store: ValkeyStateStore, client: Redis, uid: str) -> None:
    job_id = f"job-{uid}"
    key = f"scheduler:valkey:job-state:{job_id}"
    await client.rpush(key, "x")
    with pytest.raises(StoreError) as caught:
        await store.load(job_id)
    assert (caught.value.kind, caught.value.operation) == (StoreErrorKind.DATA, StoreOperation.LOAD)
    assert key in str(caught.value)
    with pytest.raises(StoreError) as caught:
        await store.save(JobState(job_id=job_id))  # a plain SET would silently replace the list
    assert (caught.value.kind, caught.value.operation) == (StoreErrorKind.DATA, StoreOperation.SAVE)
    assert await client.type(key) == b"list"


async def test_unreachable_server_is_a_connection_error_without_credentials(uid: str) -> None:
    from valkey_server import free_port

    url = f"valkey://alice:s3cret-pw@127.0.0.1:{free_port()}/0"
    store = ValkeyStateStore(url, connect_timeout=2, timeout=2)
    try:
        assert "s3cret-pw" not in repr(store)
        assert "alice" not in repr(store)
        calls = (
            lambda: store.load(f"job-{uid}"),
            lambda: store.save(JobState(job_id=f"job-{uid}")),
            lambda: store.delete(f"job-{uid}"),
        )
        for call in calls:
            with pytest.raises(StoreError) as caught:
                await call()
            assert caught.value.kind is StoreErrorKind.CONNECTION
            assert "s3cret-pw" not in str(caught.value)
            assert f"scheduler:valkey:job-state:job-{uid}" in str(caught.value)
    finally:
        await store.aclose()


async def test_wrong_password_is_not_a_connection_error(valkey_url: str, client: Redis, uid: str) -> None:
    # ACL user with a password: a wrong one is configuration (UNKNOWN), never a silent degrade.
    user = f"user-{uid}"
    await client.acl_setuser(user, enabled=True, passwords=["+right-password"], keys=["*"], commands=["+@all"])
    host_port = valkey_url.split("://", 1)[1].split("/", 1)[0].rpartition("@")[2]
    good = ValkeyStateStore(f"valkey://{user}:right-password@{host_port}/0")
    bad = ValkeyStateStore(f"valkey://{user}:wrong-password@{host_port}/0")
    try:
        await good.save(JobState(job_id=f"job-{uid}"))
        assert await good.load(f"job-{uid}") == JobState(job_id=f"job-{uid}")
        with pytest.raises(StoreError) as caught:
            await bad.load(f"job-{uid}")
        assert caught.value.kind is StoreErrorKind.UNKNOWN
        assert "wrong-password" not in str(caught.value)
        assert "right-password" not in repr(good)
    finally:
        await good.delete(f"job-{uid}")
        await good.aclose()
        await bad.aclose()
        await client.acl_deluser(user)


def test_url_schemes_and_redaction() -> None:
    for url in ("redis://h:1/0", "rediss://h:1/0", "valkey://h:1/0", "valkeys://u:p@h:1/0"):
        ValkeyStateStore(url)  # constructing does not connect
    with pytest.raises(InvalidJobError):
        ValkeyStateStore("http://h:1/0")
    with pytest.raises(InvalidJobError):
        ValkeyStateStore("redis://h:1/0", client=Redis())
    assert redact_url("valkeys://bob:pa%40ss@h:6380/2") == "valkeys://***@h:6380/2"
    assert redact_url("redis://h/0?password=secret&db=1") == "redis://h/0?password=***&db=1"
    assert "pa%40ss" not in repr(ValkeyStateStore("valkeys://bob:pa%40ss@h:6380/2"))


def test_resilient_factory() -> None:
    resilient = ValkeyStateStore.resilient("valkey://user:pw-secret@h:1/0", probe_interval=1)
    assert isinstance(resilient, ResilientStateStore)
    assert isinstance(resilient.primary, ValkeyStateStore)
    assert "pw-secret" not in repr(resilient)


async def test_create_is_save_if_absent(valkey_url: str, uid: str) -> None:
    """create() writes only when the job has no state and returns the stored one otherwise."""
    store = ValkeyStateStore(valkey_url)
    try:
        first = JobState(job_id=f"create-{uid}", trigger_count=1)
        second = JobState(job_id=f"create-{uid}", trigger_count=2)
        assert await store.create(first) == first
        assert await store.create(second) == first
        assert await store.load(f"create-{uid}") == first
    finally:
        await store.delete(f"create-{uid}")
        await store.aclose()
