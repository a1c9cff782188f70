"""Client-server in sim: the hub on host 0 serves the file; clients 1..N ``hubswarm get`` it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from aiohttp import web

from hubswarm.errors import HubswarmError
from hubswarm.httpnet import NetworkConnector, NetworkSite
from hubswarm.hub import client as hub_client
from hubswarm.hub.app import HubConfig, create_app
from hubswarm.lab.bounds import d_cs
from hubswarm.lab.fleet import fault_event, leave_after
from hubswarm.lab.metrics import ClientRecord, FaultEvent, ReplicaSample, RunResult, SecurityProbe
from hubswarm.lab.payload import PAYLOAD_NAME, check_file, largest_partial, make_payload
from hubswarm.lab.probes import lock_hub_data
from hubswarm.lab.progress import FIRST_PERIOD, ReceivedSampler, per_client, thin
from hubswarm.lab.scenario import Fault, RunPlan
from hubswarm.lab.sim.common import ERROR_CHARS, HUB_PORT, World, host_ip, killed_record

__all__ = ["run_client_server"]

# A probe asks the locked hub for the file, or is refused at once (as lab.probes').
_PROBE_TIMEOUT = 30.0


async def run_client_server(plan: RunPlan, workdir: Path) -> RunResult:
    """The hub on host 0 serves the file; clients 1..N fetch it at their arrival times."""
    scenario = plan.scenario
    probe = plan.n == min(scenario.clients)  # once per scenario, as the netns runner
    world = World(plan, extra_hosts=2 if probe else 0)
    data = workdir / "hub-data"
    source = data / "files" / PAYLOAD_NAME
    sha256 = make_payload(source, scenario.file_size, scenario.seed)
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
    server_bytes = world.network.tx_bytes(host_ip(0))
    security = await _probes(world, workdir, source) if probe else ()
    killed_at = {v: f.at for f in world.faults for v in f.victims}
    records = []
    for i, task in sorted(tasks.items()):
        if task.cancelled():
            records.append(killed_record(i, plan.arrivals[i - 1], killed_at[i]))
        else:
            records.append(task.result())
    return world.result(
        "client-server", records, replicas, [], security=security, server_bytes=server_bytes
    )


async def _probes(world: World, workdir: Path, source: Path) -> tuple[SecurityProbe, ...]:
    """After the run: a second hub over the same file that requires tokens (host N + 1),
    asked from host N + 2 with no token, a forged one, a revoked one and (the control) a
    valid read token. Both hosts are unshaped: access control needs no shaping."""
    n = world.plan.n
    locked = lock_hub_data(workdir, source)
    app = create_app(HubConfig(data_dir=locked.data), clock=world.clock)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = NetworkSite(runner, world.network.host(host_ip(n + 1)), "0.0.0.0", HUB_PORT)
    await site.start()
    url = f"http://{host_ip(n + 1)}:{HUB_PORT}/files/{PAYLOAD_NAME}"
    probes = []
    try:
        for k, case in enumerate(locked.cases):
            out = workdir / "probe" / f"p{k}" / PAYLOAD_NAME
            out.parent.mkdir(parents=True, exist_ok=True)
            connector = NetworkConnector(world.network.host(host_ip(n + 2)))
            outcome = "complete"
            async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as http:
                try:
                    async with asyncio.timeout(_PROBE_TIMEOUT):
                        await hub_client.download(
                            url, out, token=case.token, progress=None, session=http
                        )
                except TimeoutError:
                    outcome = "timeout"
                except HubswarmError as exc:
                    outcome = str(exc)[:ERROR_CHARS]
            got = largest_partial(out.parent)
            size = world.plan.scenario.file_size
            label = f"client with {case.label}"
            probes.append(SecurityProbe(label, got, size, outcome, case.authorized))
    finally:
        await runner.cleanup()
    return tuple(probes)


async def _get(world: World, index: int, url: str, out: Path, sha256: str) -> ClientRecord:
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
    # Bytes over time as the agent records them in netns (lab.progress); the first period a
    # 32nd of the client's bound, so a long run (N = 1,000) does not wake it needlessly.
    expected = d_cs(plan.n, scenario.file_size, scenario.server_upload, plan.downloads[index - 1])
    sampler = ReceivedSampler(world.clock, period=max(FIRST_PERIOD, expected / 32))
    async with sampler.watching(), sampler.session(connector) as session:
        try:
            async with asyncio.timeout(max(0.0, deadline - world.now())):
                await hub_client.download(url, out, token=None, progress=None, session=session)
        except TimeoutError:
            if leave_at < scenario.timeout:
                error, left_at = "left (churn)", leave_at
            else:
                error = "timeout"
        except HubswarmError as exc:
            error = str(exc)[:ERROR_CHARS]
    end = world.now()
    progress = [(round(t - world.t0, 3), b) for t, b in sampler.samples()]
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
        progress=thin(progress, per_client(plan.n)),
    )
