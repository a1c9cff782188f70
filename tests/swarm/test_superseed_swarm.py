"""Super-seeding (BEP 16) on loopback: one rate-limited seed, four of our leeches."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from click.testing import CliRunner

from hubswarm import vtime
from hubswarm.cli import cli
from hubswarm.proto.wire import PeerConnection, Role
from hubswarm.proto.wire_events import Event, Have, Interested, Request, Unchoke
from hubswarm.swarm.listener import SwarmPeer
from hubswarm.swarm.session import TorrentSession

from .swarmkit import (
    KIB,
    LOCAL,
    MIB,
    VirtualHosts,
    fast_config,
    free_port,
    make_file,
    make_torrent,
    share_process,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)

SIZE = 4 * MIB


async def flash_crowd(
    tmp_path: Path,
    *,
    super_seed: bool,
    leeches: int = 4,
    seed_rate: float = 2e6,
    seed_slots: int = 4,
    leech_rate: float | None = None,
) -> tuple[TorrentSession, list[TorrentSession]]:
    """One seed (``seed_rate`` bytes/s) and ``leeches`` leeches that dial it and each other,
    in virtual time on an in-memory network (run under ``vtime.run``); returns the sessions
    (stopped) once every leech verified every piece."""
    src = tmp_path / "seed" / "crowd.bin"
    data = make_file(src, SIZE)
    mi, _ = make_torrent(src, 64 * KIB)
    hosts = VirtualHosts()
    async with AsyncExitStack() as stack:
        seed_peer = await stack.enter_async_context(
            hosts.peer(
                fast_config(upload_rate=seed_rate, super_seed=super_seed, unchoke_slots=seed_slots)
            )
        )
        seeding = await stack.enter_async_context(
            seed_peer.torrent(mi.info_hash, src.parent, info=mi.info, seed_mode=True)
        )
        peers = [
            await stack.enter_async_context(hosts.peer(fast_config(upload_rate=leech_rate)))
            for _ in range(leeches)
        ]
        sessions = []
        for k, peer in enumerate(peers):
            dial = [(p.host, p.port) for p in [seed_peer, *peers[:k]]]
            sessions.append(
                await stack.enter_async_context(
                    peer.torrent(mi.info_hash, tmp_path / f"leech{k}", info=mi.info, peers=dial)
                )
            )
        await asyncio.gather(*(s.wait_complete(40) for s in sessions))
    for k in range(leeches):
        assert (tmp_path / f"leech{k}" / src.name).read_bytes() == data
    return seeding, sessions


def test_super_seed_sends_about_one_copy(tmp_path: Path) -> None:
    seeding, leeches = vtime.run(flash_crowd(tmp_path, super_seed=True))
    # Measured 1.04-1.05 F here; a seed serving every request sent 1.66-1.76 F.
    assert seeding.stats.uploaded <= 1.1 * SIZE, seeding.stats.uploaded / SIZE
    assert seeding.stats.uploaded >= SIZE * 0.9  # the seed, not magic, made the first copy
    assert sum(s.stats.uploaded for s in leeches) >= 2 * SIZE  # the leeches made the rest


def test_super_seed_with_more_peers_than_slots_sends_each_piece_once(tmp_path: Path) -> None:
    # Eight leeches uploading no faster than the seed, which has two upload slots: most
    # offers wait at choked peers and pieces spread at the pace of the lab's links. The
    # seed serves the peers holding unfetched offers first and never offers a piece a peer
    # already has, so until every piece is out it sends each about once (the lab, before
    # this policy: 1.25-1.6 F).
    crowd = flash_crowd(tmp_path, super_seed=True, leeches=8, seed_slots=1, leech_rate=2e6)
    seeding, _ = vtime.run(crowd)
    handed_over_at = seeding.stats.uploaded_at_superseed_done
    assert handed_over_at is not None
    assert handed_over_at <= 1.05 * SIZE, handed_over_at / SIZE


def test_leeches_trade_pieces_with_peers_that_opened_with_have_none(tmp_path: Path) -> None:
    # Every leech starts empty and says `have none` (BEP 6): the `have`s that follow must
    # still count, or each leech sees only the seed and the seed sends every copy.
    seeding, leeches = vtime.run(flash_crowd(tmp_path, super_seed=False, leeches=2))
    assert all(s.stats.uploaded > 0 for s in leeches)
    assert seeding.stats.uploaded < 2 * SIZE


def test_share_super_seed_then_fetch_by_magnet(tmp_path: Path) -> None:
    # The magnet leech learns of the offered pieces before it has the metadata (BEP 9).
    data = make_file(tmp_path / "seed" / "cli.bin", 1 * MIB + 5)
    torrent = tmp_path / "cli.torrent"
    events = tmp_path / "seed.jsonl"
    with share_process(
        tmp_path / "seed" / "cli.bin", torrent, free_port(), "--super-seed", "--events", str(events)
    ) as ready:
        argv = ["fetch", str(ready["magnet"]), "-o", str(tmp_path / "a"), "--json"]
        argv += ["--host", LOCAL, "--stall-timeout", "10"]
        result = CliRunner().invoke(cli, argv)
        assert result.exit_code == 0, result.output + result.stderr
        assert (tmp_path / "a" / "cli.bin").read_bytes() == data
        kinds = [json.loads(line)["event"] for line in events.read_text().splitlines()]
    assert "superseed_done" in kinds  # it super-seeded until the leech had every piece


async def test_a_piece_counts_as_passed_on_only_once_the_peer_holds_it(tmp_path: Path) -> None:
    # A hand-driven leech (our wire core over a raw socket with a 4 KiB receive buffer)
    # asks for the piece it is offered, then stops reading. The seed writes the blocks at
    # once, but the leech's TCP cannot acknowledge them: the seed must not count the piece
    # as passed on (no next offer). Once the leech reads, the next offer comes.

    src = tmp_path / "seed" / "held.bin"
    make_file(src, 1 * MIB)
    mi, _ = make_torrent(src, 256 * KIB)
    async with (
        SwarmPeer(fast_config(super_seed=True), host=LOCAL) as seed_peer,
        seed_peer.torrent(mi.info_hash, src.parent, info=mi.info, seed_mode=True) as seeding,
    ):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, (LOCAL, seed_peer.port))
        conn = PeerConnection(
            Role.INITIATOR, info_hash=mi.info_hash, peer_id=b"-XX0000-handdriven00", num_pieces=4
        )
        try:
            await loop.sock_sendall(sock, conn.handshake())

            async def until(pred: Callable[[Event], bool]) -> Event:
                async with asyncio.timeout(10):
                    while True:
                        for event in conn.receive_data(await loop.sock_recv(sock, 65536)):
                            if pred(event):
                                return event

            await until(lambda e: isinstance(e, Have))
            await loop.sock_sendall(sock, conn.send(Interested()))
            await until(lambda e: isinstance(e, Unchoke))
            sup = seeding.superseed.driver if seeding.superseed is not None else None
            assert sup is not None
            link = next(iter(seeding.links))
            offered = sup.policy.offers(link)
            assert offered  # the pieces offered to us (their haves came before the unchoke)
            requests = [
                Request(i, b, 16 * KIB)
                for i in sorted(offered)
                for b in range(0, 256 * KIB, 16 * KIB)
            ]
            await loop.sock_sendall(sock, b"".join(conn.send(r) for r in requests))
            await asyncio.sleep(1.0)  # the seed has written what its buffers take; we read nothing
            assert link.bytes_written > 64 * KIB
            assert link.bytes_acked() < 256 * KIB
            assert sup.policy.offers(link) == offered  # nothing passed on: no new offer
            # Read the pieces: the acknowledgements let the seed pass them on, offer another.
            nxt = await until(lambda e: isinstance(e, Have) and e.piece_index not in offered)
            assert isinstance(nxt, Have)
        finally:
            sock.close()


class _Silent(asyncio.Protocol):
    """A hand-driven peer's end of an in-memory connection: reads and ignores."""

    def data_received(self, data: bytes) -> None:
        pass


