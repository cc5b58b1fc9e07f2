"""``scheduler run --metrics-port`` serves /healthz, /readyz and the dead-man's-switch gauges;
``--ping-url`` / ``--ping-url-file`` ping a local server per run."""

from __future__ import annotations

import re
import signal
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .test_cli import Running, cli, env, running, wait_until
from .test_ping import SECRET, _Server

__all__ = ["env", "running"]  # fixtures used below


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_health_paths_and_new_gauges(env: dict[str, str], running: Callable[..., Running]) -> None:
    fail_second = '[ "$SCHEDULER_TRIGGER_COUNT" != 2 ]'
    proc = running(env, "run", "--job-id", "h", "--every", "100ms", "--state", "memory:", "--health-lag", "2s",
                   "--metrics-port", "127.0.0.1:0", "--", "sh", "-c", fail_second)  # fmt: skip
    wait_until(lambda: "metrics_url=" in proc.stderr_text(), what="the metrics server")
    found = re.search(r"metrics_url=(\S+)/metrics", proc.stderr_text())
    assert found is not None
    base = found.group(1)
    wait_until(lambda: get(base + "/readyz") == (200, "ready\n"), what="ready")
    assert get(base + "/healthz") == (200, "ok\n")
    assert get(base + "/nope")[0] == 404

    def scraped() -> str:
        return get(base + "/metrics")[1]

    wait_until(lambda: 'scheduler_runs_total{job_id="h",status="success"} 2.0' in scraped(), what="two successes")
    text = scraped()
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0
    assert re.search(r'^scheduler_last_success_timestamp_seconds\{job_id="h"\} 1\.\d+e\+09$', text, re.M)
    assert re.search(r'^scheduler_last_run_timestamp_seconds\{job_id="h"\} 1\.\d+e\+09$', text, re.M)
    assert 'scheduler_consecutive_failures{job_id="h"} 0.0' in text


@pytest.fixture
def ping_server() -> Iterator[_Server]:
    server = _Server()
    yield server
    server.close()


def test_ping_url_file_pings_start_and_the_exit_code(env: dict[str, str], tmp_path: Path, ping_server: _Server) -> None:
    """A command that exits 3 pings /start then /3 with its stderr; the URL is never printed."""
    url_file = tmp_path / "ping-url"
    url_file.write_text(ping_server.url + "\n")
    result = cli(env, "run", "--job-id", "p", "--every", "50ms", "--max-runs", "2", "--state", "memory:",
                 "--ping-url-file", str(url_file), "--", "sh", "-c",
                 '[ "$SCHEDULER_TRIGGER_COUNT" = 1 ] || { echo no space left >&2; exit 3; }')  # fmt: skip
    assert result.returncode == 0, result.stderr
    paths = [path.removeprefix(SECRET) or "/" for path, _, _ in ping_server.requests]
    assert paths == ["/start", "/", "/start", "/3"]
    assert b"no space left" in ping_server.requests[3][2]
    assert "secret" not in result.stderr + result.stdout


def test_bad_ping_url_is_a_usage_error_that_hides_it(env: dict[str, str]) -> None:
    result = cli(env, "run", "--job-id", "p", "--every", "1s", "--ping-url", "ftp://host/secret-key", "--", "true")
    assert result.returncode == 2
    assert "ping URL must be http:// or https://" in result.stderr
    assert "secret" not in result.stderr


def test_ping_url_from_the_environment(env: dict[str, str], ping_server: _Server) -> None:
    result = cli({**env, "SCHEDULER_PING_URL": ping_server.url}, "run", "--job-id", "e", "--every", "50ms",
                 "--max-runs", "1", "--state", "memory:", "--", "true")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [path.removeprefix(SECRET) or "/" for path, _, _ in ping_server.requests] == ["/start", "/"]
