"""BatchedDatagramTransport: TcpNetwork's UDP endpoint reads bursts, then says so once."""

from __future__ import annotations

import asyncio
import socket

import pytest

from hubswarm.net import READ_BATCH, BatchedDatagramTransport, TcpNetwork

pytestmark = pytest.mark.timeout(30)

LOCAL = "127.0.0.1"


class Recorder(asyncio.DatagramProtocol):
    """Logs datagrams and drains in order."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.lost = asyncio.Event()
        self.made = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made = True

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.log.append(data.decode())

    def datagrams_drained(self) -> None:
        self.log.append("|")

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()


async def _burst(count: int) -> list[str]:
    transport, protocol = await TcpNetwork().bind(Recorder, LOCAL, 0)
    assert isinstance(transport, BatchedDatagramTransport)
    assert protocol.made  # as after create_datagram_endpoint
    address = transport.get_extra_info("sockname")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        for i in range(count):  # all queued in the kernel before the loop reads any
            raw.sendto(str(i).encode(), address)
        async with asyncio.timeout(5):
            while sum(1 for entry in protocol.log if entry != "|") < count:
                await asyncio.sleep(0.01)
    transport.close()
    async with asyncio.timeout(5):
        await protocol.lost.wait()
    assert transport.get_extra_info("socket").fileno() == -1
    return protocol.log


async def test_a_burst_is_read_in_one_batch_then_drained_once() -> None:
    log = await _burst(10)
    assert log == [*(str(i) for i in range(10)), "|"]


async def test_a_batch_is_bounded_so_other_work_runs_between() -> None:
    log = await _burst(READ_BATCH + 5)
    first_drain = log.index("|")
    assert first_drain == READ_BATCH
    assert [entry for entry in log if entry != "|"] == [str(i) for i in range(READ_BATCH + 5)]


async def test_sendto_reaches_the_address_and_a_closed_transport_sends_nothing() -> None:
    transport, _ = await TcpNetwork().bind(Recorder, LOCAL, 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.bind((LOCAL, 0))
        raw.settimeout(2)
        transport.sendto(b"hello", raw.getsockname())
        assert raw.recvfrom(100)[0] == b"hello"
        transport.close()
        transport.sendto(b"late", raw.getsockname())
        raw.settimeout(0.2)
        with pytest.raises(TimeoutError):
            raw.recvfrom(100)
