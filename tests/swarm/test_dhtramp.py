"""The DHT announce ramp (pure): waits between lookups."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hubswarm.swarm.dhtramp import DHT_RAMP_FIRST, DHTRamp


def test_alone_the_lookup_is_retried_after_a_quarter_second_doubling_to_thirty() -> None:
    ramp = DHTRamp(300.0)
    waits = [ramp.next_wait(0, connected=False) for _ in range(9)]
    assert waits == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_connected_lookups_ramp_up_while_they_bring_new_peers() -> None:
    ramp = DHTRamp(2.0)
    waits = [ramp.next_wait(1, connected=True) for _ in range(5)]
    assert waits == [DHT_RAMP_FIRST, 0.5, 1.0, 2.0, 2.0]


def test_two_empty_lookups_after_a_fruitful_one_end_the_ramp() -> None:
    ramp = DHTRamp(300.0)
    assert ramp.next_wait(0, connected=True) == DHT_RAMP_FIRST  # before anybody announced
    assert ramp.next_wait(3, connected=True) == 0.5
    assert ramp.next_wait(0, connected=True) == 1.0  # one empty lookup is not enough
    assert ramp.next_wait(0, connected=True) == 300.0
    assert ramp.ended
    assert ramp.next_wait(5, connected=True) == 300.0


@given(st.lists(st.tuples(st.integers(0, 3), st.booleans()), max_size=50))
def test_waits_stay_between_the_first_step_and_the_steady_interval(
    steps: list[tuple[int, bool]],
) -> None:
    ramp = DHTRamp(60.0)
    for fresh, connected in steps:
        wait = ramp.next_wait(fresh, connected=connected)
        if connected:
            assert DHT_RAMP_FIRST <= wait <= 60.0
        else:
            assert 0.25 <= wait <= 30.0
