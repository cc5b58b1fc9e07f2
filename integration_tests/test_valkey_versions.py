"""ValkeyStateStore revisions and document versions against a real server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from scheduler import JobState, StoreError, StoreErrorKind, ValkeyStateStore
from scheduler._state import SCHEMA_VERSION
from scheduler._store import ConditionalStateStore, CreatingStateStore

pytestmark = pytest.mark.valkey


@pytest.fixture
async def store(valkey_url: str, uid: str) -> AsyncIterator[ValkeyStateStore]:
    store = ValkeyStateStore(valkey_url, prefix=f"test:{uid}:")
    try:
        yield store
    finally:
        await store.aclose()


def doc(**fields: object) -> str:
    return json.dumps({"job_id": "v", "trigger_count": 4, **fields})


async def test_version_key_sits_beside_the_state_key(store: ValkeyStateStore, client: Redis, uid: str) -> None:
    assert isinstance(store, ConditionalStateStore)
    assert isinstance(store, CreatingStateStore)
    assert store.version_key("v") == f"{{test:{uid}:v}}:version"
    assert await store.save_if(JobState(job_id="v"), 0)
    assert await client.hgetall(store.version_key("v")) == {b"revision": b"1", b"schema_version": b"1"}
    await store.save(JobState(job_id="v", trigger_count=1))
    assert await client.hget(store.version_key("v"), "revision") == b"2"
    assert "revision" not in json.loads(await client.get(store.key("v")))
    await store.delete("v")
    assert await client.exists(store.key("v"), store.version_key("v")) == 0


async def test_save_if_conflicts_between_two_writers(valkey_url: str, store: ValkeyStateStore, uid: str) -> None:
    other = ValkeyStateStore(valkey_url, prefix=f"test:{uid}:")
    try:
        assert await store.save_if(JobState(job_id="v", trigger_count=1), 0)
        a, b = await store.load("v"), await other.load("v")
        assert a is not None
        assert b is not None
        assert a.revision == b.revision == 1
        assert await other.save_if(b.model_copy(update={"trigger_count": 2}), b.revision)
        assert not await store.save_if(a.model_copy(update={"trigger_count": 7}), a.revision)  # stale: conflict
        loaded = await store.load("v")
        assert loaded is not None
        assert (loaded.trigger_count, loaded.revision) == (2, 2)
    finally:
        await other.aclose()


async def test_a_document_without_version_key_starts_at_revision_zero(store: ValkeyStateStore, client: Redis) -> None:
    await client.set(store.key("v"), doc(added_later={"x": 1}))
    loaded = await store.load("v")
    assert loaded is not None
    assert loaded.revision == 0
    assert not await store.save_if(loaded, 1)
    # Written before revisions were counted: revision 0, so the reader's conditional save works.
    assert await store.save_if(loaded.model_copy(update={"trigger_count": 5}), 0)
    assert not await store.save_if(loaded.model_copy(update={"trigger_count": 6}), 0)
    stored = await store.load("v")
    assert stored is not None
    assert (stored.trigger_count, stored.revision, stored.model_extra) == (5, 1, {"added_later": {"x": 1}})


@pytest.mark.parametrize("where", ["document", "version key"])
async def test_a_newer_schema_is_refused_and_never_written_over(
    store: ValkeyStateStore, client: Redis, where: str
) -> None:
    newer = doc(schema_version=SCHEMA_VERSION + 1, shape="different")
    if where == "document":
        await client.set(store.key("v"), newer)
    else:
        newer = doc(unknown="kept")
        await client.set(store.key("v"), newer)
        await client.hset(store.version_key("v"), mapping={"revision": 3, "schema_version": SCHEMA_VERSION + 1})
    with pytest.raises(StoreError) as caught:
        await store.load("v")
    assert caught.value.kind is StoreErrorKind.DATA
    assert f"schema_version {SCHEMA_VERSION + 1}" in str(caught.value)
    mine = JobState(job_id="v", trigger_count=9)
    for attempt in (store.save(mine), store.save_if(mine, 3), store.save_if(mine, 0), store.create(mine)):
        with pytest.raises(StoreError) as caught:
            await attempt
        assert caught.value.kind is StoreErrorKind.DATA
    assert (await client.get(store.key("v"))).decode() == newer


async def test_unknown_fields_are_written_back(store: ValkeyStateStore, client: Redis) -> None:
    await client.set(store.key("v"), doc(added_later=[1, 2]))
    loaded = await store.load("v")
    assert loaded is not None
    await store.save(loaded.model_copy(update={"trigger_count": 5}))
    stored = json.loads(await client.get(store.key("v")))
    assert (stored["trigger_count"], stored["added_later"]) == (5, [1, 2])


async def test_create_returns_the_stored_revision(store: ValkeyStateStore) -> None:
    created = await store.create(JobState(job_id="v", schedule_fingerprint="a"))
    assert created.revision == 1
    await store.save(created)
    again = await store.create(JobState(job_id="v", schedule_fingerprint="b"))
    assert (again.schedule_fingerprint, again.revision) == ("a", 2)


async def test_a_key_with_braces_keeps_its_version_key_apart(store: ValkeyStateStore) -> None:
    for job_id in ("a{b}c", "x}y", "{z"):
        assert await store.save_if(JobState(job_id=job_id, trigger_count=1), 0)
        loaded = await store.load(job_id)
        assert loaded is not None
        assert (loaded.trigger_count, loaded.revision) == (1, 1)
        await store.delete(job_id)
