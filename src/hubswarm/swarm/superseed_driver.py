"""Pure super-seed driver: the session's side of BEP 16, around :class:`SuperSeeder`.

Theory of operation
-------------------
:class:`~hubswarm.swarm.superseed.SuperSeeder` decides which pieces to offer whom. This
driver turns what the session sees into its inputs and its answers into decisions:

- a piece counts as passed on when the peer *holds* it, not when it was written: blocks
  written to a link wait here (:meth:`written`) until the transport reports that many bytes
  acknowledged (:meth:`delivered`). At the start of a flash crowd the seed writes far more
  than its link carries at once; counting writes would release offers long before the
  pieces arrived, and the peers would wait with nothing to trade;
- a peer's first ``have`` gives the policy its whole have-set (:meth:`peer_have`);
- offers time out with the clock (:meth:`tick`), and links that closed are forgotten;
- the unchoke slots go to peers waiting for an offered piece (:meth:`unchoke`,
  :meth:`to_unchoke_now`): only offered pieces may be fetched from us, so a slot held by a
  peer that has its offers uploads nothing.

No clock and no I/O: the caller passes ``now`` and the acknowledged byte counts, then sends
the ``have`` messages and (un)chokes as told.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Container, Hashable, Iterable, Sequence
from typing import Generic, TypeVar

from hubswarm.proto.wire_events import Request
from hubswarm.swarm.superseed import Announce, SuperSeeder

P = TypeVar("P", bound=Hashable)

# How often peers that left are dropped from the policy (it is told of each link's end
# too; this catches links that closed between two of its calls).
PRUNE_INTERVAL = 1.0


def merge(out: Announce, more: Announce) -> Announce:
    """Add ``more``'s announcements to ``out`` (in order); returns ``out``."""
    for peer, pieces in more.items():
        out.setdefault(peer, []).extend(pieces)
    return out


class SuperSeedDriver(Generic[P]):
    """Offers, deliveries and slots while super-seeding one torrent."""

    def __init__(
        self,
        num_pieces: int,
        piece_size: Callable[[int], int],
        *,
        rng: random.Random,
        offer_timeout: float,
        slots: int,
    ) -> None:
        self.policy = SuperSeeder(num_pieces, rng=rng, offer_timeout=offer_timeout)
        self.slots = slots
        self._piece_size = piece_size
        # Blocks written to each peer, by the stream offset where they end.
        self._undelivered: dict[P, deque[tuple[int, list[Request]]]] = {}
        self._pruned_at = -math.inf

    @property
    def active(self) -> bool:
        """False once every piece is on some peer: seed as usual from then on."""
        return self.policy.active

    # --- offers and requests --------------------------------------------------------------

    def opening(self, peer: P, now: float, *, choked: bool) -> list[int] | None:
        """The pieces to announce to a new peer instead of a bitfield (None: not hiding)."""
        return self.policy.opening(peer, now, choked=choked)

    def allows(self, peer: P, piece_index: int) -> bool:
        """May ``peer`` download ``piece_index`` from us (was it offered to it)?"""
        return self.policy.allows(peer, piece_index)

    def set_choked(self, peer: P, choked: bool, now: float) -> None:
        """We (un)choked ``peer``: its offers' clocks stop while it is choked."""
        self.policy.set_choked(peer, choked, now)

    def peer_have(self, peer: P, index: int, has: Iterable[int], now: float) -> Announce:
        """``peer`` announced ``index``; ``has``: its whole have-set (for the first one)."""
        if self.policy.synced(peer):
            return self.policy.peer_have(peer, index, now)
        return self.policy.peer_bitfield(peer, has, now)

    def peer_left(self, peer: P) -> None:
        """Forget ``peer`` (its unacknowledged blocks are lost with it)."""
        self._undelivered.pop(peer, None)
        self.policy.peer_left(peer)

    def tick(self, now: float, connected: Container[P]) -> Announce | None:
        """Forget peers no longer ``connected`` (once a ``PRUNE_INTERVAL``) and replace
        offers that timed out; None when nothing expired."""
        if now - self._pruned_at >= PRUNE_INTERVAL:
            self._pruned_at = now
            for peer in self.policy.peers():
                if peer not in connected:
                    self.policy.peer_left(peer)
        deadline = self.policy.next_deadline()
        if deadline is None or deadline > now:
            return None
        return self.policy.expire(now)

    def settle(self, out: Announce, now: float) -> tuple[Announce, bool]:
        """The announcements to send, and whether to rebalance the slots (who is hungry
        may have changed: then offers nobody is fetching are released, see ``unstall``)."""
        if not self.policy.hunger_changed:
            return out, False
        merge(out, self.policy.unstall(now))
        self.policy.hunger_changed = False
        return out, True

    # --- deliveries -----------------------------------------------------------------------

    def written(self, peer: P, requests: list[Request], end: int) -> None:
        """Blocks for ``requests`` went into ``peer``'s stream, ending at offset ``end``."""
        if requests:
            self._undelivered.setdefault(peer, deque()).append((end, requests))

    @property
    def waiting(self) -> bool:
        """True while written blocks wait for their acknowledgement."""
        return bool(self._undelivered)

    def is_waiting(self, peer: P) -> bool:
        """True while blocks written to ``peer`` wait for their acknowledgement."""
        return peer in self._undelivered

    def waiting_peers(self) -> list[P]:
        """Peers with written blocks not yet acknowledged."""
        return list(self._undelivered)

    def delivered(self, peer: P, acked: int, now: float, *, closed: bool = False) -> Announce:
        """``peer`` acknowledged ``acked`` bytes of its stream: pass the blocks it holds on
        to the policy. A ``closed`` peer's unacknowledged blocks are dropped."""
        pending = self._undelivered.get(peer)
        out: Announce = {}
        if pending is None:
            return out
        while pending and pending[0][0] <= acked:
            for r in pending.popleft()[1]:
                i = r.piece_index
                size = self._piece_size(i)
                merge(out, self.policy.block_sent(peer, i, r.begin, r.length, size, now))
        if not pending or closed:
            del self._undelivered[peer]
        return out

    # --- slots ----------------------------------------------------------------------------

    def unchoke(self, interested: Sequence[P], serving: Container[P]) -> set[P]:
        """The choke round's unchokes: peers waiting for an offered piece first."""
        return set(self.policy.choose_unchoked(interested, serving, self.slots))

    def to_unchoke_now(self, interested: Sequence[P], serving: Container[P]) -> list[P]:
        """Waiting peers to unchoke at once while fewer than the slots are served."""
        if not self.policy.active:
            return []
        return self.policy.to_unchoke_now(interested, serving, self.slots)
