"""The peer-to-peer runner: its pure helpers, and one small real swarm on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hubswarm.lab.accounting import (
    corrupt_clients,
    corrupt_detail,
    corrupt_outcome,
    parse_ss,
    replica_timeline,
)
from hubswarm.lab.campaign import run_plan
from hubswarm.lab.events import read_events
from hubswarm.lab.metrics import ClientRecord, CorruptOutcome, summarize
from hubswarm.lab.runners import HybridRunner, SwarmRunner, make_runner
from hubswarm.lab.scenario import parse_scenario

MIB = 2**20
SS = (
    '0 0 10.77.0.1:40000 10.77.0.2:5000 users:(("python3",pid=42,fd=7))\n'
    "\t cubic wscale:7,7 bytes_sent:1000 bytes_acked:900 bytes_received:10\n"
    '0 0 10.77.0.1:40001 10.77.0.3:5000 users:(("python3",pid=43,fd=7))\n'
    "\t cubic bytes_acked:5000\n"
    '0 0 10.77.0.1:40002 10.77.0.4:5000 users:(("python3",pid=42,fd=8))\n'
    "\t cubic bytes_acked:77 segs_out:3\n"
)


def test_parse_ss_keeps_only_the_pid() -> None:
    assert parse_ss(SS, 42) == {
        "10.77.0.1:40000 10.77.0.2:5000": 900,
        "10.77.0.1:40002 10.77.0.4:5000": 77,
    }
    assert parse_ss(SS, 4) == {}  # pid=4 must not match pid=42
    assert parse_ss("", 42) == {}


def test_parse_ss_keys_on_the_addresses_of_real_ss_output() -> None:
    # What `ss -tinpH` prints here: a State column first, and two connections of one
    # listening port that differ only in the peer and in Send-Q.
    real = (
        'ESTAB 0      14480  10.77.0.1:40000 10.77.0.2:5000 users:(("python3",pid=42,fd=7))\n'
        "\t bbr wscale:10,10 bytes_sent:20000 bytes_acked:5521 bytes_received:10\n"
        'ESTAB 0      14480  10.77.0.1:40000 10.77.0.3:5001 users:(("python3",pid=42,fd=8))\n'
        "\t bbr bytes_acked:100 segs_out:3\n"
    )
    assert parse_ss(real, 42) == {
        "10.77.0.1:40000 10.77.0.2:5000": 5521,
        "10.77.0.1:40000 10.77.0.3:5001": 100,
    }
    # The same connection sampled again with another Send-Q is the same key.
    again = real.replace("14480", "0").replace("5521", "9000")
    assert parse_ss(again, 42)["10.77.0.1:40000 10.77.0.2:5000"] == 9000


def test_replica_timeline() -> None:
    have = {1: [(0.5, 0), (1.0, 1), (1.1, 1)], 2: [(0.7, 1)]}  # piece 1 logged twice by 1
    samples = replica_timeline(2, have, {1: None, 2: 2.0}, 1.5, [0.0, 0.8, 1.2, 1.6, 2.5])
    assert [s.counts for s in samples] == [(1, 1), (2, 2), (2, 3), (1, 2), (1, 1)]


def small(architecture: str):  # type: ignore[no-untyped-def]
    return parse_scenario(
        {
            "name": "swarm",
            "clients": 3,
            "file_size": "1MiB",
            "piece_size": "32KiB",
            "server_upload": "2MiB",
            "client_upload": "1MiB",
            "client_download": "8MiB",
            "architectures": [architecture],
            "timeout": 60,
        }
    )


@pytest.mark.parametrize("runner", [SwarmRunner, HybridRunner])
async def test_small_swarm_on_loopback(tmp_path: Path, runner: type[SwarmRunner]) -> None:
    scenario = small(runner.name)
    assert isinstance(make_runner(runner.name), runner)
    result = await run_plan(scenario.plans()[0], runner(), mode="app", workdir=tmp_path)
    assert result.architecture == runner.name
    assert result.pieces == 32
    assert all(c.verified for c in result.clients), [c.error for c in result.clients]
    assert all(c.bytes_received == MIB for c in result.clients)
    assert result.server_bytes_sent is not None
    assert result.server_bytes_sent > 0
    m = summarize(result)
    assert m.completed == 3
    assert not m.below_bound, (m.all_complete_time, m.bound_p2p)
    # Everyone stays seeding: at the end each piece lives on the seed and all 3 peers.
    assert result.replicas[-1].counts == (4,) * 32
    # Every piece was on a peer about when one copy through the seed's link allows (less a
    # rate limiter's burst; the hybrid's web seed shares the link), not after the end.
    assert result.first_copy_at is not None
    assert m.all_complete_time is not None
    one_copy = result.file_size / result.server_upload
    assert 0.5 * one_copy < result.first_copy_at <= m.all_complete_time
    (outsider,) = result.security
    assert outsider.bytes_obtained == MIB  # the magnet link is the only key


def test_corrupt_peer_accounting(tmp_path: Path) -> None:
    s = parse_scenario(
        {
            "name": "bad",
            "clients": 4,
            "file_size": "1MiB",
            "server_upload": "1MiB",
            "client_upload": "1MiB",
            "client_download": "1MiB",
            "faults": [{"kind": "corrupt_peer", "count": 1}],
        }
    )
    assert corrupt_clients(s, 4) == {4}
    assert corrupt_clients(small("p2p"), 3) == set()
    lines = [{"event": "bad_piece", "index": 3}, {"event": "banned", "peer": "10.0.0.5:1"}]
    for i in (1, 4):  # the corrupt peer's own log must not count
        (tmp_path / f"c{i}.events").write_text("\n".join(json.dumps(e) for e in lines) + "\n")
    logs = {i: read_events(tmp_path / f"c{i}.events") for i in range(1, 5)}

    def rec(i: int, ok: bool) -> ClientRecord:
        return ClientRecord(i, 0.0, 1.0 if ok else None, MIB, 0, MIB, ok, None if ok else "x")

    records = {1: rec(1, True), 2: rec(2, True), 3: rec(3, False), 4: rec(4, True)}
    outcome = corrupt_outcome({4}, records, logs)
    assert outcome == CorruptOutcome(peers=(4,), bad_pieces=1, bans=1, honest_verified=2, honest=3)
    assert not outcome.contained  # client 3 did not verify
    assert corrupt_detail(outcome) == (
        "peers [4] flip bytes they upload: 1 bad pieces detected, 1 bans by honest peers, "
        "2/3 honest clients verified"
    )
