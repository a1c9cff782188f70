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
    async with sockets() as (a, b):
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
