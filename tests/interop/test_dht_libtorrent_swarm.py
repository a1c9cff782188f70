"""Our peer and libtorrent 2.1 find each other through the DHT only: a bare magnet, no tracker.

One of our DHT nodes (127.9.x.1) is the bootstrap node of both. libtorrent's DHT treats
127.0.0.0/8 as "dark internet" unless ``dht_ignore_dark_internet`` is off (this is a lab).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable
from pathlib import Path

import libtorrent as lt
import pytest

from hubswarm.proto.metainfo import Magnet, build_magnet, parse_metainfo
from hubswarm.swarm import api
from hubswarm.swarm.dht.node import DHTNode
from hubswarm.swarm.listener import SwarmPeer

from ..swarm.swarmkit import KIB, MIB, fast_config, make_file, make_torrent
from .peers import LtPeer, lt_make_torrent, lt_peer

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]


def bare_magnet(info_hash: bytes, name: str) -> str:
    """Only ``xt`` and ``dn``: the peers must come from the DHT."""
    return build_magnet(Magnet(info_hash=info_hash, display_name=name))


def lt_dht_peer(boot: tuple[str, int]) -> contextlib.AbstractContextManager[LtPeer]:
    return lt_peer(
        dht=True,
        dht_bootstrap_nodes=f"{boot[0]}:{boot[1]}",
        dht_ignore_dark_internet=False,
    )


async def test_our_fetch_finds_libtorrent_seed_through_the_dht(tmp_path: Path) -> None:
    data = make_file(tmp_path / "seed" / "lt.bin", 3 * MIB + 99, seed=21)
    raw = lt_make_torrent(tmp_path / "seed" / "lt.bin", 64 * KIB)
    mi = parse_metainfo(raw)
    started = time.monotonic()
    async with DHTNode(host="127.9.0.1", rng=random.Random(5), query_timeout=0.5) as boot:
        with lt_dht_peer(boot.address) as lt_seed:
            handle = lt_seed.add(tmp_path / "seed", torrent=raw, seed_mode=True)
            lt_port = lt_seed.port

            async def announced() -> None:
                # libtorrent announces once its DHT has nodes; ask again until our node has it.
                while not boot.peers.get(mi.info_hash, time.monotonic(), 50, random.Random(0)):
                    handle.force_dht_announce()
                    lt_seed.session.pop_alerts()
                    await asyncio.sleep(0.5)

            async with asyncio.timeout(20):
                await announced()
            stored = boot.peers.get(mi.info_hash, time.monotonic(), 50, random.Random(0))
            assert ("127.0.0.1", lt_port) in stored
            announced_after = time.monotonic() - started

            async def pump() -> None:
                while True:  # keep libtorrent's alert queue short while we download
                    lt_seed.session.pop_alerts()
                    await asyncio.sleep(0.2)

            dialled: set[tuple[str, int]] = set()
            async with asyncio.TaskGroup() as tg:
                pumping = tg.create_task(pump())
                try:
                    result = await api.fetch(
                        bare_magnet(mi.info_hash, "lt.bin"),
                        tmp_path / "ours",
                        config=fast_config(use_dht=True),
                        host="127.9.0.2",
                        dht_bootstrap=[boot.address],
                        stall_timeout=20,
                        timeout=30,
                        events_path=tmp_path / "events.jsonl",
                    )
                finally:
                    pumping.cancel()
    # We dialled libtorrent: its address reached us through the DHT only. (Read from the
    # event log: the link to a seed closes as soon as we complete, maybe before any
    # progress callback saw it.)
    for line in (tmp_path / "events.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record["event"] == "peer_connected" and record["outgoing"]:
            host, port = record["peer"].rsplit(":", 1)
            dialled.add((host, int(port)))
    assert ("127.0.0.1", lt_port) in dialled
    assert result.total_length == len(data)
    assert result.stats["bad_pieces"] == 0
    assert (tmp_path / "ours" / "lt.bin").read_bytes() == data
    print(
        f"libtorrent seed announced after {announced_after:.1f} s; "
        f"our fetch over the DHT took {result.seconds:.1f} s"
    )


class AnnounceOnly:
    """Our seed's DHT, announcing but finding nobody: libtorrent has to find us."""

    def __init__(self, node: DHTNode) -> None:
        self.node = node
        self.announced = 0

    async def get_peers(self, info_hash: bytes) -> list[tuple[str, int]]:
        return []

    async def get_peers_and_announce(
        self, info_hash: bytes, port: int, found: Callable[[list[tuple[str, int]]], None]
    ) -> int:
        found([])
        accepted = await self.node.announce_peer(info_hash, port)
        self.announced += accepted
        return accepted


async def test_libtorrent_leech_finds_our_seed_through_the_dht(tmp_path: Path) -> None:
    data = make_file(tmp_path / "seed" / "ours.bin", 2 * MIB + 5, seed=22)
    mi, _ = make_torrent(tmp_path / "seed" / "ours.bin", 64 * KIB)
    started = time.monotonic()
    async with (
        DHTNode(host="127.9.1.1", rng=random.Random(6), query_timeout=0.5) as boot,
        DHTNode(
            host="127.9.1.2", bootstrap=[boot.address], rng=random.Random(7), query_timeout=0.5
        ) as node,
    ):
        seed_dht = AnnounceOnly(node)
        async with (
            # 2 MiB at 4 MiB/s: the link lives long enough for its source to be sampled.
            SwarmPeer(
                fast_config(use_dht=True, upload_rate=4 * MIB), host="127.9.1.2", dht=seed_dht
            ) as seed,
            seed.torrent(mi.info_hash, tmp_path / "seed", info=mi.info) as seeding,
        ):
            await _libtorrent_leech(tmp_path, mi.info_hash, boot.address, seed.port)
            assert seeding.stats.uploaded >= mi.info.total_length
        assert seed_dht.announced >= 1
    took = time.monotonic() - started
    assert (tmp_path / "lt" / "ours.bin").read_bytes() == data
    print(f"libtorrent leech of our seed over the DHT: {took:.1f} s")


async def _libtorrent_leech(
    tmp_path: Path, info_hash: bytes, boot: tuple[str, int], seed_port: int
) -> None:
    """A libtorrent leech with only the bare magnet; asserts it learnt our seed from its DHT."""
    with lt_dht_peer(boot) as lt_leech:
        handle = lt_leech.add(tmp_path / "lt", magnet=bare_magnet(info_hash, "ours.bin"))
        deadline = time.monotonic() + 30
        next_announce = 0.0
        sources = 0
        while time.monotonic() < deadline and not lt_leech.is_seed():
            for info in handle.get_peer_info():
                if tuple(info.ip) == ("127.9.1.2", seed_port):
                    sources |= info.source
            if time.monotonic() >= next_announce and handle.status().num_peers == 0:
                handle.force_dht_announce()  # its first one may precede its DHT bootstrap
                next_announce = time.monotonic() + 2.0
            lt_leech.session.pop_alerts()
            await asyncio.sleep(0.1)
        await lt_leech.await_(lt_leech.is_seed, 0.1, "libtorrent complete over the DHT")
        # libtorrent's own record of where it learnt our address: its DHT.
        assert sources & lt.peer_info.dht, f"peer source flags {sources:#x}"
