"""The lab's timing preset lives in the lab; ``--fast-intervals`` applies it and nothing else."""

from __future__ import annotations

import dataclasses

from hubswarm.cli.swarm import _config
from hubswarm.lab.timing import lab_timing
from hubswarm.swarm.session import SessionConfig

PRESET = {
    "choke_interval": 1.0,
    "optimistic_interval": 3.0,
    "announce_interval": 1.0,
    "snub_timeout": 10.0,
    "request_timeout": 10.0,
    "dht_interval": 8.0,
    "reconnect_min": 0.5,
    "reconnect_max": 5.0,
    "seed_unchoke_slots": 1,
    "initial_queue_depth": 2,
    "request_queue_time": 0.1,
}


def _changed(a: SessionConfig, b: SessionConfig) -> dict[str, object]:
    # peer_id is drawn at random per config: not a knob.
    return {
        f.name: getattr(b, f.name)
        for f in dataclasses.fields(a)
        if f.name != "peer_id" and getattr(a, f.name) != getattr(b, f.name)
    }


def test_lab_timing_changes_the_intervals_only() -> None:
    default = SessionConfig()
    before = dataclasses.asdict(default)
    lab = lab_timing(default)
    assert _changed(default, lab) == PRESET
    assert lab.peer_id == default.peer_id
    assert dataclasses.asdict(default) == before  # a copy: the caller's config is unchanged


def test_fast_intervals_flag_is_the_lab_preset() -> None:
    opts: dict[str, object] = {"port": 0, "max_peers": 50, "upload_rate": "1MiB"}
    plain = _config(opts)
    fast = _config({**opts, "fast_intervals": True})
    assert _changed(plain, fast) == PRESET
    assert fast.upload_rate == plain.upload_rate == 2**20
