"""The time and transport seams: the virtual-time loop, the in-memory network, TcpNetwork."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time

import pytest

from hubswarm import net, vtime
from hubswarm.clock import Clock
from hubswarm.memnet import MemoryNetwork

# --- virtual time -------------------------------------------------------------------------


def test_virtual_sleep_takes_virtual_time_and_no_wall_time() -> None:
    async def main() -> tuple[float, float]:
        clock = Clock()
        t0 = clock.now()
        await clock.sleep(3600.0)
        async with asyncio.timeout(10):
            await asyncio.sleep(5.0)
        return t0, clock.now()

    wall0 = time.monotonic()
    t0, t1 = vtime.run(main())
    assert t1 - t0 == pytest.approx(3605.0)
    assert time.monotonic() - wall0 < 2.0


def test_virtual_timeout_fires_at_its_virtual_deadline() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(30.0):
                await asyncio.Event().wait()
        return loop.time() - t0

    assert vtime.run(main()) == pytest.approx(30.0)


@pytest.mark.parametrize("threads", [False, True], ids=["inline", "threads"])
def test_thread_work_takes_no_virtual_time_and_timers_wait_for_it(threads: bool) -> None:
    # A timer due in 1 virtual second must not fire while a 0.2 s (wall) thread job runs.
    async def main() -> tuple[float, list[str]]:
        loop = asyncio.get_running_loop()
        order: list[str] = []
        t0 = loop.time()
        loop.call_later(1.0, order.append, "timer")
        await asyncio.to_thread(time.sleep, 0.2)
        order.append("thread")
        elapsed = loop.time() - t0
        await asyncio.sleep(2.0)
        return elapsed, order

    elapsed, order = vtime.run(main(), threads=threads)
    assert elapsed == 0.0
    assert order == ["thread", "timer"]


def test_an_inline_job_s_error_reaches_its_caller() -> None:
    async def main() -> None:
        await asyncio.to_thread(int, "not a number")

    with pytest.raises(ValueError, match="invalid literal"):
        vtime.run(main())


def test_clock_wall_with_an_epoch_follows_virtual_time() -> None:
    async def main() -> float:
        clock = Clock(epoch=1_000_000.0)
        w0 = clock.wall()
        await clock.sleep(60.0)
        return clock.wall() - w0

    assert vtime.run(main()) == pytest.approx(60.0)


# --- the in-memory network ----------------------------------------------------------------


async def _echo_once(network: MemoryNetwork, payload: bytes) -> tuple[bytes, float]:
    server_host, client_host = network.host("10.0.0.1"), network.host("10.0.0.2")

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.readexactly(len(payload))
        writer.write(data)
        await writer.drain()
        writer.close()

    listener = await net.start_stream_server(server_host, echo, "0.0.0.0", 6881)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    reader, writer = await net.open_stream(client_host, "10.0.0.1", 6881)
    writer.write(payload)
    back = await reader.readexactly(len(payload))
    assert await reader.read() == b""  # the server closed: EOF
    writer.close()
    await writer.wait_closed()
    listener.close()
    await listener.wait_closed()
    return back, loop.time() - t0


def test_memory_stream_is_reliable_ordered_and_costs_round_trips() -> None:
    payload = random.Random(1).randbytes(1_000_000)
    back, elapsed = vtime.run(_echo_once(MemoryNetwork(latency=0.05), payload))
    assert hashlib.sha256(back).digest() == hashlib.sha256(payload).digest()
    # connect (one RTT) + request there + answer back (one RTT): 0.2 s at 50 ms one way.
    assert elapsed == pytest.approx(0.2)


def test_memory_connect_to_a_closed_port_is_refused_after_a_round_trip() -> None:
    async def main() -> float:
        network = MemoryNetwork(latency=0.01)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(ConnectionRefusedError):
            await net.open_stream(network.host("10.0.0.2"), "10.0.0.1", 1)
        return loop.time() - t0

    assert vtime.run(main()) == pytest.approx(0.02)


def test_memory_listen_twice_on_one_port_fails_and_port_zero_picks_one() -> None:
    async def main() -> tuple[int, int]:
        host = MemoryNetwork().host("10.0.0.1")
        a = await host.listen(asyncio.Protocol, "0.0.0.0", 0)
        b = await host.listen(asyncio.Protocol, "0.0.0.0", 0)
        with pytest.raises(OSError, match="in use"):
            await host.listen(asyncio.Protocol, "10.0.0.1", a.address[1])
        return a.address[1], b.address[1]

    a, b = vtime.run(main())
    assert a != b
    assert a > 0
    assert b > 0


def test_unacked_bytes_count_what_the_peer_has_not_received() -> None:
    async def main() -> tuple[int, int]:
        network = MemoryNetwork(latency=1.0)
        got = asyncio.Event()

        async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readexactly(5000)
            got.set()
            writer.close()

        listener = await net.start_stream_server(network.host("10.0.0.1"), sink, "0.0.0.0", 7)
        _, writer = await net.open_stream(network.host("10.0.0.2"), "10.0.0.1", 7)
        writer.write(b"x" * 5000)
        in_flight = net.unacked_bytes(writer.transport)
        await got.wait()
        delivered = net.unacked_bytes(writer.transport)
        writer.close()
        await writer.wait_closed()
        listener.close()
        await listener.wait_closed()
        return in_flight, delivered

    assert vtime.run(main()) == (5000, 0)


class _Collect(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[tuple[bytes, tuple[str, int]]] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got.append((data, addr))


def _datagrams(loss: float, seed: int) -> list[bytes]:
    async def main() -> list[bytes]:
        network = MemoryNetwork(latency=0.02, loss=loss, rng=random.Random(seed))
        _, sink = await network.host("10.0.0.1").bind(_Collect, "0.0.0.0", 6881)
        sender, _ = await network.host("10.0.0.2").bind(_Collect, "0.0.0.0", 0)
        for i in range(200):
            sender.sendto(b"%d" % i, ("10.0.0.1", 6881))
        await asyncio.sleep(0.02)
        assert all(addr[0] == "10.0.0.2" for _, addr in sink.got)
        return [data for data, _ in sink.got]

    return vtime.run(main())


def test_datagrams_arrive_after_the_delay_and_are_dropped_at_the_loss_rate() -> None:
    assert len(_datagrams(0.0, 1)) == 200
    lossy = _datagrams(0.25, 1)
    assert 120 < len(lossy) < 180
    assert lossy == _datagrams(0.25, 1)  # the same seed drops the same datagrams
    assert lossy != _datagrams(0.25, 2)


# --- TCP behind the same seam -------------------------------------------------------------


async def test_tcp_network_behind_the_same_helpers() -> None:
    tcp = net.TcpNetwork()

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readexactly(4))
        await writer.drain()
        writer.close()

    listener = await net.start_stream_server(tcp, echo, "127.0.0.1", 0)
    try:
        reader, writer = await net.open_stream(tcp, *listener.address)
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        assert net.unacked_bytes(writer.transport) >= 0
        writer.close()
        await writer.wait_closed()
    finally:
        listener.close()
        await listener.wait_closed()
