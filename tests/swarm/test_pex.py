"""Peer exchange (BEP 11) between real sessions: in virtual time in memory, and on loopback."""

from __future__ import annotations

import asyncio
import socket
import struct
from pathlib import Path

import pytest

from hubswarm import vtime
from hubswarm.proto import bencode, wire
from hubswarm.proto.wire import PeerConnection, Role
from hubswarm.proto.wire_events import ExtendedHandshake, PeerExchange
from hubswarm.swarm.listener import SwarmPeer
from hubswarm.swarm.peerbook import MAX_CANDIDATES
from hubswarm.swarm.session import TorrentSession

from .swarmkit import KIB, MIB, VirtualHosts, fast_config, make_file, make_torrent, wait_until

pytestmark = pytest.mark.timeout(30)

LOCAL = "127.0.0.1"


def linked(a: TorrentSession, b: tuple[str, int]) -> bool:
    """Whether ``a`` has a link to the peer listening at ``b`` (either direction)."""
    for link in a.links:
        ext = link.conn.remote_extended_handshake
        if link.address == b or (link.address[0] == b[0] and ext is not None and ext.p == b[1]):
            return True
    return False


async def _meet(tmp_path: Path, use_pex: bool, private: bool) -> tuple[bool, bool, bool]:
    """Two leeches that know only a slow seed, 3 s (virtual) after the second started:
    whether each links to the other, and whether the first completed."""
    make_file(tmp_path / "seed" / "x.bin", 2 * MIB)
    mi, _ = make_torrent(tmp_path / "seed" / "x.bin", 64 * KIB, private=private)
    hosts = VirtualHosts()
    # A slow seed keeps both leeches leeching (two seeds would drop their link).
    slow = fast_config(upload_rate=64 * KIB, use_pex=use_pex)
    async with (
        hosts.peer(slow) as seed,
        seed.torrent(mi.info_hash, tmp_path / "seed", info=mi.info) as seeding,
        hosts.peer(fast_config(use_pex=use_pex)) as p1,
    ):
        dial = [(seed.host, seed.port)]
        async with p1.torrent(mi.info_hash, tmp_path / "l1", info=mi.info, peers=dial) as l1:
            await wait_until(lambda: len(seeding.links) == 1, 5, "the first leech on the seed")
            async with (
                hosts.peer(fast_config(use_pex=use_pex)) as p2,
                p2.torrent(mi.info_hash, tmp_path / "l2", info=mi.info, peers=dial) as l2,
            ):
                await wait_until(lambda: len(seeding.links) == 2, 5, "both leeches on the seed")
                # PEX_INTERVAL does not hold the first message back: the seed tells each
                # leech of the other within a round trip of a round (TICK_PERIOD).
                await asyncio.sleep(3.0)
                return (
                    linked(l2, (p1.host, p1.port)),
                    linked(l1, (p2.host, p2.port)),
                    l1.complete.is_set(),
                )


@pytest.mark.parametrize(
    ("use_pex", "private"), [(True, False), (False, False), (True, True)], ids=str
)
def test_leeches_that_only_know_the_seed_meet_through_it(
    tmp_path: Path, use_pex: bool, private: bool
) -> None:
    second_to_first, first_to_second, first_complete = vtime.run(_meet(tmp_path, use_pex, private))
    # With PEX the seed tells the newcomer of the first leech (and the first of it); never
    # without PEX, nor for a private torrent (BEP 27).
    met = use_pex and not private
    assert second_to_first is met
    assert first_to_second is met
    assert not first_complete


async def _raw_pex_peer(port: int, info_hash: bytes) -> tuple[socket.socket, PeerConnection]:
    """Our wire core over a plain socket, advertising ut_pex, after the handshakes."""
    conn = PeerConnection(Role.INITIATOR, info_hash=info_hash, peer_id=b"-XX0001-rawpexpeer00")
    sock = socket.create_connection((LOCAL, port), timeout=5)
    try:
        sock.sendall(conn.handshake())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        sent_ext = False
        while conn.remote_extended_handshake is None:
            assert loop.time() < deadline, "no extended handshake from the session"
            data = await loop.run_in_executor(None, sock.recv, 65536)
            assert data, "the session closed the connection"
            conn.receive_data(data)
            if conn.remote_handshake is not None and not sent_ext:
                sock.sendall(conn.send(ExtendedHandshake(m={wire.UT_PEX: 9}, p=1)))
                sent_ext = True
    except BaseException:
        sock.close()
        raise
    return sock, conn


async def test_a_flood_of_pex_messages_is_rate_limited_and_bounded(tmp_path: Path) -> None:
    make_file(tmp_path / "seed" / "y.bin", 256 * KIB)
    mi, _ = make_torrent(tmp_path / "seed" / "y.bin", 64 * KIB)
    async with (
        SwarmPeer(fast_config(), host=LOCAL) as peer,
        peer.torrent(mi.info_hash, tmp_path / "seed", info=mi.info) as session,
    ):
        sock, conn = await _raw_pex_peer(peer.port, mi.info_hash)
        with sock:
            assert wire.UT_PEX in conn.remote_extensions
            first = PeerExchange(tuple((f"10.1.0.{i}", 7000) for i in range(1, 51)))
            second = PeerExchange(tuple((f"10.2.0.{i}", 7000) for i in range(1, 51)))
            sock.sendall(conn.send(first) + conn.send(second))
            await wait_until(lambda: ("10.1.0.50", 7000) in session.peer_book, 5, "first PEX")
            await asyncio.sleep(0.3)
            # The second came within BEP 11's minute (our guard: 10 s): ignored.
            assert not any(a[0].startswith("10.2.") for a in session.peer_book)
            assert len(session.links) == 1  # and the link stays up
    for i in range(MAX_CANDIDATES + 10):
        session.add_peer((f"10.3.{i // 250}.{i % 250 + 1}", 1))
    assert len(session.peer_book) == MAX_CANDIDATES


def test_pex_message_on_the_wire_is_what_libtorrent_reads() -> None:
    """The frame layout libtorrent's ut_pex parser expects (bencoded dict, compact strings)."""
    a = PeerConnection(
        Role.INITIATOR, info_hash=bytes(20), peer_id=bytes(20), extension_protocol=True
    )
    b = PeerConnection(
        Role.RESPONDER, info_hash=bytes(20), peer_id=bytes(20), extension_protocol=True
    )
    b.receive_data(a.handshake())
    a.receive_data(b.handshake())
    a.receive_data(b.send(ExtendedHandshake(m={wire.UT_PEX: 4})))
    data = a.send(PeerExchange((("127.0.0.1", 6881),), (0x10,)))
    length, msg_id, ext_id = struct.unpack(">IBB", data[:6])
    assert (msg_id, ext_id, length) == (20, 4, len(data) - 4)
    d = bencode.decode(data[6:])
    assert d == {b"added": b"\x7f\x00\x00\x01\x1a\xe1", b"added.f": b"\x10", b"dropped": b""}
