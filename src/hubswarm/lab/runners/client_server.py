"""Client-server: the hub on host 0 serves the file; N client agents fetch it from there.

Each client is ``hubswarm.hub.client.download`` (the code of ``hubswarm get``) in a
pre-started agent on its own emulated host, reaching the hub through its shaped path. The
hub's upload is read from its ``/stats`` counter; every byte a client got came from it.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hubswarm.lab.fleet import AgentJob, Fleet, Poller, Released, fault_event
from hubswarm.lab.metrics import ClientRecord, FaultEvent, ReplicaSample, RunResult, SecurityProbe
from hubswarm.lab.netem import Network
from hubswarm.lab.payload import PAYLOAD_NAME, check_file, largest_partial, make_payload
from hubswarm.lab.probes import LockedHub, lock_hub_data, run_probes
from hubswarm.lab.processes import Processes, last_json
from hubswarm.lab.progress import per_client, thin
from hubswarm.lab.scenario import Fault, RunPlan
from hubswarm.lab.services import Hub, hub_bytes_sent, start_hub

__all__ = ["ClientServerRunner"]

# How often the hub's /stats counter is read during a run (one curl on host 0 each time).
_STATS_INTERVAL = 0.5
_ERROR_CHARS = 200
_KILL_HUB_NOTE = (
    "measured: server bytes after kill_hub = bytes the clients received (the hub's "
    "/stats counts bytes handed to the kernel, when a response ends)"
)


class ClientServerRunner:
    """The hub serves the file; N client agents (``hubswarm.hub.client.download``, the code of
    ``hubswarm get``) fetch it per the arrival schedule, each on its own emulated host."""

    name = "client-server"
    extra_hosts = 0

    def __init__(self, *, python: str = sys.executable, probe_security: bool = True) -> None:
        """``probe_security``: run the access-control probes (once per scenario, smallest N)."""
        self.python = python
        self.probe_security = probe_security

    async def run(self, plan: RunPlan, network: Network, workdir: Path) -> RunResult:
        """Serve the file from host 0 to hosts 1..N; apply the faults; probe access control."""
        scenario = plan.scenario
        data = workdir / "hub-data"
        source = data / "files" / PAYLOAD_NAME
        sha256 = await asyncio.to_thread(make_payload, source, scenario.file_size, scenario.seed)
        probe = self.probe_security and plan.n == min(scenario.clients)
        security: tuple[SecurityProbe, ...] = ()
        async with Processes() as procs, asyncio.TaskGroup() as tg:
            fleet = Fleet(plan, network, procs, python=self.python)
            # Everything slow (interpreters starting) happens before t0, concurrently.
            locked = lock_hub_data(workdir, source) if probe else None
            hubs = [start_hub(procs, tg, network, data, python=self.python, anonymous=True)]
            if locked is not None:
                hubs.append(
                    start_hub(procs, tg, network, locked.data, python=self.python, anonymous=False)
                )
            started = await asyncio.gather(*hubs)
            hub = started[0]
            ports = await network.expose(0, hub.port)
            outs = [workdir / f"c{i}" / PAYLOAD_NAME for i in range(1, plan.n + 1)]
            jobs = []
            for i, out in enumerate(outs, start=1):
                host, port = ports.address_for(i)
                jobs.append(_get_job(i, f"http://{host}:{port}/files/{PAYLOAD_NAME}", out, None))
            probe_outs: list[Path] = []
            probe_jobs: list[AgentJob] = []
            if locked is not None:
                probe_outs, probe_jobs = _probe_jobs(network, started[1], locked, workdir)
            probe_agents = await fleet.start_agents(jobs, "client agent", extra=probe_jobs)
            if locked is not None:
                security = await run_probes(
                    probe_agents, locked.cases, probe_outs, scenario.file_size
                )
                started[1].service.kill()
            distribution = _Distribution(fleet, hub, outs, sha256)
            fleet.begin()
            records = await fleet.run(
                distribution.watch,
                distribution.apply_fault,
                [Poller(_STATS_INTERVAL, distribution.read_stats)],
            )
            if hub.service.proc.returncode is None:
                await distribution.read_stats()
            hub.service.kill()
            await procs.kill_all()
        notes = list(network.notes)
        server_bytes = max(distribution.stats) if distribution.stats else None
        if any(f.kind == "kill_hub" for f in fleet.faults):
            # /stats counts bytes handed to the kernel when a response ends: a cut response
            # counts either nothing or bytes that died in socket buffers with the host. In
            # client-server every byte a client got came from the hub: count those instead.
            server_bytes = sum(r.bytes_received for r in records.values())
            notes.append(_KILL_HUB_NOTE)
        return fleet.result(
            self.name,
            records,
            server_bytes_sent=server_bytes,
            replicas=distribution.replicas,
            security=security,
            notes=notes,
        )


def _get_job(host: int, url: str, out: Path, token: str | None) -> AgentJob:
    """An agent that downloads ``url`` to ``out`` (with ``token``) on ``host``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return AgentJob(host, ("get", url, str(out), *([token] if token is not None else [])))


