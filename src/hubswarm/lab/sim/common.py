"""What every sim run has: the hosts on the modelled network, t = 0, the faults applied."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Sequence

from hubswarm.clock import Clock
from hubswarm.lab.fleet import run_result
from hubswarm.lab.metrics import ClientRecord, FaultEvent, ReplicaSample, RunResult, SecurityProbe
from hubswarm.lab.scenario import Fault, RunPlan
from hubswarm.lab.simnet import DEFAULT_QUEUE, LinkSpec, SimNetwork

__all__ = [
    "ERROR_CHARS",
    "HUB_PORT",
    "SIM_NOTE",
    "World",
    "host_ip",
    "killed_record",
    "link_specs",
]

SIM_NOTE = (
    "sim: the real hub/client code on a modelled network in virtual time "
    "(fair-shared rate queues, delay, loss; TCP-like windows and retransmission; no CPU cost)"
)
HUB_PORT = 80
# An error message in a client's record is cut to this many characters.
ERROR_CHARS = 200


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


class World:
    """One run's network (hosts 0..N, then ``extra_hosts`` unshaped ones), its t = 0, a
    clock whose ``wall()`` is seconds since t = 0 (the peers' event logs), the faults."""

    def __init__(self, plan: RunPlan, *, extra_hosts: int = 0) -> None:
        self.plan = plan
        scenario = plan.scenario
        self.network = SimNetwork(rng=random.Random(f"{scenario.seed}:{plan.n}:sim"))
        for index, spec in enumerate(link_specs(plan)):
            self.network.add_host(host_ip(index), spec)
        for index in range(plan.n + 1, plan.n + 1 + extra_hosts):
            # A service elsewhere on the Internet (the netns runners' unshaped extra host).
            self.network.add_host(host_ip(index), LinkSpec())
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()
        self.clock = Clock(epoch=-self.t0)
        self.faults: list[FaultEvent] = []

    def now(self) -> float:
        """Seconds since t = 0."""
        return self.loop.time() - self.t0

    async def sleep_until(self, t: float) -> None:
        await asyncio.sleep(max(0.0, t - self.now()))

    async def run_faults(self, apply: Callable[[Fault], Awaitable[FaultEvent | None]]) -> None:
        """Apply each of the scenario's faults at its time (cancelled when the clients end);
        ``apply`` returns None for a fault recorded after the run (corrupt_peer)."""
        for fault in sorted(self.plan.scenario.faults, key=lambda f: f.at):
            await self.sleep_until(fault.at)
            event = await apply(fault)
            if event is not None:
                self.faults.append(event)

    def result(
        self,
        architecture: str,
        records: Sequence[ClientRecord],
        replicas: Sequence[ReplicaSample],
        notes: Sequence[str],
        *,
        first_copy_at: float | None = None,
        security: Sequence[SecurityProbe] = (),
        server_bytes: int | None = None,
    ) -> RunResult:
        """The run's result; the server's bytes are what left host 0 (its link's counter,
        read now unless ``server_bytes`` gives an earlier reading)."""
        if server_bytes is None:
            server_bytes = self.network.tx_bytes(host_ip(0))
        return run_result(
            self.plan,
            architecture,
            "sim",
            records,
            faults=self.faults,
            server_bytes_sent=server_bytes,
            replicas=replicas,
            notes=(SIM_NOTE, *notes),
            first_copy_at=first_copy_at,
            security=security,
        )


def killed_record(index: int, start: float, at: float) -> ClientRecord:
    """A client a ``kill_peers`` fault ended at ``at`` (what it had is not counted, as in
    netns)."""
    return ClientRecord(
        index=index,
        start=start,
        end=None,
        bytes_received=0,
        bytes_from_server=0,
        error="killed (fault)",
        left_at=at,
    )
