"""PeerLink over real loopback sockets (wake-ups per frame: SO_RCVLOWAT, SIOCOUTQ) and, in
virtual time on an in-memory network, its idle timeout."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import sys
from collections.abc import AsyncIterator

import pytest

from hubswarm import vtime
from hubswarm.limits import WIRE_MAX_MESSAGE
from hubswarm.memnet import MemoryNetwork
from hubswarm.net import TcpNetwork
from hubswarm.proto.wire import PeerConnection, Role
from hubswarm.proto.wire_events import Event, Have, Piece, Request
from hubswarm.swarm.peer import RCVLOWAT_MAX, PeerLink, WireProtocol

pytestmark = pytest.mark.timeout(30)

LOCAL = "127.0.0.1"
INFO_HASH = bytes(range(20))


class Owner:
    """Records what the link hands to its session."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.arrived = asyncio.Event()
        self.closed: asyncio.Future[BaseException | None] = (
            asyncio.get_running_loop().create_future()
        )

    async def on_event(self, link: PeerLink, event: Event) -> None:
        assert type(event) is not Piece, "pieces go to on_pieces"
        self.events.append(event)
        self.arrived.set()

    def on_pieces(self, link: PeerLink, pieces: list[Piece]) -> None:
        assert pieces
        self.events.extend(pieces)
        self.arrived.set()

    async def read_block(self, link: PeerLink, request: Request) -> bytes | None:
        return None

    def link_closed(self, link: PeerLink, error: BaseException | None) -> None:
        if not self.closed.done():
            self.closed.set_result(error)


@contextlib.asynccontextmanager
async def linked(
    idle_timeout: float = 60.0,
) -> AsyncIterator[tuple[PeerLink, Owner, socket.socket, asyncio.Task[None]]]:
    """A running PeerLink (the responder) and the raw socket of its remote end."""
    ours = PeerConnection(Role.RESPONDER, info_hash=INFO_HASH, peer_id=b"b" * 20, num_pieces=8)
    theirs = PeerConnection(Role.INITIATOR, info_hash=INFO_HASH, peer_id=b"a" * 20)
    accepted: asyncio.Future[WireProtocol] = asyncio.get_running_loop().create_future()
    listener = await TcpNetwork().listen(
        lambda: WireProtocol(ours, on_connected=accepted.set_result), LOCAL, 0
    )
    port = listener.address[1]
    remote = socket.create_connection((LOCAL, port), timeout=5)
    remote.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    protocol = await asyncio.wait_for(accepted, 5)
    remote.sendall(theirs.handshake())
    try:
        async with _running_link(protocol, ours, (LOCAL, port), idle_timeout) as (
            link,
            owner,
            task,
        ):
            theirs.receive_data(remote.recv(68))
            yield link, owner, remote, task
    finally:
        remote.close()
        listener.close()
        await listener.wait_closed()


@contextlib.asynccontextmanager
async def _running_link(
    protocol: WireProtocol, ours: PeerConnection, address: tuple[str, int], idle_timeout: float
) -> AsyncIterator[tuple[PeerLink, Owner, asyncio.Task[None]]]:
    """Answer the remote's handshake, run a PeerLink on ``protocol``, close it after."""
    await asyncio.wait_for(protocol.handshake(), 5)
    protocol.transport.write(ours.handshake())
    owner = Owner()
    link = PeerLink(owner, protocol, address, outgoing=False, idle_timeout=idle_timeout)
    task = asyncio.create_task(link.run())
    try:
        yield link, owner, task
    finally:
        link.close()
        with contextlib.suppress(asyncio.TimeoutError, Exception):
            await asyncio.wait_for(task, 5)


def lowat(writer_sock: object) -> int:
    assert isinstance(writer_sock, socket.socket | asyncio.trsock.TransportSocket)
    return int(writer_sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT))


async def wait_for(predicate: object, seconds: float) -> None:
    assert callable(predicate)
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while not predicate():
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.mark.skipif(sys.platform != "linux", reason="SO_RCVLOWAT on TCP is Linux behaviour")
async def test_a_partial_frame_sets_rcvlowat_to_the_rest_of_it() -> None:
    async with linked() as (link, owner, remote, _):
        sock = link.transport.get_extra_info("socket")
        block = bytes(range(256)) * 64  # 16 KiB
        frame = struct.pack(">IBII", 9 + len(block), 7, 3, 0) + block
        remote.sendall(frame[:1000])
        await wait_for(lambda: lowat(sock) == len(frame) - 1000, 5)
        assert owner.events == []  # a part of a frame is no event
        remote.sendall(frame[1000:] + struct.pack(">IBI", 5, 4, 2))
        await wait_for(lambda: len(owner.events) == 2, 5)
        assert owner.events == [Piece(3, 0, block), Have(2)]
        await wait_for(lambda: lowat(sock) == 1, 5)  # nothing buffered: wake on any byte


async def test_runs_of_pieces_reach_the_owner_in_order_between_other_events() -> None:
    async with linked() as (_, owner, remote, _):
        msgs = [Have(1), Piece(3, 0, b"a" * 100), Piece(3, 100, b"b" * 50), Have(2)]
        msgs += [Piece(4, 0, b"c" * 10), Have(5), Have(6), Piece(5, 7, b"d")]
        wire = b""
        for m in msgs:
            if isinstance(m, Piece):
                wire += struct.pack(">IBII", 9 + len(m.block), 7, m.piece_index, m.begin)
                wire += m.block
            else:
                wire += struct.pack(">IBI", 5, 4, m.piece_index)
        remote.sendall(wire)
        await wait_for(lambda: len(owner.events) == len(msgs), 5)
        assert owner.events == msgs


