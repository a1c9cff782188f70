"""The super-seed driver (pure): deliveries by acknowledged bytes, ticks, slots."""

from __future__ import annotations

import random

from hubswarm.proto.wire_events import Request
from hubswarm.swarm.superseed_driver import SuperSeedDriver

PIECE = 32 * 1024


def driver(pieces: int = 8) -> SuperSeedDriver[str]:
    return SuperSeedDriver(
        pieces, lambda i: PIECE, rng=random.Random(1), offer_timeout=10.0, slots=2
    )


def blocks(i: int) -> list[Request]:
    return [Request(i, 0, 16384), Request(i, 16384, 16384)]


def test_a_written_piece_is_passed_on_only_once_acknowledged() -> None:
    d = driver()
    offers = d.opening("a", 0.0, choked=False)
    d.opening("b", 0.0, choked=False)
    assert offers
    first = offers[0]
    d.written("a", blocks(first), end=PIECE + 100)
    assert d.waiting
    assert d.delivered("a", PIECE, 1.0) == {}  # not all of it held yet
    assert d.is_waiting("a")
    d.delivered("a", PIECE + 100, 1.0)
    assert not d.waiting
    assert first not in d.policy.offers("a") or d.policy.offers("a") == set(offers)


def test_a_closed_peer_drops_what_it_did_not_acknowledge() -> None:
    d = driver()
    offers = d.opening("a", 0.0, choked=False)
    assert offers
    d.written("a", blocks(offers[0]), end=PIECE)
    d.delivered("a", 0, 1.0, closed=True)
    assert not d.waiting


def test_tick_forgets_peers_that_left_and_expires_offers() -> None:
    d = driver()
    d.opening("a", 0.0, choked=False)
    d.opening("b", 0.0, choked=False)
    assert d.tick(0.5, {"a", "b"}) is None  # nothing expired yet
    out = d.tick(20.0, {"a"})  # b left; a's offers timed out
    assert "b" not in d.policy.peers()
    assert out is not None


def test_slots_go_to_hungry_peers_and_settle_reports_rebalancing() -> None:
    d = driver()
    d.opening("a", 0.0, choked=True)
    d.opening("b", 0.0, choked=True)
    assert d.unchoke(["a", "b", "c"], set()) <= {"a", "b"}
    assert set(d.to_unchoke_now(["a", "b"], set())) == {"a", "b"}
    out, rebalance = d.settle({}, 0.0)
    assert isinstance(rebalance, bool)
    assert isinstance(out, dict)
