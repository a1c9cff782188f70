"""A peer that loses interest gives its upload slot back at once (choke_shell.give_slot_back)."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

from hubswarm.swarm import choke_shell
from hubswarm.swarm.choker import Choker


class _Link:
    def __init__(self, name: str, *, choked: bool, interested: bool, rate: float) -> None:
        self.name = name
        self.closed = False
        self.conn = SimpleNamespace(am_choking=choked, peer_interested=interested)
        self.download_rate = SimpleNamespace(rate=rate)
        self.cleared = 0

    def clear_uploads(self) -> None:
        self.cleared += 1


def _session(links: list[_Link], *, superseed: Any = None) -> Any:
    sent: list[tuple[str, bool]] = []

    def set_choking(link: _Link, choke: bool) -> None:
        link.conn.am_choking = choke
        sent.append((link.name, choke))

    return SimpleNamespace(
        links={lk: None for lk in links},
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
