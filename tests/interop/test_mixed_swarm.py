"""Mixed swarms through our tracker: our seed with our leeches, libtorrent and aria2c."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from hubswarm.net import TcpNetwork
from hubswarm.swarm.dualstack import DualNetwork
from hubswarm.swarm.listener import SwarmPeer
from hubswarm.swarm.utp import UtpNetwork, UtpSocket

from ..swarm.swarmkit import KIB, MIB, fast_config, make_file, make_torrent
from .peers import aria2c, lt_peer
from .test_swarm_aria2 import tracker, wait_exit

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]

LOCAL = "127.0.0.1"


async def test_mixed_swarm_through_our_tracker(tmp_path: Path) -> None:
    data = make_file(tmp_path / "seed" / "mix.bin", 4 * MIB + 99)
    async with tracker() as announce:
        mi, raw = make_torrent(tmp_path / "seed" / "mix.bin", 64 * KIB, trackers=[announce])
        # The seed is capped so that the leeches must also trade among themselves.
        with lt_peer() as lt_a, lt_peer() as lt_b:
            async with (
                SwarmPeer(fast_config(upload_rate=3 * MIB), host=LOCAL) as seed,
                seed.torrent(
                    mi.info_hash, tmp_path / "seed", info=mi.info, trackers=mi.announce_list
                ) as seeding,
                SwarmPeer(fast_config(), host=LOCAL) as one,
                one.torrent(
                    mi.info_hash, tmp_path / "one", info=mi.info, trackers=mi.announce_list
                ) as leech_one,
                SwarmPeer(fast_config(), host=LOCAL) as two,
                two.torrent(
                    mi.info_hash, tmp_path / "two", info=mi.info, trackers=mi.announce_list
                ) as leech_two,
            ):
                lt_a.add(tmp_path / "lt_a", torrent=raw)
                lt_b.add(tmp_path / "lt_b", torrent=raw)
                await asyncio.gather(
                    leech_one.wait_complete(45),
                    leech_two.wait_complete(45),
                    lt_a.await_(lt_a.is_seed, 45, "libtorrent A complete"),
                    lt_b.await_(lt_b.is_seed, 45, "libtorrent B complete"),
                )
                total = mi.info.total_length
                # Leeches uploaded to each other: the seed alone did not send every copy.
                ours_up = leech_one.stats.uploaded + leech_two.stats.uploaded
                assert ours_up > 0
                assert seeding.stats.uploaded < 4 * total
    for name in ("one", "two", "lt_a", "lt_b"):
        assert (tmp_path / name / "mix.bin").read_bytes() == data, name


async def test_one_seed_our_tcp_and_utp_leeches_libtorrent_and_aria2c(tmp_path: Path) -> None:
    """Our seed on TCP and uTP (one port); our TCP-only and uTP-only leeches, libtorrent with
    its default transports (uTP first) and aria2c (TCP only): every leech gets every byte."""
    data = make_file(tmp_path / "seed" / "mix.bin", 4 * MIB + 99)
    async with tracker() as announce:
        mi, raw = make_torrent(tmp_path / "seed" / "mix.bin", 64 * KIB, trackers=[announce])
        (tmp_path / "t.torrent").write_bytes(raw)
        (tmp_path / "aria").mkdir()
        tiers = mi.announce_list
        lt_utp = {"enable_outgoing_utp": True, "enable_incoming_utp": True}
        with lt_peer(**lt_utp) as lt_leech:
            async with (
                UtpSocket(host=LOCAL, rng=random.Random(1)) as seed_sock,
                SwarmPeer(
                    fast_config(upload_rate=3 * MIB),
                    host=LOCAL,
                    network=DualNetwork(TcpNetwork(), UtpNetwork(seed_sock)),
                ) as seed,
                seed.torrent(mi.info_hash, tmp_path / "seed", info=mi.info, trackers=tiers),
                SwarmPeer(fast_config(use_utp=False), host=LOCAL) as tcp_peer,
                tcp_peer.torrent(
                    mi.info_hash, tmp_path / "tcp", info=mi.info, trackers=tiers
                ) as tcp_leech,
                UtpSocket(host=LOCAL, rng=random.Random(2)) as utp_sock,
                SwarmPeer(fast_config(), host=LOCAL, network=UtpNetwork(utp_sock)) as utp_peer,
                utp_peer.torrent(
                    mi.info_hash, tmp_path / "utp", info=mi.info, trackers=tiers
                ) as utp_leech,
            ):
                lt_leech.add(tmp_path / "lt", torrent=raw)
                args = ["--seed-time=0", "-d", str(tmp_path / "aria"), str(tmp_path / "t.torrent")]
                with aria2c(args, cwd=tmp_path, log=tmp_path / "aria2.log") as proc:
                    _, _, _, code = await asyncio.gather(
                        tcp_leech.wait_complete(50),
                        utp_leech.wait_complete(50),
                        lt_leech.await_(lt_leech.is_seed, 50, "libtorrent complete"),
                        wait_exit(proc, 50),
                    )
                assert code == 0, (tmp_path / "aria2.log").read_text()[-3000:]
                assert utp_sock.stats.connected_out + utp_sock.stats.connected_in >= 1
                assert seed_sock.stats.connected_in >= 1  # the uTP leech or libtorrent
                for leech in (tcp_leech, utp_leech):
                    assert leech.stats.bad_pieces == 0
    for name in ("tcp", "utp", "lt", "aria"):
        assert (tmp_path / name / "mix.bin").read_bytes() == data, name
