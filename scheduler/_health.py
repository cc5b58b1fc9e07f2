"""The metrics server's health endpoints: ``/healthz`` (liveness) and ``/readyz`` (readiness).

* ``/healthz`` answers 200 while the event loop is responsive: a watchdog task on the loop
  ticks every ``tick`` seconds, and the server (in its own thread) answers 503 once the last
  tick is more than ``lag_threshold`` late (a task that blocks the loop, a stuck process).
* ``/readyz`` answers 200 once the state is loaded, while the store is not degraded, the last
  guard call did not fail and the last periodic PING of the Valkey servers behind the store
  and the guard answered; otherwise 503 with the reason as text.
* ``/metrics`` serves the Prometheus registry; every other path is 404.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ._clock import monotonic
from ._enums import RunSkipReason
from .events import (
    ExecutionGuardAcquired,
    ExecutionGuardContended,
    ExecutionGuardLost,
    ExecutionGuardReleased,
    ExecutionGuardRenewed,
    ExecutionGuardRenewFailed,
    RunSkipped,
    SchedulerEvent,
    SchedulerStopped,
    StateLoaded,
    StoreDegraded,
    StoreRecovered,
)

_log = logging.getLogger("scheduler")

#: ``/healthz`` turns 503 when the loop's watchdog tick is this late.
DEFAULT_LAG_THRESHOLD = 5.0
#: How often the readiness check PINGs the Valkey servers (and how long one PING may take).
DEFAULT_PING_INTERVAL = 5.0


class Readiness:
    """Follows events (as an observer) and PING results; says whether the job is ready."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded = False
        self._stopped = False
        self._store: str | None = None
        self._guard: str | None = None
        self._ping: str | None = None

    def on_event(self, event: SchedulerEvent) -> None:
        with self._lock:
            if isinstance(event, StateLoaded):
                self._loaded = True
            elif isinstance(event, StoreDegraded) and event.operation.value != "ledger":
                self._store = f"store degraded since {event.operation.value} failed: {event.error}"
            elif isinstance(event, StoreRecovered):
                self._store = None
            elif isinstance(event, RunSkipped) and event.reason is RunSkipReason.GUARD_UNAVAILABLE:
                self._guard = "the last guard acquire failed"
            elif isinstance(event, ExecutionGuardAcquired):
                self._guard = "the last guard acquire failed" if event.without_lease else None
            elif isinstance(event, ExecutionGuardRenewFailed | ExecutionGuardLost):
                self._guard = f"guard renewal failed: {event.error or 'lease lost'}"
            elif isinstance(event, ExecutionGuardContended | ExecutionGuardRenewed | ExecutionGuardReleased):
                self._guard = None
            elif isinstance(event, SchedulerStopped):
                self._stopped = True

    def set_ping(self, problem: str | None) -> None:
        with self._lock:
            self._ping = problem

    def problem(self) -> str | None:
        """None when ready, else why not (one line)."""
        with self._lock:
            if self._stopped:
                return "the scheduler has stopped"
            if not self._loaded:
                return "the state is not loaded yet"
            return self._store or self._guard or self._ping


class Watchdog:
    """A task on the event loop that ticks; late ticks mean the loop is blocked."""

    def __init__(self, lag_threshold: float = DEFAULT_LAG_THRESHOLD) -> None:
        if not lag_threshold > 0:
            raise ValueError(f"lag_threshold must be > 0, got {lag_threshold!r}")
        self.lag_threshold = lag_threshold
        self.tick = min(1.0, lag_threshold / 4)
        self._last = monotonic()

    def lag(self) -> float:
        """Seconds the next tick is overdue (0 while on time)."""
        return max(0.0, monotonic() - self._last - self.tick)

    async def run(self) -> None:
        while True:
            self._last = monotonic()
            await asyncio.sleep(self.tick)


async def ping_valkey(clients: list[Any], readiness: Readiness, interval: float) -> None:
    """PING each client every ``interval`` seconds; a failure or a slow answer is not ready."""
    while True:
        problem = None
        for client in clients:
            try:
                async with asyncio.timeout(interval):
                    await client.ping()
            except Exception as exc:  # any failure means not ready; the reason is shown, scrubbed
                problem = f"Valkey PING failed: {type(exc).__name__}"
                break
        readiness.set_ping(problem)
        await asyncio.sleep(interval)


def valkey_clients(*backends: object) -> list[Any]:
    """The Valkey clients behind a store or guard (a resilient store's primary included)."""
    found: list[Any] = []
    for backend in backends:
        inner = getattr(backend, "primary", backend)
        client = getattr(inner, "client", None)
        if client is not None and callable(getattr(client, "ping", None)) and client not in found:
            found.append(client)
    return found


class HealthServer:
    """Serves ``/metrics``, ``/healthz`` and ``/readyz`` from a thread; 404 elsewhere."""

    def __init__(
        self,
        host: str,
        port: int,
        readiness: Readiness,
        watchdog: Watchdog,
        metrics: Callable[[], tuple[bytes, str]],
    ) -> None:
        self.readiness, self.watchdog = readiness, watchdog
        handler = _handler(self, metrics)
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="scheduler-metrics", daemon=True)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return (host.decode() if isinstance(host, bytes) else str(host)), int(port)

    def start(self, ping_clients: list[Any], ping_interval: float = DEFAULT_PING_INTERVAL) -> None:
        """Serve, and start the watchdog (and the PING task) on the running loop."""
        self._tasks.append(asyncio.get_running_loop().create_task(self.watchdog.run(), name="health-watchdog"))
        if ping_clients:
            task = ping_valkey(ping_clients, self.readiness, ping_interval)
            self._tasks.append(asyncio.get_running_loop().create_task(task, name="health-ping"))
        self._thread.start()

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def answer(self, path: str) -> tuple[int, str]:
        """Status and text for ``/healthz`` and ``/readyz``."""
        if path == "/healthz":
            lag = self.watchdog.lag()
            if lag > self.watchdog.lag_threshold:
                return 503, f"event loop blocked: watchdog {lag:.1f}s late\n"
            return 200, "ok\n"
        problem = self.readiness.problem()
        return (503, problem + "\n") if problem else (200, "ready\n")


def _handler(server: HealthServer, metrics: Callable[[], tuple[bytes, str]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.partition("?")[0].rstrip("/") or "/"
            if path == "/metrics":
                body, content_type = metrics()
                self._send(200, body, content_type)
            elif path in ("/healthz", "/readyz"):
                status, text = server.answer(path)
                self._send(status, text.encode(), "text/plain; charset=utf-8")
            else:
                self._send(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain; charset=utf-8")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None  # probes every few seconds would flood the log

    return Handler
