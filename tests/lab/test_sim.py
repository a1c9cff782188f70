"""Sim runs (emulation "sim"): the real hub and clients on the modelled network, virtual time."""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from hubswarm.cli import cli as cli_main
from hubswarm.errors import LabError, ScenarioError
from hubswarm.lab import netem
from hubswarm.lab.bounds import d_cs, d_p2p
from hubswarm.lab.scenario import parse_scenario
from hubswarm.lab.sim import run_sim
from hubswarm.lab.validate import format_rows, validate

MIB = 1024 * 1024
_BASE: dict[str, Any] = {
    "name": "sim-test",
    "clients": 4,
    "file_size": "1MiB",
    "server_upload": "1MiB",
    "client_upload": "1MiB",
    "client_download": "4MiB",
    "architectures": ["client-server"],
    "timeout": 600,
    "seed": 1,
}


def _plan(n: int, **fields: Any) -> Any:
    return parse_scenario({**_BASE, "clients": n, **fields}).plans()[0]


@pytest.mark.parametrize("n", [1, 4, 16])
def test_client_server_in_sim_meets_its_bound_closely(n: int, tmp_path: Path) -> None:
    plan = _plan(n)
    result = run_sim(plan, "client-server", tmp_path)
    assert result.emulation == "sim"
    assert all(c.complete for c in result.clients)
    makespan = max(c.end for c in result.clients if c.end is not None)
    bound = d_cs(n, MIB, MIB, plan.d_min)
    # Never below the bound; above it by a few round trips of start-up only.
    assert bound <= makespan <= bound * 1.05 + 0.1
    # The hub sent each client its copy (and no more than a retransmission's worth extra).
    assert n * MIB <= (result.server_bytes_sent or 0) <= n * MIB * 1.01


def test_a_sim_run_is_a_function_of_its_plan(tmp_path: Path) -> None:
    plan = _plan(6, arrivals={"kind": "poisson", "rate": 4.0})
    a = run_sim(plan, "client-server", tmp_path / "a")
    b = run_sim(plan, "client-server", tmp_path / "b")
    assert [(c.start, c.end) for c in a.clients] == [(c.start, c.end) for c in b.clients]
    assert a.server_bytes_sent == b.server_bytes_sent


def test_kill_hub_in_sim_stops_every_client(tmp_path: Path) -> None:
    plan = _plan(4, faults=[{"kind": "kill_hub", "at": 1.0}], timeout=30)
    result = run_sim(plan, "client-server", tmp_path)
    assert not any(c.complete for c in result.clients)
    assert [f.kind for f in result.faults] == ["kill_hub"]
    # Four clients sharing 1 MiB/s for a second got about 1 MiB between them.
    got = sum(c.bytes_received for c in result.clients)
    assert got <= 1.2 * MIB


def test_sim_takes_less_wall_time_than_the_time_it_simulates(tmp_path: Path) -> None:
    plan = _plan(8, file_size="4MiB")
    wall0 = time.perf_counter()
    result = run_sim(plan, "client-server", tmp_path)
    wall = time.perf_counter() - wall0
    makespan = max(c.end for c in result.clients if c.end is not None)
    assert makespan > 30.0  # 8 x 4 MiB through 1 MiB/s
    assert wall < makespan / 3


def test_sim_refuses_an_architecture_it_cannot_run(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="cannot run"):
        run_sim(_plan(2), "nonesuch", tmp_path)


def test_latency_loss_and_queue_are_honoured_in_sim(tmp_path: Path) -> None:
    near = run_sim(_plan(4), "client-server", tmp_path / "near")
    far = run_sim(_plan(4, latency=0.1), "client-server", tmp_path / "far")
    lossy = run_sim(_plan(4, latency=0.05, loss=0.02), "client-server", tmp_path / "lossy")

    def makespan(result: Any) -> float:
        assert all(c.complete for c in result.clients)
        return max(c.end for c in result.clients)

    # 200 ms round trips cost a few of them (connect, request, slow start); loss costs more.
    assert makespan(near) + 0.4 < makespan(far) < makespan(near) + 3.0
    assert makespan(lossy) > makespan(near)
    # Lost packets were sent again: the server sent more than the four copies.
    assert (lossy.server_bytes_sent or 0) > 4 * MIB