async def _assert_offers_survive_the_choke(tmp_path: Path) -> None:
    src = tmp_path / "seed" / "turns.bin"
    make_file(src, 1 * MIB)
    mi, _ = make_torrent(src, 128 * KIB)
    cfg = fast_config(super_seed=True, unchoke_slots=0, request_timeout=1.0)
    hosts = VirtualHosts()
    async with (
        hosts.peer(cfg) as seed_peer,
        seed_peer.torrent(mi.info_hash, src.parent, info=mi.info, seed_mode=True) as seeding,
    ):
        transports: list[asyncio.BaseTransport] = []
        try:
            for k in range(2):
                host = hosts.network.host(f"10.0.1.{k + 1}")
                transport, _ = await host.connect(_Silent, seed_peer.host, seed_peer.port)
                transports.append(transport)
                conn = PeerConnection(
                    Role.INITIATOR,
                    info_hash=mi.info_hash,
                    peer_id=b"-XX0000-handdriven0" + str(k).encode(),
                    num_pieces=8,
                )
                transport.write(conn.handshake() + conn.send(Interested()))
            sup = seeding.superseed.driver if seeding.superseed is not None else None
            assert sup is not None
            await wait_until(
                lambda: (
                    len(seeding.links) == 2
                    and all(lk.conn.peer_interested for lk in seeding.links)
                    and sum(not lk.conn.am_choking for lk in seeding.links) == 1
                ),
                5,
                "both interested, one unchoked",
            )
            served = next(lk for lk in seeding.links if not lk.conn.am_choking)
            waiting = next(lk for lk in seeding.links if lk.conn.am_choking)
            first, kept = sup.policy.offers(served), sup.policy.offers(waiting)
            assert first
            assert kept
            unchoked_at = asyncio.get_running_loop().time()
            await wait_until(
                lambda: sup.policy.offers(served) != first, 5, "the served offers expire"
            )
            # The ticker replaces them at its first round past the time-out.
            waited = asyncio.get_running_loop().time() - unchoked_at
            assert 1.0 - 0.05 <= waited <= 1.0 + 1.1  # wait_until polls every 50 ms
            assert waiting.conn.am_choking
            assert sup.policy.offers(waiting) == kept
        finally:
            for transport in transports:
                transport.close()


def test_offers_to_a_peer_the_seed_chokes_do_not_time_out(tmp_path: Path) -> None:
    # One slot, two hand-driven leeches that never request: the unchoked one's offers time
    # out (request_timeout = 1 s); the choked one's wait for its turn, unchanged. In
    # virtual time, in memory: the time-out is exact, not a race with a loaded machine.
    vtime.run(_assert_offers_survive_the_choke(tmp_path))
