"""The peers of a swarm in sim (p2p and hybrid): arrivals, churn, faults, what they logged.

Each client is ``hubswarm.swarm.api.fetch`` (the code of ``hubswarm fetch``) on its host,
with the lab's timing and no peer exchange, as the netns runner starts it. It logs its
events (``piece``, ``bad_piece``, ``banned``, ...) in the run's own time, and the run reads
them as the netns runner reads its peers' logs: replica counts, the first full copy, the
corrupt peers' outcome. The architecture's module supplies the :class:`Infrastructure`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from hubswarm.errors import HubswarmError
from hubswarm.lab.accounting import (
    attribute_server_bytes,
    corrupt_clients,
    corrupt_event,
    replica_samples,
)
from hubswarm.lab.events import Event, piece_arrivals, read_events
from hubswarm.lab.fleet import fault_event, leave_after
from hubswarm.lab.metrics import (
    ClientRecord,
    FaultEvent,
    RunResult,
    SecurityProbe,
    first_copy_time,
)
from hubswarm.lab.payload import PAYLOAD_NAME, check_file
from hubswarm.lab.replay import with_tracks
from hubswarm.lab.scenario import Fault, Scenario
from hubswarm.lab.sim.common import ERROR_CHARS, World, host_ip
from hubswarm.lab.timing import lab_timing
from hubswarm.swarm import api
from hubswarm.swarm.config import SessionConfig, make_peer_id

__all__ = ["Infrastructure", "SimSwarm", "peer_config"]

_ATTRIBUTION_NOTE = (
    "measured: server bytes = bytes that left host 0 (the model's link counter, payload); "
    "per-client split attributed proportionally"
)


@dataclass(slots=True)
class Infrastructure:
    """What the swarm's centre gives its clients, and how ``kill_hub`` kills it."""

    source: str  # what each client fetches: a magnet link or a .torrent path
    kill_hub: Callable[[], Awaitable[str]]  # kills the central service; returns the fault's detail
    dht_bootstrap: list[tuple[str, int]] = field(default_factory=list)
    webseed_mode: str | None = None  # None: the session's default


def peer_config(scenario: Scenario, index: int) -> SessionConfig:
    """A peer's config as the netns runner's ``--fast-intervals --no-pex``, with its peer id
    and random draws fixed by the scenario's seed and the peer's index (0: the seed)."""
    rng = random.Random(f"{scenario.seed}:peer:{index}")
    config = SessionConfig(peer_id=make_peer_id(rng), rng_seed=rng.getrandbits(64))
    config.use_pex = False  # the tracker (hybrid) or the DHT (p2p) only (lab.runners.swarm)
    return lab_timing(config)


