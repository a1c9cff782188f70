"""Faults: corrupt peers are banned, malformed wire closes one link, a killed seed comes back,
a full disk stops the download with DiskFullError."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import struct
from pathlib import Path

import pytest

from hubswarm.errors import DiskFullError
from hubswarm.proto.wire_handshake import HANDSHAKE_LENGTH, PSTR_PREFIX, make_reserved
from hubswarm.swarm.listener import SwarmPeer
from hubswarm.swarm.storage import PieceStore

from .swarmkit import (
    KIB,
    MIB,
    fast_config,
    free_port,
    make_file,
    make_torrent,
    share_process,
    wait_until,
)

pytestmark = pytest.mark.timeout(40)

LOCAL = "127.0.0.1"


async def test_corrupt_peer_is_banned_and_the_download_is_correct(tmp_path: Path) -> None:
    data = make_file(tmp_path / "seed" / "c.bin", 4 * MIB)
    mi, _ = make_torrent(tmp_path / "seed" / "c.bin", 64 * KIB)
    # The honest seed is slowed down so that the corrupt one surely serves several pieces.
    async with (
        SwarmPeer(fast_config(upload_rate=4 * MIB), host=LOCAL) as honest,
        honest.torrent(mi.info_hash, tmp_path / "seed", info=mi.info),
        SwarmPeer(fast_config(corrupt_uploads=True), host=LOCAL) as corrupt,
        corrupt.torrent(mi.info_hash, tmp_path / "seed", info=mi.info),
        SwarmPeer(fast_config(), host=LOCAL) as leech,
        leech.torrent(
            mi.info_hash,
            tmp_path / "leech",
            info=mi.info,
            peers=[(LOCAL, corrupt.port), (LOCAL, honest.port)],
        ) as session,
    ):
        await session.wait_complete(20)
        assert session.stats.bad_pieces >= 1
        assert session.stats.banned >= 1
        assert session.is_banned((LOCAL, corrupt.port))
        assert not session.is_banned((LOCAL, honest.port))
        assert all(link.address != (LOCAL, corrupt.port) for link in session.links)
    assert (tmp_path / "leech" / "c.bin").read_bytes() == data


class RawPeer:
    """A listening socket that answers the BitTorrent handshake, then sends ``garbage``."""

    def __init__(self, info_hash: bytes, garbage: bytes) -> None:
        self.info_hash = info_hash
        self.garbage = garbage
        self.connections = 0
        self.closed_by_remote = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RawPeer:
        self._server = await asyncio.start_server(self._serve, LOCAL, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            async with asyncio.timeout(10):
                await reader.readexactly(HANDSHAKE_LENGTH)
                reserved = make_reserved(extension_protocol=True, fast=True, dht=False)
                writer.write(PSTR_PREFIX + reserved + self.info_hash + b"-XX0001-badbadbadbad")
                writer.write(self.garbage)
                await writer.drain()
                while await reader.read(65536):
                    pass
                self.closed_by_remote += 1
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            writer.close()


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"\xff" * 64, id="garbage"),
        pytest.param(struct.pack(">IB", 2**31, 7) + b"\x00" * 32, id="2GiB-length-prefix"),
        pytest.param(struct.pack(">IBI", 5, 4, 10**6), id="have-out-of-range"),
    ],
)
async def test_malformed_wire_closes_only_that_link(tmp_path: Path, garbage: bytes) -> None:
    data = make_file(tmp_path / "seed" / "w.bin", 1 * MIB)
    mi, _ = make_torrent(tmp_path / "seed" / "w.bin", 64 * KIB)
    async with (
        RawPeer(mi.info_hash, garbage) as bad,
        SwarmPeer(fast_config(upload_rate=4 * MIB), host=LOCAL) as seed,
        seed.torrent(mi.info_hash, tmp_path / "seed", info=mi.info),
        SwarmPeer(fast_config(), host=LOCAL) as leech,
        leech.torrent(
            mi.info_hash,
            tmp_path / "leech",
            info=mi.info,
            peers=[(LOCAL, bad.port), (LOCAL, seed.port)],
        ) as session,
    ):
        await wait_until(lambda: bad.closed_by_remote >= 1, 10, "the bad link closed by us")
        await session.wait_complete(20)
        assert any(link.address == (LOCAL, seed.port) for link in session.links) or (
            session.complete.is_set()
        )
    assert bad.connections >= 1
    assert (tmp_path / "leech" / "w.bin").read_bytes() == data


async def test_killed_seed_restarts_and_the_leech_finishes(tmp_path: Path) -> None:
    from hubswarm.proto.metainfo import parse_metainfo

    data = make_file(tmp_path / "seed" / "k.bin", 4 * MIB)
    port = free_port()
    torrent = tmp_path / "k.torrent"
    rate = ("--upload-rate", "2MB/s")
    with share_process(tmp_path / "seed" / "k.bin", torrent, port, *rate) as first:
        mi = parse_metainfo(torrent.read_bytes())
        async with (
            SwarmPeer(fast_config(), host=LOCAL) as leech,
            leech.torrent(
                mi.info_hash, tmp_path / "leech", info=mi.info, peers=[(LOCAL, port)]
            ) as session,
        ):
            assert session.picker is not None
            picker = session.picker
            n = mi.info.num_pieces
            await wait_until(lambda: picker.have.count() >= n // 4, 15, "a quarter")
            os.kill(int(first["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
            await wait_until(lambda: not session.links, 5, "the link to the dead seed closed")
            had = picker.have.count()
            assert had < n
            await asyncio.sleep(0.5)
            with share_process(tmp_path / "seed" / "k.bin", torrent, port, *rate):
                await session.wait_complete(20)
    assert (tmp_path / "leech" / "k.bin").read_bytes() == data


async def test_disk_full_stops_the_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_file(tmp_path / "seed" / "d.bin", 512 * KIB)
    mi, _ = make_torrent(tmp_path / "seed" / "d.bin", 64 * KIB)
    async with (
        SwarmPeer(fast_config(), host=LOCAL) as seed,
        seed.torrent(mi.info_hash, tmp_path / "seed", info=mi.info),
    ):

        def full(self: PieceStore, fd: int, chunk: memoryview, offset: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(PieceStore, "_pwrite_all", full)
        async with (
            SwarmPeer(fast_config(), host=LOCAL) as leech,
            leech.torrent(
                mi.info_hash, tmp_path / "leech", info=mi.info, peers=[(LOCAL, seed.port)]
            ) as session,
        ):
            with pytest.raises(DiskFullError):
                await session.wait_complete(10)
            assert session.picker is not None
            assert session.picker.have.count() == 0
    assert not (tmp_path / "leech" / "d.bin").exists()
