"""The swarms in sim: hybrid (hub as tracker and web seed), p2p, and their faults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hubswarm.lab.metrics import RunResult
from hubswarm.lab.scenario import parse_scenario
from hubswarm.lab.sim import run_sim

KIB = 1024
MIB = 1024 * KIB
_BASE: dict[str, Any] = {
    "name": "sim-swarm",
    "clients": 4,
    "file_size": "512KiB",
    "server_upload": "1MiB",
    "client_upload": "1MiB",
    "client_download": "16MiB",
    "architectures": ["p2p", "hybrid"],
    "timeout": 60,
    "seed": 1,
}


def _plan(**fields: Any) -> Any:
    return parse_scenario({**_BASE, **fields}).plans()[0]


def _makespan(result: RunResult) -> float:
    return max(c.end for c in result.clients if c.end is not None)


def test_the_hybrid_finishes_verified_with_the_hubs_bytes_counted(tmp_path: Path) -> None:
    plan = _plan()
    result = run_sim(plan, "hybrid", tmp_path)
    assert result.architecture == "hybrid"
    assert result.emulation == "sim"
    assert all(c.complete for c in result.clients), result.clients
    size = 512 * KIB
    sent = result.server_bytes_sent or 0
    # Host 0 (hub's web seed + seed peer) sent at least one copy, never more than every copy
    # (the web seed's share under the default policy: benchmarks/hybrid_webseed.py).
    assert size < sent <= plan.n * size * 1.05
    assert sum(c.bytes_from_server for c in result.clients) == pytest.approx(sent, abs=4)
    # The run records what netns records: replica counts and the first full copy.
    assert result.replicas[0].counts == (1,) * plan.scenario.pieces
    assert result.replicas[-1].counts == (plan.n + 1,) * plan.scenario.pieces
    assert result.first_copy_at is not None
    assert 0 < result.first_copy_at <= _makespan(result)


@pytest.mark.parametrize("architecture", ["p2p", "hybrid"])
def test_an_outsider_with_what_a_client_was_given_gets_the_whole_file(
    architecture: str, tmp_path: Path
) -> None:
    # A swarm has no access control: the security row's probe, as the netns runner has it.
    result = run_sim(_plan(clients=2), architecture, tmp_path)
    (probe,) = result.security
    assert (probe.bytes_obtained, probe.file_size) == (512 * KIB, 512 * KIB)
    assert probe.outcome == "complete"
    assert not probe.authorized
    # The outsider's download is not the clients': host 0's bytes were read before it came.
    again = run_sim(
        _plan(clients=2, faults=[{"kind": "kill_hub", "at": 60}]), architecture, tmp_path / "b"
    )
    assert again.security == ()
    assert again.server_bytes_sent == result.server_bytes_sent


@pytest.mark.parametrize("architecture", ["p2p", "hybrid"])
def test_after_kill_hub_the_swarm_finishes_from_its_peers(
    architecture: str, tmp_path: Path
) -> None:
    # The tracker / bootstrap node dies 0.3 s in: the seed peer and the peers carry on.
    plan = _plan(file_size="1MiB", faults=[{"kind": "kill_hub", "at": 0.3}])
    result = run_sim(plan, architecture, tmp_path)
    (fault,) = result.faults
    assert (fault.kind, fault.applied) == ("kill_hub", True)
    assert "seed peer" in fault.detail
    assert all(c.complete for c in result.clients), result.clients
    assert _makespan(result) > 0.3


def test_the_hybrid_hub_really_dies_at_kill_hub(tmp_path: Path) -> None:
    # Killed before the first announce, the tracker introduces no one: the peers find
    # neither the seed nor each other, and the dead web seed sends nothing.
    plan = _plan(timeout=10, faults=[{"kind": "kill_hub", "at": 0.0}])
    result = run_sim(plan, "hybrid", tmp_path)
    assert not any(c.complete for c in result.clients)
    assert {c.error for c in result.clients} == {"timeout"}
    assert (result.server_bytes_sent or 0) < 32 * KIB  # handshakes and resets, no pieces


@pytest.mark.parametrize("architecture", ["p2p", "hybrid"])
def test_a_corrupt_peer_is_banned_and_the_others_verify(architecture: str, tmp_path: Path) -> None:
    plan = _plan(clients=5, faults=[{"kind": "corrupt_peer", "count": 1}])
    result = run_sim(plan, architecture, tmp_path)
    (fault,) = result.faults
    outcome = fault.corrupt
    assert outcome is not None
    assert outcome.peers == (5,)
    assert outcome.bad_pieces > 0
    assert outcome.bans > 0
    assert outcome.contained
    assert all(c.complete for c in result.clients if c.index != 5)


def test_kill_peers_crashes_a_running_peer_and_the_rest_finish(tmp_path: Path) -> None:
    plan = _plan(file_size="1MiB", faults=[{"kind": "kill_peers", "at": 0.2, "count": 1}])
    result = run_sim(plan, "p2p", tmp_path)
    (fault,) = result.faults
    assert fault.victims == (1,)
    first, *rest = result.clients
    assert (first.error, first.verified) == ("killed (fault)", False)
    assert first.left_at == pytest.approx(0.2)
    assert all(c.complete for c in rest)
    # The killed peer's copies leave the replica count when it dies.
    last = result.replicas[-1].counts
    assert max(last) == plan.n  # the seed and the three survivors


def test_peers_seed_for_the_time_the_churn_says_then_leave(tmp_path: Path) -> None:
    plan = _plan(churn={"leave_after_complete": 0.5})
    result = run_sim(plan, "p2p", tmp_path)
    for c in result.clients:
        assert c.complete
        assert c.end is not None
        assert c.left_at == pytest.approx(c.end + 0.5)


@pytest.mark.parametrize("architecture", ["p2p", "hybrid"])
def test_a_swarm_in_sim_gives_the_same_result_twice(architecture: str, tmp_path: Path) -> None:
    plan = _plan(
        clients=5,
        arrivals={"kind": "poisson", "rate": 4.0},
        latency={"dist": "uniform", "min": 0.01, "max": 0.05},
        faults=[{"kind": "corrupt_peer", "count": 1}],
    )
    a = run_sim(plan, architecture, tmp_path / "a").to_json()
    b = run_sim(plan, architecture, tmp_path / "b").to_json()
    a.pop("wall_time")
    b.pop("wall_time")
    assert a == b
