"""An IPv6 swarm on ``::1`` with libtorrent 2.1 (``listen_interfaces = [::1]:port``), both
directions, over TCP and over uTP (the other transport switched off on libtorrent's side;
ours listens on both, one port number, as ``hubswarm share --host ::1`` does).

Skipped with the reason when this machine cannot bind ``::1``.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from hubswarm.net import TcpNetwork
from hubswarm.proto.metainfo import parse_metainfo
from hubswarm.swarm.dualstack import DualNetwork
from hubswarm.swarm.listener import SwarmPeer
from hubswarm.swarm.utp import UtpNetwork, UtpSocket
from tests.ipv6 import needs_ipv6

from ..swarm.swarmkit import KIB, MIB, fast_config, make_file, make_torrent
from .peers import lt_add, lt_make_torrent, lt_seeding, lt_session, lt_until

pytestmark = [pytest.mark.interop, needs_ipv6, pytest.mark.timeout(90)]

V6 = "::1"
SIZE = 3 * MIB + 777
PIECE = 256 * KIB
TRANSPORTS = {
    "tcp": {"enable_outgoing_utp": False, "enable_incoming_utp": False},
    "utp": {
        "enable_outgoing_tcp": False,
        "enable_incoming_tcp": False,
        "enable_outgoing_utp": True,
        "enable_incoming_utp": True,
    },
}


@pytest.mark.parametrize("transport", ["tcp", "utp"])
async def test_our_v6_seed_to_a_libtorrent_leech_on_v6(tmp_path: Path, transport: str) -> None:
    data = make_file(tmp_path / "seed" / "file.bin", SIZE)
    mi, raw = make_torrent(tmp_path / "seed" / "file.bin", PIECE)
    with lt_session(host=V6, **TRANSPORTS[transport]) as (session, _):
        async with (
            UtpSocket(host=V6, rng=random.Random(1)) as sock,
            SwarmPeer(
                fast_config(), host=V6, network=DualNetwork(TcpNetwork(), UtpNetwork(sock))
            ) as seed,
            seed.torrent(mi.info_hash, tmp_path / "seed", info=mi.info) as seeding,
        ):
            handle = lt_add(session, raw, tmp_path / "lt", peers=[(V6, seed.port)])
            await lt_until(session, lambda: handle.status().is_seeding, 60, "complete")
            assert seeding.stats.uploaded >= mi.info.total_length
            # libtorrent reached us over the transport it was left with.
            assert (sock.stats.connected_in >= 1) is (transport == "utp")
    assert (tmp_path / "lt" / "file.bin").read_bytes() == data


@pytest.mark.parametrize("transport", ["tcp", "utp"])
async def test_a_libtorrent_seed_on_v6_to_our_v6_leech(tmp_path: Path, transport: str) -> None:
    data = make_file(tmp_path / "seed" / "file.bin", SIZE)
    raw = lt_make_torrent(tmp_path / "seed" / "file.bin", PIECE)
    mi = parse_metainfo(raw)
    with lt_session(host=V6, **TRANSPORTS[transport]) as (session, port):
        await lt_seeding(session, raw, tmp_path / "seed")
        async with (
            UtpSocket(host=V6, rng=random.Random(2)) as sock,
            SwarmPeer(
                fast_config(),
                host=V6,
                network=UtpNetwork(sock)
                if transport == "utp"
                else DualNetwork(TcpNetwork(), UtpNetwork(sock)),
            ) as leech,
            leech.torrent(
                mi.info_hash, tmp_path / "ours", info=mi.info, peers=[(V6, port)]
            ) as downloading,
        ):
            await downloading.wait_complete(60)
            assert downloading.stats.bad_pieces == 0
            assert all(link.address[0] == V6 for link in downloading.links)
            assert (sock.stats.connected_out >= 1) is (transport == "utp")
    assert (tmp_path / "ours" / "file.bin").read_bytes() == data
