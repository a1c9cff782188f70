"""Pure piece picker: which blocks to request from which peer (BEP 3, libtorrent's policy).

Theory of operation
-------------------
The picker owns our have-set, per-piece availability (how many connected peers have it),
and every in-flight block request. The session calls it synchronously and does the I/O:

* peer events: ``peer_bitfield`` / ``peer_have`` add availability, ``peer_left`` removes it
  and returns the peer's in-flight blocks to the pool; ``peer_choked`` returns them too
  (except pieces the peer allowed us fast, BEP 6); ``request_timed_out`` /
  ``request_rejected`` return one block.
* ``next_requests(peer, peer_has, count, now)`` picks blocks: first finish partially
  downloaded pieces (blocks in strict ascending order inside a piece, so several peers can
  share one piece block by block); then new pieces, chosen at random until
  ``RANDOM_FIRST_PIECES`` are complete (something to trade quickly) and rarest first
  afterwards (random tie-break). When every missing block is already requested the picker
  is in *endgame*: it duplicates outstanding requests to other peers (BEP 3 "End Game").
* ``block_received`` records a block and returns a ``Received``: whether to store it
  (``stored``; False for duplicates and blocks of pieces nobody asked for), the duplicate
  requests to CANCEL, and ``piece_done`` when every block of the piece has arrived. Then
  the session hashes the piece (``PieceStore.finish_piece``) and calls
  ``piece_complete(i, ok)``; a bad piece returns every block to the pool and names the
  peers that contributed (for scoring / banning).
* ``max_in_progress`` bounds how many pieces are open at once (pass
  ``PieceStore.max_pieces_in_flight`` so the store's piece buffers stay bounded).

Session wiring, in short::

    picker = PiecePicker(info.num_pieces, info.piece_size, rng=rng, have=await store.recheck(),
                         max_in_progress=store.max_pieces_in_flight)
    # on Bitfield/HaveAll: picker.peer_bitfield(bf); on Have: picker.peer_have(i)
    # when unchoked, top up to request_queue_depth(rate); while choked, pass as peer_has
    # only its BEP 6 allowed-fast pieces (Bitfield.from_indices(n, allowed & its pieces)):
    for req in picker.next_requests(peer, bf, depth - len(picker.outstanding(peer)), now): ...
    # on Piece:
    res = picker.block_received(peer, req)
    for other, r in res.cancels: send Cancel(r) to other
    if res.stored and store.add_block(i, begin, block):
        ok = await store.finish_piece(i); suspects = picker.piece_complete(i, ok)
        if ok: send Have(i) to everyone
    # on Choke: picker.peer_choked(peer, allowed_fast); on Reject: picker.request_rejected
    # every few seconds: for peer, r in picker.expired_requests(now, REQUEST_TIMEOUT): ...
    # on disconnect: picker.peer_left(peer, bf)

Peer ids are any hashable the session likes (peer_id bytes, a connection object). No clock,
no global random: ``now`` and a seeded ``random.Random`` are injected.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Container, Hashable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from hubswarm.errors import LocalProtocolError
from hubswarm.limits import (
    BLOCK_SIZE,
    MAX_OUTSTANDING_REQUESTS_OUT,
    RANDOM_FIRST_PIECES,
    REQUEST_QUEUE_MIN,
    REQUEST_QUEUE_TIME,
)
from hubswarm.swarm.bitfield import Bitfield

PeerKey = Hashable


class _BlockFields(NamedTuple):
    piece_index: int
    begin: int
    length: int


class BlockRequest(_BlockFields):
    """One block of a piece, as in the wire ``request``/``cancel`` message.

    A named tuple: the leech hashes and compares several per 16 KiB block (the link's
    in-flight set, the picker's per-peer requests), and a tuple's hash and equality run in
    C where a dataclass's ran in Python. It equals the plain ``(piece_index, begin,
    length)`` tuple. Made by the picker from its own block grid with :data:`grid_request`
    (no check); from anything else, validated here.
    """

    __slots__ = ()

    def __new__(cls, piece_index: int, begin: int, length: int) -> BlockRequest:
        if piece_index < 0 or begin < 0 or length <= 0:
            raise ValueError(f"invalid block request ({piece_index}, {begin}, {length})")
        return tuple.__new__(cls, (piece_index, begin, length))


# A BlockRequest of fields known valid, ``grid_request((i, begin, length))``: a C call (no
# Python frame per block), for the picker's own grid and blocks the session matched against
# its requests.
grid_request: Callable[[tuple[int, int, int]], BlockRequest] = functools.partial(
    tuple.__new__, BlockRequest
)


@dataclass(frozen=True, slots=True)
class Received:
    """Outcome of ``block_received``.

    ``stored``: keep the block (write it to the piece store); ``cancels``: send ``cancel``
    for these ``(peer, request)`` pairs (endgame duplicates); ``piece_done``: every block of
    the piece has arrived, hash it.
    """

    stored: bool
    cancels: tuple[tuple[PeerKey, BlockRequest], ...] = ()
    piece_done: bool = False


# The common answers of ``block_received``: shared, so the hot path allocates nothing.
_NOT_STORED = Received(stored=False)
_STORED = Received(stored=True)
_STORED_DONE = Received(stored=True, piece_done=True)


def request_queue_depth(
    rate_bytes_per_s: float,
    target_latency_s: float = REQUEST_QUEUE_TIME,
    block_size: int = BLOCK_SIZE,
    maximum: int = MAX_OUTSTANDING_REQUESTS_OUT,
    minimum: int = REQUEST_QUEUE_MIN,
) -> int:
    """Requests to keep outstanding to a peer: ``rate x latency / block``, within
    [minimum, maximum] (``minimum`` defaults to 4; at least 1).

    A fixed depth cannot fill a fast link: 5 x 16 KiB per 50 ms RTT caps a peer at 1.6 MB/s
    (libtorrent sizes the queue for ``request_queue_time`` = 3 s of transfer).
    """
    want = int(rate_bytes_per_s * target_latency_s / block_size) if rate_bytes_per_s > 0 else 0
    return max(1, minimum, min(maximum, want))


# A peer's request queue is topped up once a 1/REFILL_DIVISOR of its depth is free, in one
# batch: fewer picker calls and larger writes than a request per block received.
REFILL_DIVISOR = 4


def refill_size(depth: int, inflight: int) -> int:
    """Requests to send now to a queue of ``depth`` with ``inflight`` outstanding: all that
    is free once at least ``max(1, depth // REFILL_DIVISOR)`` is, else 0 (wait for more)."""
    missing = depth - inflight
    return missing if missing >= max(1, depth // REFILL_DIVISOR) else 0


# Offsets of the set bits of each byte value (bit 0 = high bit, BEP 3 order).
_BIT_OFFSETS = tuple(tuple(b for b in range(8) if v & (0x80 >> b)) for v in range(256))


def _indices(mask: int, nbytes: int) -> list[int]:
    """Indices of the set bits of a big-endian bitfield held as an int."""
    out: list[int] = []
    if not mask:
        return out
    for k, byte in enumerate(mask.to_bytes(nbytes, "big")):
        if byte:
            base = k << 3
            out.extend(base + b for b in _BIT_OFFSETS[byte])
    return out


@dataclass(slots=True)
class _Block:
    # peer -> time the request was sent; insertion-ordered (deterministic, unlike sets of bytes)
    requested_by: dict[PeerKey, float] = field(default_factory=dict)
    received_from: PeerKey | None = None
    received: bool = False


@dataclass(slots=True)
class _Piece:
    blocks: list[_Block]
    received: int = 0
    unrequested: int = 0  # blocks neither received nor requested from anyone

    def contributors(self) -> list[PeerKey]:
        out: dict[PeerKey, None] = {}
        for b in self.blocks:
            if b.received:
                out[b.received_from] = None
        return list(out)


class PiecePicker:
    """Block scheduling for one torrent (see the module docstring for the call protocol).

    Costs: state is kept incrementally (unrequested block counts, the never-started pieces
    as an int bitmask and in buckets by availability), so picking a new piece is O(1)
    random probes in the rarest bucket for a typical peer rather than a sort of all pieces.
    Call ``peer_bitfield``/``peer_have`` before asking for that peer's requests (the
    rarest-first order is only as good as those counts).
    """

    def __init__(
        self,
        num_pieces: int,
        piece_size: Callable[[int], int],
        *,
        rng: random.Random,
        block_size: int = BLOCK_SIZE,
        have: Bitfield | None = None,
        random_first: int = RANDOM_FIRST_PIECES,
        max_in_progress: int | None = None,
    ) -> None:
        if block_size <= 0:
            raise ValueError("block_size must be positive")
        self.num_pieces = num_pieces
        self.block_size = block_size
        self.random_first = random_first
        self.max_in_progress = max_in_progress
        self._piece_size = piece_size
        # piece_size() is called per block (metainfo's recomputes the total length for the
        # last piece): remember each answer (at most one int per piece, filled on demand).
        self._sizes: dict[int, int] = {}
        self._rng = rng
        self.have = have.copy() if have is not None else Bitfield(num_pieces)
        if len(self.have) != num_pieces:
            raise ValueError("have bitfield has the wrong length")
        self.availability = [0] * num_pieces
        self._nbytes = (num_pieces + 7) // 8
        self._pieces: dict[int, _Piece] = {}  # started pieces: any request or block
        self._open: dict[int, None] = {}  # started pieces with unrequested blocks
        self._peer_requests: dict[PeerKey, dict[BlockRequest, None]] = {}
        self._wanted: Bitfield | None = None
        # Wanted, missing and never started ("fresh") pieces, as an int bitmask (wire bit
        # order) and bucketed by availability: _levels[a] lists the fresh pieces held by a
        # peers, _slot[i] is i's position in its list (swap-remove in O(1)).
        self._fresh = 0
        self._levels: list[list[int]] = [[]]
        self._slot: dict[int, int] = {}
        self._recompute_fresh()

    # --- queries --------------------------------------------------------------------------

    def _size(self, piece_index: int) -> int:
        size = self._sizes.get(piece_index)
        if size is None:
            size = self._sizes[piece_index] = self._piece_size(piece_index)
        return size

    def block_count(self, piece_index: int) -> int:
        """Number of blocks in a piece."""
        return -(-self._size(piece_index) // self.block_size)

    def block(self, piece_index: int, block_index: int) -> BlockRequest:
        """The request for block ``block_index`` of a piece."""
        begin = block_index * self.block_size
        length = min(self.block_size, self._size(piece_index) - begin)
        return grid_request((piece_index, begin, length))

    @property
    def is_complete(self) -> bool:
        """True when we have every wanted piece."""
        if self._wanted is None:
            return self.have.is_complete
        return not self._as_int(self._wanted) & ~self._as_int(self.have)

    def is_fully_received(self, piece_index: int) -> bool:
        """True when every block of the piece arrived and it awaits ``piece_complete``."""
        p = self._pieces.get(piece_index)
        return p is not None and p.received == len(p.blocks)

    def outstanding(self, peer: PeerKey) -> list[BlockRequest]:
        """Blocks requested from ``peer`` and not yet received."""
        return list(self._peer_requests.get(peer, ()))

    def is_interesting(self, peer_has: Bitfield) -> bool:
        """True if the peer has a piece we want and lack (send ``interested``)."""
        bits = self._as_int(peer_has) & ~self._as_int(self.have)
        if self._wanted is not None:
            bits &= self._as_int(self._wanted)
        return bits != 0

    @property
    def in_endgame(self) -> bool:
        """True when no missing block is left unrequested (BEP 3 End Game)."""
        return not self._fresh and not self._open

    # --- configuration --------------------------------------------------------------------

    def set_wanted(self, wanted: Iterable[int] | None) -> None:
        """Only download these pieces (``None`` = all); e.g. for selected files."""
        self._wanted = None if wanted is None else Bitfield.from_indices(self.num_pieces, wanted)
        self._recompute_fresh()

    # --- availability ---------------------------------------------------------------------

    def peer_bitfield(self, peer_has: Bitfield) -> None:
        """A peer announced its bitfield (or HaveAll): count its pieces."""
        for i in peer_has:
            self._add_availability(i, 1)

    def peer_have(self, piece_index: int) -> None:
        """A peer announced ``have piece_index`` (the session checks it was new for that peer)."""
        self._add_availability(piece_index, 1)

    def peer_left(self, peer: PeerKey, peer_has: Bitfield | None) -> list[BlockRequest]:
        """A peer disconnected: forget its pieces and return its in-flight blocks to the pool."""
        if peer_has is not None:
            for i in peer_has:
                self._add_availability(i, -1)
        return self._drop_requests(peer, keep=())

    # --- requests -------------------------------------------------------------------------

    def next_requests(
        self, peer: PeerKey, peer_has: Bitfield, count: int, now: float
    ) -> list[BlockRequest]:
        """Up to ``count`` new blocks to request from ``peer``; they are marked in flight."""
        out: list[BlockRequest] = []
        if count <= 0:
            return out
        mine = self._peer_requests.setdefault(peer, {})

        # 1. Finish partial pieces first: fewer open pieces, earlier completion, fewer
        # pieces half-held when peers leave (libtorrent prioritises partial pieces).
        partial = [i for i in self._open if peer_has[i]]
        partial.sort(key=lambda i: (self._pieces[i].unrequested, self.availability[i], i))
        for i in partial:
            self._take_unrequested(i, peer, mine, out, count, now)
            if len(out) >= count:
                return out

        # 2. New pieces: random first, then rarest first with a random tie-break.
        random_phase = self.have.count() < self.random_first
        peer_bits = self._as_int(peer_has)
        candidates = _indices(self._fresh & peer_bits, self._nbytes) if random_phase else []
        while len(out) < count:
            if self.max_in_progress is not None and len(self._pieces) >= self.max_in_progress:
                return out
            if random_phase:
                if not candidates:
                    break
                k = self._rng.randrange(len(candidates))
                candidates[k], candidates[-1] = candidates[-1], candidates[k]
                i = candidates.pop()
            else:
                # The int test is cheap and spares a bucket scan for peers with nothing new.
                found = self._rarest_fresh(peer_has) if self._fresh & peer_bits else None
                if found is None:
                    break
                i = found
            self._start(i)
            self._take_unrequested(i, peer, mine, out, count, now)
        if len(out) >= count or not self.in_endgame:
            return out

        # 3. Endgame: every missing block is requested somewhere; duplicate the ones this
        # peer can serve, least-duplicated first (BEP 3; cancels come from block_received).
        dup: list[tuple[int, int, int]] = []
        for i, p in self._pieces.items():
            if not peer_has[i] or p.received == len(p.blocks):
                continue
            for k, b in enumerate(p.blocks):
                if not b.received and b.requested_by and peer not in b.requested_by:
                    dup.append((len(b.requested_by), i, k))
        dup.sort()
        for _, i, k in dup[: count - len(out)]:
            self._pieces[i].blocks[k].requested_by[peer] = now
            req = self.block(i, k)
            mine[req] = None
            out.append(req)
        return out

    def block_received(self, peer: PeerKey, request: BlockRequest) -> Received:
        """Record a delivered block; see ``Received`` for what the session does next.

        A block we did not want (already received, piece already had or not in progress,
        e.g. it came after a time-out and the piece was dropped) gives ``stored=False``.

        Raises:
            LocalProtocolError: the block does not match our block grid (check before calling).
        """
        # Called once per 16 KiB block received: lookups are kept few and inline.
        i, begin, length = request
        if not 0 <= i < self.num_pieces:
            raise LocalProtocolError(f"piece index {i} out of range")
        bs = self.block_size
        k, rem = divmod(begin, bs)
        size = self._sizes.get(i)
        if size is None:
            size = self._size(i)
        # On the grid: aligned, inside the piece, and as long as that block (not a new object).
        if rem or begin >= size or length != (bs if size - begin > bs else size - begin):
            raise LocalProtocolError(f"block {request} is not on the block grid")
        reqs = self._peer_requests.get(peer)
        if reqs is not None:
            reqs.pop(request, None)
        p = self._pieces.get(i)
        if p is None or self.have[i]:
            # Not in progress: storing it would open a piece buffer beyond max_in_progress.
            return _NOT_STORED
        b = p.blocks[k]
        if b.received:
            b.requested_by.pop(peer, None)
            return _NOT_STORED
        if not b.requested_by:
            self._set_unrequested(i, p, p.unrequested - 1)  # it came back after a release
        b.received = True
        b.received_from = peer
        p.received += 1
        done = p.received == len(p.blocks)
        requested_by = b.requested_by
        if len(requested_by) == 1 and peer in requested_by:
            # The usual case (no endgame duplicate): nothing to cancel.
            requested_by.clear()
            return _STORED_DONE if done else _STORED
        cancels = [(other, request) for other in requested_by if other != peer]
        for other in requested_by:
            others = self._peer_requests.get(other)
            if others is not None:
                others.pop(request, None)
        requested_by.clear()
        return Received(stored=True, cancels=tuple(cancels), piece_done=done)

    def request_timed_out(self, peer: PeerKey, request: BlockRequest) -> None:
        """The peer did not deliver ``request`` in time: it goes back to the pool."""
        self._release(peer, request)

    def request_rejected(self, peer: PeerKey, request: BlockRequest) -> None:
        """The peer sent a BEP 6 ``reject``: the block goes back to the pool."""
        self._release(peer, request)

    def peer_choked(self, peer: PeerKey, allowed_fast: Container[int] = ()) -> list[BlockRequest]:
        """The peer choked us: its in-flight blocks return to the pool, except pieces in
        ``allowed_fast`` (BEP 6: those requests stay valid while choked). Returns the released.
        """
        return self._drop_requests(peer, keep=allowed_fast)

    def expired_requests(self, now: float, timeout: float) -> list[tuple[PeerKey, BlockRequest]]:
        """In-flight requests older than ``timeout``; pass each to ``request_timed_out``."""
        out: list[tuple[PeerKey, BlockRequest]] = []
        for i, p in self._pieces.items():
            for k, b in enumerate(p.blocks):
                for peer, sent_at in b.requested_by.items():
                    if now - sent_at >= timeout:
                        out.append((peer, self.block(i, k)))
        return out

    def piece_complete(self, piece_index: int, ok: bool) -> list[PeerKey]:
        """The piece's hash was checked; returns the peers that contributed blocks.

        ``ok``: the piece joins our have-set. Bad: every block goes back to the pool and the
        returned peers are the suspects (BEP 3 has no blame; libtorrent bans repeat offenders).
        """
        p = self._pieces.get(piece_index)
        contributors = p.contributors() if p is not None else []
        if p is not None:
            # Drop any leftover (endgame) requests for this piece.
            for k, b in enumerate(p.blocks):
                if not b.requested_by:
                    continue
                req = self.block(piece_index, k)
                for peer in b.requested_by:
                    reqs = self._peer_requests.get(peer)
                    if reqs is not None:
                        reqs.pop(req, None)
            self._forget(piece_index)
        if ok:
            self.have.set(piece_index)
            self._fresh &= ~self._bit(piece_index)
            if piece_index in self._slot:
                self._bucket_remove(piece_index)
        return contributors

    def set_have(self, piece_index: int) -> None:
        """Mark a piece as had without downloading (resume, web seed)."""
        self.piece_complete(piece_index, True)

    # --- internals ------------------------------------------------------------------------

    def _as_int(self, bf: Bitfield) -> int:
        return int.from_bytes(bf.to_bytes(), "big")

    def _bit(self, i: int) -> int:
        return 1 << (self._nbytes * 8 - 1 - i)

    def _recompute_fresh(self) -> None:
        mask = ~self._as_int(self.have) & ((1 << (self._nbytes * 8)) - 1)
        if self._wanted is not None:
            mask &= self._as_int(self._wanted)
        for i in self._pieces:
            mask &= ~self._bit(i)
        # spare bits beyond num_pieces
        spare = self._nbytes * 8 - self.num_pieces
        self._fresh = mask & ~((1 << spare) - 1)
        self._levels = [[] for _ in range(max(self.availability, default=0) + 1)]
        self._slot = {}
        for i in _indices(self._fresh, self._nbytes):
            self._bucket_add(i)

    def _bucket_add(self, i: int) -> None:
        a = self.availability[i]
        while len(self._levels) <= a:
            self._levels.append([])
        level = self._levels[a]
        self._slot[i] = len(level)
        level.append(i)

    def _bucket_remove(self, i: int) -> None:
        level = self._levels[self.availability[i]]
        k = self._slot.pop(i)
        last = level.pop()
        if last != i:
            level[k] = last
            self._slot[last] = k

    def _add_availability(self, i: int, delta: int) -> None:
        if self.availability[i] + delta < 0:
            raise LocalProtocolError(f"availability of piece {i} would go negative")
        fresh = i in self._slot
        if fresh:
            self._bucket_remove(i)
        self.availability[i] += delta
        if fresh:
            self._bucket_add(i)

    def _rarest_fresh(self, peer_has: Bitfield) -> int | None:
        """A random fresh piece among the rarest that the peer has.

        Level 0 (pieces no counted peer has) comes last: it only matters if the session did
        not count this peer's pieces, and scanning it first would cost O(rare pieces).
        """
        rng = self._rng
        for level in [*self._levels[1:], self._levels[0]]:
            if not level:
                continue
            # A few random probes find a piece of a peer holding a fair share at once;
            # otherwise scan this level (the peer lacks most of these rare pieces).
            for _ in range(8):
                i = level[rng.randrange(len(level))]
                if peer_has[i]:
                    return i
            held = [i for i in level if peer_has[i]]
            if held:
                return held[rng.randrange(len(held))]
        return None

    def _start(self, i: int) -> None:
        n = self.block_count(i)
        self._pieces[i] = _Piece([_Block() for _ in range(n)], unrequested=n)
        self._open[i] = None
        self._fresh &= ~self._bit(i)
        if i in self._slot:
            self._bucket_remove(i)

    def _forget(self, i: int) -> None:
        """Drop a started piece; it becomes fresh again unless we have it."""
        del self._pieces[i]
        self._open.pop(i, None)
        if not self.have[i] and (self._wanted is None or self._wanted[i]):
            self._fresh |= self._bit(i)
            self._bucket_add(i)

    def _set_unrequested(self, i: int, p: _Piece, value: int) -> None:
        p.unrequested = value
        if value > 0:
            self._open[i] = None
        else:
            self._open.pop(i, None)

    def _take_unrequested(
        self,
        i: int,
        peer: PeerKey,
        mine: dict[BlockRequest, None],
        out: list[BlockRequest],
        count: int,
        now: float,
    ) -> None:
        # Strict ascending order inside the piece: the piece fills front to back.
        p = self._pieces[i]
        want = min(count - len(out), p.unrequested)
        if want <= 0:
            return
        bs = self.block_size
        size = self._size(i)
        taken = 0
        append = out.append
        for k, b in enumerate(p.blocks):
            if b.received or b.requested_by:
                continue
            b.requested_by[peer] = now
            begin = k * bs
            req = grid_request((i, begin, bs if size - begin > bs else size - begin))
            mine[req] = None
            append(req)
            taken += 1
            if taken == want:
                break
        self._set_unrequested(i, p, p.unrequested - taken)

    def _release(self, peer: PeerKey, request: BlockRequest) -> None:
        reqs = self._peer_requests.get(peer)
        if reqs is not None:
            reqs.pop(request, None)
        i = request.piece_index
        p = self._pieces.get(i)
        if p is None:
            return
        k = request.begin // self.block_size
        if not 0 <= k < len(p.blocks):
            return
        b = p.blocks[k]
        if b.requested_by.pop(peer, None) is not None and not b.requested_by and not b.received:
            self._set_unrequested(i, p, p.unrequested + 1)
        if p.received == 0 and p.unrequested == len(p.blocks):
            # Nothing of it is in flight or held: forget it so rarest-first can re-pick.
            self._forget(i)

    def _drop_requests(self, peer: PeerKey, keep: Container[int]) -> list[BlockRequest]:
        reqs = self._peer_requests.get(peer, {})
        released = [r for r in reqs if r.piece_index not in keep]
        for r in released:
            self._release(peer, r)
        if not self._peer_requests.get(peer):
            self._peer_requests.pop(peer, None)
        return released
