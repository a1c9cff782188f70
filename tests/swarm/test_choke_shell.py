"""Upload slots between choke rounds: a peer that loses interest gives its slot back at once
(choke_shell.give_slot_back); one that asks for nothing loses it to a waiting peer
(choke_shell.reclaim_idle_slots)."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest

from hubswarm.swarm import choke_shell
from hubswarm.swarm.choker import Choker, IdleSlots


class _Link:
    def __init__(self, name: str, *, choked: bool, interested: bool, rate: float) -> None:
        self.name = name
        self.closed = False
        self.conn = SimpleNamespace(am_choking=choked, peer_interested=interested)
        self.download_rate = SimpleNamespace(rate=rate)
        self.upload_rate = SimpleNamespace(total=0)
        self.bytes_written = 0
        self.unacked = 0
        self.cleared = 0

    def bytes_acked(self) -> int:
        return self.bytes_written - self.unacked

    def clear_uploads(self) -> None:
        self.cleared += 1


def _session(links: list[_Link], *, superseed: Any = None) -> Any:
    sent: list[tuple[str, bool]] = []

    def set_choking(link: _Link, choke: bool) -> None:
        link.conn.am_choking = choke
        sent.append((link.name, choke))

    return SimpleNamespace(
        links={lk: SimpleNamespace(has=None) for lk in links},
        rng=random.Random(0),
        superseed=superseed,
        is_seed=False,
        choker=Choker(rng=random.Random(0), slots=1),
        set_choking=set_choking,
        sent=sent,
    )


def test_the_slot_goes_to_the_interested_peer_that_sends_us_most() -> None:
    done = _Link("done", choked=False, interested=False, rate=0.0)
    busy = _Link("busy", choked=False, interested=True, rate=0.0)  # the optimistic slot
    slow = _Link("slow", choked=True, interested=True, rate=10.0)
    fast = _Link("fast", choked=True, interested=True, rate=99.0)
    idle = _Link("idle", choked=True, interested=False, rate=500.0)
    session = _session([done, busy, slow, fast, idle])
    choke_shell.give_slot_back(session, done)  # type: ignore[arg-type]
    assert session.sent == [("done", True), ("fast", False)]
    assert done.cleared == 1
    assert slow.conn.am_choking
    assert idle.conn.am_choking


def test_a_choked_peer_or_a_super_seed_changes_nothing() -> None:
    done = _Link("done", choked=True, interested=False, rate=0.0)
    waiting = _Link("waiting", choked=True, interested=True, rate=5.0)
    session = _session([done, waiting])
    choke_shell.give_slot_back(session, done)  # type: ignore[arg-type]
    assert session.sent == []
    unchoked = _Link("unchoked", choked=False, interested=False, rate=0.0)
    seeding = _session([unchoked, waiting], superseed=object())
    choke_shell.give_slot_back(seeding, unchoked)  # type: ignore[arg-type]
    assert seeding.sent == []


def _pieces(session: Any, link: _Link, count: int) -> None:
    session.links[link] = SimpleNamespace(has=SimpleNamespace(count=lambda: count))


@pytest.fixture(autouse=True)
def _links_are_peer_links(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(choke_shell, "PeerLink", _Link)


def test_an_idle_slot_goes_to_the_waiting_peer_with_the_fewest_pieces() -> None:
    idle = _Link("idle", choked=False, interested=True, rate=50.0)
    busy = _Link("busy", choked=False, interested=True, rate=0.0)
    rich = _Link("rich", choked=True, interested=True, rate=99.0)
    poor = _Link("poor", choked=True, interested=True, rate=0.0)
    session = _session([idle, busy, rich, poor])
    _pieces(session, rich, 40)
    _pieces(session, poor, 0)
    slots = IdleSlots(0.1)
    assert choke_shell.reclaim_idle_slots(session, slots, 0.0)  # clocks start
    busy.upload_rate.total = 16384
    assert choke_shell.reclaim_idle_slots(session, slots, 0.1)
    assert session.sent == [("idle", True), ("poor", False)]
    assert idle.cleared == 1
    assert rich.conn.am_choking


def test_nothing_is_reclaimed_while_no_peer_waits_or_while_super_seeding() -> None:
    idle = _Link("idle", choked=False, interested=True, rate=0.0)
    session = _session([idle])
    slots = IdleSlots(0.1)
    assert not choke_shell.reclaim_idle_slots(session, slots, 0.0)
    assert not choke_shell.reclaim_idle_slots(session, slots, 1.0)
    assert session.sent == []
    waiting = _Link("waiting", choked=True, interested=True, rate=0.0)
    seeding = _session([idle, waiting], superseed=object())
    assert not choke_shell.reclaim_idle_slots(seeding, slots, 0.0)
    assert not choke_shell.reclaim_idle_slots(seeding, slots, 1.0)
    assert seeding.sent == []


def test_a_peer_whose_data_is_still_on_its_way_keeps_its_slot() -> None:
    slow = _Link("slow", choked=False, interested=True, rate=0.0)
    slow.bytes_written = slow.unacked = 100  # our unchoke (or a block) is not acknowledged
    waiting = _Link("waiting", choked=True, interested=True, rate=0.0)
    session = _session([slow, waiting])
    slots = IdleSlots(0.1)
    for now in (0.0, 0.1, 0.2):
        assert choke_shell.reclaim_idle_slots(session, slots, now)
    assert session.sent == []
