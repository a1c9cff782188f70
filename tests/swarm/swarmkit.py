"""Helpers for the swarm shell tests: files, torrents, fast configs and bounded waits."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from hubswarm.hub.tracker import TrackerState, add_tracker_routes
from hubswarm.proto.metainfo import Metainfo, parse_metainfo
from hubswarm.swarm.config import SessionConfig
from hubswarm.swarm.maketorrent import create_torrent

KIB = 1024
MIB = 1024 * KIB


def blob(n: int, seed: int) -> bytes:
    """``n`` reproducible pseudo-random bytes."""
    return random.Random(seed).randbytes(n)


def make_file(path: Path, size: int, seed: int = 1) -> bytes:
    """Write ``size`` pseudo-random bytes to ``path``; return them."""
    data = blob(size, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def make_tree(root: Path, sizes: dict[str, int]) -> dict[str, bytes]:
    """A folder of files (relative name -> size); returns name -> contents."""
    return {
        rel: make_file(root / rel, size, seed=i + 7) for i, (rel, size) in enumerate(sizes.items())
    }


def make_torrent(
    path: Path,
    piece_length: int = 128 * KIB,
    *,
    trackers: Sequence[str] = (),
    web_seeds: Sequence[str] = (),
    private: bool = False,
) -> tuple[Metainfo, bytes]:
    """The metainfo (parsed) and bencoded .torrent of ``path``."""
    _, data = create_torrent(
        path,
        piece_length=piece_length,
        trackers=tuple(trackers),
        web_seeds=tuple(web_seeds),
        private=private,
    )
    return parse_metainfo(data), data


@asynccontextmanager
async def serve_tracker(
    host: str = "127.0.0.1", *, interval: int = 5
) -> AsyncIterator[tuple[str, TrackerState]]:
    """Our HTTP tracker on ``host`` (127.0.0.1 or ::1), any free port: its announce URL and
    its state, for tests that look at who announced."""
    state = TrackerState(interval=interval, rng=random.Random(0))
    app = web.Application()
    add_tracker_routes(app, state)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, 0)
        await site.start()
        where = f"[{host}]" if ":" in host else host
        yield f"http://{where}:{runner.addresses[0][1]}/announce", state
    finally:
        await runner.cleanup()


def fast_config(**overrides: Any) -> SessionConfig:
    """A SessionConfig with lab intervals (seconds, not minutes)."""
    cfg = SessionConfig(
        choke_interval=1.0,
        optimistic_interval=3.0,
        snub_timeout=10.0,
        request_timeout=5.0,
        connect_timeout=2.0,
        announce_interval=1.0,
        reconnect_min=0.3,
        reconnect_max=1.0,
        use_dht=False,
        max_per_address=None,  # every peer of a test is on 127.0.0.1
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` every 50 ms; fail with ``what`` after ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not reached in {timeout} s: {what}") from None


def other_tasks(before: set[asyncio.Task[Any]]) -> set[asyncio.Task[Any]]:
    """Tasks alive now that were not alive ``before`` (except the current one)."""
    return {t for t in asyncio.all_tasks() if t not in before and t is not asyncio.current_task()}


LOCAL = "127.0.0.1"


@contextmanager
def share_process(path: Path, torrent: Path, port: int, *extra: str) -> Iterator[dict[str, object]]:
    """``hubswarm share`` as a subprocess; yields its JSON ready line; stopped by PID."""
    cmd = [
        sys.executable,
        "-m",
        "hubswarm",
        "share",
        str(path),
        "-o",
        str(torrent),
        "--host",
        LOCAL,
        "--port",
        str(port),
        "--piece-length",
        str(64 * KIB),
        "--json",
        *extra,
    ]
    # stderr goes to a file: a full pipe would block the child.
    err_path = torrent.with_name(torrent.name + f".{port}.stderr")
    with err_path.open("ab") as err_file:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err_file)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the ready line (or EOF if it failed)
        if not line:
            proc.wait(timeout=5)
            raise AssertionError(f"share failed: {err_path.read_text()}")
        yield {"pid": proc.pid, **json.loads(line)}
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        return int(s.getsockname()[1])


class FakeDHT:
    """A DHT stand-in (the session's ``DHTLike``): answers with fixed peers and records what
    it was asked: ``get_peers`` for each lookup, ``announce_peer`` for each announce."""

    def __init__(self, peers: list[tuple[str, int]]) -> None:
        self.peers = peers
        self.calls: list[str] = []

    async def get_peers(self, info_hash: bytes) -> list[tuple[str, int]]:
        self.calls.append("get_peers")
        return list(self.peers)

    async def get_peers_and_announce(
        self, info_hash: bytes, port: int, found: Callable[[list[tuple[str, int]]], None]
    ) -> int:
        found(await self.get_peers(info_hash))  # one lookup, then its announce
        self.calls.append("announce_peer")
        return 1


class VirtualHosts:
    """Peers on one in-memory network in virtual time (run the test under ``vtime.run``):
    ``hosts.peer(config)`` is a SwarmPeer at the next address 10.0.0.1, 10.0.0.2, ..."""

    def __init__(self, latency: float = 0.001) -> None:
        from hubswarm.clock import Clock
        from hubswarm.memnet import MemoryNetwork

        self.network = MemoryNetwork(latency=latency, rng=random.Random(0))
        self.clock = Clock(epoch=0.0)
        self._next = 1

    def peer(self, config: SessionConfig, **kwargs: Any) -> Any:
        """A SwarmPeer (not entered) on the next host."""
        from hubswarm.swarm.listener import SwarmPeer

        ip = f"10.0.0.{self._next}"
        self._next += 1
        return SwarmPeer(config, host=ip, network=self.network.host(ip), clock=self.clock, **kwargs)
