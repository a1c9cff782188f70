"""The uTP shell: UtpSocket routing, UtpTransport semantics, the shared DHT port, floods,
cancellation, and a SwarmPeer over uTP only.

Most tests run under :func:`hubswarm.vtime.run` on a :class:`hubswarm.memnet.MemoryNetwork`
(deterministic, seconds of protocol time for milliseconds of test time); the loopback ones
prove the same code on the kernel's UDP.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from hubswarm import vtime
from hubswarm.memnet import MemoryNetwork
from hubswarm.net import DatagramNetwork, open_stream, start_stream_server
from hubswarm.proto.utp import SYN_RECV_TIMEOUT, TIME_WAIT
from hubswarm.proto.utp_packet import Packet, PacketType, encode, looks_like_utp
from hubswarm.swarm.dht.node import DHTNode
from hubswarm.swarm.listener import SwarmPeer
from hubswarm.swarm.utp import MAX_HALF_OPEN, MAX_HALF_OPEN_PER_ADDRESS, UtpNetwork, UtpSocket
from hubswarm.swarm.utp_transport import CLOSE_LINGER

from .swarmkit import KIB, MIB, fast_config, make_file, make_torrent

pytestmark = pytest.mark.timeout(120)

LOCAL = "127.0.0.1"
EIGHT_MIB = 8 * MIB


class Sink(asyncio.Protocol):
    """Collects what arrives; records pauses and the end."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.transport: asyncio.Transport | None = None
        self.eof = asyncio.Event()
        self.lost = asyncio.Event()
        self.exc: Exception | None = None
        self.write_paused = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool:
        self.eof.set()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.exc = exc
        self.eof.set()
        self.lost.set()

    def pause_writing(self) -> None:
        self.write_paused += 1


@asynccontextmanager
async def sockets(
    networks: list[DatagramNetwork] | None = None,
    *,
    hosts: tuple[str, ...] = (LOCAL, LOCAL),
    mtu_discovery: tuple[bool, ...] = (True, True),
) -> AsyncIterator[list[UtpSocket]]:
    """Open one UtpSocket per host (seeded rngs), close them all after the block."""
    opened: list[UtpSocket] = []
    try:
        for i, host in enumerate(hosts):
            network = networks[i] if networks is not None else None
            sock = UtpSocket(
                host=host,
                network=network,
                rng=random.Random(100 + i),
                mtu_discovery=mtu_discovery[i],
            )
            opened.append(await sock.__aenter__())
        yield opened
    finally:
        for sock in reversed(opened):
            await sock.__aexit__(None, None, None)


async def stream(a: UtpSocket, b: UtpSocket, payload: bytes) -> bytes:
    """Send ``payload`` from ``a`` to a stream server on ``b``; return what ``b`` read."""
    received = bytearray()
    done = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(64 * KIB):
                received.extend(chunk)
        finally:
            writer.close()
            done.set()

    listener = await start_stream_server(UtpNetwork(b), handler, b.address[0], 0)
    try:
        _, writer = await open_stream(UtpNetwork(a), *listener.address)
        try:
            for i in range(0, len(payload), 64 * KIB):
                writer.write(payload[i : i + 64 * KIB])
                await writer.drain()
        finally:
            writer.close()  # also when cancelled: the FIN ends the server's handler
        await done.wait()
    finally:
        listener.close()
    return bytes(received)


# --- streams ------------------------------------------------------------------------------


async def test_eight_mib_over_loopback_arrive_intact() -> None:
    payload = random.Random(1).randbytes(EIGHT_MIB)
    async with sockets() as (a, b):
        async with asyncio.timeout(60):
            received = await stream(a, b, payload)
        assert hashlib.sha1(received).digest() == hashlib.sha1(payload).digest()
        assert a.stats.malformed == b.stats.malformed == 0


def _lossy_transfer(seed: int) -> tuple[bool, float, dict[str, int], dict[str, int]]:
    async def main() -> tuple[bool, float, dict[str, int], dict[str, int]]:
        network = MemoryNetwork(latency=0.010, loss=0.05, rng=random.Random(seed))
        payload = random.Random(2).randbytes(EIGHT_MIB)
        loop = asyncio.get_running_loop()
        hosts = ("10.0.0.1", "10.0.0.2")
        async with sockets([network.host(h) for h in hosts], hosts=hosts) as (a, b):
            started = loop.time()
            received = await stream(a, b, payload)
            took = loop.time() - started
            return received == payload, took, a.stats.as_dict(), b.stats.as_dict()

    return vtime.run(main())