def _probe_jobs(
    network: Network, locked_hub: Hub, locked: LockedHub, workdir: Path
) -> tuple[list[Path], list[AgentJob]]:
    """One agent per probe case, straight to the locked hub: access control needs no shaping."""
    host = network.hosts[0].address if network.mode == "netns" else "127.0.0.1"
    url = f"http://{host}:{locked_hub.port}/files/{PAYLOAD_NAME}"
    outs = [workdir / "probe" / f"p{k}" / PAYLOAD_NAME for k in range(len(locked.cases))]
    jobs = [_get_job(1, url, out, case.token) for case, out in zip(locked.cases, outs, strict=True)]
    return outs, jobs


@dataclass(slots=True)
class _Distribution:
    """One client-server run from t = 0: watch each client, apply faults, read /stats."""

    fleet: Fleet
    hub: Hub
    outs: list[Path]
    sha256: str
    stats: list[int] = field(default_factory=list)
    replicas: list[ReplicaSample] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Before any transfer the hub holds the one copy of every piece.
        self.replicas.append(ReplicaSample(0.0, (1,) * self.fleet.plan.scenario.pieces))

    async def read_stats(self) -> None:
        """One reading of the hub's bytes_sent counter."""
        fleet = self.fleet
        value = await hub_bytes_sent(fleet.procs, fleet.network, self.hub.port)
        if value is not None:
            self.stats.append(value)

    async def watch(self, client: Released) -> ClientRecord:
        """Wait for a client's agent to finish (or time out, or leave); record what it got."""
        fleet, scenario = self.fleet, self.fleet.plan.scenario
        error: str | None = None
        left_at: float | None = None
        report: dict[str, object] = {}
        try:
            async with fleet.timeout_at(min(fleet.deadline, client.leave_at)):
                out_bytes, _ = await client.proc.communicate()
            report = last_json(out_bytes)
        except TimeoutError:
            if client.leave_at < fleet.deadline:
                error, left_at = "left (churn)", client.leave_at
            else:
                error = "timeout"
        end = await fleet.finish(client)
        start = client.start
        # The agent's own clock readings exclude pipe and scheduling delays.
        reported_start, reported_end = report.get("start"), report.get("end")
        if isinstance(reported_start, float):
            start = fleet.since_t0(reported_start)
        if isinstance(reported_end, float):
            end = fleet.since_t0(reported_end)
        returncode = client.proc.returncode
        if error is None and returncode != 0:
            error = str(report.get("error") or f"exit {returncode}")[:_ERROR_CHARS]
            if client.index in fleet.killed:
                error = "killed (fault)"
        out = self.outs[client.index - 1]
        got, ok = await asyncio.to_thread(check_file, out, self.sha256)
        if not got:
            reported = report.get("bytes")
            got = reported if isinstance(reported, int) else 0
            got = max(got, await asyncio.to_thread(largest_partial, out.parent))
        ok = ok and error is None
        stays = scenario.churn.leave_after_complete is False
        return ClientRecord(
            index=client.index,
            start=start,
            end=end if ok else None,
            bytes_received=got,
            bytes_from_server=got,
            verified=ok,
            error=error if not ok else None,
            left_at=left_at if left_at is not None else (None if stays else end),
            progress=self._progress(report.get("progress")),
        )

    def _progress(self, reported: object) -> tuple[tuple[float, int], ...]:
        """The agent's (monotonic time, bytes) samples, as (seconds since t = 0, bytes); none
        from an agent killed before it reported (a fault, a time-out)."""
        if not isinstance(reported, list):
            return ()
        fleet = self.fleet
        samples = [
            (round(fleet.since_t0(float(t)), 3), int(b))
            for t, b in (s for s in reported if isinstance(s, list) and len(s) == 2)
            if isinstance(t, float | int) and isinstance(b, int)
        ]
        return thin(samples, per_client(fleet.plan.n))

    async def apply_fault(self, fault: Fault) -> FaultEvent:
        """Apply one of the scenario's faults at its time."""
        fleet = self.fleet
        match fault.kind:
            case "kill_hub":
                # A crashed machine: the process dies and nothing more leaves the host
                # (a killed process's socket buffers would otherwise still drain).
                self.hub.service.kill()
                await fleet.network.isolate(0)
                pieces = fleet.plan.scenario.pieces
                self.replicas.append(ReplicaSample(fleet.now(), (0,) * pieces))
                return fault_event(fault, f"SIGKILL hub pid {self.hub.service.proc.pid}")
            case "kill_peers":
                return fleet.kill_clients(fault, "clients")
            case "revoked_token":
                return fault_event(fault, "revoked token probed: see security")
            case _:
                return fault_event(fault, "not applicable to client-server", applied=False)
