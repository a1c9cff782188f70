"""libtorrent 2.1 leeches download from our super-seed (BEP 16 is transparent to leeches)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hubswarm.swarm.listener import SwarmPeer

from ..swarm.swarmkit import KIB, MIB, fast_config, make_file, make_torrent
from .peers import lt_peer

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

LOCAL = "127.0.0.1"


async def test_libtorrent_leeches_complete_from_our_super_seed(tmp_path: Path) -> None:
    data = make_file(tmp_path / "seed" / "ss.bin", 2 * MIB + 999)
    mi, raw = make_torrent(tmp_path / "seed" / "ss.bin", 64 * KIB)
    events = tmp_path / "seed-events.jsonl"
    with lt_peer() as first, lt_peer() as second:
        async with (
            SwarmPeer(fast_config(upload_rate=2 * MIB, super_seed=True), host=LOCAL) as seed,
            seed.torrent(
                mi.info_hash, tmp_path / "seed", info=mi.info, seed_mode=True, events_path=events
            ) as seeding,
        ):
            first.add(tmp_path / "lt1", torrent=raw)
            second.add(tmp_path / "lt2", torrent=raw)
            first.connect(LOCAL, seed.port)
            second.connect(LOCAL, seed.port)
            second.connect(LOCAL, first.port)
            await first.await_(first.is_seed, 40, "first libtorrent leech complete")
            await second.await_(second.is_seed, 40, "second libtorrent leech complete")
            uploaded = seeding.stats.uploaded
    for out in ("lt1", "lt2"):
        assert (tmp_path / out / "ss.bin").read_bytes() == data
    records = [json.loads(line) for line in events.read_text().splitlines()]
    handover = [r for r in records if r["event"] == "superseed_done"]
    # The seed super-seeded until every piece was on a leech, then seeded as usual.
    assert len(handover) == 1
    assert handover[0]["uploaded"] >= mi.info.total_length * 0.9
    assert uploaded < 2 * mi.info.total_length  # two leeches, less than two copies from us
