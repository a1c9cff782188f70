"""Run one scenario point on one architecture, on an emulated network.

Every architecture plugs in as an :class:`ArchitectureRunner`: given a :class:`RunPlan` (a
scenario at one N with every client's capacities drawn), a :class:`Network` (hosts: 0 is the
server or first seed, 1..N the clients) and a scratch folder, it returns a
:class:`~hubswarm.lab.metrics.RunResult`. Processes are real (``python3 -m hubswarm ...``),
started through :class:`Processes`, which kills every one of them by PID on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import random
import re
import shutil
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

from hubswarm.errors import LabError
from hubswarm.hub.auth import Role, TokenStore
from hubswarm.lab import hostload, netem
from hubswarm.lab.metrics import (
    ClientRecord,
    FaultEvent,
    ReplicaSample,
    RunFailure,
    RunResult,
    SecurityProbe,
    first_copy_time,
)
from hubswarm.lab.netem import AppNetwork, NetnsNetwork, Network
from hubswarm.lab.scenario import RunPlan, Scenario

__all__ = [
    "ArchitectureRunner",
    "Campaign",
    "ClientServerRunner",
    "HybridRunner",
    "Processes",
    "SwarmRunner",
    "SwarmRunnerStub",
    "make_payload",
    "make_runner",
    "open_network",
    "parse_ss",
    "quick_plan",
    "replica_timeline",
    "resolve_emulation",
    "run_plan",
    "run_scenarios",
]

# Starting a hub (Python + aiohttp imports) takes ~0.5 s; 30 s covers a loaded 2-core machine.
_HUB_START_TIMEOUT = 30.0
_STATS_INTERVAL = 0.5
# Keep the last lines a server printed for error messages; drop the rest (bounded buffer).
_KEEP_LINES = 50
_SERVING = re.compile(rb"serving .* on (https?://\S+)")
# 32 agents importing aiohttp at once on a loaded 2-core machine: allow minutes, not seconds.
_AGENT_START_TIMEOUT = 180.0
# The swarm architectures find peers only as the issue defines them: the tracker (hybrid) or
# the DHT (p2p). Peer exchange would connect every pair sooner (N = 8: all within 0.22 s),
# and with the connections come their haves. Measured on 2 cores, flash crowd at 1 MiB/s:
# N = 32 (CPU-bound) 0.27 -> 0.36 CPU-s per peer and T / D_p2p 3.0, 3.7 -> 4.0, 4.2 (two
# runs each); N = 8 1.42-1.50 either way.
_DISCOVERY = ("--no-pex",)


class ArchitectureRunner(Protocol):
    """One architecture (client-server, hybrid, p2p) as the lab drives it."""

    name: str
    # Hosts beyond 0..N the architecture needs (an unshaped host for Internet services).
    extra_hosts: int

    async def run(self, plan: RunPlan, network: Network, workdir: Path) -> RunResult:
        """Distribute one file from host 0 to hosts 1..N per ``plan``; record everything.

        Must return a RunResult with one ClientRecord per client (index 1..N, times in
        seconds since the run's t=0), ``server_bytes_sent`` (bytes host 0 uploaded), the
        faults applied, replica samples per piece, and must kill every process it started.
        """
        ...


def _child_env() -> dict[str, str]:
    """The environment for the lab's processes: ours, but allowed to cache bytecode.

    With PYTHONDONTWRITEBYTECODE set (as on these machines) each of the 33 processes of an
    N=32 run recompiled ~180 modules: ~28 core-seconds of start-up per run on 2 cores.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


class Processes:
    """Owns subprocesses: spawn, and on exit kill every one still running (by PID) and reap."""

    def __init__(self) -> None:
        self._procs: list[asyncio.subprocess.Process] = []

    async def __aenter__(self) -> Processes:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.kill_all()

    async def spawn(
        self, argv: Sequence[str], *, merge_output: bool = False, stdin: bool = False
    ) -> asyncio.subprocess.Process:
        """Start argv with stdout piped (stderr piped or merged into stdout)."""
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT if merge_output else asyncio.subprocess.PIPE,
                env=_child_env(),
            )
        except OSError as exc:
            raise LabError(f"cannot start {argv[0]}: {exc}") from exc
        self._procs.append(proc)
        return proc

    async def kill_all(self) -> None:
        """SIGKILL every child still running, then wait for all of them (bounded)."""
        for proc in self._procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        for proc in self._procs:
            with contextlib.suppress(TimeoutError, ProcessLookupError):
                async with asyncio.timeout(5):
                    await proc.wait()
        self._procs.clear()


def resolve_emulation(requested: str, *, no_netns: bool = False) -> str:
    """``auto`` -> ``netns`` when root and ip netns work, else ``app``. Raises LabError."""
    if no_netns or requested == "app":
        return "app"
    available = netem.netns_available()
    if requested == "netns" and not available:
        raise LabError("emulation 'netns' needs root and ip netns (or use --no-netns)")
    return "netns" if available else "app"


@contextlib.asynccontextmanager
async def open_network(plan: RunPlan, mode: str, *, extra_hosts: int = 0) -> AsyncIterator[Network]:
    """Hosts 0 (server: upload u_s, download unshaped) and 1..N with the plan's capacities,
    then ``extra_hosts`` unshaped hosts (services that are neither server nor client)."""
    capacities = [(plan.scenario.server_upload, math.inf)]
    capacities += list(zip(plan.uploads, plan.downloads, strict=True))
    capacities += [(math.inf, math.inf)] * extra_hosts
    if mode == "netns":
        net = NetnsNetwork(capacities)
        await asyncio.to_thread(net.__enter__)
        try:
            yield net
        finally:
            await asyncio.to_thread(net.close)
    else:
        async with AppNetwork(capacities) as app:
            yield app


def make_runner(name: str, *, python: str = sys.executable) -> ArchitectureRunner:
    """The runner of an architecture name. Raises LabError for unknown names."""
    if name == "client-server":
        return ClientServerRunner(python=python)
    if name == "p2p":
        return SwarmRunner(python=python)
    if name == "hybrid":
        return HybridRunner(python=python)
    raise LabError(f"unknown architecture {name!r}")


