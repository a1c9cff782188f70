"""Hybrid: the hub is the swarm's tracker and a BEP 19 web seed; the peers swap pieces.

The same swarm as p2p (:class:`~hubswarm.lab.runners.swarm.SwarmRunner`), with another
infrastructure on host 0: the hub (one process: tracker at ``/announce`` and web seed) beside
a seed peer. Each client gets a .torrent whose web seed is that client's shaped path to the
hub; the url-list sits outside ``info``, so every client's torrent has one info-hash.
"""

from __future__ import annotations

import asyncio
import math
import os
from pathlib import Path

from hubswarm.errors import LabError
from hubswarm.lab.fleet import Fleet
from hubswarm.lab.netem import Network
from hubswarm.lab.runners.swarm import Infrastructure, SwarmRunner, rate_flags
from hubswarm.lab.services import start_hub, start_seed
from hubswarm.proto.metainfo import build_metainfo
from hubswarm.swarm.maketorrent import create_torrent

__all__ = ["HybridRunner"]

# The lab's tracker re-announce interval (seconds): peers meet within one interval.
_LAB_TRACKER_INTERVAL = 2


class HybridRunner(SwarmRunner):
    """Hybrid: the hub serves the file as a BEP 19 web seed, host 0 also runs the tracker, and
    the peers swap pieces among themselves (``hubswarm fetch`` of a .torrent with a url-list)."""

    name = "hybrid"
    extra_hosts = 0  # the hub is the tracker: host 0, as the client-server hub

    def notes(self, network: Network) -> list[str]:
        """What host 0 runs, and how app mode splits its upload."""
        out = ["hybrid: host 0 runs the hub (tracker + web seed, one process) and a seed peer"]
        if not network.shaped:
            out.append(
                "hybrid, app mode: the hub's proxy and the seed peer each cap at u_s / 2 "
                "(a fixed split of host 0's u_s); netns shares one u_s link"
            )
        return out

    async def start_infrastructure(
        self, fleet: Fleet, tg: asyncio.TaskGroup, workdir: Path, source: Path
    ) -> Infrastructure:
        """Host 0: the hub (web seed + tracker at /announce, one process) and a seed peer
        (``hubswarm share``) on the same host; one .torrent per client."""
        procs, network, plan = fleet.procs, fleet.network, fleet.plan
        data = workdir / "hub-data"
        target = data / "files" / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(os.link, source, target)
        extra = ["--tracker-interval", str(_LAB_TRACKER_INTERVAL)]
        hub = await start_hub(
            procs, tg, network, data, python=self.python, anonymous=True, extra=extra
        )
        # netns: hub and seed share host 0's shaped u_s link. app: each gets half (a fixed
        # split: host 0 never sends more than u_s, as the bound assumes, but an idle half is
        # not lent to the other, so app-mode hybrid times err on the slow side).
        half = plan.scenario.server_upload / 2
        ports = await network.expose(0, hub.port, upload=half)
        tracker_url = f"http://{network.hosts[0].address}:{hub.port}/announce"
        info, _ = await asyncio.to_thread(
            create_torrent, source, piece_length=plan.scenario.piece_size, trackers=[tracker_url]
        )
        argv = [*self.share_argv(network, source, workdir, plan), "--tracker", tracker_url]
        argv += rate_flags(network, half, math.inf)
        seed = await start_seed(procs, tg, network, argv)
        if info.info_hash.hex() not in seed.magnet.lower():
            raise LabError("the seed peer's torrent differs from the hub's (info-hash)")
        sources = []
        for i in range(1, plan.n + 2):
            host, port = ports.address_for(min(i, plan.n))
            url = f"http://{host}:{port}/files/{source.name}"
            torrent = workdir / f"t{i}.torrent"
            body = build_metainfo(info, [[tracker_url]], url_list=[url])
            await asyncio.to_thread(torrent.write_bytes, body)
            sources.append([str(torrent)])  # the default web-seed policy (assist)
        what = f"hub pid {hub.service.proc.pid} (tracker + web seed)"
        return Infrastructure(hub.service, hub.port, what, seed.service, sources)
