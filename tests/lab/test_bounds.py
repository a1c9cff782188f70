"""Kurose-Ross bounds: hand-computed values and properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubswarm.lab import bounds

MIB = 2**20


def test_d_cs_server_bound() -> None:
    # N F / u_s = 10 * 8 MiB / 4 MiB/s = 20 s, above F / d_min = 8 / 8 = 1 s.
    assert bounds.d_cs(10, 8 * MIB, 4 * MIB, 8 * MIB) == pytest.approx(20.0)


def test_d_cs_client_bound() -> None:
    # One client with a slow link: F / d_min = 8 MiB / 1 MiB/s = 8 s > 1 * 8 / 4 = 2 s.
    assert bounds.d_cs(1, 8 * MIB, 4 * MIB, 1 * MIB) == pytest.approx(8.0)


def test_d_cs_unlimited_download() -> None:
    assert bounds.d_cs(4, 100, 50) == pytest.approx(8.0)


def test_d_p2p_aggregate_bound() -> None:
    # N F / (u_s + sum u) = 32 * 1 / (4 + 32 * 1) = 0.888.. s; F / u_s = 0.25 s.
    got = bounds.d_p2p(32, 1 * MIB, 4 * MIB, [MIB] * 32, 8 * MIB)
    assert got == pytest.approx(32 / 36)


def test_d_p2p_server_must_send_one_copy() -> None:
    # Huge peer upload: the server still has to push F once: F / u_s = 10 s.
    assert bounds.d_p2p(4, 100, 10, [1e9] * 4) == pytest.approx(10.0)


def test_piece_estimate() -> None:
    # (F/u)(1 + floor(log2 8)/M) = (100/10)(1 + 3/100) = 10.3 s
    assert bounds.piece_estimate(8, 100, 10, 100) == pytest.approx(10.3)
    assert bounds.piece_estimate(1, 100, 10, 1) == pytest.approx(10.0)


def test_efficiency() -> None:
    # N F / T = 4 * 100 / 10 = 40 B/s; minus u_s 20 = 20; over sum u_i 40 -> 0.5.
    assert bounds.efficiency(4, 100, 10.0, 20, [10] * 4) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("fn", "args"),
    [
        (bounds.d_cs, (0, 1, 1)),
        (bounds.d_cs, (1, 1, 0)),
        (bounds.d_cs, (1, -1, 1)),
        (bounds.d_p2p, (1, 1, 1, [-1.0])),
        (bounds.piece_estimate, (1, 1, 1, 0)),
        (bounds.efficiency, (1, 1, 0.0, 1, [1.0])),
        (bounds.efficiency, (1, 1, 1.0, 1, [])),
    ],
)
def test_bad_inputs(fn: object, args: tuple[object, ...]) -> None:
    with pytest.raises(ValueError):
        fn(*args)  # type: ignore[operator]


rates = st.floats(min_value=1.0, max_value=1e10, allow_nan=False)


@given(
    n=st.integers(1, 500),
    f=st.floats(0, 1e12),
    u_s=rates,
    u=rates,
    d=st.one_of(rates, st.just(math.inf)),
)
def test_bounds_properties(n: int, f: float, u_s: float, u: float, d: float) -> None:
    cs, cs_next = bounds.d_cs(n, f, u_s, d), bounds.d_cs(n + 1, f, u_s, d)
    p2p = bounds.d_p2p(n, f, u_s, [u] * n, d)
    p2p_next = bounds.d_p2p(n + 1, f, u_s, [u] * (n + 1), d)
    assert cs <= cs_next
    assert p2p <= p2p_next * (1 + 1e-12)  # monotone in N (equal peers)
    assert p2p <= cs * (1 + 1e-12)  # peers can only help
    assert p2p >= f / u_s * (1 - 1e-12)
