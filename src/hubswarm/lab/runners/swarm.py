"""Peer-to-peer: a seed on host 0, N ``hubswarm fetch`` peers that swap pieces among themselves.

:class:`SwarmRunner` drives any swarm; what stands at its centre is its *infrastructure*
(:meth:`SwarmRunner.start_infrastructure`): here a DHT bootstrap node (p2p), in
:mod:`hubswarm.lab.runners.hybrid` the hub as tracker and web seed. The peers keep seeding
after they complete, so the runner learns of each completion from the peer's event log.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hubswarm.lab import netem
from hubswarm.lab.accounting import (
    AckedBytes,
    attribute_server_bytes,
    corrupt_clients,
    corrupt_event,
    replica_samples,
)
from hubswarm.lab.events import Event, EventTail, completed_at, piece_arrivals, read_events
from hubswarm.lab.fleet import AgentJob, Fleet, Poller, Released, fault_event
from hubswarm.lab.metrics import (
    ClientRecord,
    FaultEvent,
    RunResult,
    SecurityProbe,
    first_copy_time,
)
from hubswarm.lab.netem import Network
from hubswarm.lab.payload import PAYLOAD_NAME, check_file, make_payload
from hubswarm.lab.probes import outsider_probe
from hubswarm.lab.processes import Processes, Service
from hubswarm.lab.replay import with_tracks
from hubswarm.lab.scenario import Fault, RunPlan
from hubswarm.lab.services import start_dht_node, start_seed

__all__ = ["Infrastructure", "SwarmRunner", "rate_flags"]

# The swarm architectures find peers only as the issue defines them: the tracker (hybrid) or
# the DHT (p2p). Peer exchange would connect every pair sooner, and with the connections
# come their haves (docs/lab.md has the measurements).
DISCOVERY = ("--no-pex",)
# How often the runner reads each peer's event log, and the seed's upload counter (ss
# forgets a socket once it closes: poll often; one ss is ~5 ms).
_EVENTS_POLL = 0.2
_SEED_POLL = 0.2
_SS_TIMEOUT = 5.0
_ATTRIBUTION_NOTE = (
    "measured: server bytes = bytes that left host 0 (netns wire counter, less the "
    "frames' headers: x 1448/1514, read after the last client completed, so what "
    "host 0's link still held then counts too; else TCP bytes the seed's peers "
    "acknowledged, ss every 0.2 s); per-client split attributed proportionally"
)


@dataclass(slots=True)
class Infrastructure:
    """Host 0 of a swarm run: the central service (``kill_hub`` kills it) beside the seed
    peer (which survives ``kill_hub``), and what each client passes to ``fetch``."""

    service: Service  # tracker + web seed (hybrid) or DHT bootstrap node (p2p)
    tcp_port: int | None  # its TCP port, whose connections die with it (None: UDP only)
    what: str
    seed: Service
    sources: list[list[str]]  # per client 1..N, then the outsider: the fetch arguments
    agent: str = "cli"  # the agent command the clients run (lab.agent): "lt" for libtorrent


def rate_flags(network: Network, up: float, down: float) -> list[str]:
    """A peer's own rate caps: none in namespaces (the kernel shapes), else its link's."""
    if network.shaped:
        return []
    out = ["--upload-rate", str(int(up))]
    if math.isfinite(down):
        out += ["--download-rate", str(int(down))]
    return out


class SwarmRunner:
    """Peer-to-peer: host 0 runs the first seed (``hubswarm share``), host N + 1 the DHT
    bootstrap node; N ``hubswarm fetch`` peers (pre-started agents) download from the seed
    and from each other."""

    name = "p2p"
    # The bootstrap node stands for router.bittorrent.com: a service elsewhere on the
    # Internet, not on the seed's access link. On host 0 its replies shared u_s with the
    # seed's pieces, and a lost reply could leave a peer out of the DHT.
    extra_hosts = 1

    def __init__(self, *, python: str = sys.executable, probe_security: bool = True) -> None:
        """``probe_security``: let an outsider with only the magnet link try (smallest N)."""
        self.python = python
        self.probe_security = probe_security

    def notes(self, network: Network) -> list[str]:
        """What host 0 runs (emulation facts for the report's top)."""
        return [
            "p2p: host 0 runs the seed peer; a DHT bootstrap node (the only central piece) "
            "runs on an unshaped host of its own, as router.bittorrent.com is not on the "
            "seed's link; peers find each other through it and the DHT only (no peer exchange)"
        ]

    def share_argv(self, network: Network, source: Path, workdir: Path, plan: RunPlan) -> list[str]:
        """``hubswarm share`` of the payload on host 0 (the seed peer), without discovery."""
        argv = [self.python, "-m", "hubswarm", "share", str(source)]
        argv += ["--host", network.hosts[0].address, "--port", "0", "--fast-intervals", "--json"]
        # Hosts may share one address (app mode: all on 127.0.0.1): no one-link-per-address.
        argv += ["--max-per-address", "0"]
        argv += [*DISCOVERY, "--piece-length", str(plan.scenario.piece_size)]
        # BEP 16 initial seeding: the seed sends each piece once and lets the swarm copy it.
        argv += ["--super-seed"]
        argv += ["--events", str(workdir / "seed.events")]
        argv += ["-o", str(workdir / "payload.torrent")]
        return argv

    async def start_infrastructure(
        self, fleet: Fleet, tg: asyncio.TaskGroup, workdir: Path, source: Path
    ) -> Infrastructure:
        """Host N + 1: a DHT bootstrap node (the swarm's only central piece, BEP 5); host 0:
        the seed peer announcing to it. Every client gets the magnet link and the bootstrap
        address."""
        procs, network, plan = fleet.procs, fleet.network, fleet.plan
        node = await start_dht_node(procs, tg, network, plan.n + 1, python=self.python)
        argv = self.share_argv(network, source, workdir, plan)
        argv += ["--dht-bootstrap", node.bootstrap]
        argv += rate_flags(network, plan.scenario.server_upload, math.inf)
        seed = await start_seed(procs, tg, network, argv)
        sources = [[seed.magnet, "--dht-bootstrap", node.bootstrap]] * (plan.n + 1)
        what = f"DHT bootstrap node pid {node.service.proc.pid}"
        return Infrastructure(node.service, None, what, seed.service, sources)

    async def run(self, plan: RunPlan, network: Network, workdir: Path) -> RunResult:
        """Seed from host 0, fetch on hosts 1..N per the arrivals; apply churn and faults."""
        scenario = plan.scenario
        source = workdir / "seed" / PAYLOAD_NAME
        sha256 = await asyncio.to_thread(make_payload, source, scenario.file_size, scenario.seed)
        security: tuple[SecurityProbe, ...] = ()
        # The outsider needs a way in: after kill_hub (no tracker, no bootstrap node) it
        # would only wait for its timeout; the fault-free scenarios measure access.
        probe = (
            self.probe_security
            and plan.n == min(scenario.clients)
            and not any(f.kind == "kill_hub" for f in scenario.faults)
        )
        async with Processes() as procs, asyncio.TaskGroup() as tg:
            fleet = Fleet(plan, network, procs, python=self.python)
            infra = await self.start_infrastructure(fleet, tg, workdir, source)
            swarm = _Swarm(fleet, infra, workdir, sha256, corrupt_clients(scenario, plan.n))
            outsider = [swarm.outsider_job()] if probe else []
            agents = await fleet.start_agents(swarm.jobs(), "peer agent", extra=outsider)
            swarm.wire_at_t0 = await network.tx_bytes(0)
            fleet.begin()
            records = await fleet.run(
                swarm.watch, swarm.apply_fault, [Poller(_SEED_POLL, swarm.sample_seed)]
            )
            if infra.seed.proc.returncode is None:
                await swarm.sample_seed()  # last reading, before the outsider joins
                if probe:
                    out = workdir / "outsider" / PAYLOAD_NAME
                    security = await outsider_probe(
                        agents[0], out, scenario.file_size, scenario.timeout
                    )
            await procs.kill_all()
        return swarm.result(self.name, records, security, [*network.notes, *self.notes(network)])


@dataclass(slots=True)
class _Swarm:
    """One swarm run: the peers' jobs, then from t = 0 their watchers, faults, seed counter."""

    fleet: Fleet
    infra: Infrastructure
    workdir: Path
    sha256: str
    corrupt: set[int]
    wire_at_t0: int | None = None
    wire_bytes: list[int] = field(default_factory=list)  # netns: host 0's wire counter
    seed_bytes: list[int] = field(default_factory=list)  # app: what the seed's peers acked
    completed: set[int] = field(default_factory=set)
    all_done: asyncio.Event = field(default_factory=asyncio.Event)
    gone_at: dict[int, float | None] = field(default_factory=dict)
    logs: dict[int, list[Event]] = field(default_factory=dict)
    _acked: AckedBytes | None = None

    def _fetch_args(self, source: list[str], output: Path, host: int) -> list[str]:
        scenario = self.fleet.plan.scenario
        # Long option names: click tries "-o" as a long option first, and its failure
        # builds a did-you-mean list with difflib, on each peer's clock after "go".
        args = ["fetch", *source, "--output", str(output)]
        args += ["--host", self.fleet.network.hosts[host].address, "--port", "0"]
        args += ["--fast-intervals", "--json", "--quiet", "--timeout", f"{scenario.timeout:g}"]
        args += ["--max-per-address", "0"]  # app mode puts every host on 127.0.0.1
        return [*args, *DISCOVERY]

    def jobs(self) -> list[AgentJob]:
        """The N peers: ``hubswarm fetch`` each on its host, logging events, maybe seeding."""
        plan, network = self.fleet.plan, self.fleet.network
        out = []
        for i in range(1, plan.n + 1):
            args = self._fetch_args(self.infra.sources[i - 1], self.workdir / f"c{i}", i)
            args += ["--events", str(self._events(i))]
            args += rate_flags(network, plan.uploads[i - 1], plan.downloads[i - 1])
            if plan.scenario.churn.leave_after_complete is not True:
                args.append("--seed")
            if i in self.corrupt:
                args.append("--corrupt")  # hidden lab flag: flips bytes it uploads
            out.append(AgentJob(i, (self.infra.agent, *args)))
        return out

    def outsider_job(self) -> AgentJob:
        """A peer with only the magnet link, on the last client's host, after the run."""
        n = self.fleet.plan.n
        args = self._fetch_args(self.infra.sources[-1], self.workdir / "outsider", n)
        return AgentJob(n, ("cli", *args))

    def _events(self, index: int) -> Path:
        return self.workdir / f"c{index}.events"

    async def sample_seed(self) -> None:
        """One reading of what the seed uploaded (host 0's wire counter, or ss in app mode)."""
        network, procs = self.fleet.network, self.fleet.procs
        wire = await network.tx_bytes(0)
        if wire is not None:
            # netns: host 0's wire counter (sysfs), no process to start five times
            # a second on the machine being measured.
            self.wire_bytes.append(wire)
            return
        # App mode: the seed's upload is the bytes its peers acknowledged, per TCP
        # connection (kept after a connection closes), read with ss.
        if self._acked is None:
            self._acked = AckedBytes(self.infra.seed.proc.pid)
        ss = await procs.spawn(network.wrap(0, ["ss", "-tinpH"]))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_SS_TIMEOUT):
                out, _ = await ss.communicate()
                self.seed_bytes.append(self._acked.add(out.decode(errors="replace")))

    async def watch(self, client: Released) -> ClientRecord:
        """Follow a peer's event log to its completion and its leaving; record what it got."""
        fleet, scenario = self.fleet, self.fleet.plan.scenario
        i, proc = client.index, client.proc
        error: str | None = None
        left: float | None = None
        complete_t: float | None = None
        tail = EventTail(self._events(i))
        while proc.returncode is None:
            now = fleet.now()
            if now >= fleet.deadline:
                error = "timeout"
                break
            if complete_t is None and now >= client.leave_at:
                error, left = "left (churn)", now
                break
            done = completed_at(tail.read_new())
            if complete_t is None and done is not None:
                complete_t = done - fleet.t0_wall
                await self._complete(i)
            if complete_t is not None:
                stop, left = self._leaves(now, complete_t)
                if stop:
                    break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_EVENTS_POLL):
                    await proc.wait()
        end = await fleet.finish(client)
        log = self.logs[i] = await asyncio.to_thread(read_events, self._events(i))
        if complete_t is None and (done := completed_at(log)) is not None:
            complete_t = done - fleet.t0_wall
        if i in fleet.killed:
            error = "killed (fault)"
        elif complete_t is None and error is None:
            error = f"exit {proc.returncode} before completing"
        out = self.workdir / f"c{i}" / PAYLOAD_NAME
        got, ok = await asyncio.to_thread(check_file, out, self.sha256)
        distinct = {e.get("index") for e in log if e.get("event") == "piece"}
        ok = ok and complete_t is not None
        if not got:
            got = min(scenario.file_size, scenario.piece_size * len(distinct))
        if scenario.churn.leave_after_complete is True and complete_t is not None:
            left = complete_t
        self.gone_at[i] = left if left is not None else (None if ok else end)
        return ClientRecord(
            index=i,
            start=client.start,
            end=complete_t if ok else None,
            bytes_received=got,
            bytes_from_server=0,  # attributed in result() from the seed's upload
            bytes_from_peers=got,
            verified=ok,
            error=None if ok else (error or "incomplete"),
            left_at=left,
        )

    async def _complete(self, index: int) -> None:
        self.completed.add(index)
        if len(self.completed) == self.fleet.plan.n:
            await self.sample_seed()  # while every connection is still open
            self.all_done.set()

    def _leaves(self, now: float, complete_t: float) -> tuple[bool, float | None]:
        """Whether a completed peer stops now, per the churn rule, and when it left."""
        leave = self.fleet.plan.scenario.churn.leave_after_complete
        if isinstance(leave, float) and not isinstance(leave, bool):
            # Seed ``leave`` seconds after completing, then go.
            return (True, now) if now >= complete_t + leave else (False, None)
        # True: go at once (not seeding); False: seed until every peer is done.
        return leave is True or self.all_done.is_set(), None

    async def apply_fault(self, fault: Fault) -> FaultEvent | None:
        """Apply one of the scenario's faults at its time (corrupt_peer: see result())."""
        match fault.kind:
            case "kill_hub":
                # The central infrastructure dies; the seed peer beside it on host 0
                # lives on (killing it is kill_peers' job).
                self.infra.service.kill()
                if self.infra.tcp_port is not None:
                    await self.fleet.network.cut_port(0, self.infra.tcp_port)
                detail = f"SIGKILL {self.infra.what}; the seed peer on host 0 lives"
                return fault_event(fault, detail)
            case "kill_peers":
                return self.fleet.kill_clients(fault, "peers")
            case "corrupt_peer":
                return None  # the corrupt peers run from the start: recorded after the run
            case _:
                return fault_event(fault, "not applicable to a swarm (no tokens)", applied=False)

    def result(
        self,
        architecture: str,
        records: dict[int, ClientRecord],
        security: tuple[SecurityProbe, ...],
        notes: list[str],
    ) -> RunResult:
        """The run's result: server bytes attributed, corrupt peers' outcome, replicas."""
        fleet, scenario = self.fleet, self.fleet.plan.scenario
        server_bytes = max(self.seed_bytes) if self.seed_bytes else None
        if self.wire_bytes and self.wire_at_t0 is not None:
            # netns: what left host 0 on the wire (the seed), in bytes of payload as the
            # clients count theirs (the frames' headers taken off).
            wire = max(self.wire_bytes) - self.wire_at_t0
            server_bytes = netem.payload_of_wire(wire, fleet.network.mtu)
        if server_bytes is not None and sum(r.bytes_received for r in records.values()) > 0:
            records = attribute_server_bytes(records, server_bytes)
            notes.append(_ATTRIBUTION_NOTE)
        if self.corrupt:
            fleet.faults.append(corrupt_event(scenario, self.corrupt, records, self.logs))
        have = {i: piece_arrivals(self.logs.get(i, ()), fleet.t0_wall) for i in records}
        ends = [r.end for r in records.values() if r.end is not None]
        # The seed peer lives to the end of every run (kill_hub spares it).
        replicas = replica_samples(scenario.pieces, have, self.gone_at, ends)
        result = fleet.result(
            architecture,
            records,
            server_bytes_sent=server_bytes,
            replicas=replicas,
            security=security,
            notes=notes,
            first_copy_at=first_copy_time(scenario.pieces, have),
        )
        # The seed's pieces are told apart by its address (app mode: one address for all).
        seed, *peers = (h.address for h in fleet.network.hosts)
        return with_tracks(result, self.logs, fleet.t0_wall, seed=() if seed in peers else {seed})
