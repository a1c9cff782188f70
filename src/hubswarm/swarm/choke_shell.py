"""The session's side of choking (BEP 3): the shell around :class:`.choker.Choker`.

:func:`choke_round` gives the choker each open link's rates and flags as
:class:`~.choker.PeerStats` (a super-seed's slots come from its driver instead) and applies
the unchokes it decides; a peer choked here loses its queued requests (BEP 3, rejected one
by one with BEP 6). :func:`unchoke_now` fills a free slot as soon as a peer becomes
interested instead of at the next round, and :func:`give_slot_back` frees the slot of a
peer that lost interest at once, for the fastest interested peer waiting. All send
through ``session.set_choking``, which tells a super-seed too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hubswarm.swarm.choker import PeerStats
from hubswarm.swarm.peer import PeerLink

if TYPE_CHECKING:
    from hubswarm.swarm.session import TorrentSession


def choke_round(session: TorrentSession, now: float) -> None:
    """Re-decide whom we upload to (the choker's or the super-seed's slots)."""
    links = [(lk, st) for lk, st in session.links.items() if not lk.closed]
    stats = [
        PeerStats(
            peer_id=lk,
            interested=lk.conn.peer_interested,
            download_rate=lk.download_rate.rate,
            upload_rate=lk.upload_rate.rate,
            connected_at=lk.connected_at,
            last_piece_at=st.last_piece_at,
            am_interested=lk.conn.am_interested,
            snubbed=st.snubbed,
        )
        for lk, st in links
    ]
    unchoke: set[PeerLink] | frozenset[object] = session.choker.decide(
        stats, now, seeding=session.is_seed
    ).unchoke
    if session.superseed is not None:
        unchoke = session.superseed.unchoke()
    for lk, _ in links:
        if lk in unchoke and lk.conn.am_choking:
            session.set_choking(lk, False)
        elif lk not in unchoke and not lk.conn.am_choking:
            session.set_choking(lk, True)
            lk.clear_uploads()


def unchoke_now(session: TorrentSession, link: PeerLink) -> None:
    """``link`` became interested: a free slot need not wait for the next round."""
    if session.superseed is not None:
        session.superseed.fill_slots()  # slots go to peers waiting for an offered piece
        return
    unchoked = sum(1 for lk in session.links if not lk.conn.am_choking)
    if link.conn.am_choking and session.choker.can_unchoke_now(unchoked, seeding=session.is_seed):
        session.set_choking(link, False)


def give_slot_back(session: TorrentSession, link: PeerLink) -> None:
    """``link`` is no longer interested: it gives its slot back at once, to the interested
    peer that sends us the most (as libtorrent's ``incoming_not_interested`` chokes it and
    triggers an unchoke). Otherwise the slot idles until the next round: in a flash crowd a
    peer's unchoked neighbours soon hold every piece it has, and its upload stops."""
    if session.superseed is not None or link.conn.am_choking:
        return
    session.set_choking(link, True)
    link.clear_uploads()
    waiting = [
        lk
        for lk in session.links
        if not lk.closed and lk.conn.am_choking and lk.conn.peer_interested and lk is not link
    ]
    if waiting:
        unchoke_now(session, max(waiting, key=lambda lk: lk.download_rate.rate))
