"""The pure admission rules: whom a session keeps, and its first messages."""

from __future__ import annotations

import pytest

from hubswarm.proto.wire_events import Bitfield as BitfieldMsg
from hubswarm.proto.wire_events import Have, HaveAll, HaveNone
from hubswarm.swarm.admission import (
    LinkUse,
    Verdict,
    admit,
    extended_handshake,
    inactive,
    least_useful,
    opening,
    stalled,
)
from hubswarm.swarm.bitfield import Bitfield

OURS, SMALL, LARGE = b"-HS0100-mmmmmmmmmmmm", b"-HS0100-aaaaaaaaaaaa", b"-HS0100-zzzzzzzzzzzz"


def _alone(theirs: bytes | None, *, banned: bool = False, full: bool = False) -> Verdict:
    """The verdict on a connection we dialled while we have no other link."""
    return admit(OURS, theirs, outgoing=True, banned=banned, full=full, others=[]).verdict


def test_ourselves_banned_full_and_no_handshake() -> None:
    assert _alone(OURS) is Verdict.OWN
    assert _alone(None) is Verdict.REFUSE
    assert _alone(SMALL, banned=True) is Verdict.REFUSE
    assert _alone(SMALL, full=True) is Verdict.REFUSE
    assert _alone(SMALL) is Verdict.KEEP


@pytest.mark.parametrize("theirs", [SMALL, LARGE])
def test_both_ends_keep_the_connection_the_smaller_peer_id_dialled(theirs: bytes) -> None:
    mine_first = theirs > OURS
    # We hold the connection they dialled; now the one we dialled completes.
    ours = admit(
        OURS, theirs, outgoing=True, banned=False, full=False, others=[("old", theirs, False)]
    )
    # They hold the connection they dialled; now ours arrives.
    seen_there = admit(
        theirs, OURS, outgoing=False, banned=False, full=False, others=[("old", OURS, True)]
    )
    if mine_first:  # ours survives at both ends
        assert (ours.verdict, ours.replaces) == (Verdict.KEEP, "old")
        assert (seen_there.verdict, seen_there.replaces) == (Verdict.KEEP, "old")
    else:  # theirs survives at both ends
        assert ours.verdict is Verdict.DUPLICATE
        assert seen_there.verdict is Verdict.DUPLICATE


def test_opening_follows_bep_3_6_10_16() -> None:
    hs = extended_handshake({"ut_metadata": 1}, 1234, 6881)
    assert (hs.metadata_size, hs.p) == (1234, 6881)
    empty, full, some = Bitfield(8), Bitfield.all(8), Bitfield.from_indices(8, [1])
    assert opening(handshake=hs, supports_fast=True, have=empty, offers=None) == [hs, HaveNone()]
    assert opening(handshake=None, supports_fast=False, have=None, offers=None) == []
    assert opening(handshake=None, supports_fast=True, have=full, offers=None) == [HaveAll()]
    assert opening(handshake=None, supports_fast=False, have=full, offers=None) == [
        BitfieldMsg(full.to_bytes())
    ]
    assert opening(handshake=None, supports_fast=True, have=some, offers=None) == [
        BitfieldMsg(some.to_bytes())
    ]
    # A super-seed hides its pieces: have none, then only the offers.
    assert opening(handshake=None, supports_fast=True, have=full, offers=[3, 5]) == [
        HaveNone(),
        Have(3),
        Have(5),
    ]
    assert opening(handshake=None, supports_fast=False, have=full, offers=[3]) == [Have(3)]


# --- connection policy (issue 21) ------------------------------------------------------------


def test_per_address_limit_refuses_a_second_peer_at_one_address() -> None:
    def verdict(same: int, limit: int | None) -> Verdict:
        return admit(
            OURS, SMALL, outgoing=False, banned=False, full=False, others=[],
            same_address=same, max_per_address=limit,
        ).verdict  # fmt: skip

    assert verdict(0, 1) is Verdict.KEEP
    assert verdict(1, 1) is Verdict.REFUSE
    assert verdict(1, 2) is Verdict.KEEP
    assert verdict(50, None) is Verdict.KEEP


def test_duplicate_resolution_comes_before_the_address_limit() -> None:
    # Each dialled the other: both connections come from one address; the limit must not
    # refuse the one both ends keep.
    mine_first = OURS < LARGE
    decision = admit(
        OURS, LARGE, outgoing=mine_first, banned=False, full=False,
        others=[("old", LARGE, not mine_first)], same_address=1, max_per_address=1,
    )  # fmt: skip
    assert decision.verdict is Verdict.KEEP
    assert decision.replaces == "old"


def test_full_evicts_the_given_link_or_refuses() -> None:
    def decide(evict: str | None) -> tuple[Verdict, str | None]:
        d = admit(OURS, SMALL, outgoing=False, banned=False, full=True, others=[], evict=evict)
        return d.verdict, d.replaces

    assert decide(None) == (Verdict.REFUSE, None)
    assert decide("idle") == (Verdict.KEEP, "idle")


def test_least_useful_is_idle_uninterested_and_empty() -> None:
    uses = [
        LinkUse("interested", interested=True, exchanged=0, active_at=0.0),
        LinkUse("gave-data", interested=False, exchanged=16384, active_at=0.0),
        LinkUse("young", interested=False, exchanged=0, active_at=95.0),
        LinkUse("idle-50", interested=False, exchanged=0, active_at=50.0),
        LinkUse("idle-10", interested=False, exchanged=0, active_at=10.0),
    ]
    assert least_useful(uses, 100.0, min_idle=10.0) == "idle-10"
    assert least_useful(uses[:3], 100.0, min_idle=10.0) is None  # honest links stay


def test_inactive_ignores_keepalives_and_interest() -> None:
    uses = [
        LinkUse("quiet", interested=False, exchanged=10, active_at=0.0),
        LinkUse("wants", interested=True, exchanged=0, active_at=0.0),
        LinkUse("recent", interested=False, exchanged=0, active_at=500.0),
    ]
    assert inactive(uses, 600.0, timeout=600.0) == ["quiet"]


def test_stalled_only_when_we_want_and_it_unchoked() -> None:
    common = {"last_piece_at": None, "since": 100.0, "timeout": 120.0}
    assert stalled(wants=True, unchoked=True, now=220.0, **common)
    assert not stalled(wants=True, unchoked=True, now=219.0, **common)
    assert not stalled(wants=False, unchoked=True, now=1e6, **common)
    assert not stalled(wants=True, unchoked=False, now=1e6, **common)
    recent = {**common, "last_piece_at": 200.0}
    assert not stalled(wants=True, unchoked=True, now=300.0, **recent)
