"""Our peer against libtorrent 2.1 on loopback: each direction, multi-file, magnet metadata."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from hubswarm.proto.metainfo import parse_metainfo
from hubswarm.swarm.listener import SwarmPeer

from ..swarm.swarmkit import KIB, MIB, fast_config, make_file, make_torrent, make_tree
from .peers import lt_make_torrent, lt_peer

pytestmark = [pytest.mark.interop, pytest.mark.timeout(60)]

LOCAL = "127.0.0.1"


def make_content(root: Path, multi: bool) -> tuple[Path, dict[str, bytes]]:
    """A 2 MiB file or a folder of 3 files; returns (path, relative name -> bytes)."""
    if not multi:
        data = make_file(root / "single.bin", 2 * MIB + 333)
        return root / "single.bin", {"single.bin": data}
    sizes = {"a.bin": 300 * KIB + 7, "sub/b.bin": 1 * MIB, "sub/c.txt": 1000}
    files = make_tree(root / "multi", sizes)
    return root / "multi", {f"multi/{rel}": data for rel, data in files.items()}


def check(out: Path, expected: dict[str, bytes]) -> None:
    for rel, data in expected.items():
        assert (out / rel).read_bytes() == data, rel


@pytest.mark.parametrize("multi", [False, True], ids=["single", "multi"])
async def test_our_seed_to_libtorrent_leech(tmp_path: Path, multi: bool) -> None:
    path, expected = make_content(tmp_path / "seed", multi)
    mi, raw = make_torrent(path, 64 * KIB)
    with lt_peer() as lt_leech:
        async with (
            SwarmPeer(fast_config(), host=LOCAL) as seed,
            seed.torrent(mi.info_hash, tmp_path / "seed", info=mi.info) as seeding,
        ):
            lt_leech.add(tmp_path / "lt", torrent=raw)
            lt_leech.connect(LOCAL, seed.port)
            await lt_leech.await_(lt_leech.is_seed, 30, "libtorrent complete")
            assert seeding.stats.uploaded >= mi.info.total_length
    check(tmp_path / "lt", expected)


@pytest.mark.parametrize("multi", [False, True], ids=["single", "multi"])
async def test_libtorrent_seed_to_our_leech(tmp_path: Path, multi: bool) -> None:
    path, expected = make_content(tmp_path / "seed", multi)
    raw = lt_make_torrent(path, 64 * KIB)
    mi = parse_metainfo(raw)
    with lt_peer() as lt_seed:
        lt_seed.add(tmp_path / "seed", torrent=raw, seed_mode=True)
        async with (
            SwarmPeer(fast_config(), host=LOCAL) as leech,
            leech.torrent(
                mi.info_hash, tmp_path / "ours", info=mi.info, peers=[(LOCAL, lt_seed.port)]
            ) as session,
        ):
            await session.wait_complete(30)
            assert session.stats.bad_pieces == 0
    check(tmp_path / "ours", expected)


async def test_magnet_metadata_from_libtorrent(tmp_path: Path) -> None:
    path, expected = make_content(tmp_path / "seed", multi=True)
    raw = lt_make_torrent(path, 64 * KIB)
    mi = parse_metainfo(raw)
    with lt_peer() as lt_seed:
        lt_seed.add(tmp_path / "seed", torrent=raw, seed_mode=True)
        async with (
            SwarmPeer(fast_config(), host=LOCAL) as leech,
            leech.torrent(mi.info_hash, tmp_path / "ours", peers=[(LOCAL, lt_seed.port)]) as s,
        ):
            await s.wait_complete(30)
            assert s.info is not None
            assert s.info.raw == mi.info.raw  # the metadata verified against the info-hash
    check(tmp_path / "ours", expected)


async def test_libtorrent_falls_back_to_plaintext_after_our_refusal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """libtorrent with encryption *enabled* tries MSE first; with ``encryption="disabled"``
    we close that socket (a bad protocol string) and it must reconnect in plaintext and
    complete."""
    caplog.set_level(logging.DEBUG, logger="hubswarm.swarm.listener")
    path, expected = make_content(tmp_path / "seed", multi=False)
    mi, raw = make_torrent(path, 64 * KIB)
    # 1 = pe_enabled: try encrypted, accept plaintext (2, disabled, is what the others use).
    with lt_peer(out_enc_policy=1, in_enc_policy=1) as lt_leech:
        async with (
            SwarmPeer(fast_config(encryption="disabled"), host=LOCAL) as seed,
            seed.torrent(mi.info_hash, tmp_path / "seed", info=mi.info),
        ):
            lt_leech.add(tmp_path / "lt", torrent=raw)
            lt_leech.connect(LOCAL, seed.port)
            await lt_leech.await_(lt_leech.is_seed, 30, "libtorrent complete after fallback")
    assert "not a BitTorrent handshake" in caplog.text  # the MSE attempt was refused
    check(tmp_path / "lt", expected)
