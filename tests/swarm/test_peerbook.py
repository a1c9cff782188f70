"""The peer book: candidates, dial back-off, trust and bans (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hubswarm.swarm.peerbook import (
    TRUST_BAN,
    TRUST_MAX,
    PeerBook,
)

A = ("10.0.0.1", 6881)
B = ("10.0.0.2", 6881)


def test_a_new_address_is_due_at_once_and_counts_as_connecting_until_dialled() -> None:
    book = PeerBook()
    assert book.add(A)
    assert not book.add(A)  # known already
    assert book.due(0.0, room=5, connected=()) == [A]
    assert book.due(0.0, room=5, connected=()) == []  # connecting
    book.dialled(A, ok=True)
    assert book.due(0.0, room=5, connected={A}) == []  # connected


def test_room_and_bad_ports_and_own_addresses_are_respected() -> None:
    book = PeerBook()
    assert not book.add(("10.0.0.3", 0))
    assert not book.add(("10.0.0.3", 65536))
    book.add(A)
    book.add(B)
    assert len(book.due(0.0, room=1, connected=())) == 1
    book.mark_own(B)
    assert B not in book
    assert not book.add(B)


def test_candidates_are_bounded() -> None:
    book = PeerBook(max_candidates=3)
    for port in range(1, 10):
        book.add(("10.0.0.9", port))
    assert len(book) == 3


def test_failures_back_off_doubling_up_to_the_maximum_and_success_resets() -> None:
    book = PeerBook(reconnect_min=2.0, reconnect_max=10.0)
    book.add(A)
    waits = []
    now = 0.0
    for _ in range(5):
        assert book.due(now, room=1, connected=()) == [A]
        book.dialled(A, ok=False)
        assert book.retry(A, now)
        at = book.next_attempt_at(A)
        assert at is not None
        waits.append(at - now)
        assert book.due(at - 0.001, room=1, connected=()) == []
        now = at
    assert waits == [2.0, 4.0, 8.0, 10.0, 10.0]
    book.due(now, room=1, connected=())
    book.dialled(A, ok=True)
    book.retry(A, now)
    assert book.next_attempt_at(A) == now + 2.0


@given(st.lists(st.booleans(), max_size=40))
def test_back_off_stays_within_its_bounds(outcomes: list[bool]) -> None:
    book = PeerBook(reconnect_min=0.5, reconnect_max=7.0)
    book.add(A)
    now = 0.0
    for ok in outcomes:
        book.due(now, room=1, connected=())
        book.dialled(A, ok=ok)
        book.retry(A, now)
        at = book.next_attempt_at(A)
        assert at is not None
        assert 0.5 <= at - now <= 7.0
        if ok:
            assert at - now == 0.5
        now = at


def test_a_peer_sending_bad_pieces_alone_is_banned_on_the_second() -> None:
    book = PeerBook()
    book.add(A)
    assert not book.bad_piece(A, alone=True, peer_id=b"x" * 20).banned
    change = book.bad_piece(A, alone=True, peer_id=b"x" * 20)
    assert change.banned
    assert change.trust <= TRUST_BAN
    assert book.is_banned(A)
    assert book.is_banned(("10.0.0.1", 1))  # not loopback: the whole IP
    assert book.is_banned_peer_id(b"x" * 20)
    assert A not in book
    assert not book.add(A)
    assert book.bans == 1


def test_on_loopback_only_the_address_is_banned() -> None:
    book = PeerBook()
    here = ("127.0.0.1", 7000)
    book.bad_piece(here, alone=True)
    book.bad_piece(here, alone=True)
    assert book.is_banned(here)
    assert not book.is_banned(("127.0.0.1", 7001))


@given(st.lists(st.sampled_from(["good", "shared", "sole"]), max_size=60))
def test_trust_never_exceeds_its_cap_and_a_ban_happens_once(events: list[str]) -> None:
    book = PeerBook()
    banned_calls = 0
    for kind in events:
        alone = kind == "sole"
        change = book.good_piece(A) if kind == "good" else book.bad_piece(A, alone=alone)
        banned_calls += change.banned
        assert change.trust <= TRUST_MAX
        if change.trust <= TRUST_BAN:
            assert book.is_banned(A)
    assert banned_calls <= 1
    assert book.is_banned(A) == (banned_calls == 1)
