"""The session's side of super-seeding (BEP 16): the shell around :class:`SuperSeedDriver`.

A :class:`SuperSeeding` exists while a session that started complete hides its pieces. It
owns the driver and the one task that polls the links' acknowledged bytes while written
blocks wait (``DELIVERY_POLL``), and it does the driver's I/O: offers go out as ``have``,
waiting hungry peers are unchoked, offers are replaced as they time out. The session calls
it from its own hooks (a link opened, a request, a ``have``, blocks written, a choke
round, a link closed) and is told once super-seeding ends, to seed as usual from then on.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from hubswarm.errors import LocalProtocolError
from hubswarm.proto.metainfo import InfoDict
from hubswarm.proto.wire_events import Have, Request
from hubswarm.swarm.peer import PeerLink
from hubswarm.swarm.superseed import Announce
from hubswarm.swarm.superseed_driver import SuperSeedDriver, merge

if TYPE_CHECKING:
    import asyncio

    from hubswarm.swarm.session import TorrentSession

log = logging.getLogger(__name__)

# How often acknowledged bytes are read while written blocks wait: 10 ms is a third of a
# 32 KiB piece's time on a 1 MiB/s link, and only runs while blocks are in flight.
DELIVERY_POLL = 0.01


class SuperSeeding:
    """BEP 16 for one session: offers, deliveries and slots (decisions: the driver's)."""

    def __init__(self, session: TorrentSession, info: InfoDict) -> None:
        config = session.config
        self.session = session
        self.driver: SuperSeedDriver[PeerLink] = SuperSeedDriver(
            info.num_pieces,
            info.piece_size,
            rng=session.rng,
            # An offer not fetched and passed on within a request timeout has stalled.
            offer_timeout=config.request_timeout,
            slots=config.unchoke_slots + 1,
        )
        self._watch: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        """False once every piece is on some peer (the session then drops this object)."""
        return self.driver.active

    def start(self, links: Iterable[PeerLink]) -> None:
        """Links opened before the metadata (magnet) were sent no pieces yet: offer some."""
        now = self.session.clock()
        for link in list(links):
            offers = self.driver.opening(link, now, choked=link.conn.am_choking)
            if offers:
                self.announce({link: offers})

    def opening(self, link: PeerLink) -> list[int] | None:
        """The pieces to offer a new link instead of a bitfield (None: not hiding)."""
        # A new link starts choked (BEP 3): its offers' clocks wait for the unchoke.
        return self.driver.opening(link, self.session.clock(), choked=link.conn.am_choking)

    def allows(self, link: PeerLink, piece_index: int) -> bool:
        """Only pieces offered to this peer may be fetched (libtorrent rejects the rest too)."""
        return self.driver.allows(link, piece_index)

    def set_choked(self, link: PeerLink, choked: bool) -> None:
        """The offers' time-outs run only while the peer is unchoked."""
        self.driver.set_choked(link, choked, self.session.clock())

    def unchoke(self) -> set[PeerLink]:
        """The choke round's unchokes: peers waiting for an offered piece first."""
        return self.driver.unchoke(*self._interested_links())

    def peer_have(self, link: PeerLink, piece_index: int, has: Iterable[int]) -> None:
        """A ``have`` from ``link`` (``has``: its whole have-set) may release its offers."""
        now = self.session.clock()
        self.announce(self.driver.peer_have(link, piece_index, has, now))
        self.tick(now)

    def tick(self, now: float) -> None:
        """Forget links that closed and replace offers that timed out."""
        out = self.driver.tick(now, self.session.links)
        if out is not None:
            self.announce(out)

    def link_closed(self, link: PeerLink) -> None:
        """What ``link`` acknowledged before it went counts; the rest is lost with it."""
        driver = self.driver
        if driver.is_waiting(link):
            out = driver.delivered(link, link.bytes_acked(), self.session.clock(), closed=True)
            if out or driver.policy.hunger_changed:
                self.announce(out)
        driver.peer_left(link)

    # --- deliveries -----------------------------------------------------------------------

    def blocks_written(self, link: PeerLink, requests: list[Request], end: int) -> None:
        """Remember written blocks until the peer holds them (see the driver)."""
        self.driver.written(link, requests, end)
        if self._watch is None or self._watch.done():
            with contextlib.suppress(LocalProtocolError):  # the session is stopping
                self._watch = self.session.spawn(self._watch_deliveries())

    async def _watch_deliveries(self) -> None:
        """Read the links' acknowledged bytes every ``DELIVERY_POLL`` while blocks wait."""
        driver, clock = self.driver, self.session.clock
        while self.active and driver.waiting:
            await clock.sleep(DELIVERY_POLL)
            if not self.active:
                return
            now, out = clock(), Announce()
            for link in driver.waiting_peers():
                merge(out, driver.delivered(link, link.bytes_acked(), now, closed=link.closed))
            if out or driver.policy.hunger_changed:
                self.announce(out)

    # --- I/O ------------------------------------------------------------------------------

    def announce(self, out: Announce) -> None:
        """Send the driver's offers as ``have``; tell the session once super-seeding ends."""
        out, rebalance = self.driver.settle(out, self.session.clock())
        for peer, pieces in out.items():
            if isinstance(peer, PeerLink) and not peer.closed and pieces:
                peer.send_many([Have(i) for i in pieces])
        if rebalance:
            self.fill_slots()  # new offers, or a peer got its last one
        if not self.active:
            self.session.superseeding_ended(self)

    def fill_slots(self) -> None:
        """Unchoke waiting hungry peers now if fewer than the slots are being served.

        Only unchokes: a choke here could land between a block's accounting and its write
        (read_block runs inside the upload loop); the choke round takes the slots back.
        """
        for link in self.driver.to_unchoke_now(*self._interested_links()):
            self.session.set_choking(link, False)

    def _interested_links(self) -> tuple[list[PeerLink], set[PeerLink]]:
        """Interested links, oldest connection first, and those of them we unchoke."""
        ready = sorted(
            (lk for lk in self.session.links if not lk.closed and lk.conn.peer_interested),
            key=lambda lk: lk.connected_at,
        )
        return ready, {lk for lk in ready if not lk.conn.am_choking}
