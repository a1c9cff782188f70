"""Sim runs (emulation "sim"): the real hub and clients on the modelled network, virtual time."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from hubswarm.errors import LabError
from hubswarm.lab.bounds import d_cs
from hubswarm.lab.scenario import parse_scenario
from hubswarm.lab.sim import run_sim

MIB = 1024 * 1024


def _plan(n: int, **fields: Any) -> Any:
    data: dict[str, Any] = {
        "name": "sim-test",
        "clients": n,
        "file_size": "1MiB",
        "server_upload": "1MiB",
        "client_upload": "1MiB",
        "client_download": "4MiB",
        "architectures": ["client-server"],
        "timeout": 600,
        "seed": 1,
        **fields,
    }
    return parse_scenario(data).plans()[0]


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
