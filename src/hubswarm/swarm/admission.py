"""Pure admission of a new link: whom the session keeps, and what it says first.

:func:`admit` decides, once a handshake is done, whether a connection stays: never one to
ourselves, to a banned peer, or beyond twice ``max_peers``; of two connections between the
same two peers (each dialled the other) both ends keep the one the smaller peer id dialled,
so they agree without a word. :func:`opening` is the link's first messages: our BEP 10
extended handshake, then what we have (BEP 3 bitfield, BEP 6 have all / have none, or a
super-seed's offers as ``have``), with our extension ids (:func:`our_extensions`). No I/O
and no clock: the session applies the verdict
(closing, re-dialling) and sends the messages.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from hubswarm import __version__
from hubswarm.limits import MAX_INCOMING_REQUEST_QUEUE
from hubswarm.proto.wire import UT_METADATA, UT_PEX
from hubswarm.proto.wire_events import Bitfield as BitfieldMsg
from hubswarm.proto.wire_events import Event, ExtendedHandshake, Have, HaveAll, HaveNone
from hubswarm.swarm.bitfield import Bitfield

K = TypeVar("K", bound=Hashable)


class Verdict(enum.Enum):
    """What becomes of a new connection."""

    KEEP = "keep"
    OWN = "own"  # we reached ourselves (a tracker lists us too): never dial it again
    REFUSE = "refuse"  # banned, no handshake, or too many links: dial again after back-off
    DUPLICATE = "duplicate"  # the other connection to this peer stays: call again much later


@dataclass(frozen=True, slots=True)
class Admission(Generic[K]):
    """A verdict, and the older link to this peer that a kept connection replaces."""

    verdict: Verdict
    replaces: K | None = None


def admit(
    our_peer_id: bytes,
    their_peer_id: bytes | None,
    *,
    outgoing: bool,
    banned: bool,
    full: bool,
    others: Iterable[tuple[K, bytes | None, bool]],
) -> Admission[K]:
    """Keep this connection? ``others``: (key, remote peer id, outgoing) of our links."""
    if their_peer_id is not None and their_peer_id == our_peer_id:
        return Admission(Verdict.OWN)
    if their_peer_id is None or banned or full:
        return Admission(Verdict.REFUSE)
    for key, peer_id, other_outgoing in others:
        if peer_id != their_peer_id:
            continue
        mine_first = our_peer_id < their_peer_id
        if outgoing == mine_first and other_outgoing != mine_first:
            return Admission(Verdict.KEEP, replaces=key)
        return Admission(Verdict.DUPLICATE)
    return Admission(Verdict.KEEP)


def extended_handshake(
    extensions: dict[str, int], metadata_size: int | None, listen_port: int
) -> ExtendedHandshake:
    """Our BEP 10 handshake: extension ids, BEP 9 size, version, listen port and ``reqq``."""
    return ExtendedHandshake(
        m=extensions,
        metadata_size=metadata_size,
        v=f"hubswarm {__version__}",
        p=listen_port or None,
        reqq=MAX_INCOMING_REQUEST_QUEUE,
    )


def opening(
    *,
    handshake: ExtendedHandshake | None,
    supports_fast: bool,
    have: Bitfield | None,
    offers: list[int] | None,
) -> list[Event]:
    """Our first messages: the extended handshake (None: the peer has no BEP 10), then
    what we have (BEP 3, 6) or, super-seeding, the pieces ``offers`` (BEP 16)."""
    out: list[Event] = [handshake] if handshake is not None else []
    if offers is not None:
        # BEP 16: masquerade as a peer with nothing (no bitfield without BEP 6), then
        # reveal a few pieces with `have`.
        if supports_fast:
            out.append(HaveNone())
        out.extend(Have(i) for i in offers)
    elif have is None or have.count() == 0:
        if supports_fast:
            out.append(HaveNone())
    elif have.is_complete and supports_fast:
        out.append(HaveAll())
    else:
        out.append(BitfieldMsg(have.to_bytes()))
    return out


# Our local extension ids (BEP 10: ids are chosen by the receiver of the handshake).
UT_METADATA_ID = 1
UT_PEX_ID = 2


def our_extensions(*, use_pex: bool, private: bool) -> dict[str, int]:
    """Our BEP 10 extension ids; no ut_pex for a torrent known to be private (BEP 27)."""
    m = {UT_METADATA: UT_METADATA_ID}
    if use_pex and not private:
        m[UT_PEX] = UT_PEX_ID
    return m
