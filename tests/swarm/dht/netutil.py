"""Helpers to run many of our DHT nodes in one event loop, each on its own address.

On the kernel's UDP the addresses are 127.x.y.z; on a :class:`hubswarm.memnet.MemoryNetwork`
(run under :func:`hubswarm.vtime.run`) they are 10.x.y.z hosts of that network.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable
from typing import Any, cast

from hubswarm.memnet import MemoryNetwork
from hubswarm.net import DatagramNetwork, TcpNetwork
from hubswarm.proto import krpc
from hubswarm.proto.krpc import distance
from hubswarm.swarm.dht.node import DHTNode


def loopback_ip(i: int, net: int = 2) -> str:
    """The i-th address in 127.<net>.0.0/16: every node has its own IP, as on a real network."""
    return f"127.{net}.{i // 250}.{i % 250 + 1}"


def memory_ip(i: int, net: int = 2) -> str:
    """The i-th host address in 10.<net>.0.0/16 of a MemoryNetwork."""
    return f"10.{net}.{i // 250}.{i % 250 + 1}"


def memory_node(network: MemoryNetwork, ip: str, **kwargs: Any) -> DHTNode:
    """A DHTNode on host ``ip`` of ``network``."""
    return DHTNode(host=ip, network=network.host(ip), **kwargs)


async def start_network(
    n: int,
    *,
    seed: int = 1,
    query_timeout: float = 0.5,
    net: int = 2,
    refresh: bool = False,
    network: MemoryNetwork | None = None,
) -> list[DHTNode]:
    """Start ``n`` nodes; node 0 is the bootstrap node, the others join it one by one.

    On the kernel's UDP unless ``network`` is given.
    """

    def make(i: int, **kwargs: Any) -> DHTNode:
        if network is None:
            return DHTNode(host=loopback_ip(i, net), **kwargs)
        return memory_node(network, memory_ip(i, net), **kwargs)

    nodes: list[DHTNode] = []
    try:
        boot = make(0, rng=random.Random(seed), query_timeout=query_timeout)
        await boot.__aenter__()
        nodes.append(boot)
        for i in range(1, n):
            node = make(
                i,
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


class RawUDP(asyncio.DatagramProtocol):
    """A bare datagram endpoint for sending hand-made datagrams and reading the answers."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's selector transport for UDP is no DatagramTransport subclass (3.11).
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.inbox.put_nowait(data)

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)

    async def recv(self, timeout: float = 1.0) -> bytes | None:
        """The next datagram that is not a query (the node pings unknown senders back)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    data = await self.inbox.get()
                    if krpc.peek_query_transaction_id(data) is None:
                        return data
        except TimeoutError:
            return None

    def close(self) -> None:
        assert self.transport is not None
        self.transport.close()

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port


async def raw_socket(host: str, network: DatagramNetwork | None = None) -> RawUDP:
    """A :class:`RawUDP` bound on ``host`` (the kernel's UDP unless ``network`` is given)."""
    _, proto = await (network or TcpNetwork()).bind(RawUDP, host, 0)
    return proto
