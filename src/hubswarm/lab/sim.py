"""Virtual-time runs: the real hub and clients on the modelled network (emulation ``sim``).

Theory of operation
-------------------
A sim run is one call of :func:`run_sim`: it starts a :class:`~hubswarm.vtime.VirtualTimeLoop`
of its own and, on it, builds a :class:`~hubswarm.lab.simnet.SimNetwork` with one host per
machine of the plan (host 0 the server, 1..N the clients, each with its drawn upload and
download), then runs **the real code** there: the hub is ``hubswarm.hub.app`` served through
:class:`~hubswarm.httpnet.NetworkSite`, each client is ``hubswarm.hub.client.download`` (the
code of ``hubswarm get``) dialling through :class:`~hubswarm.httpnet.NetworkConnector`.
Nothing opens a socket; thread jobs (hashing, file I/O) run inline and take no virtual time.

So a run takes as much wall time as its CPU work, whatever the scenario's rates, and it is a
function of the plan and its seed: the same plan gives the same times, bit for bit.

Times in the result are seconds of virtual time since the run's t = 0, as the netns runs'
are seconds of wall time. The report says which emulation each run had.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from hubswarm import vtime
from hubswarm.clock import Clock
from hubswarm.errors import HubswarmError, LabError
from hubswarm.httpnet import NetworkConnector, NetworkSite
from hubswarm.hub import client as hub_client
from hubswarm.hub.app import HubConfig, create_app
from hubswarm.lab.fleet import fault_event, leave_after, run_result
from hubswarm.lab.metrics import ClientRecord, FaultEvent, ReplicaSample, RunResult
from hubswarm.lab.payload import PAYLOAD_NAME, check_file, make_payload
from hubswarm.lab.scenario import Fault, RunPlan
from hubswarm.lab.simnet import DEFAULT_QUEUE, LinkSpec, SimNetwork
from hubswarm.lab.timing import lab_timing
from hubswarm.swarm.config import SessionConfig, make_peer_id

__all__ = ["SIM_NOTE", "host_ip", "link_specs", "run_sim"]

SIM_NOTE = (
    "sim: the real hub/client code on a modelled network in virtual time "
    "(fair-shared rate queues, delay, loss; TCP-like windows and retransmission; no CPU cost)"
)
HUB_PORT = 80
_ERROR_CHARS = 200


def host_ip(index: int) -> str:
    """Host ``index``'s address in a sim run: 10.0.0.1 for the server, then upwards."""
    n = index + 1
    return f"10.{(n >> 16) & 0xFF}.{(n >> 8) & 0xFF}.{n & 0xFF}"


def link_specs(plan: RunPlan) -> list[LinkSpec]:
    """Host 0 (server: upload u_s, download unshaped) and 1..N with the plan's capacities;
    every host's latency drawn from the scenario's seed, its queues the scenario's size, and
    a loss rate per access link such that a path between two hosts loses ``loss``."""
    scenario = plan.scenario
    rng = random.Random(f"{scenario.seed}:{plan.n}:latency")
    latencies = scenario.latency.sample(rng, plan.n + 1)
    per_link = 1.0 - math.sqrt(1.0 - scenario.loss)
    queue = scenario.queue if scenario.queue is not None else DEFAULT_QUEUE
    rates = [(scenario.server_upload, math.inf), *zip(plan.uploads, plan.downloads, strict=True)]
    return [
        LinkSpec(upload=up, download=down, latency=latency, loss=per_link, queue=queue)
        for (up, down), latency in zip(rates, latencies, strict=True)
    ]


def run_sim(plan: RunPlan, architecture: str, workdir: Path) -> RunResult:
    """One run of ``architecture`` in virtual time, on a loop of its own (blocking: call it
    in a worker thread or process). Raises LabError for an architecture sim cannot run."""
    try:
        make = _ARCHITECTURES[architecture]
    except KeyError:
        raise LabError(f"emulation 'sim' cannot run architecture {architecture!r} yet") from None
    # The simulator's own cost, for the report: wall time is not the run's time here.
    started = time.perf_counter()
    result = vtime.run(make(plan, workdir))
    return replace(result, wall_time=time.perf_counter() - started)


class _World:
    """What every sim run has: the network, t = 0, the faults applied so far."""

    def __init__(self, plan: RunPlan) -> None:
        self.plan = plan
        scenario = plan.scenario
        self.network = SimNetwork(rng=random.Random(f"{scenario.seed}:{plan.n}:sim"))
        for index, spec in enumerate(link_specs(plan)):
            self.network.add_host(host_ip(index), spec)
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()
        self.faults: list[FaultEvent] = []

    def now(self) -> float:
        """Seconds since t = 0."""
        return self.loop.time() - self.t0

    async def sleep_until(self, t: float) -> None:
        await asyncio.sleep(max(0.0, t - self.now()))

    async def run_faults(self, apply: Callable[[Fault], Awaitable[FaultEvent]]) -> None:
        """Apply each of the scenario's faults at its time (cancelled when the clients end)."""
        for fault in sorted(self.plan.scenario.faults, key=lambda f: f.at):
            await self.sleep_until(fault.at)
            self.faults.append(await apply(fault))

    def result(
        self,
        architecture: str,
        records: list[ClientRecord],
        replicas: list[ReplicaSample],
        notes: list[str],
    ) -> RunResult:
        return run_result(
            self.plan,
            architecture,
            "sim",
            records,
            faults=self.faults,
            server_bytes_sent=self.network.tx_bytes(host_ip(0)),
            replicas=replicas,
            notes=(SIM_NOTE, *notes),
        )