class SimSwarm:
    """Clients 1..N of one swarm run: start them, fault them, record them."""

    def __init__(self, world: World, workdir: Path, sha256: str) -> None:
        self.world = world
        self.workdir = workdir
        self.sha256 = sha256
        self.pieces: dict[bytes, bytes] = {}  # SessionConfig.piece_pool, shared by the clients
        scenario = world.plan.scenario
        self.corrupt = corrupt_clients(scenario, world.plan.n)
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.starts: dict[int, float] = {}
        self.done_at: dict[int, float] = {}
        self.ended_at: dict[int, float] = {}
        self.errors: dict[int, tuple[str, float | None]] = {}  # error, left_at
        self.left_at: dict[int, float] = {}
        self.killed: dict[int, float] = {}
        self.logs: dict[int, list[Event]] = {}
        self.security: tuple[SecurityProbe, ...] = ()
        self.server_bytes = 0
        self._settled = asyncio.Event()

    async def run(self, infra: Infrastructure) -> None:
        """Every client at its arrival, the faults at their times; return when every client
        has finished or given up (those that seed on are cancelled then)."""
        n = self.world.plan.n
        async with asyncio.TaskGroup() as group:
            for i in range(1, n + 1):
                task = self.tasks[i] = group.create_task(self._client(i, infra))
                task.add_done_callback(lambda _: self._check())

            async def apply(fault: Fault) -> FaultEvent | None:
                return await self._apply(fault, infra)

            faults = group.create_task(self.world.run_faults(apply))
            await self._settled.wait()
            # Host 0's upload for the clients: read before the outsider joins (as netns).
            self.server_bytes = self.world.network.tx_bytes(host_ip(0))
            scenario = self.world.plan.scenario
            # As the netns runner: an outsider tries once per scenario (smallest N), while
            # the swarm still seeds; after kill_hub it would only wait for its timeout.
            if n == min(scenario.clients) and not any(
                f.kind == "kill_hub" for f in scenario.faults
            ):
                self.security = await self._outsider(infra)
            for task in (*self.tasks.values(), faults):
                task.cancel()

    async def _outsider(self, infra: Infrastructure) -> tuple[SecurityProbe, ...]:
        """A peer with nothing but what a client was given (no account, no token) joins
        on the last client's host; what it obtained."""
        world, scenario = self.world, self.world.plan.scenario
        n = world.plan.n
        out = self.workdir / "outsider"
        try:
            async with asyncio.timeout(scenario.timeout):
                await api.fetch(
                    infra.source,
                    out,
                    config=peer_config(scenario, n + 1),
                    host=host_ip(n),
                    dht_bootstrap=infra.dht_bootstrap,
                    network=world.network.host(host_ip(n)),
                    clock=world.clock,
                )
            outcome = "complete"
        except TimeoutError:
            outcome = "timeout"
        except HubswarmError as exc:
            outcome = str(exc)[:ERROR_CHARS]
        got, _ = check_file(out / PAYLOAD_NAME, "")
        probe = SecurityProbe("peer with only the magnet link", got, scenario.file_size, outcome)
        return (probe,)

    def _check(self) -> None:
        # Settled: every client ended, or completed and seeding to the end of the run (those
        # that seed for a while first leave, as the netns runner waits for them).
        seeds_on = self.world.plan.scenario.churn.leave_after_complete is False
        if all(task.done() or (seeds_on and i in self.done_at) for i, task in self.tasks.items()):
            self._settled.set()

    def _events(self, index: int) -> Path:
        return self.workdir / f"c{index}.events"

    async def _client(self, index: int, infra: Infrastructure) -> None:
        """Arrive, fetch, seed or leave as the churn says, or give up at the timeout."""
        world = self.world
        scenario = world.plan.scenario
        await world.sleep_until(world.plan.arrivals[index - 1])
        start = self.starts[index] = world.now()
        leave_at = start + leave_after(scenario, index)
        leave = scenario.churn.leave_after_complete
        linger = leave if isinstance(leave, float) and not isinstance(leave, bool) else None
        config = peer_config(scenario, index)
        config.corrupt_uploads = index in self.corrupt
        config.piece_pool = self.pieces  # one copy of each verified piece for all clients
        if infra.webseed_mode is not None:
            config.webseed_mode = infra.webseed_mode
        until = min(scenario.timeout, leave_at)
        try:
            async with asyncio.timeout_at(world.t0 + until) as scope:

                def completed(_: api.FetchResult) -> None:
                    # Random leaving is for the incomplete; the complete seed on to the end
                    # of the run or for ``linger`` seconds.
                    now = self.done_at[index] = world.now()
                    self._check()
                    stop = scenario.timeout if linger is None else now + linger
                    scope.reschedule(world.t0 + min(scenario.timeout, stop))

                await api.fetch(
                    infra.source,
                    self.workdir / f"c{index}",
                    config=config,
                    host=host_ip(index),
                    seed_after=leave is not True,
                    dht_bootstrap=infra.dht_bootstrap,
                    on_complete=completed,
                    events_path=self._events(index),
                    network=world.network.host(host_ip(index)),
                    clock=world.clock,
                )
            if leave is True:
                self.left_at[index] = world.now()
        except TimeoutError:
            if index in self.done_at:
                if linger is not None and world.now() < scenario.timeout:
                    self.left_at[index] = world.now()
            elif leave_at < scenario.timeout:
                self.errors[index] = ("left (churn)", leave_at)
            else:
                self.errors[index] = ("timeout", None)
        except HubswarmError as exc:
            self.errors[index] = (str(exc)[:ERROR_CHARS], None)
        self.ended_at[index] = world.now()

    async def _apply(self, fault: Fault, infra: Infrastructure) -> FaultEvent | None:
        match fault.kind:
            case "kill_hub":
                # The central service dies; the seed peer on host 0 lives on.
                return fault_event(fault, await infra.kill_hub())
            case "kill_peers":
                running = [i for i, t in sorted(self.tasks.items()) if i in self.starts]
                victims = tuple(i for i in running if not self.tasks[i].done())[: fault.count]
                for i in victims:
                    self.world.network.crash(host_ip(i))
                    self.tasks[i].cancel()
                    self.killed[i] = self.world.now()
                return fault_event(fault, f"crashed peers {list(victims)}", victims=victims)
            case "corrupt_peer":
                return None  # the corrupt peers run from the start: recorded after the run
            case _:
                return fault_event(fault, "not applicable to a swarm (no tokens)", applied=False)

    def _record(self, index: int) -> ClientRecord:
        scenario = self.world.plan.scenario
        log = self.logs[index] = read_events(self._events(index))
        got, ok = check_file(self.workdir / f"c{index}" / PAYLOAD_NAME, self.sha256)
        end = self.done_at.get(index)
        ok = ok and end is not None
        if not got:
            distinct = {e.get("index") for e in log if e.get("event") == "piece"}
            got = min(scenario.file_size, scenario.piece_size * len(distinct))
        error, left = self.errors.get(index, ("incomplete", None))
        if index in self.killed:
            error, left = "killed (fault)", self.killed[index]
            ok = False
        left = self.left_at.get(index, left)
        return ClientRecord(
            index=index,
            start=self.starts.get(index, self.world.plan.arrivals[index - 1]),
            end=end if ok else None,
            bytes_received=got,
            bytes_from_server=0,  # attributed in result() from host 0's counter
            bytes_from_peers=got,
            verified=ok,
            error=None if ok else error,
            left_at=left,
        )

    def result(self, architecture: str, notes: list[str]) -> RunResult:
        """The run's records, server bytes attributed, replicas, first copy, corrupt peers."""
        world, scenario = self.world, self.world.plan.scenario
        records = {i: self._record(i) for i in range(1, world.plan.n + 1)}
        if sum(r.bytes_received for r in records.values()) > 0:
            records = attribute_server_bytes(records, self.server_bytes)
            notes = [*notes, _ATTRIBUTION_NOTE]
        if self.corrupt:
            world.faults.append(corrupt_event(scenario, self.corrupt, records, self.logs))
        # Event logs are stamped in seconds since t = 0 (the world's clock).
        have = {i: piece_arrivals(self.logs[i], 0.0) for i in records}
        gone_at = {
            i: r.left_at
            if r.left_at is not None
            else (None if r.verified else self.ended_at.get(i))
            for i, r in records.items()
        }
        ends = [r.end for r in records.values() if r.end is not None]
        result = world.result(
            architecture,
            list(records.values()),
            replica_samples(scenario.pieces, have, gone_at, ends),
            notes,
            first_copy_at=first_copy_time(scenario.pieces, have),
            security=self.security,
            server_bytes=self.server_bytes,
        )
        return with_tracks(result, self.logs, 0.0, seed={host_ip(0)})
