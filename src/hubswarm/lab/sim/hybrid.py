"""Hybrid in sim: host 0 runs the hub (tracker at ``/announce`` and BEP 19 web seed, one
aiohttp app as ``hubswarm hub --tracker``) beside a super-seeding seed peer; N peers get a
.torrent naming both, fetch from each other and from the web seed under the peers' default
web-seed policy (``assist``: only while no peer feeds them, see ``swarm.webseed_policy``),
as the netns runner starts them. Hub and seed share host 0's link, as in netns.

``kill_hub`` kills the hub alone, as the netns runner's SIGKILL and cut port do: its listener
closes and each of its connections is reset; the seed peer on host 0 lives on.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from aiohttp import web

from hubswarm.httpnet import NetworkSite
from hubswarm.hub.app import HubConfig, create_app
from hubswarm.hub.tracker import TrackerState, add_tracker_routes
from hubswarm.lab.metrics import RunResult
from hubswarm.lab.payload import PAYLOAD_NAME, make_payload
from hubswarm.lab.scenario import RunPlan
from hubswarm.lab.sim.common import HUB_PORT, World, host_ip
from hubswarm.lab.sim.swarm import Infrastructure, SimSwarm, peer_config
from hubswarm.swarm import api

__all__ = ["run_hybrid"]

# The lab's tracker re-announce interval (seconds), as lab.runners.hybrid sets it.
TRACKER_INTERVAL = 2
_NOTE = "hybrid: host 0 runs the hub (tracker + web seed) and a seed peer, sharing its link"


async def run_hybrid(plan: RunPlan, workdir: Path, *, webseed_mode: str | None = None) -> RunResult:
    """The hub and the seed on host 0, then the clients at their arrival times;
    ``webseed_mode``: the clients' ``--webseed-mode`` (None: the default policy)."""
    scenario = plan.scenario
    world = World(plan)
    server = host_ip(0)
    data = workdir / "hub-data"
    source = data / "files" / PAYLOAD_NAME
    sha256 = make_payload(source, scenario.file_size, scenario.seed)
    app = create_app(HubConfig(data_dir=data, anonymous_read=True), clock=world.clock)
    tracker = TrackerState(
        interval=TRACKER_INTERVAL,
        rng=random.Random(f"{scenario.seed}:tracker"),
        clock=world.clock,
    )
    add_tracker_routes(app, tracker)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = NetworkSite(runner, world.network.host(server), "0.0.0.0", HUB_PORT)
    await site.start()
    tracker_url = f"http://{server}:{HUB_PORT}/announce"
    web_seed = f"http://{server}:{HUB_PORT}/files/{PAYLOAD_NAME}"
    shared: asyncio.Future[api.ShareInfo] = world.loop.create_future()

    async def kill_hub() -> str:
        # SIGKILL: no goodbyes. The listener closes; every connection is reset.
        assert runner.server is not None
        await site.stop()
        for handler in runner.server.connections:
            if handler.transport is not None:
                handler.transport.abort()
        return "killed the hub (tracker + web seed); the seed peer on host 0 lives"

    swarm = SimSwarm(world, workdir, sha256)
    try:
        async with asyncio.TaskGroup() as group:
            seed = group.create_task(
                api.share(
                    source,
                    config=peer_config(scenario, 0),
                    host=server,
                    # The clients' .torrent: one info-hash with the seed's (the url-list and
                    # the trackers lie outside ``info``).
                    torrent_out=workdir / "hybrid.torrent",
                    trackers=[tracker_url],
                    web_seeds=[web_seed],
                    piece_length=scenario.piece_size,
                    ready=shared.set_result,
                    super_seed=True,
                    network=world.network.host(server),
                    clock=world.clock,
                )
            )
            torrent = str((await shared).torrent_path)
            await swarm.run(Infrastructure(torrent, kill_hub, webseed_mode=webseed_mode))
            seed.cancel()
    finally:
        await runner.cleanup()
    return swarm.result("hybrid", [_NOTE])