def test_eight_mib_with_five_percent_loss_in_virtual_time_is_deterministic() -> None:
    intact, took, sent, received = _lossy_transfer(seed=7)
    assert intact
    assert received["malformed"] == received["protocol_errors"] == 0
    # Loss was real: more DATA datagrams went out than the 6,200 the payload needs.
    assert sent["datagrams_out"] > EIGHT_MIB // 1380
    assert 1.0 < took < 300.0
    assert _lossy_transfer(seed=7) == (intact, took, sent, received)


# --- the shared DHT port -----------------------------------------------------------------


async def test_the_dht_and_utp_share_one_port() -> None:
    payload = random.Random(3).randbytes(2 * MIB)
    async with (
        sockets() as (a, b),
        DHTNode(host=LOCAL, network=a.datagrams(), rng=random.Random(1)) as dht_a,
        DHTNode(host=LOCAL, network=b.datagrams(), rng=random.Random(2)) as dht_b,
    ):
        assert dht_a.address == a.address
        assert dht_b.address == b.address
        async with asyncio.timeout(30):
            async with asyncio.TaskGroup() as tg:
                moved = tg.create_task(stream(a, b, payload))
                pings = [tg.create_task(dht_a.ping(b.address)) for _ in range(5)]
        assert moved.result() == payload
        assert [p.result() for p in pings] == [dht_b.node_id] * 5
        assert b.stats.other_in >= 5  # the KRPC queries went to the DHT
        assert dht_b.stats.malformed == 0  # and no uTP packet did


async def test_only_one_protocol_may_share_the_port() -> None:
    async with sockets(hosts=(LOCAL,)) as (a,):
        async with DHTNode(host=LOCAL, network=a.datagrams(), auto_bootstrap=False):
            with pytest.raises(OSError, match="already shared"):
                await a.datagrams().bind(asyncio.DatagramProtocol, LOCAL, 0)
        # Leaving the DHT detached it: the port can be shared again.
        transport, _ = await a.datagrams().bind(asyncio.DatagramProtocol, LOCAL, 0)
        transport.close()


# --- floods ----------------------------------------------------------------------------


