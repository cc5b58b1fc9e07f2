"""HttpPingObserver: healthchecks.io-style pings from a background sender, against a local server."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from scheduler import HttpPingObserver, Interval, InvalidJobError, Job, Scheduler, SystemClock, TaskContext
from scheduler.events import RunCompleted, RunStarted
from scheduler.testing import FakeClock, RecordingObserver

from .conftest import T0

SECRET = "/ping/0f6c1d2e-secret-uuid"


class _Server:
    """Records (path, query, body) of every request; answers ``status`` or never answers."""

    def __init__(self, status: int = 200, hang: bool = False) -> None:
        self.requests: list[tuple[str, dict[str, list[str]], bytes]] = []
        self.status, self.hang = status, hang
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                parts = urlsplit(self.path)
                outer.requests.append((parts.path, parse_qs(parts.query), body))
                if outer.hang:
                    outer.release.wait(30)
                self.send_response(outer.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"OK")

            def log_message(self, *args: object) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        # A short poll: shutdown() waits for the loop to notice (half a second per test by default).
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{SECRET}"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    found = _Server()
    yield found
    found.close()


def _paths(server: _Server) -> list[str]:
    return [path.removeprefix(SECRET) or "/" for path, _, _ in server.requests]


async def test_success_pings_start_then_success(clock: FakeClock, server: _Server) -> None:
    """A run that succeeds pings URL/start, then URL, both with the same rid."""
    ping = HttpPingObserver(server.url)

    async def ok(ctx: TaskContext) -> None:
        return None

    await Scheduler(clock=clock, observer=ping).run(Job("p", Interval(5), ok, max_runs=1))
    assert ping.close(timeout=5)
    assert _paths(server) == ["/start", "/"]
    rids = [query["rid"] for _, query, _ in server.requests]
    assert rids[0] == rids[1]
    assert len(rids[0][0]) == 36


async def test_failure_pings_fail_with_the_error_as_body(clock: FakeClock, server: _Server) -> None:
    """A run that raises pings URL/start, then URL/fail with the error text as the body."""
    ping = HttpPingObserver(server.url)

    async def boom(ctx: TaskContext) -> None:
        raise RuntimeError("disk full on /backup")

    await Scheduler(clock=clock, observer=ping).run(Job("p", Interval(5), boom, max_runs=1))
    assert ping.close(timeout=5)
    assert _paths(server) == ["/start", "/fail"]
    assert b"disk full on /backup" in server.requests[1][2]


def test_a_failed_command_pings_its_exit_code_and_long_errors_are_cut(server: _Server) -> None:
    """A command that exited 3 pings URL/3; the body is at most 10 KB."""
    ping = HttpPingObserver(server.url)
    fields = {"job_id": "p", "at": T0, "scheduled_at": T0, "catch_up": False, "trigger_count": 1}
    ping.on_event(RunStarted(attempt=1, **fields))
    error = "CommandFailed: exit code 3; stderr: " + "x" * 20_000
    ping.on_event(RunCompleted(status="failed", error=error, attempts=1, **fields))  # type: ignore[arg-type]
    assert ping.close(timeout=5)
    assert _paths(server) == ["/start", "/3"]
    assert len(server.requests[1][2]) == 10_000


def test_a_4xx_answer_is_not_retried_and_the_warning_hides_the_path(caplog: pytest.LogCaptureFixture) -> None:
    """A 404 is logged once as a warning that names only scheme and host; no retry."""
    server = _Server(status=404)
    try:
        ping = HttpPingObserver(server.url)
        fields = {"job_id": "p", "at": T0, "scheduled_at": T0, "catch_up": False, "trigger_count": 1}
        with caplog.at_level(logging.WARNING, logger="scheduler"):
            ping.on_event(RunStarted(attempt=1, **fields))
            assert ping.close(timeout=5)
        assert len(server.requests) == 1
        assert "ping /start to http://127.0.0.1 failed: HTTP 404" in caplog.text
        assert "secret" not in caplog.text
        assert "secret" not in repr(ping)
    finally:
        server.close()


def _refusing_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{SECRET}"


@pytest.mark.parametrize("kind", ["unreachable", "hanging"])
async def test_a_dead_ping_url_delays_no_run(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    """Runs every 50 ms start on time whether the ping URL refuses or never answers; the
    URL's path appears nowhere in the logs."""
    server = _Server(hang=True) if kind == "hanging" else None
    url = server.url if server else _refusing_url()
    ping = HttpPingObserver(url, timeout=2)
    recorder = RecordingObserver()

    async def ok(ctx: TaskContext) -> None:
        return None

    try:
        with caplog.at_level(logging.DEBUG, logger="scheduler"):
            await Scheduler(clock=SystemClock(), observer=[ping, recorder]).run(
                Job("p", Interval(timedelta(milliseconds=50)), ok, max_runs=6)
            )
            ping.close(timeout=0.2)
    finally:
        if server:
            server.close()
    lateness = [(e.at - e.scheduled_at).total_seconds() for e in recorder.of_type(RunStarted)]
    assert len(lateness) == 6
    assert max(lateness) < 0.1, lateness  # a blocking ping would cost its 2 s timeout
    assert "secret" not in caplog.text


@pytest.mark.parametrize("url", ["ftp://example.com/x", "example.com/abc", "http:///nohost"])
def test_a_bad_url_is_refused_without_showing_it(url: str) -> None:
    with pytest.raises(InvalidJobError) as caught:
        HttpPingObserver(url)
    assert "abc" not in str(caught.value)
    assert "example" not in str(caught.value)


def test_wrong_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="url"):
        HttpPingObserver(b"http://x")  # type: ignore[arg-type]
