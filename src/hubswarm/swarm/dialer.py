"""The session's outgoing connections: the loop that dials what the peer book says is due.

A :class:`Dialer` runs as a critical task of its session. Each round it asks the
:class:`~.peerbook.PeerBook` for the addresses due now (room left under ``max_peers``, none
already connected, back-off respected), dials each in a task of the session through its
:class:`~hubswarm.net.StreamNetwork`, and hands an established connection to
``session.run_link``. A failed dial goes back to the book with doubling back-off. The loop
sleeps until woken (a new candidate, a link closed, a retry became due) or ``DIALER_PERIOD``
passes. A session that completed and does not seed dials nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from hubswarm.errors import RemoteProtocolError
from hubswarm.limits import HANDSHAKE_TIMEOUT
from hubswarm.proto import wire
from hubswarm.proto.mse import Policy
from hubswarm.swarm.peer import PeerLink, dial

if TYPE_CHECKING:
    from hubswarm.swarm.session import TorrentSession

log = logging.getLogger(__name__)

Address = tuple[str, int]

# The longest the dialer sleeps without being woken: back-offs that came due are dialled
# within this.
DIALER_PERIOD = 1.0


def connected_addresses(links: Iterable[PeerLink]) -> set[Address]:
    """Addresses we need not dial: every link's, and the listen port (BEP 10 ``p``) an
    incoming link told us, so that two peers finding each other do not connect twice."""
    out: set[Address] = set()
    for link in links:
        out.add(link.address)
        ext = link.conn.remote_extended_handshake
        if not link.outgoing and ext is not None and ext.p:
            out.add((link.address[0], ext.p))
    return out


class Dialer:
    """Dials the session's candidates; wake it when the book may have something due."""

    def __init__(self, session: TorrentSession) -> None:
        self.session = session
        self._wake = asyncio.Event()

    def add(self, address: Address) -> None:
        """A candidate address (from a tracker, the DHT, PEX, a magnet or the CLI)."""
        if self.session.peer_book.add(address):
            self._wake.set()

    def retry(self, address: Address, delay: float | None = None) -> None:
        """Dial ``address`` again later: after ``delay``, else with doubling back-off."""
        if self.session.peer_book.retry(address, self.session.clock(), delay):
            self._wake.set()

    def wake(self) -> None:
        """Look at the book now (a link closed: there is room)."""
        self._wake.set()

    async def run(self) -> None:
        """Dial what is due, then sleep until woken or ``DIALER_PERIOD`` passes."""
        session = self.session
        config, book = session.config, session.peer_book
        while True:
            self._wake.clear()
            if not (session.complete.is_set() and not config.seed):
                room = config.max_peers - len(session.links) - len(book.connecting)
                connected = connected_addresses(session.links)
                for address in book.due(session.clock(), room=room, connected=connected):
                    session.spawn(self._dial(address))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DIALER_PERIOD):
                    await self._wake.wait()

    async def _dial(self, address: Address) -> None:
        session = self.session
        book, info = session.peer_book, session.info

        def new_conn() -> wire.PeerConnection:
            return wire.PeerConnection(
                wire.Role.INITIATOR,
                tolerate_late_bitfield=True,
                info_hash=session.info_hash,
                peer_id=session.config.peer_id,
                dht=session.advertise_dht,
                # Known before the handshake, so that what the peer pipelines after its
                # handshake is checked against it too.
                num_pieces=info.num_pieces if info is not None else None,
            )

        try:
            protocol = await dial(
                session.network,
                new_conn(),
                address,
                connect_timeout=session.config.connect_timeout,
                handshake_timeout=HANDSHAKE_TIMEOUT,
                encryption=Policy(session.config.encryption),
                redial=new_conn,
            )
        except (RemoteProtocolError, OSError, TimeoutError) as exc:
            log.debug("dial %s:%d failed: %s", *address, exc)
            book.dialled(address, ok=False)
            self.retry(address)
            return
        except BaseException:
            book.dialled(address, ok=False)
            raise
        book.dialled(address, ok=True)
        await session.run_link(protocol, address, outgoing=True)
