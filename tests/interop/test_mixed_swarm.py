"""A mixed swarm through our tracker: our seed, two of our leeches, two libtorrent leeches."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hubswarm.swarm.listener import SwarmPeer

from ..swarm.swarmkit import KIB, MIB, fast_config, make_file, make_torrent
from .peers import lt_peer
from .test_swarm_aria2 import tracker

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

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
