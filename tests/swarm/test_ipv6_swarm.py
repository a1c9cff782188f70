"""Our peers on IPv6 loopback (``::1``): tracker ``peers6`` (BEP 7), TCP and uTP, MSE, PEX
``added6`` (BEP 11), and no DHT (BEP 32 is left out). Real sockets; skipped without ``::1``."""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path

import pytest

from hubswarm.clock import Clock
from hubswarm.swarm import api
from hubswarm.swarm.listener import SwarmPeer
from hubswarm.swarm.session import TorrentSession
from hubswarm.swarm.utp import UtpNetwork, UtpSocket
from tests.ipv6 import needs_ipv6

from .swarmkit import KIB, MIB, fast_config, make_file, make_torrent, serve_tracker, wait_until

pytestmark = [needs_ipv6, pytest.mark.timeout(60)]

V6 = "::1"


async def test_fetch_over_tcp_and_utp_from_a_seed_found_through_peers6(tmp_path: Path) -> None:
    """A leech that knows only the tracker finds the seed in ``peers6``; another dials it over
    uTP on the IPv6 socket with MSE required; both verify every byte."""
    data = make_file(tmp_path / "seed" / "v6.bin", 3 * MIB + 123)
    async with serve_tracker(V6, interval=1) as (url, state):
        ready: asyncio.Future[api.ShareInfo] = asyncio.get_running_loop().create_future()
        share = asyncio.create_task(
            api.share(
                tmp_path / "seed" / "v6.bin",
                config=fast_config(),
                host=V6,
                trackers=[url],
                piece_length=64 * KIB,
                torrent_out=tmp_path / "v6.torrent",
                ready=ready.set_result,
            )
        )
        try:
            info = await asyncio.wait_for(asyncio.shield(ready), 20)
            # The magnet names the seed in brackets; the tracker lists it as IPv6.
            assert f"x.pe=[{V6}]:{info.port}" in info.magnet
            raw_hash = bytes.fromhex(info.info_hash)
            await wait_until(lambda: bool(state.peers(raw_hash)), 10, "the seed's announce")
            assert [(p.ip, p.port) for p in state.peers(raw_hash)] == [(V6, info.port)]
            # From the .torrent (no x.pe): the tracker's peers6 is the only way to the seed.
            by_tracker = await api.fetch(
                str(tmp_path / "v6.torrent"),
                tmp_path / "l1",
                config=fast_config(use_utp=False),
                host=V6,
                timeout=30,
            )
            assert (tmp_path / "l1" / "v6.bin").read_bytes() == data
            assert by_tracker.stats["downloaded_from_peers"] == len(data)
            over_utp = await api.fetch(
                str(tmp_path / "v6.torrent"),
                tmp_path / "l2",
                config=fast_config(use_tcp=False, encryption="required", use_pex=False),
                host=V6,
                peers=[(V6, info.port)],
                timeout=30,
            )
            assert (tmp_path / "l2" / "v6.bin").read_bytes() == data
            assert over_utp.stats["downloaded_from_peers"] == len(data)
        finally:
            share.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await share


async def test_an_ipv6_peer_runs_without_a_dht_node(tmp_path: Path) -> None:
    """BEP 32 is left out: asked for a DHT on ``::1``, the peer starts without one."""
    config = fast_config()
    async with api._running_peer(
        config, V6, False, [("127.0.0.1", 9)], None, clock=Clock(), network=None
    ) as peer:
        assert peer.dht is None
        assert peer.port > 0


def _linked(a: TorrentSession, port: int) -> bool:
    """Whether ``a`` has a link to the peer listening at ``[::1]:port`` (either direction)."""
    for link in a.links:
        ext = link.conn.remote_extended_handshake
        if link.address == (V6, port) or (ext is not None and ext.p == port):
            return True
    return False


async def test_leeches_that_only_know_the_seed_meet_through_pex_added6(tmp_path: Path) -> None:
    """The seed tells each leech of the other in ``added6``: they link to each other."""
    make_file(tmp_path / "seed" / "x.bin", 2 * MIB)
    mi, _ = make_torrent(tmp_path / "seed" / "x.bin", 64 * KIB)
    # A slow seed keeps both leeches leeching (two seeds would drop their link).
    async with (
        SwarmPeer(fast_config(upload_rate=64 * KIB), host=V6) as seed,
        seed.torrent(mi.info_hash, tmp_path / "seed", info=mi.info) as seeding,
        SwarmPeer(fast_config(), host=V6) as p1,
        SwarmPeer(fast_config(), host=V6) as p2,
    ):
        dial = [(V6, seed.port)]
        async with (
            p1.torrent(mi.info_hash, tmp_path / "l1", info=mi.info, peers=dial) as l1,
            p2.torrent(mi.info_hash, tmp_path / "l2", info=mi.info, peers=dial) as l2,
        ):
            await wait_until(lambda: len(seeding.links) == 2, 20, "both leeches on the seed")
            await wait_until(
                lambda: _linked(l1, p2.port) and _linked(l2, p1.port), 20, "the leeches linked"
            )
            assert all(link.address[0] == V6 for link in (*l1.links, *l2.links))


@pytest.mark.parametrize(("bound", "dialled"), [("127.0.0.1", V6), (V6, "127.0.0.1")])
async def test_utp_across_address_families_fails_at_once(bound: str, dialled: str) -> None:
    """An IPv4 uTP socket cannot send to IPv6 (nor the reverse): the dial fails at once
    instead of waiting out its SYN resends, so a dial policy falls back without delay."""
    async with UtpSocket(host=bound, rng=random.Random(3)) as sock:
        with pytest.raises(OSError, match="cannot reach"):
            async with asyncio.timeout(0.5):
                await UtpNetwork(sock).connect(asyncio.Protocol, dialled, 9)
        assert sock.connections == 0
        assert sock.stats.datagrams_out == 0
