"""Path MTU discovery over the kernel's loopback: large packets between us, 1400 with others."""

from __future__ import annotations

import asyncio
import hashlib
import random

import pytest

from hubswarm.proto.utp import MAX_PACKET_SIZE
from hubswarm.swarm.utp import path_max_datagram

from .swarmkit import MIB
from .test_utp_shell import LOCAL, sockets, stream

pytestmark = pytest.mark.timeout(60)


def test_the_kernel_gives_loopbacks_mtu() -> None:
    assert path_max_datagram((LOCAL, 9)) == 65507  # lo's MTU is 65536; IPv4 + UDP headers


async def test_two_of_ours_on_loopback_send_datagrams_larger_than_ethernets() -> None:
    payload = random.Random(5).randbytes(4 * MIB)
    async with sockets() as (a, b):
        async with asyncio.timeout(30):
            received = await stream(a, b, payload)
        assert hashlib.sha1(received).digest() == hashlib.sha1(payload).digest()
        assert b.stats.bytes_in > b.stats.datagrams_in * 4 * MAX_PACKET_SIZE


@pytest.mark.parametrize("discovering", [(True, False), (False, True)])
async def test_with_a_peer_that_announces_nothing_no_datagram_exceeds_1400(
    discovering: tuple[bool, bool],
) -> None:
    # The peer without mtu_discovery speaks as libtorrent does (no EXT_MAX_DATAGRAM).
    payload = random.Random(6).randbytes(1 * MIB)
    sizes: list[int] = []
    async with sockets(mtu_discovery=discovering) as (a, b):
        receive = b.datagram_received

        def log_size(data: bytes, addr: tuple[str, int]) -> None:
            sizes.append(len(data))
            receive(data, addr)

        b.datagram_received = log_size  # type: ignore[method-assign]
        async with asyncio.timeout(30):
            received = await stream(a, b, payload)
        assert received == payload
        assert len(sizes) > 700
        assert max(sizes) <= MAX_PACKET_SIZE