async def run_plan(
    plan: RunPlan, runner: ArchitectureRunner, *, mode: str, workdir: Path
) -> RunResult:
    """Open the network, run one architecture on it, close the network (always)."""
    workdir.mkdir(parents=True, exist_ok=True)
    async with open_network(plan, mode, extra_hosts=runner.extra_hosts) as network:
        return await runner.run(plan, network, workdir)


class SwarmRunnerStub:
    """Placeholder for the hybrid and p2p runners until the swarm lands."""

    extra_hosts = 0

    def __init__(self, name: str) -> None:
        self.name = name

    async def run(self, plan: RunPlan, network: Network, workdir: Path) -> RunResult:
        """Always raises LabError."""
        raise LabError(f"{self.name}: swarm runner not available yet")


# --- client-server -----------------------------------------------------------------------------


def _kill_clients(
    running: Mapping[int, asyncio.subprocess.Process], killed: set[int], count: int
) -> list[int]:
    """SIGKILL the first ``count`` running clients (by index); record them in ``killed``."""
    victims = sorted(running)[:count]
    for i in victims:
        killed.add(i)
        with contextlib.suppress(ProcessLookupError):
            running[i].kill()
    return victims


async def _run_clients(
    n: int,
    one: Callable[[int], Coroutine[object, object, None]],
    fault_tasks: Sequence[asyncio.Task[None]],
    stop: asyncio.Event,
) -> hostload.CpuSample | None:
    """Run ``one(i)`` for clients 1..n to their end, then cancel the pending faults and
    stop the pollers; returns the host's CPU counters read as the last client ended."""
    async with asyncio.TaskGroup() as group:
        for i in range(1, n + 1):
            group.create_task(one(i))
    cpu_end = hostload.sample()
    for task in fault_tasks:
        task.cancel()
    stop.set()
    return cpu_end


def make_payload(path: Path, size: int, seed: int) -> str:
    """Write ``size`` seeded random bytes to path; return their SHA-256 hex (for any runner)."""
    rng = random.Random(seed)
    digest = hashlib.sha256()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        left = size
        while left > 0:
            chunk = rng.randbytes(min(left, 1 << 20))
            digest.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def _check_file(path: Path, sha256: str) -> tuple[int, bool]:
    try:
        size = path.stat().st_size
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    except OSError:
        return 0, False
    return size, digest.hexdigest() == sha256


def _partial_bytes(folder: Path) -> int:
    # A failed client may leave its partial download under another name in its folder.
    total = 0
    with contextlib.suppress(OSError):
        for p in folder.rglob("*"):
            if p.is_file() and not p.name.endswith(".json"):
                total = max(total, p.stat().st_size)
    return total


