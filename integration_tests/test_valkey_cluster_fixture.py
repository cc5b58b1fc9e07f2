"""The cluster fixture itself: three masters, every slot served, keys spread over all of them."""

from __future__ import annotations

import pytest
from redis.asyncio.cluster import RedisCluster
from valkey_cluster import ClusterProcess

pytestmark = pytest.mark.valkey


async def test_three_masters_serve_every_slot(valkey_cluster: ClusterProcess, uid: str) -> None:
    client = RedisCluster(host=valkey_cluster.host, port=valkey_cluster.port)
    try:
        masters = {node.name for node in (await _nodes(client)) if node.server_type == "primary"}
        assert len(masters) == 3
        keys = [f"fixture-{uid}-{i}" for i in range(30)]
        for key in keys:
            await client.set(key, "1")
        ports = {client.get_node_from_key(key).port for key in keys}
        assert ports == {node.port for node in valkey_cluster.nodes}
        for key in keys:
            await client.delete(key)
    finally:
        await client.aclose()


async def _nodes(client: RedisCluster) -> list:  # type: ignore[type-arg]
    await client.initialize()
    return client.get_nodes()
