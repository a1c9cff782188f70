"""The pure admission rules: whom a session keeps, and its first messages."""

from __future__ import annotations

import pytest

from hubswarm.proto.wire_events import Bitfield as BitfieldMsg
from hubswarm.proto.wire_events import Have, HaveAll, HaveNone
from hubswarm.swarm.admission import Verdict, admit, extended_handshake, opening
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