# --- client-server ---------------------------------------------------------------------------


async def _client_server(plan: RunPlan, workdir: Path) -> RunResult:
    """The hub on host 0 serves the file; clients 1..N fetch it at their arrival times."""
    scenario = plan.scenario
    world = _World(plan)
    data = workdir / "hub-data"
    sha256 = make_payload(data / "files" / PAYLOAD_NAME, scenario.file_size, scenario.seed)
    runner = web.AppRunner(
        create_app(HubConfig(data_dir=data, anonymous_read=True)),
        handle_signals=False,
        access_log=None,
    )
    await runner.setup()
    site = NetworkSite(runner, world.network.host(host_ip(0)), "0.0.0.0", HUB_PORT)
    await site.start()
    url = f"http://{host_ip(0)}:{HUB_PORT}/files/{PAYLOAD_NAME}"
    replicas = [ReplicaSample(0.0, (1,) * scenario.pieces)]
    tasks: dict[int, asyncio.Task[ClientRecord]] = {}
    killed: set[int] = set()

    async def apply(fault: Fault) -> FaultEvent:
        match fault.kind:
            case "kill_hub":
                world.network.crash(host_ip(0))
                replicas.append(ReplicaSample(world.now(), (0,) * scenario.pieces))
                return fault_event(fault, "crashed host 0 (the hub)")
            case "kill_peers":
                running = [i for i, task in sorted(tasks.items()) if not task.done()]
                victims = tuple(running[: fault.count])
                for i in victims:
                    killed.add(i)
                    tasks[i].cancel()
                return fault_event(fault, f"killed clients {list(victims)}", victims=victims)
            case _:
                return fault_event(fault, "not applicable to client-server", applied=False)

    try:
        async with asyncio.TaskGroup() as group:
            for i in range(1, plan.n + 1):
                out = workdir / f"c{i}" / PAYLOAD_NAME
                tasks[i] = group.create_task(_get(world, i, url, out, sha256))
            faults = group.create_task(world.run_faults(apply))
            await asyncio.wait(tasks.values())
            faults.cancel()
    finally:
        await runner.cleanup()
    records = []
    for i, task in sorted(tasks.items()):
        if task.cancelled():
            records.append(_killed_record(world, i, plan.arrivals[i - 1]))
        else:
            records.append(task.result())
    return world.result("client-server", records, replicas, [])


async def _get(world: _World, index: int, url: str, out: Path, sha256: str) -> ClientRecord:
    """Client ``index``: arrive, ``hubswarm get`` the file, leave (churn) or time out."""
    plan, scenario = world.plan, world.plan.scenario
    await world.sleep_until(plan.arrivals[index - 1])
    start = world.now()
    leave_at = start + leave_after(scenario, index)
    deadline = min(scenario.timeout, leave_at)
    out.parent.mkdir(parents=True, exist_ok=True)
    error: str | None = None
    left_at: float | None = None
    connector = NetworkConnector(world.network.host(host_ip(index)))
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        try:
            async with asyncio.timeout(max(0.0, deadline - world.now())):
                await hub_client.download(url, out, token=None, progress=None, session=session)
        except TimeoutError:
            if leave_at < scenario.timeout:
                error, left_at = "left (churn)", leave_at
            else:
                error = "timeout"
        except HubswarmError as exc:
            error = str(exc)[:_ERROR_CHARS]
    end = world.now()
    got, ok = check_file(out, sha256)
    ok = ok and error is None
    stays = scenario.churn.leave_after_complete is False
    return ClientRecord(
        index=index,
        start=start,
        end=end if ok else None,
        bytes_received=got,
        bytes_from_server=got,
        verified=ok,
        error=None if ok else (error or "incomplete"),
        left_at=left_at if left_at is not None else (None if stays else end),
    )


def _killed_record(world: _World, index: int, arrival: float) -> ClientRecord:
    """A client a ``kill_peers`` fault cancelled (what it had is not counted, as in netns)."""
    return ClientRecord(
        index=index,
        start=arrival,
        end=None,
        bytes_received=0,
        bytes_from_server=0,
        error="killed (fault)",
        left_at=world.now(),
    )


# --- peer-to-peer ----------------------------------------------------------------------------

# Where the DHT bootstrap node listens, on host 0 beside the seed (as in netns: kill_hub
# kills it, the seed lives on).
DHT_PORT = 6881


