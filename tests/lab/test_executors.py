"""A campaign's sim runs through an executor: the same runs whoever runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hubswarm.errors import LabError
from hubswarm.lab import executors
from hubswarm.lab.campaign import Campaign, run_scenarios
from hubswarm.lab.executors import Outcome, SimJob, execute
from hubswarm.lab.metrics import RunFailure, RunResult
from hubswarm.lab.scenario import parse_scenario

# Small and quick: 2 N x 2 latencies x 2 architectures = 8 runs of a 256 KiB file.
_SWEEP: dict[str, Any] = {
    "name": "exec",
    "clients": [2, 3],
    "file_size": "256KiB",
    "server_upload": "1MiB",
    "client_upload": {"dist": "choice", "values": ["256KiB", "1MiB"]},
    "client_download": "4MiB",
    "architectures": ["client-server", "p2p"],
    "emulation": "sim",
    "latency": [0.005, 0.02],
    "loss": 0.01,
    "timeout": 600,
}


def _runs(campaign: Campaign) -> list[tuple[Any, ...]]:
    """What must not depend on the executor: every time and byte count, in order."""
    assert campaign.failures == ()
    return [
        (
            r.architecture,
            r.n,
            r.rtt,
            r.loss,
            r.server_bytes_sent,
            tuple(
                (c.start, c.end, c.bytes_received, c.bytes_from_server, c.bytes_from_peers)
                for c in r.clients
            ),
        )
        for r in campaign.results
    ]


async def _campaign(tmp_path: Path, **how: Any) -> tuple[Campaign, list[str]]:
    said: list[str] = []
    campaign = await run_scenarios(
        [parse_scenario(_SWEEP)], workdir=tmp_path, on_progress=said.append, **how
    )
    return campaign, said


async def test_runs_are_the_same_in_a_thread_in_processes_and_on_dask(tmp_path: Path) -> None:
    from dask.distributed import LocalCluster

    one, said_one = await _campaign(tmp_path / "1", jobs=1)
    two, said_two = await _campaign(tmp_path / "2", jobs=2)
    cluster = LocalCluster(
        processes=True,
        n_workers=2,
        threads_per_worker=1,
        dashboard_address=None,
        host="127.0.0.1",
    )
    try:
        on_dask, said_dask = await _campaign(tmp_path / "d", dask=cluster.scheduler_address)
    finally:
        cluster.close()
    reference = _runs(one)
    assert len(reference) == 8
    assert all(c.complete for r in one.results for c in r.clients)
    # Plan order, whatever order the workers finished in: N, then latency, then architecture.
    assert [(r.n, round(r.rtt, 3), r.architecture) for r in one.results] == [
        (n, rtt, arch) for n in (2, 3) for rtt in (0.02, 0.08) for arch in ("client-server", "p2p")
    ]
    assert _runs(two) == reference
    assert _runs(on_dask) == reference
    # Progress: what runs where, then one line per run as it ends.
    assert said_one[0] == "8 sim runs on 1 worker(s)"
    assert said_two[0] == "8 sim runs on 2 worker(s)"
    assert said_dask[0] == f"8 sim runs on Dask at {cluster.scheduler_address}"
    for said in (said_one, said_two, said_dask):
        assert len(said) == 9
        assert said[-1].startswith("8/8 sim runs done: exec N=")


def _bad_jobs() -> list[SimJob]:
    (plan,) = parse_scenario({**_SWEEP, "clients": 2, "latency": 0.005}).plans()
    return [SimJob(0, plan, "mainframe"), SimJob(1, plan, "client-server")]


async def test_a_lab_error_in_a_worker_process_is_a_run_failure() -> None:
    got: dict[int, Outcome] = {}
    await execute(_bad_jobs(), lambda job, outcome: got.__setitem__(job.index, outcome), workers=2)
    assert isinstance(got[0], RunFailure)
    assert "mainframe" in got[0].error
    assert (got[0].scenario, got[0].n, got[0].architecture) == ("exec", 2, "mainframe")
    # The other run of the same pool is not affected.
    assert isinstance(got[1], RunResult)
    assert all(c.complete for c in got[1].clients)


async def test_an_unreachable_dask_scheduler_is_a_lab_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(executors, "DASK_CONNECT_TIMEOUT", 1.0)
    # Port 9 on loopback (discard): nothing listens there in these tests.
    with pytest.raises(LabError, match="cannot reach the Dask scheduler"):
        await execute(_bad_jobs(), lambda job, outcome: None, dask="tcp://127.0.0.1:9")


def test_negative_jobs_is_refused() -> None:
    with pytest.raises(LabError, match="--jobs"):
        executors.resolve_jobs(-1)
    assert executors.resolve_jobs(0) >= 1
    assert executors.resolve_jobs(3) == 3


def test_the_lab_imports_no_dask_until_asked() -> None:
    code = (
        "import sys, hubswarm.cli, hubswarm.lab.campaign, hubswarm.lab.executors;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
