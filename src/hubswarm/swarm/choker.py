"""Pure choker: whom to upload to (BEP 3 "Choking and Optimistic Unchoking", libtorrent).

Every ``choke_interval`` the session calls ``decide(peers, now, seeding=...)`` with a fresh
``PeerStats`` snapshot per connected peer and applies the result: send ``unchoke`` to
peers in ``decision.unchoke`` that it is choking, ``choke`` to those in ``decision.choke``
that it is not (the decision is the full target state, not a delta).

* Regular slots (``slots``, default 4) go to interested peers by reciprocation: the
  fastest download rate *from* them while leeching (tit-for-tat); while seeding, the
  fastest upload rate *to* them (libtorrent's "fastest upload" seed choker: peers that
  can take data fastest spread it fastest). Ties break at random.
* Anti-snubbing: while leeching, a peer we are interested in that sent no block for
  ``snub_timeout`` gets no regular slot (it may still win the optimistic one).
* One optimistic unchoke, rotated every ``optimistic_interval`` (default 30 s) among the
  other interested peers; peers connected for less than ``new_peer_age`` are
  ``new_peer_weight`` (3) times as likely to be picked (mainline): they have nothing to
  reciprocate with yet.
* A seed may instead unchoke ``seed_slots`` interested peers at a time in turn (round-robin
  by connection age, one turn per choke round): with few slots each peer picks what to ask
  the seed for when its turn comes, so the seed's upload goes to pieces the swarm lacks
  (the aim of BEP 16 super-seeding) instead of duplicates.
* Between rounds, a slot whose peer asks for nothing is idle (:class:`IdleSlots`): an
  interested peer is not always a requesting one (what it wants of us may be on its way
  from another peer), and while it holds the slot the peers that would use it wait.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from hubswarm.limits import (
    CHOKE_INTERVAL,
    OPTIMISTIC_INTERVAL,
    OPTIMISTIC_NEW_PEER_WEIGHT,
    SNUB_TIMEOUT,
    UNCHOKE_SLOTS,
)

PeerKey = Hashable


@dataclass(frozen=True, slots=True)
class PeerStats:
    """A snapshot of one connected peer, as the choker needs it.

    ``download_rate``: bytes/s the peer sends us; ``upload_rate``: bytes/s we send it.
    ``last_piece_at``: when it last sent us a block (None: never); ``snubbed`` forces the
    snub state (e.g. after request time-outs).
    """

    peer_id: PeerKey
    interested: bool  # peer_interested: it wants our data
    download_rate: float = 0.0
    upload_rate: float = 0.0
    connected_at: float = 0.0
    last_piece_at: float | None = None
    am_interested: bool = False  # we want its data (snubbing only applies then)
    snubbed: bool = False


@dataclass(frozen=True, slots=True)
class ChokeDecision:
    """Target state: ``unchoke`` (includes ``optimistic``) and ``choke`` partition the peers."""

    unchoke: frozenset[PeerKey]
    choke: frozenset[PeerKey]
    optimistic: PeerKey | None


class Choker:
    """Choke decisions for one torrent; keeps only the optimistic-unchoke rotation state."""

    def __init__(
        self,
        *,
        rng: random.Random,
        slots: int = UNCHOKE_SLOTS,
        choke_interval: float = CHOKE_INTERVAL,
        optimistic_interval: float = OPTIMISTIC_INTERVAL,
        snub_timeout: float = SNUB_TIMEOUT,
        new_peer_weight: int = OPTIMISTIC_NEW_PEER_WEIGHT,
        new_peer_age: float | None = None,
        seed_slots: int | None = None,
    ) -> None:
        if slots < 0 or choke_interval <= 0 or optimistic_interval <= 0:
            raise ValueError("slots must be >= 0 and intervals positive")
        self.slots = slots
        self.choke_interval = choke_interval
        self.optimistic_interval = optimistic_interval
        self.snub_timeout = snub_timeout
        self.new_peer_weight = new_peer_weight
        self.seed_slots = seed_slots
        # "New" = not yet through one full optimistic rotation.
        self.new_peer_age = optimistic_interval if new_peer_age is None else new_peer_age
        self._rng = rng
        self._optimistic: PeerKey | None = None
        self._optimistic_at = float("-inf")
        self._last_round_at: float | None = None

    @property
    def optimistic(self) -> PeerKey | None:
        """The current optimistic unchoke, if any."""
        return self._optimistic

    def next_round_at(self) -> float:
        """When the next ``decide`` is due (``-inf`` before the first round)."""
        if self._last_round_at is None:
            return float("-inf")
        return self._last_round_at + self.choke_interval

    def is_snubbed(self, peer: PeerStats, now: float) -> bool:
        """A peer we want data from that sent no block for ``snub_timeout`` (libtorrent)."""
        if peer.snubbed:
            return True
        if not peer.am_interested:
            return False
        since = peer.last_piece_at if peer.last_piece_at is not None else peer.connected_at
        return now - since >= self.snub_timeout

    def decide(self, peers: Iterable[PeerStats], now: float, *, seeding: bool) -> ChokeDecision:
        """One choke round: regular slots by reciprocation plus one optimistic unchoke."""
        self._last_round_at = now
        stats = list(peers)
        by_id = {p.peer_id: p for p in stats}
        interested = [p for p in stats if p.interested]

        # Regular slots. Shuffle then stable-sort: random tie-break among equal rates.
        eligible = [p for p in interested if seeding or not self.is_snubbed(p, now)]
        self._rng.shuffle(eligible)
        if seeding:
            eligible.sort(key=lambda p: p.upload_rate, reverse=True)
        else:
            eligible.sort(key=lambda p: p.download_rate, reverse=True)
        regular = [p.peer_id for p in eligible[: self.slots]]
        regular_set = set(regular)

        # Optimistic unchoke: keep it for optimistic_interval unless it left, lost
        # interest or earned a regular slot.
        current = by_id.get(self._optimistic) if self._optimistic is not None else None
        expired = now - self._optimistic_at >= self.optimistic_interval
        if current is None or not current.interested or current.peer_id in regular_set or expired:
            pool = [p for p in interested if p.peer_id not in regular_set]
            if expired and len(pool) > 1:
                pool = [p for p in pool if p.peer_id != self._optimistic]
            self._optimistic = self._pick_optimistic(pool, now)
            self._optimistic_at = now

        unchoke = set(regular)
        if self._optimistic is not None:
            unchoke.add(self._optimistic)
        if seeding and self.seed_slots is not None:
            unchoke = self._round_robin(interested, now, self.seed_slots)
        return ChokeDecision(
            unchoke=frozenset(unchoke),
            choke=frozenset(p.peer_id for p in stats if p.peer_id not in unchoke),
            optimistic=self._optimistic if self._optimistic in unchoke else None,
        )

    def can_unchoke_now(self, unchoked: int, *, seeding: bool) -> bool:
        """Between rounds: may a newly interested peer have a free slot at once, with
        ``unchoked`` peers unchoked now (regular slots plus the optimistic one)?"""
        slots = self.slots + 1
        if seeding and self.seed_slots is not None:
            slots = self.seed_slots
        return unchoked < slots

    def _round_robin(self, interested: list[PeerStats], now: float, slots: int) -> set[PeerKey]:
        """``slots`` interested peers, oldest connection first, rotating one turn per round.

        The turn is a function of the clock, so the order needs no state and a newcomer
        joins the rotation at once.
        """
        ready = sorted(interested, key=lambda p: p.connected_at)
        if not ready:
            return set()
        turn = int(now / self.choke_interval) * slots
        return {ready[(turn + j) % len(ready)].peer_id for j in range(min(slots, len(ready)))}

    def _pick_optimistic(self, pool: list[PeerStats], now: float) -> PeerKey | None:
        if not pool:
            return None
        weights = [
            self.new_peer_weight if now - p.connected_at < self.new_peer_age else 1 for p in pool
        ]
        return self._rng.choices(pool, weights=weights, k=1)[0].peer_id


@dataclass(frozen=True, slots=True)
class UploadSnapshot:
    """An unchoked, interested peer as :class:`IdleSlots` sees it: ``uploaded`` bytes we
    sent it so far; ``settled``: nothing we wrote to it is unacknowledged (our unchoke, and
    whatever it asked for, has reached it)."""

    peer_id: PeerKey
    uploaded: int
    settled: bool


class IdleSlots:
    """Which unchoked peers hold a slot and ask for nothing.

    A peer is idle once it was ``settled`` (it had our unchoke and all we sent it) and then
    took no byte from us for ``idle_after`` seconds: a peer that wants our data asks for it
    within a round trip of the unchoke, and a downloader keeps ``request_queue_time`` of
    requests queued (libtorrent), so one that left us nothing to send for that long is
    fetching elsewhere. Ended by choking it; the peer may win a slot again later.
    """

    def __init__(self, idle_after: float) -> None:
        if idle_after <= 0:
            raise ValueError("idle_after must be positive")
        self.idle_after = idle_after
        self._since: dict[PeerKey, tuple[int, float]] = {}  # uploaded, settled since

    def observe(self, peers: Iterable[UploadSnapshot], now: float) -> list[PeerKey]:
        """Update from the unchoked interested peers (the rest are forgotten); the idle ones."""
        since: dict[PeerKey, tuple[int, float]] = {}
        idle: list[PeerKey] = []
        for p in peers:
            prev = self._since.get(p.peer_id)
            if not p.settled:
                continue  # data or our unchoke still on its way: not idle, the clock waits
            if prev is None or prev[0] != p.uploaded:
                since[p.peer_id] = (p.uploaded, now)
                continue
            since[p.peer_id] = prev
            if now - prev[1] >= self.idle_after:
                idle.append(p.peer_id)
        self._since = since
        return idle

    def forget(self, peer: PeerKey) -> None:
        """``peer`` was choked (or left): its clock starts afresh when unchoked again."""
        self._since.pop(peer, None)
