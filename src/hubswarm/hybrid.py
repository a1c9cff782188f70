"""The hub seeds its own files: ``hubswarm hub serve --seed``.

A :class:`HubSeeder` runs one swarm peer beside the hub, in the same process and event loop,
with a torrent session for every stored file: the same torrent ``GET /torrents/NAME.torrent``
serves (the info dict depends only on the file's name, size and pieces), announced to the
hub's own tracker. Every ``scan_interval`` it lists the store again: a new file starts
seeding, a replaced one (new SHA-256) is seeded anew, a deleted one stops. The pieces come
from the hub's piece cache (hashed while the upload streamed in), so seeding starts without
another pass over the data (``seed_mode``: each piece is still checked on its first upload).

This module sits above ``hub`` and ``swarm``, which never import each other: it reads the
hub's files and piece cache from the data folder and drives a ``swarm.SwarmPeer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hubswarm.clock import Clock
from hubswarm.errors import MetainfoError
from hubswarm.hub.store import FileInfo, FileStore
from hubswarm.hub.torrents import PieceCache
from hubswarm.proto.metainfo import InfoDict
from hubswarm.proto.pieces import hub_torrent, piece_length_for
from hubswarm.swarm.config import SessionConfig
from hubswarm.swarm.listener import SwarmPeer

__all__ = ["HubSeeder", "seed_config"]

log = logging.getLogger(__name__)

# How often the store is listed for new, replaced and deleted files (a new upload is seeded
# within this long; a listing reads only the cached metadata of each file).
SEED_SCAN_INTERVAL = 5.0
# Torrents seeded at once: past this, the first files by name (each session holds a few
# tasks and, while peers are connected, their buffers).
SEED_MAX_TORRENTS = 1000


def seed_config(port: int = 0) -> SessionConfig:
    """The seeding peer's settings: TCP on ``port``, a seed, no DHT (the hub is the tracker)."""
    return SessionConfig(listen_port=port, seed=True, use_dht=False, use_utp=False)


@dataclass(slots=True)
class _Seeding:
    info_hash: bytes
    stop: asyncio.Event = field(default_factory=asyncio.Event)


class HubSeeder:
    """A swarm peer seeding every file of the hub at ``data_dir``; run with :meth:`run`."""

    def __init__(
        self,
        data_dir: Path,
        *,
        announce: str | None,
        config: SessionConfig,
        host: str = "127.0.0.1",
        clock: Clock | None = None,
        scan_interval: float = SEED_SCAN_INTERVAL,
    ) -> None:
        self.store = FileStore(data_dir)
        self.pieces = PieceCache(data_dir)
        self.announce = announce
        self.config = config
        self.host = host
        self.clock = clock if clock is not None else Clock()
        self.scan_interval = scan_interval
        self.seeding: dict[str, _Seeding] = {}
        self.port: int | None = None
        self.peer: SwarmPeer | None = None
        # Set after every scan (tests wait for it instead of sleeping).
        self.scanned = asyncio.Event()

    async def run(self, ready: Callable[[int], None] | None = None) -> None:
        """Seed until cancelled (``ready(port)`` once the peer listens); every session ends
        with the peer."""
        async with SwarmPeer(self.config, host=self.host, clock=self.clock) as peer:
            self.peer, self.port = peer, peer.port
            if ready is not None:
                ready(peer.port)
            async with asyncio.TaskGroup() as tg:
                try:
                    while True:
                        await self._scan(peer, tg)
                        self.scanned.set()
                        await self.clock.sleep(self.scan_interval)
                finally:
                    for s in self.seeding.values():
                        s.stop.set()

    async def _scan(self, peer: SwarmPeer, tg: asyncio.TaskGroup) -> None:
        files = [f for f in await self.store.list() if f.size > 0][:SEED_MAX_TORRENTS]
        present = {f.name for f in files}
        for name in [n for n in self.seeding if n not in present]:
            self.seeding.pop(name).stop.set()
        for f in files:
            info = await self._info(f)
            current = self.seeding.get(f.name)
            if info is None or (current is not None and current.info_hash == info.info_hash):
                continue
            if current is not None:  # replaced: the old torrent's bytes are gone
                current.stop.set()
            entry = _Seeding(info.info_hash)
            self.seeding[f.name] = entry
            tg.create_task(self._seed(peer, f.name, info, entry.stop))

    async def _info(self, f: FileInfo) -> InfoDict | None:
        pieces = await self.pieces.pieces(self.store.path(f.name), f)
        if pieces is None:
            return None  # changed while hashed: the next scan sees the new file
        try:
            return hub_torrent(f.name, f.size, piece_length_for(f.size), pieces).info
        except MetainfoError as exc:
            log.warning("cannot seed %s: %s", f.name, exc)
            return None

    async def _seed(self, peer: SwarmPeer, name: str, info: InfoDict, stop: asyncio.Event) -> None:
        folder = self.store.path(name).parent
        trackers = [[self.announce]] if self.announce else []
        try:
            async with peer.torrent(
                info.info_hash, folder, info=info, trackers=trackers, seed_mode=True
            ):
                await stop.wait()
        except (OSError, MetainfoError) as exc:  # the file went away under the session
            log.warning("stopped seeding %s: %s", name, exc)
            with contextlib.suppress(KeyError):
                if self.seeding[name].stop is stop:
                    del self.seeding[name]