class _Raw(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.bytes_in = 0

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.bytes_in += len(data)


def test_a_syn_and_garbage_flood_is_bounded_and_never_amplified() -> None:
    async def main() -> None:
        network = MemoryNetwork(latency=0.005)
        rng = random.Random(9)
        async with sockets([network.host("10.0.0.1")], hosts=("10.0.0.1",)) as (target,):
            await target.listen(Sink, "10.0.0.1", 0)
            raw_transport, raw = await network.host("10.6.6.6").bind(_Raw, "10.6.6.6", 0)
            sent = syns = syn_bytes = 0
            for i in range(5000):
                kind = i % 4
                if kind == 0:  # a spoofed SYN with a fresh connection id
                    packet = Packet(PacketType.ST_SYN, rng.randrange(0x10000), 1, 0, 0, 1, 0)
                    data = encode(packet) + rng.randbytes(rng.randrange(0, 40))
                elif kind == 1:  # a DATA/STATE/FIN/RESET for a connection that does not exist
                    packet = Packet(
                        PacketType(rng.randrange(4)), rng.randrange(0x10000), 1, 0, 0, 1, 0
                    )
                    data = encode(packet)
                elif kind == 2:  # a DATA header (type 0, version 1), garbage after
                    data = bytes([0x01]) + rng.randbytes(rng.randrange(0, 300))
                else:
                    data = rng.randbytes(rng.randrange(0, 1500))
                sent += len(data)
                if looks_like_utp(data) and data[0] >> 4 == PacketType.ST_SYN:
                    syns += 1
                    syn_bytes += len(data)
                raw_transport.sendto(data, target.address)
                if i % 100 == 0:
                    await asyncio.sleep(0.001)
                    assert target.connections <= MAX_HALF_OPEN_PER_ADDRESS
            await asyncio.sleep(0.05)
            # One address holds its share of unconfirmed entries, its newest SYNs.
            assert target.half_open == target.connections == MAX_HALF_OPEN_PER_ADDRESS
            evicted = target.stats.syn_evicted
            assert evicted == target.stats.accepted - MAX_HALF_OPEN_PER_ADDRESS > 0
            # At most one bare 20-byte STATE per SYN (a repeated SYN to a half-open entry
            # gets one more) and nothing else: never more than the SYNs that came in.
            assert target.stats.bytes_out == raw.bytes_in == 20 * target.stats.datagrams_out
            assert target.stats.datagrams_out <= syns
            assert raw.bytes_in <= syn_bytes
            answered = raw.bytes_in
            # The spoofed half-open entries expire without a word.
            await asyncio.sleep(SYN_RECV_TIMEOUT + 1)
            assert target.connections == target.half_open == 0
            assert raw.bytes_in == answered
            # And a real peer gets in afterwards.
            async with sockets([network.host("10.0.0.2")], hosts=("10.0.0.2",)) as (peer,):
                transport, _ = await peer.connect(Sink, *target.address)
                transport.close()
            raw_transport.close()

    vtime.run(main())


def test_an_honest_peer_gets_in_during_a_syn_flood_from_many_addresses() -> None:
    """Spoofed SYNs from more addresses than there are half-open entries, all the time: the
    oldest unconfirmed entry makes room for each new SYN, so an honest initiator, which
    confirms within a round trip, is admitted while the flood goes on."""

    async def main() -> None:
        network = MemoryNetwork(latency=0.002)
        rng = random.Random(3)
        async with sockets([network.host("10.0.0.1")], hosts=("10.0.0.1",)) as (target,):
            await target.listen(Sink, "10.0.0.1", 0)
            flooders = [
                (await network.host(ip).bind(_Raw, ip, 0))[0]
                for ip in (f"10.7.{k // 250}.{k % 250 + 1}" for k in range(4 * MAX_HALF_OPEN))
            ]
            stop = asyncio.Event()

            async def flood() -> None:
                for i in range(20_000):  # 20 SYNs per ms of virtual time, at most 1 s
                    if stop.is_set():
                        return
                    syn = Packet(PacketType.ST_SYN, rng.randrange(0x10000), 1, 0, 0, 1, 0)
                    flooders[i % len(flooders)].sendto(encode(syn), target.address)
                    if i % 20 == 0:
                        await asyncio.sleep(0.001)

            flooding = asyncio.create_task(flood())
            await asyncio.sleep(0.1)
            assert target.half_open == MAX_HALF_OPEN
            async with sockets([network.host("10.0.0.2")], hosts=("10.0.0.2",)) as (peer,):
                async with asyncio.timeout(2):
                    transport, _ = await peer.connect(Sink, *target.address)
                assert not flooding.done()  # admitted while the flood went on
                transport.close()
            stop.set()
            await flooding
            assert target.stats.syn_evicted > 0
            for flooder in flooders:
                flooder.close()

    vtime.run(main())


def test_no_listener_means_no_answer() -> None:
    async def main() -> None:
        network = MemoryNetwork(latency=0.005)
        hosts = ("10.0.0.1", "10.0.0.2")
        async with sockets([network.host(h) for h in hosts], hosts=hosts) as (a, b):
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(3):
                    await a.connect(Sink, *b.address)
            assert b.stats.syn_refused >= 2  # the SYN and its resend
            assert b.stats.bytes_out == 0
            assert a.connections == b.connections == 0

    vtime.run(main())


# --- transport semantics ----------------------------------------------------------------


@asynccontextmanager
async def connected_pair(
    *, loss: float = 0.0
) -> AsyncIterator[tuple[UtpSocket, UtpSocket, Sink, Sink]]:
    """Two sockets on a MemoryNetwork and one connection: (client, server) sinks."""
    network = MemoryNetwork(latency=0.010, loss=loss, rng=random.Random(4))
    hosts = ("10.0.0.1", "10.0.0.2")
    async with sockets([network.host(h) for h in hosts], hosts=hosts) as (a, b):
        servers: list[Sink] = []

        def factory() -> Sink:
            servers.append(Sink())
            return servers[-1]

        await b.listen(factory, "10.0.0.2", 0)
        _, client = await a.connect(Sink, *b.address)
        await asyncio.sleep(0.05)  # the first packet confirmed the responder
        assert len(servers) == 0  # nothing written yet: the responder waits for a packet
        assert client.transport is not None
        client.transport.write(b"hello")
        await asyncio.sleep(0.05)
        assert len(servers) == 1
        yield a, b, client, servers[0]


def test_write_read_eof_and_a_clean_close() -> None:
    async def main() -> None:
        async with connected_pair() as (a, b, client, server):
            assert server.data == b"hello"
            assert server.transport is not None
            assert client.transport is not None
            assert server.transport.get_extra_info("peername") == a.address
            assert client.transport.get_extra_info("sockname") == a.address
            server.transport.write(b"world")
            await asyncio.sleep(0.1)
            assert client.data == b"world"
            client.transport.write(b"bye")
            client.transport.close()  # FIN after what was written; we read no more
            await server.eof.wait()
            assert server.data == b"hellobye"
            assert client.lost.is_set()
            assert client.exc is None
            assert not server.lost.is_set()  # half-closed: it may still write
            server.transport.write(b"late")
            server.transport.close()
            await server.lost.wait()
            assert server.exc is None
            await asyncio.sleep(1)
            # Both FINs acked: TIME-WAIT keeps the routes, then they go.
            assert a.connections == b.connections == 1
            await asyncio.sleep(TIME_WAIT)
            assert a.connections == b.connections == 0

    vtime.run(main())


def test_abort_resets_the_peer() -> None:
    async def main() -> None:
        async with connected_pair() as (a, b, client, server):
            assert client.transport is not None
            client.transport.abort()
            await server.lost.wait()
            assert isinstance(server.exc, ConnectionResetError)
            assert a.connections == b.connections == 0

    vtime.run(main())


def test_pause_reading_pushes_back_on_the_writer() -> None:
    async def main() -> None:
        async with connected_pair() as (_, _, client, server):
            assert server.transport is not None
            assert client.transport is not None
            server.transport.pause_reading()
            payload = random.Random(5).randbytes(4 * MIB)
            client.transport.write(payload)
            await asyncio.sleep(5)
            assert client.write_paused == 1
            held = client.transport.get_write_buffer_size()
            assert held > MIB  # the receive window (1 MiB) is full, the rest waits here
            assert len(server.data) == 5  # only "hello"
            server.transport.resume_reading()
            for _ in range(200):
                await asyncio.sleep(0.1)
                if len(server.data) == 5 + len(payload):
                    break
            assert bytes(server.data[5:]) == payload
            assert client.transport.get_write_buffer_size() == 0
            assert client.transport.get_extra_info("unacked") == 0

    vtime.run(main())


def test_a_peer_that_never_finishes_closing_is_reset_after_the_linger() -> None:
    async def main() -> None:
        async with connected_pair() as (a, _, client, server):
            assert client.transport is not None
            assert server.transport is not None
            server.transport.pause_reading()
            client.transport.write(random.Random(6).randbytes(2 * MIB))
            client.transport.close()  # the bytes cannot all go: the server does not read
            await client.lost.wait()
            await asyncio.sleep(CLOSE_LINGER + 1)
            assert a.connections == 0
            await server.lost.wait()
            assert isinstance(server.exc, ConnectionResetError)

    vtime.run(main())


# --- cancellation -----------------------------------------------------------------------


def test_cancelling_mid_stream_leaves_no_task_nor_transport() -> None:
    async def main() -> None:
        network = MemoryNetwork(latency=0.010)
        hosts = ("10.0.0.1", "10.0.0.2")
        tasks_before = asyncio.all_tasks()
        lost: list[Sink] = []
        async with sockets([network.host(h) for h in hosts], hosts=hosts) as (a, b):
            payload = random.Random(8).randbytes(EIGHT_MIB)
            transfer = asyncio.ensure_future(stream(a, b, payload))
            await asyncio.sleep(0.5)
            assert not transfer.done()
            transfer.cancel()
            with pytest.raises(asyncio.CancelledError):
                await transfer
            # A dial cancelled by its caller's deadline leaves nothing either.
            silent = network.host("10.0.0.9")
            raw, _ = await silent.bind(asyncio.DatagramProtocol, "10.0.0.9", 6881)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await a.connect(Sink, "10.0.0.9", 6881)
            raw.close()
            await asyncio.sleep(CLOSE_LINGER + TIME_WAIT)
            assert a.connections == b.connections == 0  # the FIN exchange is over

            # An open connection when the socket itself closes.
            def accepted() -> Sink:
                lost.append(Sink())
                return lost[-1]

            await b.listen(accepted, "10.0.0.2", 0)
            _, held = await a.connect(Sink, *b.address)
            assert held.transport is not None
            held.transport.write(b"x")
            await asyncio.sleep(0.1)
            lost.append(held)
            assert a.connections == b.connections == 1
        assert all(s.lost.is_set() for s in lost)
        assert asyncio.all_tasks() == tasks_before

    vtime.run(main())


# --- a BitTorrent peer over uTP only -------------------------------------------------------


async def test_a_swarm_peer_seeds_another_over_utp_only(tmp_path: Path) -> None:
    data = make_file(tmp_path / "seed" / "file.bin", 3 * MIB + 5)
    mi, _ = make_torrent(tmp_path / "seed" / "file.bin", 256 * KIB)
    async with sockets() as (sa, sb):
        async with (
            SwarmPeer(fast_config(), host=LOCAL, network=UtpNetwork(sa)) as seed,
            seed.torrent(mi.info_hash, tmp_path / "seed", info=mi.info),
            SwarmPeer(fast_config(), host=LOCAL, network=UtpNetwork(sb)) as leech,
            leech.torrent(
                mi.info_hash, tmp_path / "leech", info=mi.info, peers=[(LOCAL, seed.port)]
            ) as session,
        ):
            assert seed.port == sa.address[1]
            await session.wait_complete(60)
            assert session.stats.bad_pieces == 0
        assert sb.stats.connected_out >= 1
        assert sa.stats.connected_in >= 1
    assert (tmp_path / "leech" / "file.bin").read_bytes() == data
