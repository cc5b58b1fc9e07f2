"""Store, guard and Scheduler on a real three-master Valkey Cluster."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster
from valkey_cluster import ClusterProcess

from scheduler import (
    ExecutionSlot,
    GuardScope,
    Interval,
    Job,
    JobState,
    Scheduler,
    SchedulerConfig,
    SchedulerStopReason,
    StoreError,
    StoreErrorKind,
    TaskContext,
    ValkeyExecutionGuard,
    ValkeyStateStore,
)
from scheduler._cli import open_store
from scheduler._cli_run import open_guard
from scheduler._valkey_keys import single_server_state_keys
from scheduler._valkey_store import DEFAULT_PREFIX
from scheduler.testing import acheck_execution_guard, acheck_state_store

pytestmark = pytest.mark.valkey

T0 = datetime(2025, 3, 30, 1, 30, 15, tzinfo=UTC)


@pytest.fixture
async def raw(valkey_cluster: ClusterProcess) -> AsyncIterator[RedisCluster]:
    client = RedisCluster(host=valkey_cluster.host, port=valkey_cluster.port)
    try:
        yield client
    finally:
        await client.aclose()


def spread_job_ids(cluster: ClusterProcess, raw: RedisCluster, uid: str, count: int = 3) -> list[str]:
    """Job ids whose state keys live on every master (asserted)."""
    store = ValkeyStateStore(client=raw)
    ids, masters = [], set()
    for i in range(64):
        job_id = f"spread-{uid}-{i}"
        port = cluster.node_of_slot(raw.keyslot(store.key(job_id))).port
        if port not in masters:
            masters.add(port)
            ids.append(job_id)
        if len(masters) == count:
            break
    assert masters == {node.port for node in cluster.nodes}
    return ids


async def test_store_contract_suite(valkey_cluster_url: str) -> None:
    await acheck_state_store(lambda: ValkeyStateStore(valkey_cluster_url))


async def test_guard_contract_suite(valkey_cluster_url: str) -> None:
    await acheck_execution_guard(lambda: ValkeyExecutionGuard(valkey_cluster_url))


async def test_every_key_of_a_job_shares_one_slot_and_ends_with_the_job_id(raw: RedisCluster, uid: str) -> None:
    store = ValkeyStateStore(client=raw)
    guard = ValkeyExecutionGuard(store=store)
    for job_id in (f"plain-{uid}", f"br{{a}}ce}}{{-{uid}", f"{{{uid}}}", f"pct%7D-{uid}"):
        keys = store.keys(job_id)
        assert keys.state.endswith(job_id)
        assert keys.version.endswith(job_id)
        slot = ExecutionSlot(job_id, job_id, GuardScope.OCCURRENCE, T0)
        names = [keys.state, keys.version, *guard.keys(job_id), guard.occurrence_key(slot)]
        assert len({raw.keyslot(name) for name in names}) == 1, names
        state = JobState(job_id=job_id, trigger_count=1)
        saved, lease, _ = await store.consume_and_acquire(state, 0, guard, slot)
        assert saved
        assert lease is not None
        assert not isinstance(lease, Exception)
        node = raw.get_node_from_key(keys.state)
        pattern = "*job-state*" + job_id.replace("[", "[[]")  # what an operator types
        assert keys.state.encode() in await raw.keys(pattern, target_nodes=node)
        assert await store.release_and_save(state.with_revision(1), 1, guard, lease) == (True, True, None)
        await store.delete(job_id)


async def test_a_single_server_url_on_a_cluster_node_says_to_use_the_cluster_url(
    valkey_cluster: ClusterProcess, raw: RedisCluster, uid: str
) -> None:
    node = valkey_cluster.nodes[0]
    elsewhere = next(
        j
        for j in spread_job_ids(valkey_cluster, raw, uid)
        if valkey_cluster.node_of_slot(raw.keyslot(ValkeyStateStore(client=raw).key(j))) is not node
    )
    store = ValkeyStateStore(f"redis://{node.host}:{node.port}")
    try:
        job_id = next(j for j in (f"{elsewhere}-{i}" for i in range(64)) if _redirected(valkey_cluster, raw, j))
        with pytest.raises(StoreError) as caught:
            await store.save(JobState(job_id=job_id))
        assert caught.value.kind is StoreErrorKind.UNKNOWN
        assert "valkey+cluster://" in str(caught.value)
        assert "MOVED" in str(caught.value)
    finally:
        await store.aclose()


async def test_two_replicas_move_a_single_server_document_at_once(raw: RedisCluster, uid: str) -> None:
    job_id = f"moved-{uid}"
    old = single_server_state_keys(DEFAULT_PREFIX, job_id)
    state = JobState(job_id=job_id, trigger_count=7, next_run_at=T0)
    await raw.set(old.state, state.to_json())
    await raw.hset(old.version, mapping={"revision": 3, "schema_version": 1})
    first, second = ValkeyStateStore(client=raw), ValkeyStateStore(client=raw)
    loaded = await asyncio.gather(first.load(job_id), second.load(job_id))
    assert loaded[0] == loaded[1] == state.with_revision(3)
    assert await raw.exists(old.state) == 0
    assert await raw.exists(old.version) == 0
    assert await raw.get(first.key(job_id)) is not None
    assert await first.save_if(state.with_revision(3), 3)  # the revision carried over
    assert await second.load(job_id) == state.with_revision(4)
    await first.delete(job_id)


async def test_scheduler_runs_jobs_on_every_master_through_the_cli_urls(
    valkey_cluster: ClusterProcess, raw: RedisCluster, uid: str
) -> None:
    url = valkey_cluster.url
    runs: dict[str, list[int | None]] = {}
    histories: dict[str, int] = {}

    async def task(ctx: TaskContext) -> None:
        runs.setdefault(ctx.run.job_id, []).append(ctx.run.fencing_token)

    async def one(job_id: str) -> None:
        store, guard = open_store(url), open_guard(url, timedelta(seconds=3))
        try:
            # Routing is under test, not deadlines: a stall of a loaded machine must not fail a call.
            config = SchedulerConfig(call_timeout=timedelta(seconds=2))
            report = await Scheduler(config, store, guard=guard).run(
                Job(job_id, Interval(timedelta(milliseconds=100)), task, max_runs=4)
            )
            assert report.stop_reason is SchedulerStopReason.TERMINAL
            histories[job_id] = len(report.history)
            assert (await store.load(job_id)) == report.state
        finally:
            await store.aclose()
            await guard.aclose()  # type: ignore[attr-defined]

    job_ids = spread_job_ids(valkey_cluster, raw, uid)
    await asyncio.gather(*(one(job_id) for job_id in job_ids))
    # A loaded machine may miss an occurrence (the default policy skips it); most must run.
    assert {job_id: len(tokens) for job_id, tokens in runs.items()} == histories
    assert all(count >= 2 for count in histories.values()), histories
    assert all(tokens == sorted(set(tokens)) for tokens in runs.values())  # type: ignore[type-var]


def test_cli_with_cluster_urls_runs_a_command(valkey_cluster: ClusterProcess, tmp_path: Path, uid: str) -> None:
    out = tmp_path / "runs.txt"
    url = valkey_cluster.url
    # Long enough that start-up (the first save loads pydantic) never makes occurrences coalesce.
    every = "300ms"
    args = [sys.executable, "-m", "scheduler", "run", "--job-id", f"cli-{uid}", "--every", every, "--max-runs", "3"]
    args += ["--state", url, "--guard", url, "--", "sh", "-c", f'echo "$SCHEDULER_SCHEDULED_AT" >> {out}']
    done = subprocess.run(args, capture_output=True, timeout=60, env={**os.environ}, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    lines = out.read_text().split()
    assert len(lines) == 3 == len(set(lines))


def _redirected(cluster: ClusterProcess, raw: RedisCluster, job_id: str) -> bool:
    """Whether the single-server key of ``job_id`` lives on another master than the first."""
    key = single_server_state_keys(DEFAULT_PREFIX, job_id).state
    return cluster.node_of_slot(raw.keyslot(key)) is not cluster.nodes[0]
