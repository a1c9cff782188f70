"""Choker with injected time: reciprocation, optimistic rotation, anti-snubbing, seeding."""

from __future__ import annotations

import random
from collections import Counter

from hubswarm.swarm.choker import Choker, PeerStats


def peers(n: int, *, connected_at: float = -1000.0, **kw: object) -> list[PeerStats]:
    return [
        PeerStats(
            f"p{i}",
            interested=True,
            download_rate=100.0 * i,
            upload_rate=100.0 * (n - i),
            connected_at=connected_at,
            last_piece_at=0.0,
            **kw,
        )  # type: ignore[arg-type]
        for i in range(n)
    ]


def test_reciprocation_unchokes_fastest_four_plus_optimistic() -> None:
    c = Choker(rng=random.Random(1))
    ps = peers(10)
    d = c.decide(ps, now=0.0, seeding=False)
    regular = d.unchoke - {d.optimistic}
    assert regular == {"p9", "p8", "p7", "p6"}
    assert d.optimistic is not None
    assert d.optimistic not in regular
    assert d.unchoke | d.choke == {p.peer_id for p in ps}
    assert not d.unchoke & d.choke


def test_seeding_uses_upload_rate() -> None:
    c = Choker(rng=random.Random(1))
    d = c.decide(peers(10), now=0.0, seeding=True)
    assert d.unchoke - {d.optimistic} == {"p0", "p1", "p2", "p3"}


def test_uninterested_peers_stay_choked() -> None:
    c = Choker(rng=random.Random(1))
    ps = [PeerStats("fast", interested=False, download_rate=1e9), *peers(2)]
    d = c.decide(ps, now=0.0, seeding=False)
    assert "fast" in d.choke
    assert d.unchoke == {"p0", "p1"}


def test_optimistic_rotates_every_interval() -> None:
    c = Choker(rng=random.Random(3), optimistic_interval=30.0, choke_interval=10.0)
    ps = peers(12)
    chosen = []
    for step in range(13):  # 0..120 s every 10 s
        d = c.decide(ps, now=step * 10.0, seeding=False)
        chosen.append(d.optimistic)
    # constant within each 30 s window, changes at each boundary
    for w in range(4):
        window = chosen[w * 3 : w * 3 + 3]
        assert len(set(window)) == 1
    for w in range(1, 4):
        assert chosen[w * 3] != chosen[w * 3 - 1]
    assert c.next_round_at() == 130.0


def test_configurable_intervals_for_the_lab() -> None:
    c = Choker(rng=random.Random(3), optimistic_interval=0.5, choke_interval=0.2)
    ps = peers(8)
    a = c.decide(ps, now=0.0, seeding=False).optimistic
    assert c.decide(ps, now=0.4, seeding=False).optimistic == a
    assert c.decide(ps, now=0.5, seeding=False).optimistic != a


def test_snubbed_peer_gets_no_regular_slot() -> None:
    c = Choker(rng=random.Random(1), snub_timeout=60.0)
    ps = peers(6, am_interested=True)
    # p5 is the fastest but sent nothing for 61 s
    ps[5] = PeerStats(
        "p5",
        interested=True,
        download_rate=1e6,
        connected_at=-1000.0,
        last_piece_at=-61.0,
        am_interested=True,
    )
    assert c.is_snubbed(ps[5], 0.0)
    d = c.decide(ps, now=0.0, seeding=False)
    assert d.unchoke - {d.optimistic} == {"p4", "p3", "p2", "p1"}
    # explicit flag, and snubbing ignored when we are not interested or seeding
    flagged = PeerStats("x", interested=True, snubbed=True)
    assert c.is_snubbed(flagged, 0.0)
    lazy = PeerStats("y", interested=True, connected_at=-1000.0, am_interested=False)
    assert not c.is_snubbed(lazy, 0.0)
    # seeding: snubbing does not apply (we want nothing); the fastest taker wins a slot
    ps[5] = PeerStats(
        "p5",
        interested=True,
        upload_rate=1e9,
        last_piece_at=-61.0,
        am_interested=True,
        connected_at=-1000.0,
    )
    d2 = Choker(rng=random.Random(1)).decide(ps, now=0.0, seeding=True)
    assert "p5" in d2.unchoke - {d2.optimistic}


