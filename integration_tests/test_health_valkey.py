"""/readyz follows a real Valkey server behind the resilient store: 503 while it is down, 200 after."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from valkey_server import ServerProcess

from scheduler import Interval, Job, Scheduler, SystemClock, TaskContext, ValkeyStateStore
from scheduler._health import HealthServer, Readiness, Watchdog, valkey_clients

pytestmark = pytest.mark.valkey


def status_of(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def wait_for(url: str, status: int) -> str:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while True:
        code, text = await asyncio.to_thread(status_of, url)
        if code == status:
            return text
        assert loop.time() < deadline, f"{url} stayed {code}: {text}"
        await asyncio.sleep(0.02)


async def test_readyz_is_503_while_valkey_is_down_and_200_after_recovery(private_server: ServerProcess) -> None:
    store = ValkeyStateStore.resilient(private_server.url, probe_interval=0.1)
    readiness = Readiness()
    server = HealthServer("127.0.0.1", 0, readiness, Watchdog(2.0), lambda: (b"", "text/plain"))
    runs: list[int] = []

    async def task(ctx: TaskContext) -> None:
        runs.append(1)

    # The job's first load has the 50 ms call budget of its 50 ms interval; opening the first
    # connection to a fresh server took ~48 ms in a loaded full-suite run, so open it first.
    assert await store.load("ready") is None
    scheduler = Scheduler(store=store, observer=readiness, clock=SystemClock())
    handle = scheduler.handle()
    running = asyncio.create_task(scheduler.run(Job("ready", Interval(timedelta(milliseconds=50)), task)))
    server.start(valkey_clients(store), ping_interval=0.1)
    host, port = server.address
    url = f"http://{host}:{port}/readyz"
    try:
        assert await wait_for(url, 200) == "ready\n"
        private_server.stop()
        reason = await wait_for(url, 503)
        assert "degraded" in reason or "PING" in reason
        during = len(runs)
        private_server.start()
        await wait_for(url, 200)
        assert len(runs) > during  # the job kept running through the outage and after it
        assert (await asyncio.to_thread(status_of, f"http://{host}:{port}/healthz"))[0] == 200
    finally:
        handle.shutdown()
        await running
        server.stop()
        await store.aclose()
