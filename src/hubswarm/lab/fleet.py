"""The clients of one run on one time line: spawn, ready, go, churn, faults, the result.

Theory of operation
-------------------
Every architecture distributes to its N clients the same way; only what a client runs and
how its end is observed differ. A :class:`Fleet` holds what is common:

1. *spawn and ready*: one pre-started agent (``python3 -m hubswarm.lab.agent``) per client on
   its emulated host; interpreters start before t = 0, concurrently, and each prints ``ready``;
2. *t = 0* (:meth:`Fleet.begin`): the run's clock starts, with the host's CPU counters;
3. *go*: each client is released at its arrival time and may leave at random (churn, drawn
   from the scenario's seed, so every architecture loses the same clients at the same times);
4. *faults* fire at their times; the architecture applies them and returns a
   :class:`~hubswarm.lab.metrics.FaultEvent` (data: what, when, what it hit);
5. *the result*: the fields every :class:`~hubswarm.lab.metrics.RunResult` shares.

All times here are seconds since t = 0 on the lab's :class:`~hubswarm.clock.Clock`, which
is the running loop's clock (under the default loop, ``time.monotonic()``, the clock the
agents report on: their timestamps land on the same time line).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from hubswarm.clock import Clock
from hubswarm.errors import LabError
from hubswarm.lab import hostload
from hubswarm.lab.agent import profiling, stop_profiled
from hubswarm.lab.metrics import (
    ClientRecord,
    CorruptOutcome,
    FaultEvent,
    ReplicaSample,
    RunResult,
    SecurityProbe,
)
from hubswarm.lab.netem import Network
from hubswarm.lab.processes import Processes, kill, kill_and_reap
from hubswarm.lab.scenario import Fault, RunPlan, Scenario

__all__ = [
    "AGENT_START_TIMEOUT",
    "AgentJob",
    "Fleet",
    "Poller",
    "Released",
    "fault_event",
    "leave_after",
    "run_result",
]

# 32 agents importing aiohttp at once on a loaded 2-core machine: allow minutes, not seconds.
AGENT_START_TIMEOUT = 180.0
# How much of a failed agent's stderr goes into the error message.
_STDERR_TAIL = 300


@dataclass(frozen=True, slots=True)
class AgentJob:
    """One pre-started agent: its host and its arguments (``get URL OUT`` or ``cli ...``)."""

    host: int
    args: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Released:
    """A client let go at its arrival: its agent, when it started, when churn takes it."""

    index: int
    proc: asyncio.subprocess.Process
    start: float
    leave_at: float  # math.inf: it never leaves at random


@dataclass(frozen=True, slots=True)
class Poller:
    """A measurement taken every ``interval`` seconds from t = 0 until the last client ends."""

    interval: float
    sample: Callable[[], Awaitable[None]]


def fault_event(
    fault: Fault,
    detail: str,
    *,
    applied: bool = True,
    victims: tuple[int, ...] = (),
    corrupt: CorruptOutcome | None = None,
) -> FaultEvent:
    """The record of a scenario's fault as applied: its kind, time and count, and the rest."""
    return FaultEvent(
        fault.at,
        fault.kind,
        detail,
        count=fault.count,
        applied=applied,
        victims=victims,
        corrupt=corrupt,
    )


def leave_after(scenario: Scenario, index: int) -> float:
    """Seconds client ``index`` stays before leaving at random (churn); math.inf if never.

    Drawn from the scenario's seed and the index only: every architecture loses the same
    clients after the same times.
    """
    rate = scenario.churn.random_leave_rate
    if rate <= 0:
        return math.inf
    return random.Random(f"{scenario.seed}:leave:{index}").expovariate(rate)


