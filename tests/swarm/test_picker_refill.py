"""The request queue's refill rule (picker.refill_size): batches of a quarter of the depth."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hubswarm.swarm.picker import REFILL_DIVISOR, refill_size


def test_refill_waits_for_a_quarter_of_the_queue() -> None:
    assert refill_size(40, 40) == 0
    assert refill_size(40, 31) == 0  # 9 free: less than 40 // 4
    assert refill_size(40, 30) == 10  # 10 free: the whole batch at once
    assert refill_size(40, 0) == 40
    assert refill_size(3, 2) == 1  # a shallow queue refills block by block
    assert refill_size(1, 0) == 1
    assert refill_size(1, 1) == 0


def test_an_overfull_queue_asks_for_nothing() -> None:
    # The depth shrank below what is in flight (the peer's rate fell).
    assert refill_size(4, 10) == 0
    assert refill_size(0, 0) == 0


@given(st.integers(0, 5000), st.integers(0, 5000))
def test_refill_fills_the_queue_or_sends_nothing(depth: int, inflight: int) -> None:
    n = refill_size(depth, inflight)
    if n:
        assert inflight + n == depth  # tops up to the depth, never past it
        assert n >= max(1, depth // REFILL_DIVISOR)
    else:
        assert depth - inflight < max(1, depth // REFILL_DIVISOR)
