"""Pure super-seeding policy (BEP 16 "Superseeding", libtorrent's ``super_seeding``).

Theory of operation
-------------------
A seed that started as the only copy hides its bitfield (BEP 6 ``have none``, or nothing
without the fast extension) and *offers* each peer a few pieces at a time with ``have``:
only pieces that no connected peer has and nobody else is being offered right now, never
offered ones first. Requests for pieces not offered to that peer are refused (BEP 6
``reject``), so until every piece is out the seed uploads each piece about once and its
upload, the swarm's scarcest resource, goes only to pieces the swarm lacks. (libtorrent's
``get_piece_to_super_seed`` also re-offers the rarest piece already on a peer, counting a
pending offer as very common. We do not: a piece already on a peer spreads from there, and
every byte the seed spends on a second copy delays the first copy of another piece.)
When nothing qualifies a peer gets no offer: it fetches from the swarm. ``hungry`` tells
the session which peers wait for the seed's upload (it unchokes those first).

A peer gets its next offer only when the previous one is *released*: the peer has the
piece and it was seen on another peer (BEP 16: "until it has seen the piece it had sent
previously present on at least one other client"; libtorrent's ``strict_super_seeding``),
or the peer is alone, or the peer held it for ``offer_timeout`` seconds while we did not
choke it (a slow peer, or one that does not share, cannot hold the seed's upload hostage).
The clock stops while we choke the peer (``set_choked``) and restarts from zero when we
unchoke it: a peer waiting for its turn at the seed's few slots is not stalling. (With the
clock running while choked, offers expire in the queue of a large crowd and are re-offered
to others, and the seed sends many pieces twice before every piece is out.)

Once every piece is on some connected peer (a distributed copy), super-seeding ends: a
full bitfield can no longer be sent (BEP 3: only as the first message), so each peer is
sent ``have`` for every piece it was not offered; peers that connect later get the usual
opening. The session decides what to send with these methods, then does the I/O.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from array import array
from collections.abc import Container, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

PeerKey = Hashable
# The session's own peer type, passed through the slot choices unchanged.
P = TypeVar("P", bound=Hashable)
# Announcements to make: peer -> piece indices to send as ``have`` (in order).
Announce = dict[PeerKey, list[int]]

# Outstanding offers per peer: libtorrent keeps two super-seeded pieces per peer
# (peer_connection::m_superseed_piece[2]), so a peer finishing one still has the other to
# download while the first spreads.
OFFERS_PER_PEER = 2


@dataclass(slots=True)
class _Peer:
    has: set[int] = field(default_factory=set)
    announced: set[int] = field(default_factory=set)  # we sent `have`: it may request these
    offers: dict[int, float] = field(default_factory=dict)  # outstanding: piece -> offered at
    synced: bool = False  # its bitfield was given (else: assumed empty so far)
    choked: bool = False  # we choke it: its offers' clocks are stopped
    unchoked_at: float = -math.inf  # its offers' clocks run from here at the earliest
    sent: dict[int, dict[int, int]] = field(default_factory=dict)  # piece -> begin -> length


class SuperSeeder:
    """Which pieces to reveal to which peer, and when; state only, no I/O."""

    def __init__(
        self,
        num_pieces: int,
        *,
        rng: random.Random,
        offer_timeout: float,
        offers_per_peer: int = OFFERS_PER_PEER,
        strict: bool = True,
    ) -> None:
        """``strict``: release an offer only when another peer has the piece (BEP 16);
        else as soon as the peer itself has it (libtorrent's default, non-strict mode)."""
        if num_pieces < 1 or offers_per_peer < 1 or offer_timeout <= 0:
            raise ValueError("num_pieces, offers_per_peer and offer_timeout must be positive")
        self.num_pieces = num_pieces
        self.offer_timeout = offer_timeout
        self.offers_per_peer = offers_per_peer
        self.strict = strict
        self._rng = rng
        self._peers: dict[PeerKey, _Peer] = {}
        self._availability = [0] * num_pieces  # connected peers that have each piece
        self._unseen = num_pieces  # pieces with availability 0
        self._offered = [0] * num_pieces  # offers made of each piece, ever
        self._pending: dict[int, set[PeerKey]] = {}  # piece -> peers holding it as an offer
        # Never offered and on no peer: the first pass draws from here in O(1). Arrays: a
        # few bytes per piece even for the 2**20 pieces the wire allows.
        self._fresh = array("l", range(num_pieces))
        self._fresh_at = array("l", range(num_pieces))  # position in _fresh, -1: not there
        # (expires at, seq, piece, peer, offered at); entries of released offers stay (lazy).
        self._deadlines: list[tuple[float, int, int, PeerKey, float]] = []
        self._seq = itertools.count()
        self.active = True
        # Set when offers, or what peers hold of them, changed: who is hungry may differ.
        # The session rebalances its slots only then (it is told of every block and have).
        self.hunger_changed = False

    # --- queries --------------------------------------------------------------------------

    def peers(self) -> list[PeerKey]:
        """Peers the policy tracks."""
        return list(self._peers)

    def knows(self, peer: PeerKey) -> bool:
        """True when ``peer`` joined and has not left."""
        return peer in self._peers

    def synced(self, peer: PeerKey) -> bool:
        """True once the peer's bitfield (or its first ``have``) was given."""
        state = self._peers.get(peer)
        return state is not None and state.synced

    def offers(self, peer: PeerKey) -> set[int]:
        """The peer's outstanding offers."""
        state = self._peers.get(peer)
        return set(state.offers) if state is not None else set()

    def hungry(self, peer: PeerKey) -> bool:
        """True while the peer holds an offer it has not got yet (it needs our upload)."""
        if not self.active:
            return False
        state = self._peers.get(peer)
        return state is not None and any(i not in state.has for i in state.offers)

    def choose_unchoked(
        self, interested: Sequence[P], serving: Container[P], slots: int
    ) -> list[P]:
        """The ``slots`` interested peers to upload to: hungry ones first; among those, the
        ones being ``serving``-ed keep their slot (a choke mid-piece wastes what was sent);
        else in the given order (the session passes oldest connection first)."""
        ranked = sorted(
            range(len(interested)),
            key=lambda k: (not self.hungry(interested[k]), interested[k] not in serving, k),
        )
        return [interested[k] for k in ranked[: max(0, slots)]]

    def to_unchoke_now(self, interested: Sequence[P], serving: Container[P], slots: int) -> list[P]:
        """Hungry peers not being served to unchoke at once, while fewer than ``slots``
        hungry peers are served (slots held by peers that have their offers are idle)."""
        served = sum(1 for p in interested if p in serving and self.hungry(p))
        waiting = [p for p in interested if p not in serving and self.hungry(p)]
        return waiting[: max(0, slots - served)]

    def allows(self, peer: PeerKey, piece_index: int) -> bool:
        """May ``peer`` download ``piece_index`` from us (was it offered to it)?"""
        if not self.active:
            return True
        state = self._peers.get(peer)
        return state is not None and piece_index in state.announced

    # --- events ---------------------------------------------------------------------------

    def opening(self, peer: PeerKey, now: float, *, choked: bool = False) -> list[int] | None:
        """A peer connected (``choked``: as we hold it, see ``set_choked``): pieces to
        announce after ``have none``.

        None: super-seeding is over, send the usual opening (full bitfield or ``have all``).
        """
        if not self.active:
            return None
        self._peers[peer] = _Peer(choked=choked)
        return self._fill(peer, now)

    def peer_bitfield(self, peer: PeerKey, pieces: Iterable[int], now: float) -> Announce:
        """The peer's have-set as first known (bitfield, or the haves so far)."""
        state = self._peers.get(peer)
        if state is None or not self.active:
            return {}
        state.synced = True
        out: Announce = {}
        for i in pieces:
            self._add_have(peer, state, i, now, out)
        # Offers it already had are useless to it: replace them now.
        for i in [i for i in state.offers if i in state.has]:
            self._drop_offer(peer, state, i)
        self._merge(out, peer, self._fill(peer, now))
        return self._finish(out)

    def peer_have(self, peer: PeerKey, piece_index: int, now: float) -> Announce:
        """The peer announced a piece (BEP 3 ``have``)."""
        state = self._peers.get(peer)
        if state is None or not self.active:
            return {}
        state.synced = True
        out: Announce = {}
        self._add_have(peer, state, piece_index, now, out)
        return self._finish(out)

    def block_sent(
        self, peer: PeerKey, piece_index: int, begin: int, length: int, piece_size: int, now: float
    ) -> Announce:
        """We uploaded a block; once all of an offered piece went out, the peer has it.

        Needed because a peer need not send ``have`` for a piece we claim to have (ours
        does not; libtorrent's ``send_redundant_have`` can be turned off).
        """
        state = self._peers.get(peer)
        if state is None or not self.active or piece_index in state.has:
            return {}
        if piece_index not in state.announced:
            return {}
        blocks = state.sent.setdefault(piece_index, {})
        blocks[begin] = length
        if sum(blocks.values()) < piece_size:
            return {}
        del state.sent[piece_index]
        out: Announce = {}
        self._add_have(peer, state, piece_index, now, out)
        return self._finish(out)

    def set_choked(self, peer: PeerKey, choked: bool, now: float) -> None:
        """We choked or unchoked the peer. Its offers time out only while it is unchoked,
        ``offer_timeout`` after the later of the offer and the unchoke. A peer never
        reported choked counts as unchoked."""
        state = self._peers.get(peer)
        if state is None or not self.active or state.choked == choked:
            return
        state.choked = choked
        if choked:
            return  # its deadline entries are dropped as they come up (expire)
        state.unchoked_at = now
        for piece, offered_at in state.offers.items():
            entry = (now + self.offer_timeout, next(self._seq), piece, peer, offered_at)
            heapq.heappush(self._deadlines, entry)

    def peer_left(self, peer: PeerKey) -> None:
        """The connection ended: its pieces no longer count, its offers are void."""
        state = self._peers.pop(peer, None)
        if state is None:
            return
        self.hunger_changed = True
        for i in state.has:
            self._availability[i] -= 1
            if self._availability[i] == 0:
                self._unseen += 1
        for i in state.offers:
            self._unpend(peer, i)

    def expire(self, now: float) -> Announce:
        """Release offers held ``offer_timeout`` unchoked (see ``set_choked``); new offers
        for their peers."""
        out: Announce = {}
        if not self.active:
            return out
        expired = False
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, piece, peer, offered_at = heapq.heappop(self._deadlines)
            state = self._peers.get(peer)
            if state is None or state.offers.get(piece) != offered_at:
                continue  # released or re-offered since: a stale entry
            if state.choked:
                continue  # the clock stopped: set_choked re-arms it on the unchoke
            due = max(offered_at, state.unchoked_at) + self.offer_timeout
            if due > now:  # unchoked since this entry was made: the clock restarted
                heapq.heappush(self._deadlines, (due, next(self._seq), piece, peer, offered_at))
                continue
            self._drop_offer(peer, state, piece)
            self._merge(out, peer, self._fill(peer, now))
            expired = True
        if expired:
            # The freed pieces may suit peers other than their holders (one that got no
            # offer because every piece on no peer was offered elsewhere): top them up.
            for other, other_state in self._peers.items():
                if len(other_state.offers) < self.offers_per_peer:
                    self._merge(out, other, self._fill(other, now))
        return out

    def unstall(self, now: float) -> Announce:
        """Release fetched offers early when no peer is hungry: strict release (a piece
        seen on a second peer) would leave the seed's upload idle meanwhile (peers that
        have not met yet cannot show each other's pieces, so nothing would be released)."""
        out: Announce = {}
        if not self.active or any(self.hungry(p) for p in self._peers):
            return out
        for peer, state in self._peers.items():
            fetched = [i for i in state.offers if i in state.has]
            for i in fetched:
                self._drop_offer(peer, state, i)
            if fetched:
                self._merge(out, peer, self._fill(peer, now))
        return out

    def next_deadline(self) -> float | None:
        """When ``expire`` may next have work (None: no outstanding offer)."""
        return self._deadlines[0][0] if self._deadlines else None

    # --- internals ------------------------------------------------------------------------

    def _add_have(self, peer: PeerKey, state: _Peer, i: int, now: float, out: Announce) -> None:
        if not 0 <= i < self.num_pieces or i in state.has:
            return
        state.has.add(i)
        if i in state.offers:
            self.hunger_changed = True
        state.sent.pop(i, None)
        self._availability[i] += 1
        if self._availability[i] == 1:
            self._unseen -= 1
            self._discard_fresh(i)
        # Whoever holds ``i`` as an offer may be released by this have.
        for holder in list(self._pending.get(i, ())):
            holder_state = self._peers[holder]
            if self._released(holder, holder_state, i):
                self._drop_offer(holder, holder_state, i)
                self._merge(out, holder, self._fill(holder, now))

    def _released(self, peer: PeerKey, state: _Peer, i: int) -> bool:
        if i not in state.has:
            return False
        if not self.strict or len(self._peers) == 1:
            return True  # libtorrent: with one peer, its own have releases the piece
        return self._availability[i] >= 2  # seen on another peer too (BEP 16)

    def _fill(self, peer: PeerKey, now: float) -> list[int]:
        """Top the peer's offers up to ``offers_per_peer``; the pieces newly offered."""
        state = self._peers[peer]
        new: list[int] = []
        while len(state.offers) < self.offers_per_peer:
            i = self._pick(state)
            if i is None:
                break
            state.offers[i] = now
            state.announced.add(i)
            self.hunger_changed = True
            self._pending.setdefault(i, set()).add(peer)
            self._offered[i] += 1
            self._discard_fresh(i)
            entry = (now + self.offer_timeout, next(self._seq), i, peer, now)
            heapq.heappush(self._deadlines, entry)
            new.append(i)
        return new

    def _pick(self, state: _Peer) -> int | None:
        # Fast path: a random never-offered piece that nobody has (the first pass).
        for _ in range(8):
            if not self._fresh:
                break
            i = self._fresh[self._rng.randrange(len(self._fresh))]
            if i not in state.has and i not in state.announced:
                return i
        # A piece on no peer and offered to nobody now (an offer that timed out): the least
        # offered. Nothing on a peer already: the swarm copies it, not the seed.
        best: list[int] = []
        best_offered: int | None = None
        for i in range(self.num_pieces):
            if self._availability[i] or i in self._pending or i in state.announced:
                continue
            if best_offered is None or self._offered[i] < best_offered:
                best_offered, best = self._offered[i], [i]
            elif self._offered[i] == best_offered:
                best.append(i)
        return self._rng.choice(best) if best else None

    def _drop_offer(self, peer: PeerKey, state: _Peer, i: int) -> None:
        self.hunger_changed = True
        state.offers.pop(i, None)
        self._unpend(peer, i)

    def _unpend(self, peer: PeerKey, i: int) -> None:
        holders = self._pending.get(i)
        if holders is not None:
            holders.discard(peer)
            if not holders:
                del self._pending[i]

    def _discard_fresh(self, i: int) -> None:
        at = self._fresh_at[i]
        if at < 0:
            return
        self._fresh_at[i] = -1
        last = self._fresh.pop()
        if last != i:
            self._fresh[at] = last
            self._fresh_at[last] = at

    @staticmethod
    def _merge(out: Announce, peer: PeerKey, pieces: list[int]) -> None:
        if pieces:
            out.setdefault(peer, []).extend(pieces)

    def _finish(self, out: Announce) -> Announce:
        """End super-seeding once every piece is on a connected peer (a distributed copy)."""
        if self._unseen > 0 or not self.active:
            return out
        self.active = False
        for peer, state in self._peers.items():
            rest = [i for i in range(self.num_pieces) if i not in state.announced]
            state.announced.update(rest)
            state.offers.clear()
            self._merge(out, peer, [i for i in rest if i not in state.has])
        self._pending.clear()
        self._deadlines.clear()
        return out