class Fleet:
    """The N clients of one run, its t = 0, and the faults applied to it."""

    def __init__(
        self,
        plan: RunPlan,
        network: Network,
        procs: Processes,
        *,
        python: str = sys.executable,
        clock: Clock | None = None,
    ) -> None:
        self.plan = plan
        self.network = network
        self.procs = procs
        self.python = python
        self.clock = clock or Clock()
        self.agents: list[asyncio.subprocess.Process] = []
        # Clients released and not ended yet (what kill_peers may hit), and those it killed.
        self.running: dict[int, asyncio.subprocess.Process] = {}
        self.killed: set[int] = set()
        self.faults: list[FaultEvent] = []
        self._created = self.clock.now()
        self._t0 = math.nan
        self.t0_wall = math.nan  # t = 0 as Unix seconds (the swarm's event logs use those)
        self._cpu0: hostload.CpuSample | None = None
        self._cpu_end: hostload.CpuSample | None = None
        # Each client process's CPU-s (user + system, /proc) when it got `go`, then what it
        # used from `go` to its end (issue 18: the lab's peers' cost per run).
        self._cpu_at_go: dict[int, tuple[float, float]] = {}
        self.client_cpu: dict[int, tuple[float, float]] = {}  # (user, system) CPU-s

    # --- spawn and ready -------------------------------------------------------------------

    async def start_agents(
        self, jobs: Sequence[AgentJob], what: str, *, extra: Sequence[AgentJob] = ()
    ) -> list[asyncio.subprocess.Process]:
        """Spawn one agent per client job (1..N, in order) and the ``extra`` ones (probes);
        wait until every one printed ``ready``; return the extra agents. Raises LabError."""
        started = []
        for job in (*jobs, *extra):
            argv = [self.python, "-m", "hubswarm.lab.agent", *job.args]
            started.append(await self.procs.spawn(self.network.wrap(job.host, argv), stdin=True))
        try:
            async with asyncio.timeout(AGENT_START_TIMEOUT):
                for proc in started:
                    await _ready(proc, what)
        except TimeoutError as exc:
            raise LabError(f"{what}s not ready after {AGENT_START_TIMEOUT:g} s") from exc
        self.agents = started[: len(jobs)]
        return started[len(jobs) :]

    # --- the time line ---------------------------------------------------------------------

    def begin(self) -> None:
        """t = 0: everything slow (interpreters starting) is done; the measurement starts."""
        self._t0 = self.clock.now()
        self.t0_wall = self.clock.wall()
        self._cpu0 = hostload.sample()

    def now(self) -> float:
        """Seconds since t = 0."""
        return self.clock.now() - self._t0

    def since_t0(self, monotonic: float) -> float:
        """A timestamp an agent reported on the shared monotonic clock, as seconds since t = 0."""
        return monotonic - self._t0

    async def sleep_until(self, t: float) -> None:
        """Sleep until ``t`` seconds since t = 0 (at once if that is past)."""
        await self.clock.sleep(t - self.now())

    def timeout_at(self, t: float) -> asyncio.Timeout:
        """A timeout scope that expires ``t`` seconds after t = 0."""
        return asyncio.timeout(max(0.0, t - self.now()))

    @property
    def deadline(self) -> float:
        """When the scenario gives up on a client (seconds since t = 0)."""
        return self.plan.scenario.timeout

    # --- go, churn, end --------------------------------------------------------------------

    async def release(self, index: int) -> Released:
        """Wait for client ``index``'s arrival time, then write ``go`` to its agent."""
        proc = self.agents[index - 1]
        await self.sleep_until(self.plan.arrivals[index - 1])
        self.running[index] = proc
        # Read while the agent blocks on its stdin: exactly what it used before `go`.
        if (cpu := hostload.process_cpu(proc.pid)) is not None:
            self._cpu_at_go[index] = cpu
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        start = self.now()
        return Released(index, proc, start, start + leave_after(self.plan.scenario, index))

    async def finish(self, client: Released) -> float:
        """Kill the client's agent if it still runs, reap it; return when it ended (since t0)."""
        at_go = self._cpu_at_go.get(client.index)
        if at_go is not None and (cpu := hostload.process_cpu(client.proc.pid)) is not None:
            self.client_cpu[client.index] = (cpu[0] - at_go[0], cpu[1] - at_go[1])
        if profiling() and client.proc.returncode is None:
            await stop_profiled(client.proc)
        await kill_and_reap(client.proc)
        self.running.pop(client.index, None)
        return self.now()

    # --- faults ----------------------------------------------------------------------------

    def kill_clients(self, fault: Fault, noun: str) -> FaultEvent:
        """``kill_peers``: SIGKILL the first ``fault.count`` running clients (by index)."""
        victims = tuple(sorted(self.running)[: fault.count])
        for i in victims:
            self.killed.add(i)
            kill(self.running[i])
        return fault_event(fault, f"killed {noun} {list(victims)}", victims=victims)

    # --- the run ---------------------------------------------------------------------------

    async def run(
        self,
        client: Callable[[Released], Awaitable[ClientRecord]],
        apply_fault: Callable[[Fault], Awaitable[FaultEvent | None]],
        pollers: Iterable[Poller] = (),
    ) -> dict[int, ClientRecord]:
        """Release every client and watch it to its end with ``client``; apply the scenario's
        faults meanwhile; sample with ``pollers`` until the last client ends."""
        records: dict[int, ClientRecord] = {}
        stop = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            for poller in pollers:
                tg.create_task(self._poll(poller, stop))
            faults = [
                tg.create_task(self._fault(f, apply_fault)) for f in self.plan.scenario.faults
            ]
            async with asyncio.TaskGroup() as clients:
                for i in range(1, self.plan.n + 1):
                    clients.create_task(self._client(i, client, records))
            self._cpu_end = hostload.sample()
            for task in faults:
                task.cancel()  # a fault after the last client ended changes nothing
            stop.set()
        return records

    async def _client(
        self,
        index: int,
        client: Callable[[Released], Awaitable[ClientRecord]],
        records: dict[int, ClientRecord],
    ) -> None:
        records[index] = await client(await self.release(index))

    async def _fault(
        self, fault: Fault, apply_fault: Callable[[Fault], Awaitable[FaultEvent | None]]
    ) -> None:
        await self.sleep_until(fault.at)
        event = await apply_fault(fault)
        if event is not None:
            self.faults.append(event)

    @staticmethod
    async def _poll(poller: Poller, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await poller.sample()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poller.interval):
                    await stop.wait()

    # --- the result ------------------------------------------------------------------------

    def result(
        self,
        architecture: str,
        records: dict[int, ClientRecord],
        *,
        server_bytes_sent: int | None,
        replicas: Sequence[ReplicaSample],
        security: Sequence[SecurityProbe],
        notes: Sequence[str],
        first_copy_at: float | None = None,
    ) -> RunResult:
        """The run's :class:`RunResult`: the plan's numbers, the clients, the faults applied."""
        notes = [*notes, *self._cpu_notes()]
        return run_result(
            self.plan,
            architecture,
            self.network.mode,
            records.values(),
            faults=self.faults,
            server_bytes_sent=server_bytes_sent,
            replicas=replicas,
            security=security,
            notes=notes,
            first_copy_at=first_copy_at,
            wall_time=self.clock.now() - self._created,
            host_cpu_busy=hostload.busy_fraction(self._cpu0, self._cpu_end),
        )

    def _cpu_notes(self) -> list[str]:
        """The clients' CPU-s from `go` to their end, and the host's from t = 0 to the last
        end (a per-run detail of the report, and what benchmarks/lab_peer_cpu.py reads)."""
        if not self.client_cpu:
            return []
        cpu = sorted(user + system for user, system in self.client_cpu.values())
        system = sum(s for _, s in self.client_cpu.values()) / len(cpu)
        note = (
            f"measured: client CPU from go to end (user + system, /proc/PID/stat): "
            f"{len(cpu)} processes, mean {sum(cpu) / len(cpu):.3f}, "
            f"median {cpu[len(cpu) // 2]:.3f}, max {cpu[-1]:.3f} CPU-s "
            f"(system: mean {system:.3f})"
        )
        if self._cpu0 is not None and self._cpu_end is not None:
            busy = hostload.ticks_to_seconds(self._cpu_end.busy - self._cpu0.busy)
            kernel = hostload.ticks_to_seconds(self._cpu_end.kernel - self._cpu0.kernel)
            note += f"; host busy {busy:.2f} CPU-s, kernel (system + irq + softirq) {kernel:.2f}"
        return [note]


