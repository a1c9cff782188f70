"""The session's side of the metadata exchange (BEP 9): the shell around
:class:`.metadata.MetadataFetch`.

A magnet's session asks each ut_metadata peer for the info dict's pieces the fetch hands
out (:func:`request_metadata`, on the peer's extended handshake), passes the pieces that
come back to it, and once they verify against the info-hash sets the torrent up as if it
had come from a .torrent (:func:`on_metadata`). Any session serves its info dict's pieces
to peers that ask (:func:`serve_metadata`), and rejects them while it has none.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from hubswarm.errors import MetainfoError
from hubswarm.proto import wire
from hubswarm.proto.metainfo import parse_info
from hubswarm.proto.wire_events import MetadataData, MetadataReject, MetadataRequest
from hubswarm.swarm.metadata import metadata_piece
from hubswarm.swarm.peer import PeerLink

if TYPE_CHECKING:
    from hubswarm.swarm.session import TorrentSession

log = logging.getLogger(__name__)


def request_metadata(session: TorrentSession, link: PeerLink, *, holder: bool = False) -> None:
    """Ask ``link`` for the pieces nobody else is fetching (a magnet without its info).

    ``holder``: the peer announced pieces, so it has the info dict now even if it had none
    when it sent its extended handshake (BEP 9 gives ``metadata_size`` only there): ask it
    with the size another peer gave, or for piece 0 if nobody gave one (as libtorrent asks
    every ut_metadata peer). Without this, a peer of a flash crowd whose links all came up
    before their peers had the info dict never asked anyone and never started."""
    size = link.conn.remote_metadata_size
    if holder:
        if size is not None:
            return  # asked at its handshake
        assembler = session.metadata.assembler
        size = assembler.metadata_size if assembler is not None else None
    elif size is None:
        return
    if session.info is not None:
        return
    if wire.UT_METADATA in link.conn.remote_extensions:
        pieces = session.metadata.requests_for(link, size)
        link.send_many([MetadataRequest(p) for p in pieces])


def serve_metadata(session: TorrentSession, link: PeerLink, piece: int) -> None:
    """Answer a BEP 9 request: the piece, or a reject (no info dict yet, or out of range)."""
    if wire.UT_METADATA not in link.conn.remote_extensions:
        return
    info = session.info
    data = metadata_piece(info.raw, piece) if info is not None else None
    if data is None or info is None:
        link.send(MetadataReject(piece))
        return
    link.send(MetadataData(piece, len(info.raw), data))


async def on_metadata(session: TorrentSession, link: PeerLink, event: MetadataData) -> None:
    """A piece of the info dict; once all verify, the torrent is set up with it."""
    fetch = session.metadata
    if session.info is not None:
        fetch.rejected(link, event.piece)
        return
    try:
        raw = fetch.received(link, event)
    except MetainfoError as exc:
        log.warning("metadata from %r rejected: %s", link, exc)
        return
    if raw is None:
        if event.piece == 0 and link.conn.remote_metadata_size is None:
            request_metadata(session, link, holder=True)  # the rest: piece 0 gave the size
        return
    info = parse_info(raw, session.info_hash)
    session.log_event("metadata_fetched", size=len(raw), peer=f"{link.address[0]}")
    for other in session.links:
        other.conn.set_num_pieces(info.num_pieces)
    await session.setup(info)
