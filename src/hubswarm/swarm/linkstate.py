"""What the session knows and keeps about one peer link (its own bookkeeping, pure).

A :class:`LinkState` is the session's record of one :class:`~hubswarm.swarm.peer.PeerLink`:
the peer's have-set (and what it said before a magnet's piece count was known), the
requests we have in flight to it, its fast-extension allowances, its PEX record and the
flags the choker and the dialer read. The link itself knows only its connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hubswarm.errors import RemoteProtocolError
from hubswarm.swarm.bitfield import Bitfield
from hubswarm.swarm.pex import PexPeer
from hubswarm.swarm.picker import BlockRequest

# Haves remembered per peer before the metadata tells the piece count (magnet): an honest
# peer sends at most one per piece; 2**20 pieces cover any torrent our metadata cap admits.
MAX_PENDING_HAVES = 1 << 20


@dataclass(slots=True, eq=False)
class LinkState:
    """The session's record of one link."""

    has: Bitfield | None = None
    # Before the metadata arrives (magnet) the piece count is unknown: keep what was said.
    pending_bitfield: bytes | None = None
    pending_all: bool = False
    pending_haves: set[int] = field(default_factory=set)
    inflight: set[BlockRequest] = field(default_factory=set)  # requests we sent it
    allowed_fast: set[int] = field(default_factory=set)  # BEP 6: pieces it serves choked
    last_piece_at: float | None = None
    queue_depth: int = 0  # requests kept in flight to it (the last choice)
    snubbed: bool = False  # a request to it timed out (until its next block)
    is_seed: bool = False
    pointless: bool = False  # closed because neither side wants anything (two seeds)
    pex: PexPeer = field(default_factory=PexPeer)
    # Since when we want its data and it has us unchoked (None: not so): the stall clock.
    stall_since: float | None = None

    def remember_have(self, piece_index: int) -> None:
        """A ``have`` before the piece count is known (bounded).

        Raises:
            RemoteProtocolError: more haves than any torrent has pieces.
        """
        if len(self.pending_haves) >= MAX_PENDING_HAVES:
            raise RemoteProtocolError("too many haves before the metadata")
        self.pending_haves.add(piece_index)

    def adopt(self, num_pieces: int) -> Bitfield | None:
        """Make the have-set from what the peer said so far, now that ``num_pieces`` is
        known; returns it when new (to count in the picker), None when it had one.

        A peer that sent no bitfield (BEP 6 have none, or BEP 3: a peer with nothing may
        omit it) starts empty, as in libtorrent; else its haves would wait here forever.

        Raises:
            RemoteProtocolError: a bitfield of the wrong size, or a have beyond the last
                piece (BEP 3).
        """
        new: Bitfield | None = None
        if self.has is None:
            if self.pending_all:
                has = Bitfield.all(num_pieces)
            elif self.pending_bitfield is not None:
                has = Bitfield.from_bytes(self.pending_bitfield, num_pieces)
            else:
                has = Bitfield(num_pieces)
            if any(i >= num_pieces for i in self.pending_haves):
                raise RemoteProtocolError(f"have beyond the last piece ({num_pieces})")
            for i in self.pending_haves:
                has.set(i)
            self.has = new = has
        self.pending_bitfield, self.pending_all = None, False
        self.pending_haves.clear()
        self.is_seed = self.has.is_complete
        return new

    def merge_late(self, bits: bytes, *, everything: bool) -> list[int]:
        """A bitfield or have-all after the first message (aria2 sends one): the pieces it
        adds to the have-set, now set."""
        if self.has is None:
            return []
        n = len(self.has)
        late = Bitfield.all(n) if everything else Bitfield.from_bytes(bits, n)
        added = [i for i in late if not self.has[i]]
        for i in added:
            self.has.set(i)
        self.is_seed = self.has.is_complete
        return added
