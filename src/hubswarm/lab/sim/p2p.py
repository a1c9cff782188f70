"""Peer-to-peer in sim: a super-seeding seed on host 0, a DHT bootstrap node on host N + 1
(unshaped: it stands for router.bittorrent.com, as in the netns runner), N fetching peers
that find each other through the DHT only. ``kill_hub`` crashes the bootstrap node's host."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from hubswarm.lab.metrics import RunResult
from hubswarm.lab.payload import PAYLOAD_NAME, make_payload
from hubswarm.lab.scenario import RunPlan
from hubswarm.lab.sim.common import World, host_ip
from hubswarm.lab.sim.swarm import Infrastructure, SimSwarm, peer_config
from hubswarm.swarm import api
from hubswarm.swarm.dht.node import DHTNode

__all__ = ["DHT_PORT", "run_p2p"]

# Where the DHT bootstrap node listens (BEP 5's customary port).
DHT_PORT = 6881
_NOTE = (
    "p2p: host 0 runs the seed peer; a DHT bootstrap node runs on an unshaped host of its "
    "own; peers find each other through it and the DHT only (no peer exchange)"
)


async def run_p2p(plan: RunPlan, workdir: Path) -> RunResult:
    """The seed and the bootstrap node, then the clients at their arrival times."""
    scenario = plan.scenario
    world = World(plan, extra_hosts=1)
    network = world.network
    boot_ip = host_ip(plan.n + 1)
    source = workdir / "seed" / PAYLOAD_NAME
    sha256 = make_payload(source, scenario.file_size, scenario.seed)
    shared: asyncio.Future[api.ShareInfo] = world.loop.create_future()
    bootstrap = [(boot_ip, DHT_PORT)]

    async def kill_hub() -> str:
        network.crash(boot_ip)
        return f"crashed host {plan.n + 1} (the DHT bootstrap node); the seed peer lives"

    boot = DHTNode(
        host=boot_ip,
        port=DHT_PORT,
        rng=random.Random(f"{scenario.seed}:dht-bootstrap"),
        clock=world.clock,
        network=network.host(boot_ip),
    )
    swarm = SimSwarm(world, workdir, sha256)
    async with boot, asyncio.TaskGroup() as group:
        seed = group.create_task(
            api.share(
                source,
                config=peer_config(scenario, 0),
                host=host_ip(0),
                torrent_out=workdir / "seed.torrent",
                piece_length=scenario.piece_size,
                ready=shared.set_result,
                dht_bootstrap=bootstrap,
                super_seed=True,
                network=network.host(host_ip(0)),
                clock=world.clock,
            )
        )
        magnet = (await shared).magnet
        await swarm.run(Infrastructure(magnet, kill_hub, dht_bootstrap=bootstrap))
        seed.cancel()
    return swarm.result("p2p", [_NOTE])
