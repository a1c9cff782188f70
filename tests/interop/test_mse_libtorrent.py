"""MSE/PE against libtorrent 2.1 with encryption forced (``pe_forced`` in and out, RC4 only).

Our peer runs with ``encryption="required"``: a plaintext byte either way would end the
connection, so a completed, hash-checked file means the whole stream went through RC4.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from hubswarm.proto.metainfo import parse_metainfo
from hubswarm.swarm.listener import SwarmPeer

from ..swarm.swarmkit import KIB, MIB, fast_config, make_file, make_torrent
from .peers import lt, lt_add, lt_make_torrent, lt_seeding, lt_session, lt_until

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]

LOCAL = "127.0.0.1"
FORCED_RC4 = {
    "out_enc_policy": lt.enc_policy.pe_forced,
    "in_enc_policy": lt.enc_policy.pe_forced,
    "allowed_enc_level": lt.enc_level.pe_rc4,
}
SIZE = 3 * MIB + 777
PIECE = 256 * KIB


def sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes(), usedforsecurity=False).hexdigest()


async def test_our_required_seed_to_a_forced_rc4_libtorrent(tmp_path: Path) -> None:
    make_file(tmp_path / "seed" / "file.bin", SIZE)
    mi, raw = make_torrent(tmp_path / "seed" / "file.bin", PIECE)
    with lt_session(**FORCED_RC4) as (session, _):
        async with (
            SwarmPeer(fast_config(encryption="required", use_utp=False), host=LOCAL) as seed,
            seed.torrent(mi.info_hash, tmp_path / "seed", info=mi.info) as seeding,
        ):
            handle = lt_add(session, raw, tmp_path / "lt", peers=[(LOCAL, seed.port)])
            await lt_until(session, lambda: handle.status().is_seeding, 60, "complete")
            assert seeding.stats.uploaded >= mi.info.total_length
    assert sha1(tmp_path / "lt" / "file.bin") == sha1(tmp_path / "seed" / "file.bin")


async def test_a_forced_rc4_libtorrent_seed_to_our_required_leech(tmp_path: Path) -> None:
    make_file(tmp_path / "seed" / "file.bin", SIZE)
    raw = lt_make_torrent(tmp_path / "seed" / "file.bin", PIECE)
    mi = parse_metainfo(raw)
    with lt_session(**FORCED_RC4) as (session, port):
        await lt_seeding(session, raw, tmp_path / "seed")
        async with (
            SwarmPeer(fast_config(encryption="required", use_utp=False), host=LOCAL) as leech,
            leech.torrent(
                mi.info_hash, tmp_path / "ours", info=mi.info, peers=[(LOCAL, port)]
            ) as downloading,
        ):
            await downloading.wait_complete(60)
            assert downloading.stats.bad_pieces == 0
    assert sha1(tmp_path / "ours" / "file.bin") == sha1(tmp_path / "seed" / "file.bin")
