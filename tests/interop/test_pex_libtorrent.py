"""Peer exchange (BEP 11) with libtorrent 2.1 on loopback, in both directions."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubswarm.proto.metainfo import parse_metainfo
from hubswarm.swarm.config import SessionConfig
from hubswarm.swarm.listener import SwarmPeer
from hubswarm.swarm.session import TorrentSession

from ..swarm.swarmkit import KIB, MIB, fast_config, make_file, make_torrent, wait_until
from .peers import lt_make_torrent, lt_peer

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

LOCAL = "127.0.0.1"


def lt_links(session: TorrentSession) -> int:
    """Links of ``session`` to libtorrent peers (peer ids ``-LT...``)."""
    return sum(
        1
        for lk in session.links
        if lk.conn.remote_handshake is not None
        and lk.conn.remote_handshake.peer_id.startswith(b"-LT")
    )


async def test_libtorrent_dials_a_peer_it_heard_of_from_our_pex(tmp_path: Path) -> None:
    make_file(tmp_path / "seed" / "p.bin", 4 * MIB)
    mi, raw = make_torrent(tmp_path / "seed" / "p.bin", 64 * KIB)
    slow = fast_config(upload_rate=64 * KIB)  # everyone stays a leech for the whole test
    with lt_peer() as lt_leech:
        async with (
            SwarmPeer(slow, host=LOCAL) as seed,
            seed.torrent(mi.info_hash, tmp_path / "seed", info=mi.info) as seeding,
        ):
            lt_leech.add(tmp_path / "lt", torrent=raw)
            lt_leech.connect(LOCAL, seed.port)
            await wait_until(lambda: lt_links(seeding) == 1, 10, "libtorrent on our seed")
            # Our second leech speaks no PEX: it cannot learn of libtorrent, only be dialled.
            async with (
                SwarmPeer(fast_config(use_pex=False), host=LOCAL) as p2,
                p2.torrent(
                    mi.info_hash, tmp_path / "b", info=mi.info, peers=[(LOCAL, seed.port)]
                ) as leech,
            ):
                await wait_until(lambda: lt_links(leech) == 1, 20, "libtorrent dialling us")
                assert not any(lk.outgoing and lk.address[1] == lt_leech.port for lk in leech.links)


async def test_our_leech_dials_a_peer_it_heard_of_from_libtorrent(tmp_path: Path) -> None:
    make_file(tmp_path / "seed" / "q.bin", 4 * MIB)
    raw = lt_make_torrent(tmp_path / "seed" / "q.bin", 64 * KIB)
    mi = parse_metainfo(raw)

    # libtorrent does not rate-limit loopback peers: our leeches limit their downloads.
    def slow() -> SessionConfig:
        return fast_config(download_rate=64 * KIB)  # one each: a peer keeps its port in it

    with lt_peer() as lt_seed:
        lt_seed.add(tmp_path / "seed", torrent=raw, seed_mode=True)
        seed_at = [(LOCAL, lt_seed.port)]
        async with (
            SwarmPeer(slow(), host=LOCAL) as p1,
            p1.torrent(mi.info_hash, tmp_path / "a", info=mi.info, peers=seed_at) as first,
        ):
            await wait_until(lambda: lt_links(first) == 1, 10, "the first leech on libtorrent")
            async with (
                SwarmPeer(slow(), host=LOCAL) as p2,
                p2.torrent(mi.info_hash, tmp_path / "b", info=mi.info, peers=seed_at) as second,
            ):
                # Neither leech was told of the other: libtorrent's ut_pex is the only way.
                def met() -> bool:
                    return any(
                        lk.address[1] == p1.port
                        or (
                            lk.conn.remote_extended_handshake is not None
                            and lk.conn.remote_extended_handshake.p == p1.port
                        )
                        for lk in second.links
                    )

                await wait_until(met, 30, "the leeches to meet through libtorrent's PEX")
                assert not first.complete.is_set()