def test_scenarios_ask_for_sim_where_only_sim_can_honour_them() -> None:
    assert parse_scenario({**_BASE, "latency": 0.05}).needs_sim
    assert not parse_scenario(_BASE).needs_sim
    for emulation in ("netns", "app"):
        with pytest.raises(ScenarioError, match="need emulation"):
            parse_scenario({**_BASE, "latency": 0.05, "emulation": emulation})
    with pytest.raises(ScenarioError, match="more than 256 clients"):
        parse_scenario({**_BASE, "clients": 1000})
    many = parse_scenario({**_BASE, "clients": 1000, "emulation": "sim"})
    assert many.clients == (1000,)
    uniform = parse_scenario({**_BASE, "latency": {"dist": "uniform", "min": 0.01, "max": 0.15}})
    drawn = uniform.latency.sample(random.Random(1), 100)
    assert 0.01 <= min(drawn) < max(drawn) <= 0.15
    for bad in ({"loss": 0.9}, {"latency": 5}, {"queue": "1KiB"}):
        with pytest.raises(ScenarioError):
            parse_scenario({**_BASE, **bad})


def test_lab_run_with_sim_writes_a_report_of_sim_runs(tmp_path: Path) -> None:
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(
        'name = "tiny"\nclients = [2, 4]\nfile_size = "256KiB"\nserver_upload = "1MiB"\n'
        'client_upload = "1MiB"\nclient_download = "4MiB"\narchitectures = ["client-server"]\n'
    )
    result = CliRunner().invoke(
        cli_main, ["lab", "run", str(scenario), "--sim", "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    runs = json.loads(next((tmp_path / "out").glob("*/runs.json")).read_text())
    results = runs["runs"]
    assert [r["emulation"] for r in results] == ["sim", "sim"]
    assert [r["n"] for r in results] == [2, 4]


@pytest.mark.netns
@pytest.mark.skipif(
    os.geteuid() != 0 or not netem.netns_available(), reason="needs root and ip netns"
)
async def test_validate_sets_the_model_beside_the_kernel() -> None:
    scenario = parse_scenario({**_BASE, "clients": [2], "file_size": "256KiB", "timeout": 60})
    rows = await validate(scenario, runs=1)
    assert [(r.architecture, r.n) for r in rows] == [("client-server", 2)]
    (row,) = rows
    assert len(row.netns) == 1
    assert len(row.sim) == 1
    # Two clients share 1 MiB/s for 256 KiB each: 0.5 s. The model (virtual time) gives that
    # whatever the host's load. The kernel can beat it only by htb's burst (its bucket starts
    # full and drains at line rate; one CI run measured 0.489 s), so the netns side is held to
    # within 10 % below: enough to catch a link that is not shaped at all. How close the two are
    # on a quiet host is a measurement (docs/sim.md), not an assertion: a busy host stretches
    # the netns side.
    assert 0.5 <= row.sim[0] < 0.55
    assert row.netns[0] >= 0.45
    assert row.ratio == pytest.approx(row.sim[0] / row.netns[0])
    assert format_rows(rows)[0][:2] == ("client-server", "2")


def test_a_swarm_in_sim_meets_its_bound_with_the_seed_sending_about_one_copy(
    tmp_path: Path,
) -> None:
    plan = _plan(
        4, file_size="1536KiB", client_download="16MiB", architectures=["p2p"], timeout=120
    )
    result = run_sim(plan, "p2p", tmp_path)
    assert result.emulation == "sim"
    assert all(c.complete for c in result.clients)
    makespan = max(c.end for c in result.clients if c.end is not None)
    bound = d_p2p(4, 1.5 * MIB, MIB, plan.uploads, plan.d_min)
    assert bound <= makespan <= 1.3 * bound
    # Super-seeding: the seed's host sends about one copy, the peers the rest.
    assert 1.5 * MIB <= (result.server_bytes_sent or 0) <= 1.5 * 1.5 * MIB
    assert sum(c.bytes_from_server for c in result.clients) == pytest.approx(
        result.server_bytes_sent, abs=4
    )


def test_a_swarm_in_sim_is_a_function_of_its_plan(tmp_path: Path) -> None:
    plan = _plan(3, file_size="512KiB", client_download="16MiB", architectures=["p2p"])
    a = run_sim(plan, "p2p", tmp_path / "a")
    b = run_sim(plan, "p2p", tmp_path / "b")
    assert [c.end for c in a.clients] == [c.end for c in b.clients]
    assert all(c.complete for c in a.clients)
    assert a.server_bytes_sent == b.server_bytes_sent


def test_client_server_in_sim_probes_access_control(tmp_path: Path) -> None:
    result = run_sim(_plan(2, file_size="256KiB"), "client-server", tmp_path)
    got = {p.description: (p.bytes_obtained, p.authorized) for p in result.security}
    assert got == {
        "client with no token": (0, False),
        "client with forged token": (0, False),
        "client with revoked token": (0, False),
        "client with valid read token (control)": (256 * 1024, True),
    }
    # The probes came after the run, from hosts of their own: host 0 sent the two copies.
    assert 2 * 256 * 1024 <= (result.server_bytes_sent or 0) <= 2 * 256 * 1024 * 1.01
