"""The session's side of peer exchange (BEP 11): the shell around :class:`.pex.PexPeer`.

Once a round (the session's ticker) and whenever a peer's extended handshake arrives,
:func:`pex_round` tells each ut_pex peer what changed among our peers: where they accept
connections (:func:`pex_addresses`), as each link's :class:`~.pex.PexPeer` diffs it. What
peers tell us goes to the peer book (:func:`on_pex`), at most once per ``PEX_MIN_GAP``.
Never for a private torrent (BEP 27), nor a magnet's before its metadata says it is public.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from hubswarm.errors import LocalProtocolError
from hubswarm.proto import wire
from hubswarm.swarm.linkstate import LinkState
from hubswarm.swarm.peer import PeerLink
from hubswarm.swarm.pex import PEX_REACHABLE

if TYPE_CHECKING:
    from hubswarm.swarm.session import TorrentSession

log = logging.getLogger(__name__)

Address = tuple[str, int]


def pex_enabled(session: TorrentSession) -> bool:
    """PEX once the torrent is known not to be private (a magnet's: after its metadata)."""
    return session.config.use_pex and session.info is not None and not session.info.private


def pex_addresses(links: Iterable[PeerLink]) -> dict[Address, int]:
    """Where our peers accept connections, with BEP 11 flags: the address we dialled,
    or an incoming peer's IP with the listen port of its extended handshake."""
    out: dict[Address, int] = {}
    for link in links:
        if link.closed:
            continue
        if link.outgoing:
            out[link.address] = PEX_REACHABLE
        else:
            ext = link.conn.remote_extended_handshake
            if ext is not None and ext.p:
                out[(link.address[0], ext.p)] = 0
    return out


def pex_round(session: TorrentSession, now: float) -> None:
    """Tell each PEX peer what changed among our peers, at most once per interval."""
    if not pex_enabled(session):
        return
    current = pex_addresses(session.links)
    for link, st in list(session.links.items()):
        if link.closed or wire.UT_PEX not in link.conn.remote_extensions:
            continue
        ext = link.conn.remote_extended_handshake
        itself = {link.address, (link.address[0], ext.p if ext is not None and ext.p else 0)}
        message = st.pex.message(current, itself, now)
        if message is None:
            continue
        try:
            link.send(message)
        except LocalProtocolError as exc:
            log.debug("ut_pex to %r: %s", link, exc)
            continue
        st.pex.sent(message, now)


def on_pex(
    session: TorrentSession, link: PeerLink, st: LinkState, added: Iterable[Address]
) -> None:
    """A ut_pex message from ``link``: its added peers become candidates (if in time)."""
    if pex_enabled(session) and st.pex.accept(session.clock()):
        added = list(added)
        session.log_event("pex", peer=link.address[0], added=len(added))
        for address in added:
            session.add_peer(address)
