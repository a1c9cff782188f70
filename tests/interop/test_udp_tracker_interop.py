"""UDP trackers (BEP 15) against real parts, on 127.0.0.1 only:

- libtorrent announces to *our* UDP tracker, and our leech finds the libtorrent seed only
  through it (no peer address given, no DHT): the file arrives verified;
- *our* peers announce to Debian's ``opentracker`` over UDP, find each other through it,
  and our scrape shows the counts.

libtorrent and opentracker are installed by ``scripts/install.sh --test``; if they are
missing the tests fail (never skip). opentracker is started here and ended by its PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from hubswarm.hub.tracker import TrackerState
from hubswarm.hub.udp_tracker import running_udp_tracker
from hubswarm.proto.tracker import ScrapeFile
from hubswarm.swarm import api
from hubswarm.swarm.config import SessionConfig
from hubswarm.swarm.maketorrent import create_torrent
from hubswarm.swarm.udp_tracker_client import UdpTrackerClient

from .peers import free_port, lt_make_torrent, lt_seeding, lt_session, stopped_by_pid

pytestmark = [pytest.mark.interop, pytest.mark.timeout(120)]

OPENTRACKER = "/usr/bin/opentracker"
DEADLINE = 30.0


def _config() -> SessionConfig:
    # Tracker only: no DHT, and re-announce every 2 s so a peer that was not listed yet on
    # the first announce is found on the next.
    return SessionConfig(use_dht=False, announce_interval=2.0)


def _payload(path: Path, size: int = 300 * 1024) -> bytes:
    data = random.Random(11).randbytes(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


async def _fetch_verified(torrent: Path, out: Path, data: bytes) -> None:
    """Our fetch of ``torrent``, with no peer given: its trackers are the only way."""
    result = await api.fetch(
        str(torrent), out, config=_config(), host="127.0.0.1", stall_timeout=DEADLINE,
        timeout=DEADLINE,
    )  # fmt: skip
    assert (out / "payload.bin").read_bytes() == data
    assert result.total_length == len(data)


async def test_our_leech_finds_a_libtorrent_seed_through_our_udp_tracker(tmp_path: Path) -> None:
    state = TrackerState(interval=5, rng=random.Random(0))
    async with running_udp_tracker(state, "127.0.0.1", 0) as server:
        src = tmp_path / "seed" / "payload.bin"
        data = _payload(src)
        raw = lt_make_torrent(src, 16384, trackers=(server.url,))
        torrent = tmp_path / "t.torrent"
        torrent.write_bytes(raw)
        with lt_session() as (session, lt_port):
            handle = await lt_seeding(session, raw, src.parent)
            info_hash = bytes(handle.info_hash().to_bytes())
            deadline = time.monotonic() + DEADLINE
            while not any(p.port == lt_port for p in state.peers(info_hash)):
                assert time.monotonic() < deadline, "libtorrent never announced over UDP"
                session.pop_alerts()
                await asyncio.sleep(0.05)
            assert server.stats.connects >= 1
            assert server.stats.announces >= 1
            seed = next(p for p in state.peers(info_hash) if p.port == lt_port)
            assert seed.peer_id.startswith(b"-LT")
            await _fetch_verified(torrent, tmp_path / "leech", data)
        assert server.stats.malformed == 0


@contextlib.contextmanager
def _opentracker(info_hashes: list[bytes]) -> Iterator[str]:
    """opentracker on 127.0.0.1 serving ``info_hashes``: Debian builds it with a whitelist
    (README.Debian). As root it chroots to ``-d`` and drops to nobody, so its folder must be
    readable by all."""
    if not os.access(OPENTRACKER, os.X_OK):
        pytest.fail("opentracker is missing: run `bash scripts/install.sh --test`")
    tcp_port, udp_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="hubswarm-opentracker-") as folder:
        root = Path(folder)
        root.chmod(0o755)
        (root / "whitelist.txt").write_text("".join(f"{h.hex()}\n" for h in info_hashes))
        (root / "whitelist.txt").chmod(0o644)
        cmd = [OPENTRACKER, "-i", "127.0.0.1", "-p", str(tcp_port), "-P", str(udp_port),
               "-d", str(root), "-w", "whitelist.txt"]  # fmt: skip
        with (
            (root / "opentracker.log").open("wb") as log,
            stopped_by_pid(cmd, stdout=log, stderr=subprocess.STDOUT),
        ):
            yield f"udp://127.0.0.1:{udp_port}/announce"


async def _scrape_until(
    url: str, info_hash: bytes, predicate: Callable[[ScrapeFile], bool], what: str
) -> ScrapeFile:
    """Scrape ``url`` over UDP until the counts satisfy ``predicate``."""
    async with UdpTrackerClient() as client:
        deadline = time.monotonic() + DEADLINE
        seen = None
        while time.monotonic() < deadline:
            files = (await client.scrape(url, [info_hash], timeout=5)).files
            seen = files.get(info_hash)
            if seen is not None and predicate(seen):
                return seen
            await asyncio.sleep(0.2)
        raise AssertionError(f"opentracker's scrape never showed {what}: {seen}")


@contextlib.asynccontextmanager
async def _sharing(path: Path, url: str, torrent: Path) -> AsyncIterator[api.ShareInfo]:
    ready: asyncio.Future[api.ShareInfo] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        api.share(
            path, config=_config(), host="127.0.0.1", torrent_out=torrent, trackers=[url],
            ready=ready.set_result,
        )
    )  # fmt: skip
    try:
        async with asyncio.timeout(DEADLINE):
            shared = await asyncio.shield(ready)
        yield shared
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_our_peers_meet_through_opentracker_over_udp(tmp_path: Path) -> None:
    src = tmp_path / "seed" / "payload.bin"
    data = _payload(src)
    torrent = tmp_path / "t.torrent"
    # share makes the same torrent (the trackers are not part of the info-hash).
    info, _ = create_torrent(src, trackers=("udp://127.0.0.1:1/announce",))
    with _opentracker([info.info_hash]) as url:
        async with _sharing(src, url, torrent) as shared:
            info_hash = bytes.fromhex(shared.info_hash)
            await _scrape_until(url, info_hash, lambda f: f.complete == 1, "the seed")
            await _fetch_verified(torrent, tmp_path / "leech", data)
            # The leech announced `completed` (counted once) and, leaving, `stopped`.
            counts = await _scrape_until(
                url, info_hash, lambda f: f.downloaded >= 1 and f.incomplete == 0, "a download"
            )
            assert counts.complete == 1
