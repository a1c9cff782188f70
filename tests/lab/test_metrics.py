"""Metrics computed from synthetic event logs."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubswarm.lab.metrics import (
    ClientRecord,
    RunResult,
    burst_slack,
    first_copy_time,
    jain_index,
    percentile,
    summarize,
)
from tests.lab.synthetic import MIB, cs_run, faulty_run, p2p_run


def test_jain_index() -> None:
    assert jain_index([5, 5, 5, 5]) == pytest.approx(1.0)
    assert jain_index([1, 0, 0, 0]) == pytest.approx(0.25)  # 1/n: one client gets everything
    assert jain_index([1, 3]) == pytest.approx(16 / 20)
    assert jain_index([0, 0]) == 1.0
    with pytest.raises(ValueError, match="nothing"):
        jain_index([])


def test_percentile() -> None:
    assert percentile([1, 2, 3, 4, 5], 50) == 3
    assert percentile([1, 2, 3, 4, 5], 10) == pytest.approx(1.4)
    assert percentile([10], 90) == 10
    assert percentile([4, 1, 3, 2], 100) == 4


@given(st.lists(st.floats(0.001, 1e6), min_size=1, max_size=50))
def test_jain_bounds(values: list[float]) -> None:
    j = jain_index(values)
    assert 1 / len(values) - 1e-9 <= j <= 1 + 1e-9


def test_client_server_summary() -> None:
    run = cs_run(8)
    m = summarize(run)
    assert m.completed == 8
    assert m.bound_cs == pytest.approx(2.0)  # 8 * 1 MiB / 4 MiB/s
    assert m.bound_p2p == pytest.approx(8 / 12)
    assert m.all_complete_time == pytest.approx(2.0 * 1.05)
    assert not m.below_bound
    assert m.server_share == pytest.approx(1.0)
    assert m.server_utilization == pytest.approx(8 * MIB / (4 * MIB * 2.1))
    assert m.p10 is not None
    assert m.p50 is not None
    assert m.p90 is not None
    assert m.p10 <= m.p50 <= m.p90
    assert m.max_over_min == pytest.approx(1.05 / (1.05 * (0.9 + 0.1 / 8)))
    assert m.efficiency is None  # not defined for client-server
    assert m.min_replicas_end == 1
    assert m.unauthorized_bytes == 0  # the control probe (authorized) does not count


def test_below_bound_is_flagged() -> None:
    run = cs_run(8)
    fast = tuple(dataclasses.replace(c, end=0.5) for c in run.clients)
    assert summarize(dataclasses.replace(run, clients=fast)).below_bound


def test_app_mode_may_beat_the_bound_by_its_token_buckets_first_burst() -> None:
    # Bound 2.0 s; the buckets of an app-mode run start full (0.1 s of each rate here),
    # so 1.9 s is no measurement bug there, and it is one under htb (netns).
    run = cs_run(8)
    assert burst_slack(run) == pytest.approx(0.1)
    almost = tuple(dataclasses.replace(c, end=1.9) for c in run.clients)
    app = dataclasses.replace(run, clients=almost, emulation="app")
    assert not summarize(app).below_bound
    assert summarize(dataclasses.replace(app, emulation="netns")).below_bound
    assert burst_slack(dataclasses.replace(app, emulation="netns")) == 0.0
    too_fast = tuple(dataclasses.replace(c, end=1.8) for c in run.clients)
    assert summarize(dataclasses.replace(app, clients=too_fast)).below_bound


def test_fault_summary() -> None:
    m = summarize(faulty_run())
    assert m.completed == 2
    assert m.all_complete_time is None
    assert m.last_completion == pytest.approx(2.2)
    assert m.fault_completion == (("kill_hub", 2.5, 0.0),)  # 6 pending, none completed after
    assert m.min_replicas_end == 0


def test_p2p_summary_and_efficiency() -> None:
    m = summarize(p2p_run(4))
    assert m.server_share == pytest.approx(0.25)
    assert m.all_complete_time == pytest.approx(1.2)
    # eta = (N F / T - u_s) / sum u = (4/1.2 - 4) / 4 < 0: the server did most of it
    assert m.efficiency == pytest.approx((4 / 1.2 - 4) / 4)
    assert m.min_replicas_end == 5


def test_json_round_trip() -> None:
    for run in (cs_run(4), faulty_run(), p2p_run(3)):
        assert RunResult.from_json(run.to_json()) == run


def test_incomplete_client_properties() -> None:
    c = ClientRecord(1, 1.0, None, 10, 10)
    assert not c.complete
    assert c.duration is None
    assert ClientRecord(1, 1.0, 3.5, 10, 10, verified=True).duration == 2.5
    assert not math.isnan(summarize(cs_run(2)).bound_cs)


def test_first_copy_time_is_the_last_first_arrival() -> None:
    have = {1: [(0.4, 0), (0.9, 2)], 2: [(0.3, 1), (0.5, 0)], 3: [(1.2, 2), (0.2, 2)]}
    # Piece 0 first at 0.4, piece 1 at 0.3, piece 2 at 0.2 (client 3's log is unordered).
    assert first_copy_time(3, have) == 0.4
    assert first_copy_time(4, have) is None  # piece 3 never reached a client
    assert first_copy_time(3, {}) is None
    assert first_copy_time(0, {1: []}) is None
    assert first_copy_time(2, {1: [(0.1, 0), (0.2, 1), (9.0, 7), (5.0, -1)]}) == 0.2


@given(
    st.integers(1, 6),
    st.dictionaries(
        st.integers(1, 5),
        st.lists(st.tuples(st.floats(0, 100), st.integers(-1, 7)), max_size=12),
        max_size=5,
    ),
)
def test_first_copy_time_property(pieces: int, have: dict[int, list[tuple[float, int]]]) -> None:
    got = first_copy_time(pieces, have)
    firsts = [
        min((t for events in have.values() for t, i in events if i == k), default=None)
        for k in range(pieces)
    ]
    if any(f is None for f in firsts):
        assert got is None
    else:
        assert got == max(f for f in firsts if f is not None)
