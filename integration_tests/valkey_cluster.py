"""Start a real three-master Valkey Cluster for the integration tests (no replicas).

Each master is a ``ServerProcess`` started with ``--cluster-enabled yes`` and its own
``nodes.conf`` in its temporary directory; the cluster bus listens on a second free loopback
port. The fixture assigns the 16384 slots itself (three contiguous ranges), introduces the
nodes with CLUSTER MEET and waits until every node reports ``cluster_state:ok`` and knows
the whole slot map. A master can be killed and restarted on the same ports: it rejoins
from its ``nodes.conf`` with its slots (and, with ``durable=True``, its data from the AOF).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
from valkey_server import READY_TIMEOUT_SECONDS, ServerProcess, free_port

SLOTS = 16384
#: Short, so that a killed master is noticed (and the cluster heals) within a test's time.
NODE_TIMEOUT_MS = 1000


def slot_ranges(masters: int) -> list[tuple[int, int]]:
    """Contiguous, inclusive slot ranges covering 0..16383, one per master."""
    size = SLOTS // masters
    bounds = [i * size for i in range(masters)] + [SLOTS]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(masters)]


class ClusterProcess:
    """Three (``masters``) cluster nodes on loopback; ``url`` names the first node."""

    def __init__(self, binary: str, masters: int = 3, *, durable: bool = False) -> None:
        self.ranges = slot_ranges(masters)
        self.nodes: list[ServerProcess] = []
        for _ in range(masters):
            bus = free_port()
            args = ["--cluster-enabled", "yes", "--cluster-port", str(bus)]
            args += ["--cluster-config-file", "nodes.conf", "--cluster-node-timeout", str(NODE_TIMEOUT_MS)]
            if durable:  # every write on disk before it is acknowledged: a killed master loses nothing
                args += ["--appendonly", "yes", "--appendfsync", "always"]
            node = ServerProcess(binary, extra_args=tuple(args))
            node.bus_port = bus  # type: ignore[attr-defined]
            self.nodes.append(node)

    @property
    def host(self) -> str:
        return self.nodes[0].host

    @property
    def port(self) -> int:
        return self.nodes[0].port

    @property
    def url(self) -> str:
        """The cluster URL of the first node (a cluster client discovers the others)."""
        return f"valkey+cluster://{self.host}:{self.port}"

    def start(self) -> None:
        try:
            for node in self.nodes:
                node.start()
            for node, (first, last) in zip(self.nodes, self.ranges, strict=True):
                with redis.Redis(host=node.host, port=node.port) as client:
                    client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
            with redis.Redis(host=self.host, port=self.port) as first_node:
                for node in self.nodes[1:]:
                    first_node.execute_command("CLUSTER", "MEET", node.host, node.port, node.bus_port)  # type: ignore[attr-defined]
            self.wait_healthy()
        except BaseException:
            self.close()
            raise

    def wait_healthy(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        """Poll until every node says ``cluster_state:ok`` and maps every slot to a master."""
        _wait(self._healthy, timeout, "the cluster to report cluster_state:ok on every node")

    def _healthy(self) -> bool:
        for node in self.nodes:
            try:
                with redis.Redis(host=node.host, port=node.port, socket_timeout=1) as client:
                    info = client.execute_command("CLUSTER", "INFO")
                    text = info.decode() if isinstance(info, bytes) else str(info)
                    if "cluster_state:ok" not in text or f"cluster_known_nodes:{len(self.nodes)}" not in text:
                        return False
                    covered = sum(
                        int(entry[1]) - int(entry[0]) + 1 for entry in client.execute_command("CLUSTER", "SLOTS")
                    )
                    if covered != SLOTS:
                        return False
            except redis.RedisError:
                return False
        return True

    def node_of_slot(self, slot: int) -> ServerProcess:
        for node, (first, last) in zip(self.nodes, self.ranges, strict=True):
            if first <= slot <= last:
                return node
        raise ValueError(f"slot {slot} out of range")

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def __enter__(self) -> ClusterProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)
