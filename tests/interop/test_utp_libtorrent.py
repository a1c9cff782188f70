"""Our uTP against libtorrent 2.1's on loopback, with TCP switched off on both sides;
plaintext, and with encryption forced on libtorrent (``pe_forced`` in and out, RC4 only)
against our ``required`` (MSE over uTP: every link sampled must have been RC4).

libtorrent is told about our peer once, in ``add_torrent_params.peers`` (PITFALLS: a peer
re-added with ``connect_peer`` is re-dialled over uTP again and again). Every session is
paused and dropped by the test that made it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from pathlib import Path

import pytest

from hubswarm.net import TcpNetwork
from hubswarm.proto.metainfo import parse_metainfo
from hubswarm.swarm import api
from hubswarm.swarm.dualstack import DualNetwork
from hubswarm.swarm.listener import SwarmPeer
from hubswarm.swarm.utp import UtpNetwork, UtpSocket

from ..swarm.swarmkit import KIB, MIB, fast_config, make_file, make_torrent
from .peers import link_kinds, lt, lt_add, lt_make_torrent, lt_seeding, lt_session, lt_until

pytestmark = [pytest.mark.interop, pytest.mark.timeout(90)]

LOCAL = "127.0.0.1"
UTP_ONLY = {
    "enable_outgoing_tcp": False,
    "enable_incoming_tcp": False,
    "enable_outgoing_utp": True,
    "enable_incoming_utp": True,
}
# libtorrent's defaults for the transports (uTP first, then TCP), with the loopback settings.
LT_DEFAULTS = {
    "enable_outgoing_tcp": True,
    "enable_incoming_tcp": True,
    "enable_outgoing_utp": True,
    "enable_incoming_utp": True,
}
FORCED_RC4 = {
    "out_enc_policy": lt.enc_policy.pe_forced,
    "in_enc_policy": lt.enc_policy.pe_forced,
    "allowed_enc_level": lt.enc_level.pe_rc4,
}
SIZE = 5 * MIB + 777
PIECE = 256 * KIB


@pytest.mark.parametrize("rc4", [False, True], ids=["plain", "forced-rc4"])
async def test_our_utp_seed_to_a_libtorrent_leech_with_tcp_off(tmp_path: Path, rc4: bool) -> None:
    data = make_file(tmp_path / "seed" / "file.bin", SIZE)
    mi, raw = make_torrent(tmp_path / "seed" / "file.bin", PIECE)
    ours = fast_config(encryption="required" if rc4 else "enabled")
    with lt_session(**UTP_ONLY, **(FORCED_RC4 if rc4 else {})) as (session, _):
        async with (
            UtpSocket(host=LOCAL, rng=random.Random(1)) as sock,
            SwarmPeer(ours, host=LOCAL, network=UtpNetwork(sock)) as seed,
            seed.torrent(mi.info_hash, tmp_path / "seed", info=mi.info) as seeding,
            link_kinds(seeding) as kinds,
        ):
            handle = lt_add(session, raw, tmp_path / "lt", peers=[(LOCAL, seed.port)])
            await lt_until(session, lambda: handle.status().is_seeding, 60, "complete")
            assert seeding.stats.uploaded >= mi.info.total_length
            assert sock.stats.connected_in >= 1
            assert sock.stats.protocol_errors == sock.stats.malformed == 0
    assert kinds
    assert all(kinds) is rc4
    # libtorrent checked every piece's SHA-1 as it arrived; the bytes are ours.
    assert (tmp_path / "lt" / "file.bin").read_bytes() == data


@pytest.mark.parametrize("rc4", [False, True], ids=["plain", "forced-rc4"])
async def test_a_libtorrent_seed_with_tcp_off_to_our_utp_leech(tmp_path: Path, rc4: bool) -> None:
    data = make_file(tmp_path / "seed" / "file.bin", SIZE)
    raw = lt_make_torrent(tmp_path / "seed" / "file.bin", PIECE)
    mi = parse_metainfo(raw)
    ours = fast_config(encryption="required" if rc4 else "enabled")
    with lt_session(**UTP_ONLY, **(FORCED_RC4 if rc4 else {})) as (session, port):
        await lt_seeding(session, raw, tmp_path / "seed")
        async with (
            UtpSocket(host=LOCAL, rng=random.Random(2)) as sock,
            SwarmPeer(ours, host=LOCAL, network=UtpNetwork(sock)) as leech,
            leech.torrent(
                mi.info_hash, tmp_path / "ours", info=mi.info, peers=[(LOCAL, port)]
            ) as downloading,
            link_kinds(downloading) as kinds,
        ):
            await downloading.wait_complete(60)
            assert downloading.stats.bad_pieces == 0
            assert sock.stats.connected_out >= 1
            assert sock.stats.protocol_errors == sock.stats.malformed == 0
    assert kinds
    assert all(kinds) is rc4
    assert (tmp_path / "ours" / "file.bin").read_bytes() == data


async def test_libtorrent_with_its_defaults_reaches_our_dual_seed_over_utp(tmp_path: Path) -> None:
    """libtorrent dials uTP first: a seed listening on both answers it at once."""
    data = make_file(tmp_path / "seed" / "file.bin", SIZE)
    mi, raw = make_torrent(tmp_path / "seed" / "file.bin", PIECE)
    with lt_session(**LT_DEFAULTS) as (session, _):
        async with (
            UtpSocket(host=LOCAL, rng=random.Random(3)) as sock,
            SwarmPeer(
                fast_config(), host=LOCAL, network=DualNetwork(TcpNetwork(), UtpNetwork(sock))
            ) as seed,
            seed.torrent(mi.info_hash, tmp_path / "seed", info=mi.info),
        ):
            assert seed.port == sock.address[1]  # TCP and uTP on one port number
            started = time.monotonic()
            handle = lt_add(session, raw, tmp_path / "lt", peers=[(LOCAL, seed.port)])
            await lt_until(session, lambda: sock.stats.connected_in == 1, 20, "a uTP peer")
            # Well inside libtorrent's 3 s uTP time-out, after which it would try TCP.
            assert time.monotonic() - started < 2.5
            await lt_until(session, lambda: handle.status().is_seeding, 60, "complete")
    assert (tmp_path / "lt" / "file.bin").read_bytes() == data


async def test_hubswarm_share_with_its_defaults_seeds_libtorrent_over_utp_only(
    tmp_path: Path,
) -> None:
    """``hubswarm share`` (api.share) listens on uTP by default: a libtorrent that will not
    use TCP at all still gets the file, from the port the magnet link names."""
    source = tmp_path / "share" / "file.bin"
    data = make_file(source, SIZE)
    shared: asyncio.Future[api.ShareInfo] = asyncio.get_running_loop().create_future()
    with lt_session(**UTP_ONLY) as (session, _):
        sharing = asyncio.create_task(
            api.share(
                source,
                config=fast_config(),
                host=LOCAL,
                torrent_out=tmp_path / "file.torrent",
                piece_length=PIECE,
                ready=shared.set_result,
            )
        )
        try:
            info = await asyncio.wait_for(shared, 30)
            raw = (tmp_path / "file.torrent").read_bytes()
            handle = lt_add(session, raw, tmp_path / "lt", peers=[(LOCAL, info.port)])
            await lt_until(session, lambda: handle.status().is_seeding, 60, "complete")
        finally:
            sharing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sharing
    assert (tmp_path / "lt" / "file.bin").read_bytes() == data
