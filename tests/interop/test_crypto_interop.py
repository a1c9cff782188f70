"""Protocol encryption (MSE/PE) against clients that insist on it, both directions:

- aria2c with ``--bt-require-crypto=true --bt-min-crypto-level=arc4`` (TCP only: aria2 has
  no uTP), found through our tracker (aria2c cannot add a peer by address), against our peer
  with ``--encryption enabled`` and ``required``;
- libtorrent 2.1 with encryption forced (``pe_forced`` in and out, RC4 only) **over uTP**
  (its TCP switched off), against our uTP-only peer with ``required``.

Every link our peer held is sampled while the transfer runs: each must have been RC4
(:class:`~hubswarm.swarm.peer.Rc4Transport`), whatever our policy allowed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubswarm.proto.metainfo import parse_metainfo
from hubswarm.swarm.listener import SwarmPeer
from hubswarm.swarm.peer import Rc4Transport
from hubswarm.swarm.session import TorrentSession
from hubswarm.swarm.utp import UtpNetwork, UtpSocket

from ..swarm.swarmkit import KIB, MIB, fast_config, make_file, make_torrent
from .peers import aria2c, lt, lt_add, lt_make_torrent, lt_seeding, lt_session, lt_until
from .test_swarm_aria2 import tracker, wait_exit

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]

LOCAL = "127.0.0.1"
SIZE = 3 * MIB + 777
PIECE = 256 * KIB
# aria2 refuses any peer that does not speak MSE, and any MSE stream that is not RC4.
ARIA2_REQUIRE_RC4 = ["--bt-require-crypto=true", "--bt-min-crypto-level=arc4"]
LT_FORCED_RC4_UTP_ONLY = {
    "out_enc_policy": lt.enc_policy.pe_forced,
    "in_enc_policy": lt.enc_policy.pe_forced,
    "allowed_enc_level": lt.enc_level.pe_rc4,
    "enable_outgoing_tcp": False,
    "enable_incoming_tcp": False,
    "enable_outgoing_utp": True,
    "enable_incoming_utp": True,
}


@contextlib.asynccontextmanager
async def link_kinds(session: TorrentSession) -> AsyncIterator[list[bool]]:
    """Whether each link ``session`` held (sampled every 20 ms) ran over RC4."""
    seen: dict[int, bool] = {}

    async def sample() -> None:
        while True:
            for link in list(session.links):
                seen[id(link)] = isinstance(link.protocol.transport, Rc4Transport)
            await asyncio.sleep(0.02)

    kinds: list[bool] = []
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(sample())
        try:
            yield kinds
        finally:
            task.cancel()
            kinds.extend(seen.values())


@pytest.mark.parametrize("policy", ["enabled", "required"])
async def test_aria2c_requiring_rc4_seeds_to_our_leech(tmp_path: Path, policy: str) -> None:
    data = make_file(tmp_path / "seed" / "c.bin", SIZE)
    async with tracker() as announce:
        mi, raw = make_torrent(tmp_path / "seed" / "c.bin", PIECE, trackers=[announce])
        (tmp_path / "t.torrent").write_bytes(raw)
        args = [
            *ARIA2_REQUIRE_RC4,
            "--seed-ratio=0.0",
            "--check-integrity=true",
            "--bt-seed-unverified=false",
            "-d",
            str(tmp_path / "seed"),
            str(tmp_path / "t.torrent"),
        ]
        with aria2c(args, cwd=tmp_path, log=tmp_path / "aria2.log"):
            async with (
                SwarmPeer(fast_config(encryption=policy, use_utp=False), host=LOCAL) as leech,
                leech.torrent(
                    mi.info_hash, tmp_path / "ours", info=mi.info, trackers=mi.announce_list
                ) as session,
                link_kinds(session) as kinds,
            ):
                await session.wait_complete(60)
                assert session.stats.downloaded_from_peers >= mi.info.total_length
    assert kinds, "no link was seen"
    assert all(kinds), "a plaintext link to an aria2c that requires RC4"
    assert (tmp_path / "ours" / "c.bin").read_bytes() == data


@pytest.mark.parametrize("policy", ["enabled", "required"])
async def test_our_seed_to_aria2c_requiring_rc4(tmp_path: Path, policy: str) -> None:
    data = make_file(tmp_path / "seed" / "c.bin", SIZE)
    async with tracker() as announce:
        mi, raw = make_torrent(tmp_path / "seed" / "c.bin", PIECE, trackers=[announce])
        (tmp_path / "t.torrent").write_bytes(raw)
        (tmp_path / "aria").mkdir()
        async with (
            SwarmPeer(fast_config(encryption=policy, use_utp=False), host=LOCAL) as seed,
            seed.torrent(
                mi.info_hash, tmp_path / "seed", info=mi.info, trackers=mi.announce_list
            ) as seeding,
            link_kinds(seeding) as kinds,
        ):
            args = [
                *ARIA2_REQUIRE_RC4,
                "--seed-time=0",
                "-d",
                str(tmp_path / "aria"),
                str(tmp_path / "t.torrent"),
            ]
            with aria2c(args, cwd=tmp_path, log=tmp_path / "aria2.log") as proc:
                code = await wait_exit(proc, 60)
            assert code == 0, (tmp_path / "aria2.log").read_text()[-3000:]
            assert seeding.stats.uploaded >= mi.info.total_length
    assert kinds, "no link was seen"
    assert all(kinds), "a plaintext link to an aria2c that requires RC4"
    assert (tmp_path / "aria" / "c.bin").read_bytes() == data


async def test_our_utp_seed_to_a_forced_rc4_libtorrent_over_utp(tmp_path: Path) -> None:
    data = make_file(tmp_path / "seed" / "file.bin", SIZE)
    mi, raw = make_torrent(tmp_path / "seed" / "file.bin", PIECE)
    with lt_session(**LT_FORCED_RC4_UTP_ONLY) as (session, _):
        async with (
            UtpSocket(host=LOCAL, rng=random.Random(1)) as sock,
            SwarmPeer(
                fast_config(encryption="required"), host=LOCAL, network=UtpNetwork(sock)
            ) as seed,
            seed.torrent(mi.info_hash, tmp_path / "seed", info=mi.info) as seeding,
            link_kinds(seeding) as kinds,
        ):
            handle = lt_add(session, raw, tmp_path / "lt", peers=[(LOCAL, seed.port)])
            await lt_until(session, lambda: handle.status().is_seeding, 60, "complete")
            assert seeding.stats.uploaded >= mi.info.total_length
            assert sock.stats.connected_in >= 1
            assert sock.stats.protocol_errors == sock.stats.malformed == 0
    assert kinds
    assert all(kinds)
    assert (tmp_path / "lt" / "file.bin").read_bytes() == data


async def test_a_forced_rc4_libtorrent_seed_over_utp_to_our_utp_leech(tmp_path: Path) -> None:
    data = make_file(tmp_path / "seed" / "file.bin", SIZE)
    raw = lt_make_torrent(tmp_path / "seed" / "file.bin", PIECE)
    mi = parse_metainfo(raw)
    with lt_session(**LT_FORCED_RC4_UTP_ONLY) as (session, port):
        await lt_seeding(session, raw, tmp_path / "seed")
        async with (
            UtpSocket(host=LOCAL, rng=random.Random(2)) as sock,
            SwarmPeer(
                fast_config(encryption="required"), host=LOCAL, network=UtpNetwork(sock)
            ) as leech,
            leech.torrent(
                mi.info_hash, tmp_path / "ours", info=mi.info, peers=[(LOCAL, port)]
            ) as downloading,
            link_kinds(downloading) as kinds,
        ):
            await downloading.wait_complete(60)
            assert downloading.stats.bad_pieces == 0
            assert sock.stats.connected_out >= 1
    assert kinds
    assert all(kinds)
    assert (tmp_path / "ours" / "file.bin").read_bytes() == data
