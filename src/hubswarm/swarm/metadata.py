"""Pure metadata exchange (BEP 9): which pieces of a magnet's info dict to ask whom for,
and the pieces we serve once we have it.

Theory of operation
-------------------
A session started from a magnet link knows only the info-hash. Each peer that advertises
``ut_metadata`` and a ``metadata_size`` is asked for the pieces nobody else is fetching
(wire's :class:`~hubswarm.proto.wire_ext.MetadataAssembler` decides which, and checks the
whole against the info-hash). A peer whose size disagrees with the first one is not asked.
A reject or a peer leaving frees its pieces for the others.
"""

from __future__ import annotations

from collections.abc import Hashable

from hubswarm.errors import HubswarmError
from hubswarm.limits import METADATA_PIECE_SIZE
from hubswarm.proto.wire_events import MetadataData, metadata_piece_count
from hubswarm.proto.wire_ext import MetadataAssembler

PeerKey = Hashable


class MetadataFetch:
    """The pieces of one info dict in flight per peer, over one assembler."""

    def __init__(self, info_hash: bytes) -> None:
        self.info_hash = info_hash
        self.assembler: MetadataAssembler | None = None
        self._in_flight: dict[PeerKey, set[int]] = {}

    def requests_for(self, peer: PeerKey, metadata_size: int | None) -> list[int]:
        """Pieces to ask ``peer`` for, which says the metadata is ``metadata_size`` bytes.

        ``None``: nobody told us the size (a peer that has the info dict now may have had
        none at its handshake): ask for piece 0, whose reply carries it (BEP 9
        ``total_size``), from one such peer at a time."""
        if metadata_size is None:
            if self.assembler is not None or any(self._in_flight.values()):
                return []
            self._in_flight.setdefault(peer, set()).add(0)
            return [0]
        if self.assembler is None:
            try:
                self.assembler = MetadataAssembler(self.info_hash, metadata_size)
            except HubswarmError:
                return []  # a size out of bounds: ask somebody else
        elif self.assembler.metadata_size != metadata_size:
            return []
        busy: set[int] = set()
        for pieces in self._in_flight.values():
            busy |= pieces
        wanted = self.assembler.wanted(busy)
        self._in_flight.setdefault(peer, set()).update(wanted)
        return wanted

    def rejected(self, peer: PeerKey, piece: int) -> None:
        """``peer`` will not send ``piece`` (BEP 9 reject)."""
        self._in_flight.get(peer, set()).discard(piece)

    def received(self, peer: PeerKey, event: MetadataData) -> bytes | None:
        """Add a piece; the verified info dict once complete, else None.

        Raises:
            RemoteProtocolError: the piece does not fit the metadata's size.
            MetainfoError: the pieces do not hash to the info-hash (it starts over).
        """
        self._in_flight.get(peer, set()).discard(event.piece)
        if self.assembler is None:
            try:  # piece 0 of a size nobody told us: its total_size says it
                self.assembler = MetadataAssembler(self.info_hash, event.total_size)
            except HubswarmError:
                return None
        return self.assembler.add(event)

    def peer_left(self, peer: PeerKey) -> None:
        """Forget what ``peer`` was asked for."""
        self._in_flight.pop(peer, None)


def metadata_piece(raw: bytes, piece: int) -> bytes | None:
    """Piece ``piece`` of the info dict ``raw`` to serve (BEP 9), or None to reject it."""
    if not 0 <= piece < metadata_piece_count(len(raw)):
        return None
    start = piece * METADATA_PIECE_SIZE
    return raw[start : start + METADATA_PIECE_SIZE]
