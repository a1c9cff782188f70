"""Our tracker, announced to by real clients: libtorrent 2.x and aria2c, on 127.0.0.1 only.

These peers are installed by ``scripts/install.sh --test``; if they are missing the tests
fail (never skip) with a message saying so.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import shutil
import signal
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hubswarm.hub.tracker import PeerRecord, TrackerState
from hubswarm.proto import bencode

from ..swarm.swarmkit import serve_tracker

pytestmark = pytest.mark.interop

DEADLINE = 20.0  # seconds a real client gets to announce


def _libtorrent() -> Any:
    try:
        import libtorrent as lt
    except ImportError:
        pytest.fail(
            "libtorrent's Python bindings are missing: run `bash scripts/install.sh --test`"
        )
    return lt


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Tracker:
    url: str
    state: TrackerState


@pytest.fixture
async def tracker() -> AsyncIterator[Tracker]:
    async with serve_tracker() as (url, state):
        yield Tracker(url, state)


def _make_torrent(root: Path, tracker_url: str) -> tuple[bytes, bytes]:
    """A v1 torrent of one 100 KiB file under ``root`` (BEP 3); return (bencoded, info_hash)."""
    payload = random.Random(1).randbytes(100 * 1024)
    (root / "payload.bin").write_bytes(payload)
    piece_length = 16384
    pieces = b"".join(
        hashlib.sha1(payload[i : i + piece_length]).digest()
        for i in range(0, len(payload), piece_length)
    )
    info = {b"name": b"payload.bin", b"length": len(payload), b"piece length": piece_length,
            b"pieces": pieces}  # fmt: skip
    data = bencode.encode({b"announce": tracker_url.encode(), b"info": info})
    return data, hashlib.sha1(bencode.encode(info)).digest()


async def _wait_for_peer(
    state: TrackerState, info_hash: bytes, port: int, alive: Any = None
) -> PeerRecord:
    """Poll the tracker state until a peer with ``port`` shows up, or fail at the deadline."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        for peer in state.peers(info_hash):
            if peer.port == port:
                return peer
        if alive is not None:
            alive()
        await asyncio.sleep(0.1)
    seen = [(p.ip, p.port) for p in state.peers(info_hash)]
    pytest.fail(f"no announce with port {port} within {DEADLINE} s; tracker saw {seen}")


async def test_libtorrent_seed_announces_to_our_tracker(tracker: Tracker, tmp_path: Path) -> None:
    lt = _libtorrent()
    data, info_hash = _make_torrent(tmp_path, tracker.url)
    session = lt.session(
        {
            "listen_interfaces": "127.0.0.1:0",
            "enable_dht": False,
            "enable_lsd": False,
            "enable_upnp": False,
            "enable_natpmp": False,
            "allow_multiple_connections_per_ip": True,
            "ssrf_mitigation": False,
            "announce_to_all_trackers": True,
            "announce_to_all_tiers": True,
            "stop_tracker_timeout": 5,
        }
    )
    try:
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(lt.bdecode(data))
        params.save_path = str(tmp_path)
        handle = session.add_torrent(params)
        port_deadline = time.monotonic() + DEADLINE
        while session.listen_port() == 0 and time.monotonic() < port_deadline:
            await asyncio.sleep(0.05)
        port = session.listen_port()
        assert port > 0, "libtorrent did not open its listen socket"
        peer = await _wait_for_peer(tracker.state, info_hash, port)
        assert peer.ip == "127.0.0.1"
        assert peer.peer_id[:1] == b"-"  # Azureus-style id, e.g. -LT2110-
        # Once it has checked its files, it re-announces as a seed (left=0) on completion
        # or on the next interval; ask it to announce now rather than wait.
        check_deadline = time.monotonic() + DEADLINE
        while not handle.status().is_seeding and time.monotonic() < check_deadline:
            await asyncio.sleep(0.1)
        assert handle.status().is_seeding
        handle.force_reannounce()
        seed_deadline = time.monotonic() + DEADLINE
        while time.monotonic() < seed_deadline:
            if any(p.port == port and p.is_seed for p in tracker.state.peers(info_hash)):
                break
            await asyncio.sleep(0.1)
        assert tracker.state.scrape([info_hash], time.monotonic()).files[info_hash].complete == 1
        # Pausing the session sends BEP 3 `stopped`, which removes it from the swarm.
        session.pause()
        stop_deadline = time.monotonic() + DEADLINE
        while any(p.port == port for p in tracker.state.peers(info_hash)):
            assert time.monotonic() < stop_deadline, "no `stopped` announce from libtorrent"
            await asyncio.sleep(0.05)
    finally:
        # The destructor blocks until the `stopped` announce is answered (or times out), and
        # our tracker runs on this loop: destroy the session in a worker thread.
        holder = [session]
        del session
        await asyncio.to_thread(_close_session, holder)


def _close_session(holder: list[Any]) -> None:
    session = holder.pop()
    session.pause()
    del session


async def test_aria2c_announces_to_our_tracker(tracker: Tracker, tmp_path: Path) -> None:
    aria2c = shutil.which("aria2c")
    if aria2c is None:
        pytest.fail("aria2c is missing: run `bash scripts/install.sh --test` (Debian aria2)")
    seed_dir = tmp_path / "seed"
    seed_dir.mkdir()
    data, info_hash = _make_torrent(seed_dir, tracker.url)
    torrent = tmp_path / "t.torrent"
    torrent.write_bytes(data)
    out_dir = tmp_path / "aria"
    out_dir.mkdir()
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        aria2c, "--no-conf", "--enable-dht=false", "--enable-dht6=false",
        "--bt-enable-lpd=false", "--enable-peer-exchange=false", "--seed-time=0",
        f"--dir={out_dir}", f"--listen-port={port}", "--disable-ipv6=true",
        "--summary-interval=0", "--console-log-level=warn", str(torrent),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip

    def alive() -> None:
        if proc.returncode is not None:
            pytest.fail(f"aria2c exited early with code {proc.returncode}")

    try:
        peer = await _wait_for_peer(tracker.state, info_hash, port, alive)
        assert peer.ip == "127.0.0.1"
        assert peer.left == 100 * 1024  # a leecher with everything to fetch
        assert peer.peer_id.startswith(b"A2-")  # aria2's peer id prefix
    finally:
        if proc.returncode is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                os.kill(proc.pid, signal.SIGKILL)
                await proc.wait()
        if proc.stderr is not None:
            await proc.stderr.read()
