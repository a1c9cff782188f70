"""The PEX diff per peer (pure): added, dropped, the rate and the caps of BEP 11."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hubswarm.swarm.pex import PEX_INTERVAL, PEX_MAX_SEND, PEX_MIN_GAP, PexPeer

SELF = ("10.0.0.1", 6881)


def addr(i: int) -> tuple[str, int]:
    return (f"10.1.{i // 250}.{i % 250 + 1}", 6881)


def test_the_first_message_waits_for_somebody_to_tell_of() -> None:
    pex = PexPeer()
    assert pex.message({SELF: 0}, {SELF}, 0.0) is None  # only the peer itself
    msg = pex.message({SELF: 0, addr(1): 0x10}, {SELF}, 0.0)
    assert msg is not None
    assert msg.added == (addr(1),)
    assert msg.added_flags == (0x10,)
    assert msg.dropped == ()


def test_one_message_per_interval_with_what_changed() -> None:
    pex = PexPeer()
    msg = pex.message({addr(1): 0, addr(2): 0}, (), 0.0)
    assert msg is not None
    pex.sent(msg, 0.0)
    assert pex.message({addr(2): 0, addr(3): 0}, (), PEX_INTERVAL - 1) is None
    later = pex.message({addr(2): 0, addr(3): 0}, (), PEX_INTERVAL)
    assert later is not None
    assert later.added == (addr(3),)
    assert later.dropped == (addr(1),)


def test_incoming_messages_closer_than_the_gap_are_ignored() -> None:
    pex = PexPeer()
    assert pex.accept(0.0)
    assert not pex.accept(PEX_MIN_GAP - 0.1)
    assert pex.accept(PEX_MIN_GAP)


@given(
    st.lists(st.sets(st.integers(0, 120), max_size=120), min_size=1, max_size=6),
)
def test_told_tracks_the_current_peers_within_the_caps(rounds: list[set[int]]) -> None:
    pex = PexPeer()
    now = 0.0
    for peers in rounds:
        current = {addr(i): 0 for i in peers}
        told_before = set(pex.told or ())
        msg = pex.message(current, (), now)
        if msg is not None:
            assert len(msg.added) <= PEX_MAX_SEND
            assert len(msg.dropped) <= PEX_MAX_SEND
            assert not set(msg.added) & told_before
            assert set(msg.dropped) <= told_before - set(current)
            pex.sent(msg, now)
            assert pex.told is not None
            assert pex.told == (told_before | set(msg.added)) - set(msg.dropped)
            if len(current) <= PEX_MAX_SEND and len(told_before) <= PEX_MAX_SEND:
                assert pex.told == set(current)
        now += PEX_INTERVAL