def run_result(
    plan: RunPlan,
    architecture: str,
    emulation: str,
    records: Iterable[ClientRecord],
    *,
    faults: Sequence[FaultEvent],
    server_bytes_sent: int | None,
    replicas: Sequence[ReplicaSample],
    security: Sequence[SecurityProbe] = (),
    notes: Sequence[str] = (),
    first_copy_at: float | None = None,
    wall_time: float = 0.0,
    host_cpu_busy: float | None = None,
) -> RunResult:
    """A :class:`RunResult` for ``plan``: its scenario's and plan's numbers, the clients in
    index order, and what the architecture measured (any runner or emulation may use it)."""
    scenario = plan.scenario
    return RunResult(
        architecture=architecture,
        scenario=scenario.name,
        n=plan.n,
        file_size=scenario.file_size,
        server_upload=scenario.server_upload,
        uploads=plan.uploads,
        downloads=plan.downloads,
        clients=tuple(sorted(records, key=lambda r: r.index)),
        server_bytes_sent=server_bytes_sent,
        faults=tuple(faults),
        replicas=tuple(replicas),
        first_copy_at=first_copy_at,
        security=tuple(security),
        emulation=emulation,
        pieces=scenario.pieces,
        scenario_path=scenario.path,
        wall_time=wall_time,
        host_cpu_busy=host_cpu_busy,
        notes=tuple(notes),
        rtt=scenario.latency.rtt,
        loss=scenario.loss,
    )


async def _ready(proc: asyncio.subprocess.Process, what: str) -> None:
    assert proc.stdout is not None
    if (await proc.stdout.readline()).strip() == b"ready":
        return
    err = b""
    if proc.stderr is not None:
        err = await proc.stderr.read(4096)
    raise LabError(f"a {what} failed to start: {err.decode(errors='replace')[-_STDERR_TAIL:]}")
