"""uTP over the kernel's UDP acks once per read batch (``datagrams_drained``), not per packet."""

from __future__ import annotations

import asyncio
import hashlib
import random

import pytest

from hubswarm.swarm.utp import UtpSocket

from .swarmkit import MIB
from .test_utp_shell import sockets, stream

pytestmark = pytest.mark.timeout(120)


async def test_the_receiver_acks_once_per_read_batch_not_per_packet() -> None:
    payload = random.Random(3).randbytes(4 * MIB)
    async with sockets(mtu_discovery=(False, False)) as (a, b):  # 1400-byte packets
        async with asyncio.timeout(60):
            received = await stream(a, b, payload)
        assert hashlib.sha1(received).digest() == hashlib.sha1(payload).digest()
        # One ACK per packet would make these about equal (libtorrent acks when its socket
        # is drained; so do we, once per batch the transport read).
        assert b.stats.datagrams_out * 4 < b.stats.datagrams_in


async def test_a_socket_on_memnet_serves_each_datagram_at_once() -> None:
    from hubswarm.memnet import MemoryNetwork

    network = MemoryNetwork(latency=0.0)
    sock = UtpSocket(host="10.0.0.1", network=network.host("10.0.0.1"))
    async with sock:
        assert not sock._batched  # no datagrams_drained() from a memory transport


class _Counting(asyncio.BufferedProtocol):
    """Counts buffer_updated() calls and bytes; ``done`` once ``expected`` bytes are in."""

    def __init__(self, expected: int) -> None:
        self.buf = bytearray(256 * 1024)
        self.got = bytearray()
        self.calls = 0
        self.expected = expected
        self.done = asyncio.Event()

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self.buf)

    def buffer_updated(self, nbytes: int) -> None:
        self.calls += 1
        self.got += self.buf[:nbytes]
        if len(self.got) >= self.expected:
            self.done.set()


async def test_a_read_batch_reaches_a_buffered_protocol_in_few_calls() -> None:
    from hubswarm.swarm.utp import UtpNetwork

    payload = random.Random(4).randbytes(1 * MIB)
    receivers: list[_Counting] = []

    def accept() -> _Counting:
        receivers.append(_Counting(len(payload)))
        return receivers[-1]

    async with sockets(mtu_discovery=(False, False)) as (a, b):  # 1400-byte packets
        await UtpNetwork(b).listen(accept, b.address[0], 0)
        transport, _ = await UtpNetwork(a).connect(asyncio.Protocol, *b.address)
        transport.write(payload)
        async with asyncio.timeout(30):
            while not receivers:
                await asyncio.sleep(0.01)
            await receivers[0].done.wait()
        transport.close()
    got = receivers[0]
    assert bytes(got.got) == payload
    # About 760 packets of 1380 bytes; delivered per read batch, not per packet.
    assert got.calls * 4 < b.stats.datagrams_in