@pytest.mark.skipif(sys.platform != "linux", reason="SO_RCVLOWAT on TCP is Linux behaviour")
async def test_rcvlowat_is_capped_and_a_closing_peer_still_wakes_the_link() -> None:
    async with linked() as (link, owner, remote, task):
        sock = link.transport.get_extra_info("socket")
        # An extended message of the largest legal length, above the cap.
        assert WIRE_MAX_MESSAGE > RCVLOWAT_MAX + 200
        remote.sendall(struct.pack(">IB", WIRE_MAX_MESSAGE, 20) + b"\x07" * 100)
        await wait_for(lambda: lowat(sock) == RCVLOWAT_MAX, 5)
        remote.shutdown(socket.SHUT_WR)  # FIN below the low-water mark
        error = await asyncio.wait_for(owner.closed, 5)
        assert error is None  # EOF mid-frame ends the link normally, nothing raised
        await asyncio.wait_for(task, 5)


@contextlib.asynccontextmanager
async def virtual_linked(
    idle_timeout: float,
) -> AsyncIterator[tuple[PeerLink, Owner, asyncio.Transport, asyncio.Task[None]]]:
    """A running PeerLink (the responder) on an in-memory network, and its remote end's
    transport (run under ``vtime.run``: the idle timeout's seconds are virtual)."""
    network = MemoryNetwork(latency=0.001)
    ours = PeerConnection(Role.RESPONDER, info_hash=INFO_HASH, peer_id=b"b" * 20, num_pieces=8)
    theirs = PeerConnection(Role.INITIATOR, info_hash=INFO_HASH, peer_id=b"a" * 20)
    accepted: asyncio.Future[WireProtocol] = asyncio.get_running_loop().create_future()
    listener = await network.host("10.0.0.1").listen(
        lambda: WireProtocol(ours, on_connected=accepted.set_result), "10.0.0.1", 6881
    )
    # The remote end only writes: what the link sends it is dropped.
    transport, _ = await network.host("10.0.0.2").connect(asyncio.Protocol, "10.0.0.1", 6881)
    assert isinstance(transport, asyncio.Transport)
    protocol = await asyncio.wait_for(accepted, 5)
    transport.write(theirs.handshake())
    try:
        async with _running_link(protocol, ours, ("10.0.0.2", 1), idle_timeout) as (
            link,
            owner,
            task,
        ):
            yield link, owner, transport, task
    finally:
        transport.close()
        listener.close()


def test_a_silent_peer_is_dropped_after_the_idle_timeout() -> None:
    async def run() -> float:
        loop = asyncio.get_running_loop()
        async with virtual_linked(idle_timeout=0.4) as (_, owner, remote, task):
            remote.write(struct.pack(">IBI", 5, 4, 1))
            await asyncio.wait_for(owner.arrived.wait(), 5)
            heard = loop.time()
            error = await asyncio.wait_for(owner.closed, 5)
            assert isinstance(error, TimeoutError)
            await asyncio.wait_for(task, 5)
            return loop.time() - heard

    silent_for = vtime.run(run())
    assert 0.4 <= silent_for < 0.5  # dropped once 0.4 s passed without a message


def test_messages_keep_a_slow_peer_alive() -> None:
    async def run() -> None:
        async with virtual_linked(idle_timeout=0.5) as (link, owner, remote, _):
            for i in range(8):  # 1.2 s in all, never 0.5 s of silence
                remote.write(struct.pack(">IBI", 5, 4, i))
                await asyncio.sleep(0.15)
            assert not owner.closed.done()
            assert not link.closed
            assert [e for e in owner.events if isinstance(e, Have)] == [Have(i) for i in range(8)]

    vtime.run(run())


@pytest.mark.skipif(sys.platform != "linux", reason="SIOCOUTQ is Linux's")
async def test_bytes_acked_counts_what_the_peer_holds_not_what_was_written() -> None:
    async with linked() as (link, _, remote, _task):
        remote.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window
        remote.setblocking(False)
        sock = link.transport.get_extra_info("socket")
        # A send buffer for all of it: the kernel takes every byte at once, and most of
        # them wait there unacknowledged (taken is not delivered).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        payload = struct.pack(">IBI", 5, 4, 1) * (128 * 1024 // 9)  # ~128 KiB of haves
        link.send_bytes(payload)
        assert link.bytes_written == len(payload)
        await asyncio.sleep(0.2)
        # The remote reads nothing: its window closes long before 128 KiB arrived.
        assert link.transport.get_write_buffer_size() == 0
        held = link.bytes_acked()
        assert 0 < held < len(payload) // 2
        got = 0
        loop = asyncio.get_running_loop()
        end = loop.time() + 10
        while got < len(payload):
            assert loop.time() < end, "remote did not get everything"
            try:
                got += len(remote.recv(1 << 16))
            except BlockingIOError:
                await asyncio.sleep(0.005)
        await wait_for(lambda: link.bytes_acked() == len(payload), 5)
        link.close()
        assert link.bytes_acked() == len(payload)  # kept after the socket is gone