class _Hub:
    """A running ``hubswarm hub serve`` and its output pump (bounded)."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int, lines: list[bytes]) -> None:
        self.proc = proc
        self.port = port
        self.lines = lines

    def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()


class ClientServerRunner:
    """The hub serves the file; N client agents (``hubswarm.hub.client.download``, the code of
    ``hubswarm get``) fetch it per the arrival schedule, each on its own emulated host."""

    name = "client-server"
    extra_hosts = 0

    def __init__(self, *, python: str = sys.executable, probe_security: bool = True) -> None:
        """``probe_security``: run the access-control probes (once per scenario, smallest N)."""
        self.python = python
        self.probe_security = probe_security

    async def _start_hub(
        self,
        procs: Processes,
        tg: asyncio.TaskGroup,
        network: Network,
        data: Path,
        *,
        anonymous: bool,
        extra: Sequence[str] = (),
    ) -> _Hub:
        argv = [self.python, "-m", "hubswarm", "hub", "serve", "--data", str(data), "--port", "0"]
        argv += ["--host", network.bind_address(0), *extra]
        if anonymous:
            argv.append("--anonymous-read")
        proc = await procs.spawn(network.wrap(0, argv), merge_output=True)
        assert proc.stdout is not None
        lines: list[bytes] = []
        try:
            async with asyncio.timeout(_HUB_START_TIMEOUT):
                while True:
                    line = await proc.stdout.readline()
                    if not line:
                        tail = b"".join(lines[-5:]).decode(errors="replace").strip()
                        raise LabError(f"the hub exited before serving: {tail}")
                    lines.append(line)
                    match = _SERVING.search(line)
                    if match:
                        break
        except TimeoutError as exc:
            raise LabError("the hub did not print its URL in time") from exc
        port_match = re.search(rb":(\d+)/?$", match.group(1))
        if not port_match:
            raise LabError(f"cannot read the hub's port from {line!r}")
        tg.create_task(_drain(proc.stdout, lines))
        return _Hub(proc, int(port_match.group(1)), lines)

    async def _stats(self, procs: Processes, network: Network, port: int) -> int | None:
        # curl inside the hub's own host: loopback there, no route from the lab needed.
        url = f"http://127.0.0.1:{port}/stats"
        proc = await procs.spawn(network.wrap(0, ["curl", "-s", "-m", "2", url]))
        try:
            async with asyncio.timeout(5):
                out, _ = await proc.communicate()
        except TimeoutError:
            return None
        try:
            value = json.loads(out)["bytes_sent"]
        except (ValueError, KeyError, TypeError):
            return None
        return value if isinstance(value, int) else None

    async def _agents(
        self,
        procs: Processes,
        network: Network,
        jobs: Sequence[tuple[int, str, Path, str | None]],
    ) -> list[asyncio.subprocess.Process]:
        """Start one agent per (host, url, out, token) and wait until every one is ready."""
        started = []
        for host, url, out, token in jobs:
            out.parent.mkdir(parents=True, exist_ok=True)
            argv = [self.python, "-m", "hubswarm.lab.agent", "get", url, str(out)]
            if token is not None:
                argv.append(token)
            started.append(await procs.spawn(network.wrap(host, argv), stdin=True))
        try:
            async with asyncio.timeout(_AGENT_START_TIMEOUT):
                for proc in started:
                    assert proc.stdout is not None
                    line = await proc.stdout.readline()
                    if line.strip() != b"ready":
                        assert proc.stderr is not None
                        err = await proc.stderr.read(4096)
                        raise LabError(f"a client agent failed to start: {err.decode()[-300:]}")
        except TimeoutError as exc:
            raise LabError(f"client agents not ready after {_AGENT_START_TIMEOUT:g} s") from exc
        return started

    async def run(self, plan: RunPlan, network: Network, workdir: Path) -> RunResult:
        """Serve the file from host 0 to hosts 1..N; apply the faults; probe access control."""
        scenario = plan.scenario
        name = "payload.bin"
        data = workdir / "hub-data"
        source = data / "files" / name
        sha256 = await asyncio.to_thread(make_payload, source, scenario.file_size, scenario.seed)
        pieces = max(1, math.ceil(scenario.file_size / scenario.piece_size))
        faults: list[FaultEvent] = []
        replicas = [ReplicaSample(0.0, (1,) * pieces)]
        notes = list(network.notes)
        records: dict[int, ClientRecord] = {}
        running: dict[int, asyncio.subprocess.Process] = {}
        killed: set[int] = set()
        last_stats: list[int] = []
        started = time.monotonic()
        security: tuple[SecurityProbe, ...] = ()
        probe = self.probe_security and plan.n == min(scenario.clients)
        async with Processes() as procs, asyncio.TaskGroup() as tg:
            # Everything slow (interpreters starting) happens before t0, concurrently.
            locked = self._lock_hub_data(workdir, source, name) if probe else None
            hubs = [self._start_hub(procs, tg, network, data, anonymous=True)]
            if locked is not None:
                hubs.append(self._start_hub(procs, tg, network, locked[0], anonymous=False))
            started_hubs = await asyncio.gather(*hubs)
            hub = started_hubs[0]
            ports = await network.expose(0, hub.port)
            jobs = []
            for i in range(1, plan.n + 1):
                host, port = ports.address_for(i)
                url = f"http://{host}:{port}/files/{name}"
                jobs.append((i, url, workdir / f"c{i}" / name, None))
            probe_jobs: list[tuple[int, str, Path, str | None]] = []
            if locked is not None:
                # Straight to the locked hub: access control needs no shaping.
                host = network.hosts[0].address if network.mode == "netns" else "127.0.0.1"
                url = f"http://{host}:{started_hubs[1].port}/files/{name}"
                probe_jobs = [
                    (1, url, workdir / "probe" / f"p{k}" / name, token)
                    for k, (_, token, _) in enumerate(locked[1])
                ]
            everyone = await self._agents(procs, network, [*jobs, *probe_jobs])
            agents = everyone[: len(jobs)]
            if locked is not None:
                security = await self._run_probes(
                    everyone[len(jobs) :], locked[1], probe_jobs, scenario.file_size
                )
                started_hubs[1].kill()
            t0 = time.monotonic()
            cpu0 = hostload.sample()
            deadline = t0 + scenario.timeout
            stop = asyncio.Event()

            async def poll_stats() -> None:
                while not stop.is_set():
                    value = await self._stats(procs, network, hub.port)
                    if value is not None:
                        last_stats.append(value)
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(_STATS_INTERVAL):
                            await stop.wait()

            async def client(i: int) -> None:
                proc = agents[i - 1]
                out = jobs[i - 1][2]
                await _sleep_until(t0 + plan.arrivals[i - 1])
                start = time.monotonic() - t0
                running[i] = proc
                assert proc.stdin is not None
                proc.stdin.write(b"go\n")
                await proc.stdin.drain()
                rng = random.Random(f"{scenario.seed}:leave:{i}")
                rate = scenario.churn.random_leave_rate
                leave_at = t0 + start + rng.expovariate(rate) if rate > 0 else math.inf
                error: str | None = None
                left_at: float | None = None
                report: dict[str, object] = {}
                try:
                    async with asyncio.timeout_at(_loop_time(min(deadline, leave_at))):
                        out_bytes, _ = await proc.communicate()
                    report = _last_json(out_bytes)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
                    if leave_at < deadline:
                        error, left_at = "left (churn)", leave_at - t0
                    else:
                        error = "timeout"
                end = time.monotonic() - t0
                running.pop(i, None)
                # The agent's own clock readings exclude pipe and scheduling delays.
                if isinstance(report.get("start"), float):
                    start = float(report["start"]) - t0  # type: ignore[arg-type]
                if isinstance(report.get("end"), float):
                    end = float(report["end"]) - t0  # type: ignore[arg-type]
                if error is None and proc.returncode != 0:
                    error = str(report.get("error") or f"exit {proc.returncode}")[:200]
                    if i in killed:
                        error = "killed (fault)"
                got, ok = await asyncio.to_thread(_check_file, out, sha256)
                if not got:
                    reported = report.get("bytes")
                    got = reported if isinstance(reported, int) else 0
                    got = max(got, await asyncio.to_thread(_partial_bytes, out.parent))
                ok = ok and error is None
                records[i] = ClientRecord(
                    index=i,
                    start=start,
                    end=end if ok else None,
                    bytes_received=got,
                    bytes_from_server=got,
                    verified=ok,
                    error=error if not ok else None,
                    left_at=left_at
                    if left_at is not None
                    else (end if scenario.churn.leave_after_complete is not False else None),
                )

            async def fault(kind: str, at: float, count: int) -> None:
                await _sleep_until(t0 + at)
                if kind == "kill_hub":
                    # A crashed machine: the process dies and nothing more leaves the host
                    # (a killed process's socket buffers would otherwise still drain).
                    hub.kill()
                    await network.isolate(0)
                    replicas.append(ReplicaSample(time.monotonic() - t0, (0,) * pieces))
                    faults.append(FaultEvent(at, kind, f"SIGKILL hub pid {hub.proc.pid}"))
                elif kind == "kill_peers":
                    victims = _kill_clients(running, killed, count)
                    faults.append(FaultEvent(at, kind, f"killed clients {victims}"))
                elif kind == "revoked_token":
                    faults.append(FaultEvent(at, kind, "revoked token probed: see security"))
                else:
                    faults.append(FaultEvent(at, kind, "not applicable to client-server"))

            stats_task = tg.create_task(poll_stats())
            fault_tasks = [tg.create_task(fault(f.kind, f.at, f.count)) for f in scenario.faults]
            cpu_end = await _run_clients(plan.n, client, fault_tasks, stop)
            await stats_task
            if hub.proc.returncode is None:
                value = await self._stats(procs, network, hub.port)
                if value is not None:
                    last_stats.append(value)
            hub.kill()
            await procs.kill_all()
        server_bytes = max(last_stats) if last_stats else None
        if any(f.kind == "kill_hub" for f in faults):
            # /stats counts bytes handed to the kernel when a response ends: a cut response
            # counts either nothing or bytes that died in socket buffers with the host. In
            # client-server every byte a client got came from the hub: count those instead.
            server_bytes = sum(r.bytes_received for r in records.values())
            notes.append(
                "measured: server bytes after kill_hub = bytes the clients received (the hub's "
                "/stats counts bytes handed to the kernel, when a response ends)"
            )
        return RunResult(
            architecture=self.name,
            scenario=scenario.name,
            n=plan.n,
            file_size=scenario.file_size,
            server_upload=scenario.server_upload,
            uploads=plan.uploads,
            downloads=plan.downloads,
            clients=tuple(records[i] for i in sorted(records)),
            server_bytes_sent=server_bytes,
            faults=tuple(faults),
            replicas=tuple(replicas),
            security=security,
            emulation=network.mode,
            pieces=pieces,
            scenario_path=scenario.path,
            wall_time=time.monotonic() - started,
            host_cpu_busy=hostload.busy_fraction(cpu0, cpu_end),
            notes=tuple(notes),
        )

    @staticmethod
    def _lock_hub_data(
        workdir: Path, source: Path, name: str
    ) -> tuple[Path, tuple[tuple[str, str | None, bool], ...]]:
        """A data dir for a hub that requires tokens, and the probe cases against it."""
        data = workdir / "hub-locked"
        target = data / "files" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(source, target)
        valid, revoked = _make_tokens(data)
        cases = (
            ("no token", None, False),
            ("forged token", "forged-" + "0" * 32, False),
            ("revoked token", revoked, False),
            ("valid read token (control)", valid, True),
        )
        return data, cases

    @staticmethod
    async def _run_probes(
        agents: Sequence[asyncio.subprocess.Process],
        cases: Sequence[tuple[str, str | None, bool]],
        jobs: Sequence[tuple[int, str, Path, str | None]],
        size: int,
    ) -> tuple[SecurityProbe, ...]:
        """Let the probe agents go; record what each obtained."""
        for proc in agents:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
        probes = []
        for (label, _, authorized), proc, job in zip(cases, agents, jobs, strict=True):
            try:
                async with asyncio.timeout(_HUB_START_TIMEOUT):
                    out_bytes, _ = await proc.communicate()
            except TimeoutError:
                proc.kill()
                await proc.wait()
                out_bytes = b""
            report = _last_json(out_bytes)
            got = await asyncio.to_thread(_partial_bytes, job[2].parent)
            reported = report.get("bytes")
            got = max(got, reported if isinstance(reported, int) else 0)
            outcome = f"exit {proc.returncode}"
            if report.get("error"):
                outcome += f": {str(report['error'])[:160]}"
            probes.append(SecurityProbe(f"client with {label}", got, size, outcome, authorized))
        return tuple(probes)


def _last_json(out: bytes) -> dict[str, object]:
    for line in reversed(out.decode(errors="replace").splitlines()):
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                return value
    return {}


def _make_tokens(data: Path) -> tuple[str, str]:
    """A valid read token and a revoked one, straight in the hub's token store."""
    store = TokenStore(data)
    _, valid = store.create(Role.parse("read"))
    record, revoked = store.create(Role.parse("read"))
    store.revoke(record.id)
    return valid, revoked


