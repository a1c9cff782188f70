"""The reference client as an architecture: a libtorrent swarm on the lab's fabric (issue 22).

The same run as the hybrid's (:class:`~hubswarm.lab.runners.swarm.SwarmRunner`: the same
plan, hosts, links, arrivals, clock and measurements), with libtorrent in place of our peers:
host 0 runs the hub as the tracker (no web seed) beside a libtorrent seed, and each client is
a libtorrent peer (:mod:`hubswarm.lab.ltpeer`) in its namespace, pre-started as our agents are.
Namespaces only: libtorrent does not rate-limit peers on local networks by default, so app
mode's per-process caps would not hold; the sim cannot run it (it opens its own sockets).
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import sys
from pathlib import Path

from hubswarm.errors import LabError
from hubswarm.lab.fleet import Fleet
from hubswarm.lab.ltpeer import settings_note
from hubswarm.lab.netem import Network
from hubswarm.lab.processes import start_service
from hubswarm.lab.runners.swarm import Infrastructure, SwarmRunner
from hubswarm.lab.services import start_hub
from hubswarm.proto.metainfo import build_metainfo
from hubswarm.swarm.maketorrent import create_torrent

__all__ = ["MISSING", "NETNS_ONLY", "LibtorrentRunner", "libtorrent_version"]

# The lab's tracker re-announce interval (seconds), as the hybrid's.
_LAB_TRACKER_INTERVAL = 2
_SEEDING = re.compile(rb"^seeding ")
MISSING = (
    "architecture 'libtorrent' needs libtorrent's Python bindings, which are not installed: "
    "pip install 'hubswarm[reference]'"
)
NETNS_ONLY = (
    "architecture 'libtorrent' runs in netns only (as root; libtorrent exempts local peers "
    "from its rate limits, so app mode cannot cap its links, and the sim cannot run its sockets)"
)


def libtorrent_version() -> str | None:
    """The installed libtorrent's version, or None when the bindings are missing."""
    if importlib.util.find_spec("libtorrent") is None:
        return None
    import libtorrent

    return str(libtorrent.__version__)


class LibtorrentRunner(SwarmRunner):
    """libtorrent peers (default settings, DHT and PEX off, TCP) fetching from a libtorrent
    seed on host 0, through the hub's tracker on host 0."""

    name = "libtorrent"
    extra_hosts = 0

    def __init__(self, *, python: str = sys.executable) -> None:
        # No outsider probe: access control is our hub's and peers' question, not libtorrent's.
        super().__init__(python=python, probe_security=False)

    @staticmethod
    def unavailable(mode: str) -> str | None:
        """Why the reference client cannot run here in ``mode``, or None when it can."""
        if libtorrent_version() is None:
            return MISSING
        if mode != "netns":
            return NETNS_ONLY
        return None

    def notes(self, network: Network) -> list[str]:
        """What host 0 runs and the reference client's settings."""
        return [
            "libtorrent: host 0 runs the hub (tracker only) and a libtorrent seed; "
            "the clients are libtorrent peers",
            settings_note(libtorrent_version()),
        ]

    async def start_infrastructure(
        self, fleet: Fleet, tg: asyncio.TaskGroup, workdir: Path, source: Path
    ) -> Infrastructure:
        """Host 0: the hub as tracker and a libtorrent seed; every client gets one .torrent."""
        procs, network, plan = fleet.procs, fleet.network, fleet.plan
        if libtorrent_version() is None:
            raise LabError(MISSING)
        if not network.shaped:
            raise LabError(NETNS_ONLY)
        extra = ["--tracker-interval", str(_LAB_TRACKER_INTERVAL)]
        hub = await start_hub(
            procs,
            tg,
            network,
            workdir / "hub-data",
            python=self.python,
            anonymous=True,
            extra=extra,
        )
        tracker_url = f"http://{network.hosts[0].address}:{hub.port}/announce"
        info, _ = await asyncio.to_thread(
            create_torrent, source, piece_length=plan.scenario.piece_size, trackers=[tracker_url]
        )
        torrent = workdir / "libtorrent.torrent"
        await asyncio.to_thread(torrent.write_bytes, build_metainfo(info, [[tracker_url]]))
        argv = [self.python, "-m", "hubswarm.lab.ltpeer", "seed", str(torrent)]
        argv += ["--output", str(source.parent), "--host", network.hosts[0].address]
        seed = await start_service(
            procs, tg, network.wrap(0, argv), _SEEDING, "the libtorrent seed"
        )
        sources = [[str(torrent)]] * (plan.n + 1)  # after "fetch", as our peers' magnet
        what = f"hub pid {hub.service.proc.pid} (tracker)"
        return Infrastructure(hub.service, hub.port, what, seed, sources, agent="lt")
