"""The web-seed policy (issue 22): the web seed adds capacity where the swarm gives none."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubswarm.swarm.webseed_policy import (
    DEFAULT_MODE,
    MODES,
    WEBSEED_STALL,
    WebSeedView,
    starved,
    webseed_allowed,
)


def view(
    now: float = 10.0,
    availability: tuple[int, ...] = (0, 2, 0, 1),
    inflight: frozenset[int] = frozenset(),
    last: float | None = None,
    started: float = 0.0,
    peers: bool = True,
    endgame: bool = False,
) -> WebSeedView:
    return WebSeedView(
        now=now,
        num_pieces=len(availability),
        availability=availability,
        peer_inflight=inflight,
        last_peer_block=last,
        started=started,
        peers=peers,
        endgame=endgame,
    )


def test_the_default_is_assist_and_every_mode_is_known() -> None:
    assert DEFAULT_MODE == "assist"
    for mode in MODES:
        webseed_allowed(mode, view())
    with pytest.raises(ValueError, match="unknown web seed mode"):
        webseed_allowed("sometimes", view())


def test_off_always_and_fallback() -> None:
    assert list(webseed_allowed("off", view())) == []
    assert list(webseed_allowed("always", view(last=9.9))) == [0, 1, 2, 3]
    assert list(webseed_allowed("fallback", view(last=9.9))) == [0, 2]
    assert list(webseed_allowed("fallback", view(peers=False))) == [0, 1, 2, 3]


def test_assist_stands_aside_while_peers_feed_us() -> None:
    fed = view(now=10.0, last=10.0 - WEBSEED_STALL / 2)
    assert not starved(fed)
    assert list(webseed_allowed("assist", fed)) == []
    # The swarm gets the same grace at the start, before any block.
    assert list(webseed_allowed("assist", view(now=WEBSEED_STALL / 2, started=0.0))) == []


def test_assist_serves_a_starved_peer_rarest_first() -> None:
    # Pieces no connected peer has come first...
    assert list(webseed_allowed("assist", view(last=5.0))) == [0, 2]
    # ...but not one a peer is delivering.
    assert list(webseed_allowed("assist", view(last=5.0, inflight=frozenset({0})))) == [2]
    # Every peer's piece is scarce for us once nobody feeds us: the free ones, any rarity.
    both = view(last=5.0, inflight=frozenset({0, 2}))
    assert list(webseed_allowed("assist", both)) == [1, 3]
    # No peer at all (so nobody has anything): everything.
    alone = view(availability=(0, 0, 0, 0), peers=False)
    assert list(webseed_allowed("assist", alone)) == [0, 1, 2, 3]


def test_assist_duplicates_in_flight_pieces_only_in_endgame() -> None:
    late = view(last=5.0, inflight=frozenset({0, 1, 2, 3}))
    assert list(webseed_allowed("assist", late)) == []
    assert list(
        webseed_allowed("assist", view(last=5.0, inflight=late.peer_inflight, endgame=True))
    ) == [0, 1, 2, 3]


def test_a_view_must_match_the_piece_count() -> None:
    with pytest.raises(ValueError, match="wrong length"):
        WebSeedView(0.0, 3, [0, 0], frozenset(), None, 0.0, True, False)


@given(
    availability=st.lists(st.integers(0, 5), min_size=1, max_size=40),
    inflight=st.sets(st.integers(0, 39)),
    now=st.floats(0, 100),
    last=st.none() | st.floats(0, 100),
    peers=st.booleans(),
    endgame=st.booleans(),
)
def test_assist_never_duplicates_a_peer_or_serves_a_fed_peer(
    availability: list[int],
    inflight: set[int],
    now: float,
    last: float | None,
    peers: bool,
    endgame: bool,
) -> None:
    n = len(availability)
    v = view(
        now, tuple(availability), frozenset(i for i in inflight if i < n), last, 0.0, peers, endgame
    )
    got = set(webseed_allowed("assist", v))
    assert got <= set(range(n))
    if not starved(v):
        assert not got
    elif not endgame:
        assert not got & v.peer_inflight
        free = set(range(n)) - v.peer_inflight
        rare = {i for i in free if availability[i] == 0}
        assert got == (rare or free)
    # Never more than "always", and under "fallback" nothing a fed peer would skip.
    assert got <= set(webseed_allowed("always", v))
