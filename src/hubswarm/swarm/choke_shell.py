"""The session's side of choking (BEP 3): the shell around :class:`.choker.Choker`.

:func:`choke_round` gives the choker each open link's rates and flags as
:class:`~.choker.PeerStats` (a super-seed's slots come from its driver instead) and applies
the unchokes it decides; a peer choked here loses its queued requests (BEP 3, rejected one
by one with BEP 6). :func:`unchoke_now` fills a free slot as soon as a peer becomes
interested instead of at the next round, and :func:`give_slot_back` frees the slot of a
peer that lost interest at once, for the fastest interested peer waiting. While peers
wait for a slot, a :class:`SlotWatch` hands the slots of unchoked peers that ask for
nothing (:class:`~.choker.IdleSlots`) to waiting ones. All send through
``session.set_choking``, which tells a super-seed too.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from hubswarm.errors import LocalProtocolError
from hubswarm.swarm.choker import IdleSlots, PeerStats, UploadSnapshot
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
    waiting = False
    for lk, _ in links:
        if lk in unchoke and lk.conn.am_choking:
            session.set_choking(lk, False)
        elif lk not in unchoke and not lk.conn.am_choking:
            session.set_choking(lk, True)
            lk.clear_uploads()
        waiting = waiting or (lk.conn.am_choking and lk.conn.peer_interested)
    if waiting:
        session.slot_watch.start()


def unchoke_now(session: TorrentSession, link: PeerLink) -> None:
    """``link`` became interested: a free slot need not wait for the next round."""
    if session.superseed is not None:
        session.superseed.fill_slots()  # slots go to peers waiting for an offered piece
        return
    if not link.conn.am_choking:
        return
    # Counted only for a choked peer (the count walks every link).
    unchoked = sum(1 for lk in session.links if not lk.conn.am_choking)
    if session.choker.can_unchoke_now(unchoked, seeding=session.is_seed):
        session.set_choking(link, False)
    else:
        session.slot_watch.start()  # it waits: a slot may be idle


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


class SlotWatch:
    """While interested peers wait for a slot, every ``idle_after`` seconds (the session's
    ``request_queue_time``) give the slots of unchoked peers that ask for nothing to them.

    One task of the session, started when a peer has to wait and ended when none does.
    """

    def __init__(self, session: TorrentSession) -> None:
        self.session = session
        self.idle = IdleSlots(session.config.request_queue_time)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Some peer waits for a slot: watch, unless already watching (or super-seeding,
        whose slots follow its offers)."""
        if self.session.superseed is not None:
            return
        if self._task is None or self._task.done():
            with contextlib.suppress(LocalProtocolError):  # the session is stopping
                self._task = self.session.spawn(self._run())

    def unchoked(self, link: PeerLink) -> None:
        """``link`` was unchoked: its idle clock starts afresh."""
        self.idle.forget(link)

    async def _run(self) -> None:
        session = self.session
        while True:
            await session.clock.sleep(self.idle.idle_after)
            if not reclaim_idle_slots(session, self.idle, session.clock()):
                return


def reclaim_idle_slots(session: TorrentSession, idle: IdleSlots, now: float) -> bool:
    """Choke unchoked peers that asked for nothing for ``idle.idle_after`` and unchoke as
    many waiting interested peers, those with the fewest pieces first (they have the most
    to ask of us and nothing to reciprocate with: BEP 3's reason for the optimistic
    unchoke). False when no peer waits (nothing left to watch)."""
    if session.superseed is not None:
        return False
    unchoked: list[PeerLink] = []
    waiting: list[PeerLink] = []
    for lk in session.links:
        if not lk.closed and lk.conn.peer_interested:
            (waiting if lk.conn.am_choking else unchoked).append(lk)
    if not waiting:
        idle.observe((), now)
        return False
    snapshots = [
        UploadSnapshot(lk, lk.upload_rate.total, lk.bytes_acked() >= lk.bytes_written)
        for lk in unchoked
    ]
    idle_links = idle.observe(snapshots, now)
    if not idle_links:
        return True
    session.rng.shuffle(waiting)  # a random order among equals

    def pieces(lk: PeerLink) -> int:
        st = session.links.get(lk)
        return st.has.count() if st is not None and st.has is not None else 0

    waiting.sort(key=pieces, reverse=True)  # pop() takes the fewest
    for key in idle_links:
        if not waiting:
            break
        if not isinstance(key, PeerLink):
            continue
        session.set_choking(key, True)
        key.clear_uploads()
        idle.forget(key)
        session.set_choking(waiting.pop(), False)
    return True
