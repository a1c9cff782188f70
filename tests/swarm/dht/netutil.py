"""Helpers to run many of our DHT nodes in one event loop on distinct 127.x.y.z addresses."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable

from hubswarm.proto.krpc import distance
from hubswarm.swarm.dht.node import DHTNode


def loopback_ip(i: int, net: int = 2) -> str:
    """The i-th address in 127.<net>.0.0/16: every node has its own IP, as on a real network."""
    return f"127.{net}.{i // 250}.{i % 250 + 1}"


async def start_network(
    n: int, *, seed: int = 1, query_timeout: float = 0.5, net: int = 2, refresh: bool = False
) -> list[DHTNode]:
    """Start ``n`` nodes; node 0 is the bootstrap node, the others join it one by one."""
    nodes: list[DHTNode] = []
    try:
        boot = DHTNode(
            host=loopback_ip(0, net), rng=random.Random(seed), query_timeout=query_timeout
        )
        await boot.__aenter__()
        nodes.append(boot)
        for i in range(1, n):
            node = DHTNode(
                host=loopback_ip(i, net),
                bootstrap=[boot.address],
                rng=random.Random(seed * 100_000 + i),
                query_timeout=query_timeout,
            )
            await node.__aenter__()
            nodes.append(node)
        if refresh:
            # Early joiners met few nodes: one refresh lookup of their own id each (as BEP 5's
            # bucket refresh would do later), a few at a time.
            for chunk in range(0, n, 20):
                async with asyncio.TaskGroup() as tg:
                    for node in nodes[chunk : chunk + 20]:
                        tg.create_task(node.lookup(node.node_id))
    except BaseException:
        await stop_all(nodes)
        raise
    return nodes


async def stop_all(nodes: Iterable[DHTNode]) -> None:
    """Stop every node (in order)."""
    for node in nodes:
        await node.__aexit__(None, None, None)


def true_closest(
    nodes: Iterable[DHTNode], target: bytes, k: int = 8, exclude: bytes = b""
) -> list[bytes]:
    """The ids of the k live nodes closest to ``target`` (ground truth)."""
    ids = [n.node_id for n in nodes if n.node_id != exclude]
    ids.sort(key=lambda i: distance(i, target))
    return ids[:k]