def _peer_config(scenario: Any, index: int) -> SessionConfig:
    """A peer's config as the netns runner's ``--fast-intervals --no-pex``, with its peer id
    and random draws fixed by the scenario's seed and the peer's index."""
    rng = random.Random(f"{scenario.seed}:peer:{index}")
    config = SessionConfig(peer_id=make_peer_id(rng), rng_seed=rng.getrandbits(64))
    config.use_pex = False  # the swarm finds peers through the DHT only (lab.runners.swarm)
    return lab_timing(config)


async def _p2p(plan: RunPlan, workdir: Path) -> RunResult:
    """A seed (BEP 16 super-seeding) and a DHT bootstrap node on host 0; clients 1..N fetch
    the magnet at their arrival times, find each other through the DHT and keep seeding."""
    from hubswarm.swarm import api  # the swarm, imported only for p2p runs
    from hubswarm.swarm.dht.node import DHTNode

    scenario = plan.scenario
    world = _World(plan)
    network = world.network
    server = host_ip(0)
    source = workdir / "seed" / PAYLOAD_NAME
    sha256 = make_payload(source, scenario.file_size, scenario.seed)
    clock = Clock()
    shared: asyncio.Future[api.ShareInfo] = world.loop.create_future()
    done_at: dict[int, float] = {}
    tasks: dict[int, asyncio.Task[None]] = {}
    bootstrap = [(server, DHT_PORT)]

    async def apply(fault: Fault) -> FaultEvent:
        match fault.kind:
            case "kill_peers":
                running = [i for i, task in sorted(tasks.items()) if not task.done()]
                victims = tuple(running[: fault.count])
                for i in victims:
                    network.crash(host_ip(i))
                return fault_event(fault, f"crashed clients {list(victims)}", victims=victims)
            case _:
                return fault_event(fault, "not modelled in sim yet", applied=False)

    starts: dict[int, float] = {}
    errors: dict[int, tuple[str, float | None]] = {}  # error, left_at

    async def client(index: int) -> None:
        await world.sleep_until(plan.arrivals[index - 1])
        start = starts[index] = world.now()
        leave_at = start + leave_after(scenario, index)

        def completed(_: api.FetchResult) -> None:
            done_at[index] = world.now()

        magnet = (await shared).magnet
        try:
            async with asyncio.timeout(max(0.0, min(scenario.timeout, leave_at) - world.now())):
                await api.fetch(
                    magnet,
                    workdir / f"c{index}",
                    config=_peer_config(scenario, index),
                    host=host_ip(index),
                    seed_after=scenario.churn.leave_after_complete is False,
                    dht_bootstrap=bootstrap,
                    on_complete=completed,
                    network=network.host(host_ip(index)),
                    clock=clock,
                )
        except TimeoutError:
            if index not in done_at:
                churned = leave_at < scenario.timeout
                errors[index] = (
                    "left (churn)" if churned else "timeout",
                    leave_at if churned else None,
                )
        except HubswarmError as exc:
            errors[index] = (str(exc)[:_ERROR_CHARS], None)

    def record(index: int) -> ClientRecord:
        got, ok = check_file(workdir / f"c{index}" / PAYLOAD_NAME, sha256)
        end = done_at.get(index)
        ok = ok and end is not None
        error, left_at = errors.get(index, ("incomplete", None))
        stays = scenario.churn.leave_after_complete is False
        return ClientRecord(
            index=index,
            start=starts.get(index, plan.arrivals[index - 1]),
            end=end if ok else None,
            bytes_received=got,
            bytes_from_server=0,  # attributed below from the seed's host counter
            verified=ok,
            error=None if ok else error,
            left_at=left_at if left_at is not None else (None if stays else end),
        )

    boot = DHTNode(
        host=server,
        port=DHT_PORT,
        rng=random.Random(f"{scenario.seed}:dht-bootstrap"),
        clock=clock,
        network=network.host(server),
    )
    async with boot, asyncio.TaskGroup() as group:
        seed = group.create_task(
            api.share(
                source,
                config=_peer_config(scenario, 0),
                host=server,
                torrent_out=workdir / "seed.torrent",
                piece_length=scenario.piece_size,
                ready=shared.set_result,
                dht_bootstrap=bootstrap,
                super_seed=True,
                network=network.host(server),
                clock=clock,
            )
        )
        tasks = {i: group.create_task(client(i)) for i in range(1, plan.n + 1)}
        faults = group.create_task(world.run_faults(apply))
        # Whoever stays seeds on: the run ends when every client has finished or given up.
        while not all(task.done() or i in done_at for i, task in tasks.items()):
            await asyncio.wait(tasks.values(), timeout=1.0)
        for task in (*tasks.values(), seed, faults):
            task.cancel()
    records = [record(i) for i in range(1, plan.n + 1)]
    server_bytes = network.tx_bytes(server)
    got = sum(r.bytes_received for r in records) or 1
    records = [
        replace(r, bytes_from_server=round(server_bytes * r.bytes_received / got)) for r in records
    ]
    return world.result("p2p", records, [], [])


_ARCHITECTURES: dict[str, Callable[[RunPlan, Path], Coroutine[Any, Any, RunResult]]] = {
    "client-server": _client_server,
    "p2p": _p2p,
}
