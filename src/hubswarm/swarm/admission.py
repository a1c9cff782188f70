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
    same_address: int = 0,
    max_per_address: int | None = None,
    evict: K | None = None,
) -> Admission[K]:
    """Keep this connection? ``others``: (key, remote peer id, outgoing) of our links.

    ``same_address``: our links to other peers at this connection's IP; at
    ``max_per_address`` (None: no limit) the newcomer is refused (libtorrent's
    allow_multiple_connections_per_ip = false). When ``full``, ``evict`` (see
    :func:`least_useful`) is replaced by the newcomer, else it is refused: idle links
    cannot squat the slots.
    """
    if their_peer_id is not None and their_peer_id == our_peer_id:
        return Admission(Verdict.OWN)
    if their_peer_id is None or banned:
        return Admission(Verdict.REFUSE)
    # The same peer twice (each dialled the other) first: both ends must agree on which
    # connection stays, before any per-address count could refuse them both.
    for key, peer_id, other_outgoing in others:
        if peer_id != their_peer_id:
            continue
        mine_first = our_peer_id < their_peer_id
        if outgoing == mine_first and other_outgoing != mine_first:
            return Admission(Verdict.KEEP, replaces=key)
        return Admission(Verdict.DUPLICATE)
    if max_per_address is not None and same_address >= max_per_address:
        return Admission(Verdict.REFUSE)
    if full:
        if evict is None:
            return Admission(Verdict.REFUSE)
        return Admission(Verdict.KEEP, replaces=evict)
    return Admission(Verdict.KEEP)


@dataclass(frozen=True, slots=True)
class LinkUse(Generic[K]):
    """What the connection policy reads about one link."""

    key: K
    interested: bool  # either side interested in the other
    exchanged: int  # payload bytes, both ways, since the link began
    active_at: float  # last payload or interest change (the connection time if none)


def least_useful(links: Iterable[LinkUse[K]], now: float, *, min_idle: float) -> K | None:
    """The link a newcomer may replace when we are full, or None: no interest either way,
    nothing exchanged, idle at least ``min_idle`` (a new link needs a moment to say what it
    wants); of those the longest idle. An honest link never qualifies: it is interested,
    or has given or taken data."""
    best: LinkUse[K] | None = None
    for use in links:
        if use.interested or use.exchanged or now - use.active_at < min_idle:
            continue
        if best is None or use.active_at < best.active_at:
            best = use
    return best.key if best is not None else None


def inactive(links: Iterable[LinkUse[K]], now: float, *, timeout: float) -> list[K]:
    """Links to drop for inactivity: no interest either way and nothing moved for
    ``timeout`` seconds (libtorrent's inactivity_timeout). Keep-alives do not count."""
    return [u.key for u in links if not u.interested and now - u.active_at >= timeout]


def stalled(
    *,
    wants: bool,
    unchoked: bool,
    last_piece_at: float | None,
    since: float,
    now: float,
    timeout: float,
) -> bool:
    """A link that trickles: we want its data and it unchoked us, yet no whole block came
    for ``timeout`` seconds (since ``since``: the unchoke or the connection)."""
    if not (wants and unchoked):
        return False
    return now - max(last_piece_at if last_piece_at is not None else since, since) >= timeout


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
