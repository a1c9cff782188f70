"""The fleet without an architecture: shell processes stand in for the agents."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

from hubswarm.lab import hostload
from hubswarm.lab.emulation import open_network
from hubswarm.lab.fleet import Fleet, Poller, Released, leave_after
from hubswarm.lab.metrics import ClientRecord, FaultEvent
from hubswarm.lab.processes import Processes
from hubswarm.lab.scenario import Fault, Scenario, parse_scenario


def scenario(**over: object) -> Scenario:
    data: dict[str, object] = {
        "name": "fleet",
        "clients": 3,
        "file_size": "1MiB",
        "server_upload": "1MiB",
        "client_upload": "1MiB",
        "client_download": "1MiB",
    }
    data.update(over)
    return parse_scenario(data)


def test_churn_draws_depend_on_the_seed_and_the_index_only() -> None:
    churn = {"random_leave_rate": 0.5}
    draws = [leave_after(scenario(churn=churn), i) for i in (1, 2, 3)]
    assert draws == [leave_after(scenario(churn=churn, clients=[3, 9]), i) for i in (1, 2, 3)]
    assert draws != [leave_after(scenario(churn=churn, seed=2), i) for i in (1, 2, 3)]
    assert len(set(draws)) == 3
    assert all(0 < d < math.inf for d in draws)
    assert leave_after(scenario(), 1) == math.inf  # no churn: never leaves


async def test_go_faults_pollers_and_the_result() -> None:
    # Flash crowd of 3; kill_peers takes 2 at 0.05 s; the third is stopped at 0.3 s.
    plan = scenario(faults=[{"kind": "kill_peers", "at": 0.05, "count": 2}]).plans()[0]
    released: list[Released] = []
    samples: list[float] = []
    async with open_network(plan, "app") as network, Processes() as procs:
        fleet = Fleet(plan, network, procs)
        for _ in range(plan.n):
            # An agent that is ready at once and then waits for its end.
            proc = await procs.spawn(["/bin/sh", "-c", "echo ready; exec cat"], stdin=True)
            assert proc.stdout is not None
            assert await proc.stdout.readline() == b"ready\n"
            fleet.agents.append(proc)

        async def watch(client: Released) -> ClientRecord:
            released.append(client)
            await client.proc.wait()
            end = await fleet.finish(client)
            return ClientRecord(client.index, client.start, end, 0, 0)

        async def apply(fault: Fault) -> FaultEvent:
            return fleet.kill_clients(fault, "peers")

        async def sample() -> None:
            samples.append(fleet.now())

        async def stop_the_last() -> None:
            await fleet.sleep_until(0.3)
            fleet.agents[2].kill()

        fleet.begin()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(stop_the_last())
            records = await fleet.run(watch, apply, [Poller(0.05, sample)])
        result = fleet.result(
            "test", records, server_bytes_sent=None, replicas=(), security=(), notes=()
        )
    assert sorted(c.index for c in released) == [1, 2, 3]
    assert all(0 <= c.start < 0.05 for c in released)  # released at t = 0 (flash crowd)
    (event,) = result.faults
    assert (event.kind, event.at, event.count, event.applied) == ("kill_peers", 0.05, 2, True)
    assert event.victims == (1, 2)
    assert fleet.killed == {1, 2}
    assert event.detail == "killed peers [1, 2]"
    ends = {c.index: c.end for c in result.clients}
    assert ends[1] is not None
    assert ends[3] is not None
    assert ends[1] < ends[3]  # killed by the fault, before the last one was stopped
    assert ends[3] >= 0.3
    # The poller sampled from t = 0 until the last client ended, every 0.05 s.
    assert samples[0] < 0.05
    assert 0.25 < samples[-1] <= ends[3] + 0.2
    assert [c.index for c in result.clients] == [1, 2, 3]
    assert (result.architecture, result.n, result.emulation) == ("test", 3, "app")
    assert result.pieces == plan.scenario.pieces


async def test_client_cpu_is_counted_from_go_to_the_end() -> None:
    # Agents that burn CPU before `ready` (not counted) and after `go` (counted), then wait
    # for the lab to end them, as the swarm's seeding peers do.
    plan = scenario(clients=2).plans()[0]
    burn = "i=0; while [ $i -lt 40000 ]; do i=$((i+1)); done"
    agent = f"{burn}; echo ready; read go; {burn}; exec sleep 60"
    async with open_network(plan, "app") as network, Processes() as procs:
        fleet = Fleet(plan, network, procs)
        for _ in range(plan.n):
            proc = await procs.spawn(["/bin/sh", "-c", agent], stdin=True)
            assert proc.stdout is not None
            assert await proc.stdout.readline() == b"ready\n"
            fleet.agents.append(proc)
        before = [hostload.process_cpu(p.pid) for p in fleet.agents]

        async def watch(client: Released) -> ClientRecord:
            # The burn after `go` is over once the shell runs sleep (its exec).
            for _ in range(2000):
                if (Path(f"/proc/{client.proc.pid}/cmdline").read_bytes()).startswith(b"sleep"):
                    break
                await asyncio.sleep(0.01)
            end = await fleet.finish(client)
            return ClientRecord(client.index, client.start, end, 0, 0)

        async def apply(fault: Fault) -> FaultEvent | None:
            return None

        fleet.begin()
        records = await fleet.run(watch, apply)
        result = fleet.result(
            "test", records, server_bytes_sent=None, replicas=(), security=(), notes=()
        )
    assert sorted(fleet.client_cpu) == [1, 2]
    for i, (user, system) in fleet.client_cpu.items():
        pre = before[i - 1]
        assert pre is not None
        assert pre[0] > 0
        assert user > 0
        assert system >= 0
    (note,) = [n for n in result.notes if "client CPU" in n]
    assert note.startswith("measured: client CPU from go to end")
    assert "2 processes" in note
