"""The session's side of the connection policy (issue 21): the shell around the pure rules
in :mod:`.admission`.

:func:`admit` decides whether a handshaken connection stays (self, bans, duplicates, the
per-address limit, eviction of an idle link when full) and applies the verdict.
:func:`guard_round` runs with the session's ticker: it drops links idle for the inactivity
time-out and links that trickle (we want their data, they unchoked us, no block comes).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from hubswarm.proto import wire
from hubswarm.swarm import admission
from hubswarm.swarm.config import MAX_LINKS_FACTOR
from hubswarm.swarm.linkstate import LinkState
from hubswarm.swarm.peer import PeerLink

if TYPE_CHECKING:
    from hubswarm.swarm.session import TorrentSession

log = logging.getLogger(__name__)


def _use(link: PeerLink, st: LinkState) -> admission.LinkUse[PeerLink]:
    conn = link.conn
    return admission.LinkUse(
        key=link,
        interested=conn.am_interested or conn.peer_interested,
        exchanged=link.download_rate.total + link.upload_rate.total,
        active_at=max(link.connected_at, st.last_piece_at or link.connected_at),
    )


def admit(
    session: TorrentSession, conn: wire.PeerConnection, address: tuple[str, int], *, outgoing: bool
) -> bool:
    """Keep this connection? (:func:`.admission.admit` decides; here its effects.)"""
    hs, book, config = conn.remote_handshake, session.peer_book, session.config
    their_id = hs.peer_id if hs is not None else None
    full = len(session.links) >= config.max_peers * MAX_LINKS_FACTOR
    evict = None
    if full:
        uses = (_use(lk, st) for lk, st in session.links.items() if not lk.closed)
        evict = admission.least_useful(uses, session.clock(), min_idle=config.evict_min_idle)
    decision = admission.admit(
        config.peer_id,
        their_id,
        outgoing=outgoing,
        banned=book.is_banned(address)
        or (their_id is not None and book.is_banned_peer_id(their_id)),
        full=full,
        others=[
            (lk, lk.conn.remote_handshake.peer_id, lk.outgoing)
            for lk in session.links
            if lk.conn.remote_handshake is not None
        ],
        same_address=sum(1 for lk in session.links if lk.address[0] == address[0]),
        max_per_address=config.max_per_address,
        evict=evict,
    )
    match decision.verdict:
        case admission.Verdict.OWN:
            book.mark_own(address)  # we dialled ourselves (a tracker lists us too)
        case admission.Verdict.REFUSE if outgoing:
            session.dialer.retry(address)
        case admission.Verdict.DUPLICATE if outgoing:
            session.dialer.retry(address, config.reconnect_max)
        case admission.Verdict.KEEP:
            if decision.replaces is not None:
                if decision.replaces is evict:
                    log.debug("%r makes room for %s:%d", evict, *address)
                decision.replaces.close()
            return True
    return False


def guard_round(session: TorrentSession, now: float) -> None:
    """Drop inactive links (libtorrent's inactivity_timeout) and links that trickle."""
    config = session.config
    live = [(lk, st) for lk, st in session.links.items() if not lk.closed]
    drop = set(
        admission.inactive(
            (_use(lk, st) for lk, st in live), now, timeout=config.inactivity_timeout
        )
    )
    for lk, st in live:
        wants, unchoked = lk.conn.am_interested, not lk.conn.peer_choking
        if not (wants and unchoked):
            st.stall_since = None
        elif st.stall_since is None:
            st.stall_since = now
        elif admission.stalled(
            wants=wants,
            unchoked=unchoked,
            last_piece_at=st.last_piece_at,
            since=st.stall_since,
            now=now,
            timeout=config.stall_timeout,
        ):
            drop.add(lk)
    for lk in drop:
        log.debug("dropping %r: inactive or trickling", lk)
        lk.close()
