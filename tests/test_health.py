"""The metrics server's /healthz, /readyz and /metrics, with a real scheduler on the loop."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from scheduler import (
    Interval,
    Job,
    RunSkipReason,
    Scheduler,
    StateLoadSource,
    StoreOperation,
    SystemClock,
    TaskContext,
)
from scheduler._health import HealthServer, Readiness, Watchdog
from scheduler.events import RunSkipped, StateLoaded, StoreDegraded, StoreRecovered
from scheduler.prometheus import PrometheusObserver

from .conftest import T0


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
async def server() -> AsyncIterator[HealthServer]:
    registry = CollectorRegistry()
    PrometheusObserver(registry)
    found = HealthServer(
        "127.0.0.1", 0, Readiness(), Watchdog(0.2), lambda: (generate_latest(registry), CONTENT_TYPE_LATEST)
    )
    found.start([])
    yield found
    found.stop()


def base(server: HealthServer) -> str:
    host, port = server.address
    return f"http://{host}:{port}"


async def test_paths(server: HealthServer) -> None:
    """/metrics is served, /readyz waits for the state, any other path is 404."""
    url = base(server)
    status, text = await asyncio.to_thread(get, url + "/metrics")
    assert status == 200
    assert "scheduler_last_success_timestamp_seconds" in text
    assert await asyncio.to_thread(get, url + "/nope") == (404, "not found: try /metrics, /healthz or /readyz\n")
    assert await asyncio.to_thread(get, url + "/readyz") == (503, "the state is not loaded yet\n")
    assert await asyncio.to_thread(get, url + "/healthz") == (200, "ok\n")


async def test_readiness_follows_store_and_guard_events(server: HealthServer) -> None:
    """Ready once loaded; not while the store is degraded or the last guard acquire failed."""
    url, ready = base(server) + "/readyz", server.readiness
    ready.on_event(StateLoaded(job_id="j", at=T0, source=StateLoadSource.NEW, trigger_count=0, next_run_at=T0))
    assert await asyncio.to_thread(get, url) == (200, "ready\n")
    ready.on_event(StoreDegraded(job_id="j", at=T0, operation=StoreOperation.SAVE, error="Connection refused"))
    assert await asyncio.to_thread(get, url) == (503, "store degraded since save failed: Connection refused\n")
    ready.on_event(StoreRecovered(job_id="j", at=T0, written_back=1))
    skipped = {"job_id": "j", "at": T0, "scheduled_at": T0, "catch_up": False, "trigger_count": 1}
    ready.on_event(RunSkipped(reason=RunSkipReason.GUARD_UNAVAILABLE, **skipped))  # type: ignore[arg-type]
    assert await asyncio.to_thread(get, url) == (503, "the last guard acquire failed\n")
    ready.set_ping(None)
    ready.on_event(RunSkipped(reason=RunSkipReason.OVERLAP, **skipped))  # type: ignore[arg-type]
    assert (await asyncio.to_thread(get, url))[0] == 503  # an overlap says nothing about the guard


async def test_healthz_turns_503_while_a_task_blocks_the_loop(server: HealthServer) -> None:
    """A task that blocks the event loop for 0.8 s makes /healthz 503 (threshold 0.2 s) from
    another thread; it is 200 again once the loop runs."""
    url = base(server) + "/healthz"
    seen: list[int] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            seen.append(get(url)[0])
            stop.wait(0.02)

    async def blocks_the_loop(ctx: TaskContext) -> None:
        time.sleep(0.8)  # noqa: ASYNC251 - the mistake being detected: blocking work on the loop

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        job = Job("blocking", Interval(timedelta(milliseconds=20)), blocks_the_loop, max_runs=1)
        await Scheduler(clock=SystemClock()).run(job)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while (await asyncio.to_thread(get, url))[0] != 200:
            assert loop.time() < deadline, "never healthy again"
    finally:
        stop.set()
        poller.join()
    assert 503 in seen
    assert seen[0] == 200