async def _drain(stream: asyncio.StreamReader, lines: list[bytes]) -> None:
    # Keep reading so the server never blocks on a full pipe; keep only the last lines.
    while line := await stream.readline():
        lines.append(line)
        del lines[:-_KEEP_LINES]


def _loop_time(monotonic_at: float) -> float:
    """Convert a time.monotonic() deadline to the event loop's clock."""
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic_at - time.monotonic())


async def _sleep_until(monotonic_at: float) -> None:
    delay = monotonic_at - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


# --- a campaign: many scenarios, every architecture ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Campaign:
    """Everything a ``lab compare`` produced: runs, runs that could not be made, notes."""

    results: tuple[RunResult, ...]
    failures: tuple[RunFailure, ...]
    notes: tuple[str, ...]


def quick_plan(scenario: Scenario) -> Scenario:
    """``--quick``: keep at most three client counts, none above 8."""
    small = tuple(n for n in scenario.clients if n <= 8)[:3] or (min(scenario.clients),)
    return dataclasses.replace(scenario, clients=small)


async def run_scenarios(
    scenarios: Sequence[Scenario],
    *,
    workdir: Path,
    no_netns: bool = False,
    quick: bool = False,
    runners: Mapping[str, ArchitectureRunner] | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> Campaign:
    """Run every plan of every scenario on each of its architectures; never stop at a failure
    of one run (it becomes a RunFailure), but let cancellation through."""
    results: list[RunResult] = []
    failures: list[RunFailure] = []
    notes: list[str] = []
    chosen = dict(runners or {})
    modes = set()
    for scenario in scenarios:
        if quick:
            scenario = quick_plan(scenario)
        mode = resolve_emulation(scenario.emulation, no_netns=no_netns)
        modes.add(mode)
        for plan in scenario.plans():
            for arch in scenario.architectures:
                runner = chosen.setdefault(arch, make_runner(arch))
                label = f"{scenario.name} N={plan.n} {arch} ({mode})"
                if on_progress:
                    on_progress(label)
                folder = workdir / f"{scenario.name}-n{plan.n}-{arch}"
                try:
                    results.append(await run_plan(plan, runner, mode=mode, workdir=folder))
                except LabError as exc:
                    failures.append(
                        RunFailure(arch, scenario.name, plan.n, str(exc), scenario.path)
                    )
                finally:
                    await asyncio.to_thread(shutil.rmtree, folder, True)
    if "netns" in modes:
        notes.append(netem.RATE_NOTE)
        if not await asyncio.to_thread(netem.probe_netem):
            notes.append("netem absent: no delay/loss emulation (bandwidth shaped with htb only)")
    return Campaign(tuple(results), tuple(failures), tuple(notes))


# --- peer-to-peer ------------------------------------------------------------------------------

_TRACKER_URL = re.compile(rb"listening on http://\S+:(\d+)/announce")
_DHT_NODE = re.compile(rb"dht node \S+ listening on udp \S+:(\d+)")
# The lab's tracker re-announce interval (seconds): peers meet within one interval.
_LAB_TRACKER_INTERVAL = 2


@dataclass(slots=True)
class _Infra:
    """Host 0 of a swarm run: the central infrastructure (``kill_hub`` kills it) beside the
    seed peer (which survives ``kill_hub``), and what each client passes to ``fetch``."""

    proc: asyncio.subprocess.Process  # tracker + web seed (hybrid) or DHT bootstrap (p2p)
    tcp_port: int | None  # its TCP port, whose connections die with it (None: UDP only)
    what: str
    seed: asyncio.subprocess.Process
    sources: list[list[str]]


_SHARE_JSON = re.compile(rb'^\{.*"magnet"')
_EVENTS_POLL = 0.2
# ss forgets a socket once it closes: poll the seed's connections often (one ss is ~5 ms).
_SEED_POLL = 0.2


def _read_events(path: Path) -> list[dict[str, object]]:
    """The JSON lines of a ``--events`` log (a torn last line is skipped)."""
    with contextlib.suppress(OSError):
        return _event_lines(path.read_bytes().splitlines())
    return []


def _event_lines(lines: Iterable[bytes]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for line in lines:
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                out.append(value)
    return out


class _EventTail:
    """The lines appended to a growing ``--events`` log since the last ``read_new``.

    The runner watches every client's log five times a second; re-reading whole logs made
    that quadratic in their length (N = 32: ~100 lines each, parsed ~40 times per run, all
    inside the measured time on the same 2 cores as the peers).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._torn = b""  # a last line still being written

    def read_new(self) -> list[dict[str, object]]:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except OSError:
            return []
        self._offset += len(chunk)
        lines = (self._torn + chunk).split(b"\n")
        self._torn = lines.pop()
        return _event_lines(lines)


_SS_ACKED = re.compile(r"bytes_acked:(\d+)")


def parse_ss(text: str, pid: int) -> dict[str, int]:
    """``ss -tinpH`` output -> {"local peer": bytes_acked} for the TCP sockets of ``pid``.

    A socket's line ends with its two addresses and ``users:(...)``; what comes before them
    (``State Recv-Q Send-Q``) depends on the options. Keying on fixed columns took Send-Q
    for an address, so one connection's samples counted as many (26 MB for a 2 MB upload).
    """
    out: dict[str, int] = {}
    current: str | None = None
    for line in text.splitlines():
        if line[:1] not in (" ", "\t"):
            fields = line.split()
            users = next((i for i, f in enumerate(fields) if f.startswith("users:")), 0)
            owned = f"pid={pid}," in line and users >= 2
            current = f"{fields[users - 2]} {fields[users - 1]}" if owned else None
        elif current is not None:
            acked = _SS_ACKED.search(line)
            if acked:
                out[current] = int(acked.group(1))
    return out


def replica_timeline(
    pieces: int,
    have: dict[int, list[tuple[float, int]]],
    gone_at: dict[int, float | None],
    seed_gone_at: float | None,
    times: Sequence[float],
) -> tuple[ReplicaSample, ...]:
    """Live copies of each piece at each time: the seed (until it dies) + peers that hold it
    and are still in the swarm. ``have[i]`` lists (t, piece_index) completions of peer i."""
    samples = []
    for t in times:
        counts = [1 if seed_gone_at is None or t < seed_gone_at else 0] * pieces
        for peer, events in have.items():
            gone = gone_at.get(peer)
            if gone is not None and t >= gone:
                continue
            # A piece logged twice (re-fetched after a bad hash) is still one copy.
            held = {index for at, index in events if at <= t and 0 <= index < pieces}
            for index in held:
                counts[index] += 1
        samples.append(ReplicaSample(t, tuple(counts)))
    return tuple(samples)


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

    def _rates(self, network: Network, up: float, down: float) -> list[str]:
        # Namespaces are shaped by the kernel; on loopback the peer caps itself.
        if network.shaped:
            return []
        out = ["--upload-rate", str(int(up))]
        if math.isfinite(down):
            out += ["--download-rate", str(int(down))]
        return out

    async def _start(
        self,
        procs: Processes,
        tg: asyncio.TaskGroup,
        argv: list[str],
        pattern: re.Pattern[bytes],
        what: str,
    ) -> tuple[asyncio.subprocess.Process, bytes]:
        proc = await procs.spawn(argv, merge_output=True)
        assert proc.stdout is not None
        lines: list[bytes] = []
        try:
            async with asyncio.timeout(_HUB_START_TIMEOUT):
                while True:
                    line = await proc.stdout.readline()
                    if not line:
                        tail = b"".join(lines[-5:]).decode(errors="replace").strip()
                        raise LabError(f"{what} exited before it was ready: {tail}")
                    lines.append(line)
                    if pattern.search(line):
                        break
        except TimeoutError as exc:
            raise LabError(f"{what} was not ready in time") from exc
        tg.create_task(_drain(proc.stdout, lines))
        return proc, line

    def _share_argv(
        self, network: Network, source: Path, workdir: Path, plan: RunPlan
    ) -> list[str]:
        """``hubswarm share`` of the payload on host 0 (the seed peer), without discovery."""
        scenario = plan.scenario
        argv = [self.python, "-m", "hubswarm", "share", str(source)]
        argv += ["--host", network.hosts[0].address, "--port", "0", "--fast-intervals", "--json"]
        argv += [*_DISCOVERY, "--piece-length", str(scenario.piece_size)]
        # BEP 16 initial seeding: the seed sends each piece once and lets the swarm copy it
        # (flash crowd N=8: seed bytes 5.3 -> 4.2 MiB; the benchmark's 1.10 -> 1.05x bound).
        argv += ["--super-seed"]
        argv += ["--events", str(workdir / "seed.events")]
        argv += ["-o", str(workdir / "payload.torrent")]
        return argv

    async def _infra(
        self,
        procs: Processes,
        tg: asyncio.TaskGroup,
        network: Network,
        workdir: Path,
        source: Path,
        plan: RunPlan,
    ) -> _Infra:
        """Host N + 1: a DHT bootstrap node (the swarm's only central piece, BEP 5); host 0:
        the seed peer announcing to it. Every client gets the magnet link and the bootstrap
        address."""
        boot = plan.n + 1
        address = network.hosts[boot].address
        dht_argv = [self.python, "-m", "hubswarm", "dht", "node", "--host", address]
        dht_argv += ["--port", "0"]
        dht, line = await self._start(
            procs, tg, network.wrap(boot, dht_argv), _DHT_NODE, "the DHT bootstrap node"
        )
        port_match = _DHT_NODE.search(line)
        assert port_match is not None
        bootstrap = f"{address}:{int(port_match.group(1))}"
        argv = self._share_argv(network, source, workdir, plan)
        argv += ["--dht-bootstrap", bootstrap]
        argv += self._rates(network, plan.scenario.server_upload, math.inf)
        seed, line = await self._start(procs, tg, network.wrap(0, argv), _SHARE_JSON, "the seed")
        magnet = str(json.loads(line)["magnet"])
        sources = [[magnet, "--dht-bootstrap", bootstrap]] * (plan.n + 1)
        return _Infra(dht, None, f"DHT bootstrap node pid {dht.pid}", seed, sources)

    async def run(self, plan: RunPlan, network: Network, workdir: Path) -> RunResult:
        """Seed from host 0, fetch on hosts 1..N per the arrivals; apply churn and faults."""
        scenario = plan.scenario
        name = "payload.bin"
        source = workdir / "seed" / name
        sha256 = await asyncio.to_thread(make_payload, source, scenario.file_size, scenario.seed)
        pieces = max(1, math.ceil(scenario.file_size / scenario.piece_size))
        leave = scenario.churn.leave_after_complete
        seeding = leave is not True  # False: stay to the end; seconds: stay that long
        faults: list[FaultEvent] = []
        notes = list(network.notes)
        records: dict[int, ClientRecord] = {}
        running: dict[int, asyncio.subprocess.Process] = {}
        killed: set[int] = set()
        corrupt = _corrupt_clients(scenario, plan.n)
        gone_at: dict[int, float | None] = {}
        seed_gone: list[float] = []
        seed_bytes: list[int] = []
        wire_bytes: list[int] = []
        security: tuple[SecurityProbe, ...] = ()
        started = time.monotonic()
        # The outsider needs a way in: after kill_hub (no tracker, no bootstrap node) it
        # would only wait for its timeout; the fault-free scenarios measure access.
        probe = (
            self.probe_security
            and plan.n == min(scenario.clients)
            and not any(f.kind == "kill_hub" for f in scenario.faults)
        )
        async with Processes() as procs, asyncio.TaskGroup() as tg:
            infra = await self._infra(procs, tg, network, workdir, source, plan)
            seed, sources = infra.seed, infra.sources
            notes += infra_notes(self.name, network)
            jobs: list[list[str]] = []
            for i in range(1, plan.n + 1):
                # Long option names: click tries "-o" as a long option first, and its failure
                # builds a did-you-mean list with difflib, on each peer's clock after "go".
                args = ["fetch", *sources[i - 1], "--output", str(workdir / f"c{i}")]
                args += ["--host", network.hosts[i].address, "--port", "0", "--fast-intervals"]
                args += ["--json", "--quiet", "--timeout", f"{scenario.timeout:g}", *_DISCOVERY]
                args += ["--events", str(workdir / f"c{i}.events")]
                args += self._rates(network, plan.uploads[i - 1], plan.downloads[i - 1])
                if seeding:
                    args.append("--seed")
                if i in corrupt:
                    args.append("--corrupt")  # hidden lab flag: flips bytes it uploads
                jobs.append(args)
            outsider_dir = workdir / "outsider"
            if probe:
                jobs.append(["fetch", *sources[-1], "--output", str(outsider_dir), "--host"])
                jobs[-1] += [network.hosts[plan.n].address, "--port", "0", "--fast-intervals"]
                jobs[-1] += ["--json", "--quiet", "--timeout", f"{scenario.timeout:g}", *_DISCOVERY]
            agents = []
            for k, args in enumerate(jobs):
                host = min(k + 1, plan.n)
                argv = [self.python, "-m", "hubswarm.lab.agent", "cli", *args]
                agents.append(await procs.spawn(network.wrap(host, argv), stdin=True))
            try:
                async with asyncio.timeout(_AGENT_START_TIMEOUT):
                    for proc in agents:
                        assert proc.stdout is not None
                        if (await proc.stdout.readline()).strip() != b"ready":
                            raise LabError("a peer agent failed to start")
            except TimeoutError as exc:
                raise LabError(f"peer agents not ready after {_AGENT_START_TIMEOUT:g} s") from exc
            wire_at_t0 = await network.tx_bytes(0)
            t0 = time.monotonic()
            cpu0 = hostload.sample()
            t0_wall = time.time()
            deadline = t0 + scenario.timeout
            stop = asyncio.Event()
            all_done = asyncio.Event()
            completed: set[int] = set()

            acked: dict[str, int] = {}

            async def sample_seed() -> None:
                wire = await network.tx_bytes(0)
                if wire is not None:
                    # netns: host 0's wire counter (sysfs), no process to start five times
                    # a second on the machine being measured.
                    wire_bytes.append(wire)
                    return
                # App mode: the seed's upload is the bytes its peers acknowledged, per TCP
                # connection (kept after a connection closes), read with ss.
                ss = await procs.spawn(network.wrap(0, ["ss", "-tinpH"]))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5):
                        out, _ = await ss.communicate()
                        text = out.decode(errors="replace")
                        for key, value in parse_ss(text, seed.pid).items():
                            acked[key] = max(acked.get(key, 0), value)
                        seed_bytes.append(sum(acked.values()))

            async def poll_seed() -> None:
                while not stop.is_set():
                    await sample_seed()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(_SEED_POLL):
                            await stop.wait()

            async def peer(i: int) -> None:
                proc = agents[i - 1]
                events = workdir / f"c{i}.events"
                await _sleep_until(t0 + plan.arrivals[i - 1])
                running[i] = proc
                assert proc.stdin is not None
                proc.stdin.write(b"go\n")
                await proc.stdin.drain()
                start = time.monotonic() - t0
                rng = random.Random(f"{scenario.seed}:leave:{i}")
                rate = scenario.churn.random_leave_rate
                leave_at = t0 + start + rng.expovariate(rate) if rate > 0 else math.inf
                error: str | None = None
                left: float | None = None
                complete_t: float | None = None
                # Watch the peer's event log: with --seed it never exits on its own.
                tail = _EventTail(events)
                while proc.returncode is None:
                    now = time.monotonic()
                    if now >= deadline:
                        error = "timeout"
                        break
                    if complete_t is None and now >= leave_at:
                        error, left = "left (churn)", now - t0
                        break
                    new = tail.read_new()
                    done_at = [e["t"] for e in new if e.get("event") == "complete"]
                    if complete_t is None and done_at and isinstance(done_at[0], float):
                        complete_t = done_at[0] - t0_wall
                        completed.add(i)
                        if len(completed) == plan.n:
                            await sample_seed()  # while every connection is still open
                            all_done.set()
                    if complete_t is not None:
                        if isinstance(leave, float) and not isinstance(leave, bool):
                            if now - t0 >= complete_t + leave:
                                left = now - t0
                                break
                        elif all_done.is_set() or not seeding:
                            break
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(_EVENTS_POLL):
                            await proc.wait()
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
                running.pop(i, None)
                end = time.monotonic() - t0
                log = await asyncio.to_thread(_read_events, events)
                if complete_t is None:
                    done_at = [e["t"] for e in log if e.get("event") == "complete"]
                    if done_at and isinstance(done_at[0], float):
                        complete_t = done_at[0] - t0_wall
                if i in killed:
                    error = "killed (fault)"
                elif complete_t is None and error is None:
                    error = f"exit {proc.returncode} before completing"
                got, ok = await asyncio.to_thread(_check_file, workdir / f"c{i}" / name, sha256)
                distinct = {e.get("index") for e in log if e.get("event") == "piece"}
                from_peers = scenario.piece_size * len(distinct)
                ok = ok and complete_t is not None
                if not got:
                    got = min(scenario.file_size, from_peers)
                if leave is True and complete_t is not None:
                    left = complete_t
                gone_at[i] = left if left is not None else (None if ok else end)
                records[i] = ClientRecord(
                    index=i,
                    start=start,
                    end=complete_t if ok else None,
                    bytes_received=got,
                    bytes_from_server=0,  # attributed below from the seed's upload
                    bytes_from_peers=got,
                    verified=ok,
                    error=None if ok else (error or "incomplete"),
                    left_at=left,
                )

            async def fault(kind: str, at: float, count: int) -> None:
                await _sleep_until(t0 + at)
                if kind == "kill_hub":
                    # The central infrastructure dies; the seed peer beside it on host 0
                    # lives on (killing it is kill_peers' job).
                    with contextlib.suppress(ProcessLookupError):
                        infra.proc.kill()
                    if infra.tcp_port is not None:
                        await network.cut_port(0, infra.tcp_port)
                    faults.append(
                        FaultEvent(at, kind, f"SIGKILL {infra.what}; the seed peer on host 0 lives")
                    )
                elif kind == "kill_peers":
                    victims = _kill_clients(running, killed, count)
                    faults.append(FaultEvent(at, kind, f"killed peers {victims}"))
                elif kind == "corrupt_peer":
                    pass  # recorded after the run, with what the honest peers saw
                else:
                    faults.append(FaultEvent(at, kind, "not applicable to a swarm (no tokens)"))

            seed_task = tg.create_task(poll_seed())
            fault_tasks = [tg.create_task(fault(f.kind, f.at, f.count)) for f in scenario.faults]
            cpu_end = await _run_clients(plan.n, peer, fault_tasks, stop)
            await seed_task
            if seed.returncode is None:
                await sample_seed()  # last reading, before the outsider joins
            if probe and seed.returncode is None:
                security = await self._outsider(agents[-1], outsider_dir / name, scenario)
            await procs.kill_all()
        received = sum(r.bytes_received for r in records.values())
        server_bytes = max(seed_bytes) if seed_bytes else None
        if wire_bytes and wire_at_t0 is not None:
            # netns: what left host 0 on the wire (the seed), in bytes of payload as the
            # clients count theirs (the frames' headers taken off).
            server_bytes = netem.payload_of_wire(max(wire_bytes) - wire_at_t0)
        if server_bytes is not None and received > 0:
            # Which peer sent which bytes is not logged: attribute the seed's upload
            # proportionally to what each client received.
            share = min(1.0, server_bytes / received)
            records = {
                i: dataclasses.replace(
                    r,
                    bytes_from_server=round(r.bytes_received * share),
                    bytes_from_peers=r.bytes_received - round(r.bytes_received * share),
                )
                for i, r in records.items()
            }
            notes.append(
                "measured: server bytes = bytes that left host 0 (netns wire counter, less the "
                "frames' headers: x 1448/1514, read after the last client completed, so what "
                "host 0's link still held then counts too; else TCP bytes the seed's peers "
                "acknowledged, ss every 0.2 s); per-client split attributed proportionally"
            )
        if corrupt:
            faults.append(_corrupt_report(scenario, workdir, records, corrupt))
        have: dict[int, list[tuple[float, int]]] = {}
        for i in records:
            have[i] = []
            for e in _read_events(workdir / f"c{i}.events"):
                t, index = e.get("t"), e.get("index")
                if e.get("event") == "piece" and isinstance(t, float) and isinstance(index, int):
                    have[i].append((t - t0_wall, index))
        ends = [r.end for r in records.values() if r.end is not None]
        horizon = max([*ends, *(seed_gone or [0.0]), 0.1])
        times = [horizon * k / 10 for k in range(11)]
        replicas = replica_timeline(
            pieces, have, gone_at, seed_gone[0] if seed_gone else None, times
        )
        return RunResult(
            architecture=self.name,
            scenario=scenario.name,
            n=plan.n,
            file_size=scenario.file_size,
            server_upload=scenario.server_upload,
            uploads=plan.uploads,
            downloads=plan.downloads,
            clients=tuple(records[i] for i in sorted(records)),
            server_bytes_sent=server_bytes,
            faults=tuple(faults),
            replicas=replicas,
            first_copy_at=first_copy_time(pieces, have),
            security=security,
            emulation=network.mode,
            pieces=pieces,
            scenario_path=scenario.path,
            wall_time=time.monotonic() - started,
            host_cpu_busy=hostload.busy_fraction(cpu0, cpu_end),
            notes=tuple(notes),
        )

    @staticmethod
    async def _outsider(
        proc: asyncio.subprocess.Process, out: Path, scenario: Scenario
    ) -> tuple[SecurityProbe, ...]:
        """A peer with nothing but the magnet link (no account, no token) joins after the run."""
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
        try:
            async with asyncio.timeout(scenario.timeout):
                await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
        got, _ = await asyncio.to_thread(_check_file, out, "")
        return (
            SecurityProbe(
                "peer with only the magnet link", got, scenario.file_size, f"exit {proc.returncode}"
            ),
        )


class HybridRunner(SwarmRunner):
    """Hybrid: the hub serves the file as a BEP 19 web seed, host 0 also runs the tracker, and
    the peers swap pieces among themselves (``hubswarm fetch`` of a .torrent with a url-list)."""

    name = "hybrid"
    extra_hosts = 0  # the hub is the tracker: host 0, as the client-server hub

    async def _infra(
        self,
        procs: Processes,
        tg: asyncio.TaskGroup,
        network: Network,
        workdir: Path,
        source: Path,
        plan: RunPlan,
    ) -> _Infra:
        """Host 0: the hub (web seed + tracker at /announce, one process) and a seed peer
        (``hubswarm share``) on the same host; one .torrent per client whose web seed is that
        client's (shaped) path to the hub. The url-list sits outside ``info``: one info-hash."""
        from hubswarm.proto.metainfo import build_metainfo
        from hubswarm.swarm.maketorrent import create_torrent

        data = workdir / "hub-data"
        target = data / "files" / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(os.link, source, target)
        extra = ["--tracker-interval", str(_LAB_TRACKER_INTERVAL)]
        hub = await ClientServerRunner(python=self.python)._start_hub(
            procs, tg, network, data, anonymous=True, extra=extra
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
        argv = [*self._share_argv(network, source, workdir, plan), "--tracker", tracker_url]
        argv += self._rates(network, half, math.inf)
        seed, line = await self._start(procs, tg, network.wrap(0, argv), _SHARE_JSON, "the seed")
        if info.info_hash.hex() not in str(json.loads(line)["magnet"]).lower():
            raise LabError("the seed peer's torrent differs from the hub's (info-hash)")
        sources = []
        for i in range(1, plan.n + 2):
            host, port = ports.address_for(min(i, plan.n))
            url = f"http://{host}:{port}/files/{source.name}"
            torrent = workdir / f"t{i}.torrent"
            body = build_metainfo(info, [[tracker_url]], url_list=[url])
            await asyncio.to_thread(torrent.write_bytes, body)
            sources.append([str(torrent), "--webseed-mode", "always"])
        return _Infra(
            hub.proc, hub.port, f"hub pid {hub.proc.pid} (tracker + web seed)", seed, sources
        )


def infra_notes(arch: str, network: Network) -> list[str]:
    """What host 0 runs in a swarm run (emulation facts for the report's top)."""
    if arch == "hybrid":
        out = ["hybrid: host 0 runs the hub (tracker + web seed, one process) and a seed peer"]
        if not network.shaped:
            out.append(
                "hybrid, app mode: the hub's proxy and the seed peer each cap at u_s / 2 "
                "(a fixed split of host 0's u_s); netns shares one u_s link"
            )
        return out
    return [
        "p2p: host 0 runs the seed peer; a DHT bootstrap node (the only central piece) runs "
        "on an unshaped host of its own, as router.bittorrent.com is not on the seed's link; "
        "peers find each other through it and the DHT only (no peer exchange)"
    ]


def _corrupt_clients(scenario: Scenario, n: int) -> set[int]:
    """The clients that serve corrupt data (the last ``count`` of them, per corrupt_peer)."""
    count = sum(f.count for f in scenario.faults if f.kind == "corrupt_peer")
    return set(range(max(1, n - count + 1), n + 1)) if count else set()


def _corrupt_report(
    scenario: Scenario, workdir: Path, records: Mapping[int, ClientRecord], corrupt: set[int]
) -> FaultEvent:
    """What the honest peers saw of the corrupt ones: bad pieces, bans, verified downloads."""
    bad = banned = 0
    for i in records:
        if i in corrupt:
            continue
        for e in _read_events(workdir / f"c{i}.events"):
            bad += e.get("event") == "bad_piece"
            banned += e.get("event") == "banned"
    honest = [r for i, r in records.items() if i not in corrupt]
    ok = sum(r.verified for r in honest)
    at = min((f.at for f in scenario.faults if f.kind == "corrupt_peer"), default=0.0)
    return FaultEvent(
        at,
        "corrupt_peer",
        f"peers {sorted(corrupt)} flip bytes they upload: {bad} bad pieces detected, "
        f"{banned} bans by honest peers, {ok}/{len(honest)} honest clients verified",
    )