def test_snubbed_peer_can_still_be_optimistic() -> None:
    c = Choker(rng=random.Random(1))
    ps = [
        PeerStats(
            "s",
            interested=True,
            download_rate=1e6,
            last_piece_at=-100.0,
            am_interested=True,
            connected_at=-1000.0,
        )
    ]
    d = c.decide(ps, now=0.0, seeding=False)
    assert d.optimistic == "s"
    assert d.unchoke == {"s"}


def test_new_peers_three_times_as_likely() -> None:
    counts: Counter[str] = Counter()
    for seed in range(3000):
        c = Choker(rng=random.Random(seed), slots=0)
        ps = [
            PeerStats("old", interested=True, connected_at=-1000.0),
            PeerStats("new", interested=True, connected_at=-1.0),
        ]
        counts[str(c.decide(ps, now=0.0, seeding=False).optimistic)] += 1
    ratio = counts["new"] / counts["old"]
    assert 2.5 < ratio < 3.6


def test_optimistic_replaced_when_it_leaves() -> None:
    c = Choker(rng=random.Random(2))
    ps = peers(8)
    d = c.decide(ps, now=0.0, seeding=False)
    rest = [p for p in ps if p.peer_id != d.optimistic]
    d2 = c.decide(rest, now=1.0, seeding=False)
    assert d2.optimistic is not None
    assert d2.optimistic != d.optimistic
    assert d2.optimistic in {p.peer_id for p in rest}


def test_a_seed_with_seed_slots_unchokes_in_turn_by_connection_age() -> None:
    import random as _random

    from hubswarm.swarm.choker import Choker as _Choker
    from hubswarm.swarm.choker import PeerStats as _PeerStats

    choker = _Choker(rng=_random.Random(1), choke_interval=10.0, seed_slots=2)
    peers = [_PeerStats(peer_id=f"p{i}", interested=True, connected_at=float(i)) for i in range(5)]
    peers.append(_PeerStats(peer_id="idle", interested=False, connected_at=0.5))
    rounds = [choker.decide(peers, 10.0 * k, seeding=True).unchoke for k in range(5)]
    assert rounds[0] == {"p0", "p1"}
    assert rounds[1] == {"p2", "p3"}
    assert rounds[2] == {"p4", "p0"}
    assert all("idle" not in r for r in rounds)
    assert choker.can_unchoke_now(1, seeding=True)
    assert not choker.can_unchoke_now(2, seeding=True)
    assert choker.can_unchoke_now(4, seeding=False)  # 4 regular slots + 1 optimistic
    assert not choker.can_unchoke_now(5, seeding=False)


def test_an_unchoked_peer_that_takes_nothing_for_idle_after_is_idle() -> None:
    from hubswarm.swarm.choker import IdleSlots, UploadSnapshot

    slots = IdleSlots(0.1)
    snap = UploadSnapshot  # peer, bytes sent so far, nothing of ours unacknowledged
    assert slots.observe([snap("a", 0, True), snap("b", 0, True), snap("c", 0, False)], 0.0) == []
    # a took nothing; b took a block; c's unchoke was still on its way: its clock starts now.
    got = slots.observe([snap("a", 0, True), snap("b", 16384, True), snap("c", 0, True)], 0.1)
    assert got == ["a"]
    assert slots.observe([snap("b", 16384, True), snap("c", 0, True)], 0.2) == ["b", "c"]
    slots.forget("b")  # choked and unchoked again: a fresh clock
    assert slots.observe([snap("b", 16384, True), snap("c", 0, True)], 0.3) == ["c"]


def test_idle_after_must_be_positive() -> None:
    import pytest

    from hubswarm.swarm.choker import IdleSlots

    with pytest.raises(ValueError, match="positive"):
        IdleSlots(0.0)
