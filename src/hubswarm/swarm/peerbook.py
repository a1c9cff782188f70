"""Pure peer book: addresses to dial, when to dial them again, trust and bans.

Theory of operation
-------------------
Addresses come from trackers, the DHT, PEX, magnets and the command line (:meth:`add`).
Each has a time of its next attempt; :meth:`due` hands the dialer those whose time has
come (and marks them as being dialled). A dial that fails, or a link that ends, puts the
address back with a doubling back-off (:meth:`retry`), from ``reconnect_min`` up to
``reconnect_max``, so a seed that restarts on the same port is found again.

Trust points follow libtorrent (``peer_connection::received_invalid_data``): a peer earns
one per good piece it contributed to (up to ``TRUST_MAX``) and loses
``TRUST_SHARED_PENALTY`` per bad piece it shared with others, ``TRUST_SOLE_PENALTY`` when it
alone sent the bad piece. At ``TRUST_BAN`` or below it is banned, address and peer_id: two
bad pieces of its own, or about four shared ones without good work between, so one honest
mistake is forgiven while a peer flipping bytes in every block fails every piece.

No clock and no I/O: the caller passes ``now``.
"""

from __future__ import annotations

from collections.abc import Container, Iterator
from dataclasses import dataclass

Address = tuple[str, int]

TRUST_MAX = 8
TRUST_SHARED_PENALTY = 2
TRUST_SOLE_PENALTY = 4
TRUST_BAN = -7
# Addresses kept to dial: a bound on what peers can make us hold; newer ones are dropped
# when full (libtorrent: max_peerlist_size = 3000).
MAX_CANDIDATES = 2000
# Seconds before a failed address is dialled again, doubling per failure up to the maximum.
RETRY_MIN, RETRY_MAX = 2.0, 60.0
# On loopback (and in a single-IP lab) every peer shares one IP: a ban there is per
# (ip, port); elsewhere the whole IP is banned.
_LOOPBACK_PREFIX = "127."


@dataclass(frozen=True, slots=True)
class TrustChange:
    """What :meth:`PeerBook.adjust_trust` decided: the new trust and whether it banned now."""

    trust: int
    banned: bool


class PeerBook:
    """Candidates with their next attempt time, back-off per address, trust and bans."""

    def __init__(
        self,
        *,
        reconnect_min: float = RETRY_MIN,
        reconnect_max: float = RETRY_MAX,
        max_candidates: int = MAX_CANDIDATES,
    ) -> None:
        if not 0 < reconnect_min <= reconnect_max or max_candidates < 0:
            raise ValueError("need 0 < reconnect_min <= reconnect_max and max_candidates >= 0")
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.max_candidates = max_candidates
        self._next_at: dict[Address, float] = {}  # candidate -> next attempt at
        self._delay: dict[Address, float] = {}  # the last back-off of a failing address
        self.connecting: set[Address] = set()
        self._banned_ips: set[str] = set()
        self._banned_addresses: set[Address] = set()
        self._banned_peer_ids: set[bytes] = set()
        self._own_addresses: set[Address] = set()
        self._trust: dict[Address, int] = {}
        self.bans = 0

    def __contains__(self, address: object) -> bool:
        return address in self._next_at

    def __len__(self) -> int:
        return len(self._next_at)

    def __iter__(self) -> Iterator[Address]:
        return iter(list(self._next_at))

    def candidates(self) -> list[Address]:
        """Every address kept to dial."""
        return list(self._next_at)

    def next_attempt_at(self, address: Address) -> float | None:
        """When ``address`` may be dialled next; None when it is not a candidate."""
        return self._next_at.get(address)

    # --- candidates -----------------------------------------------------------------------

    def add(self, address: Address) -> bool:
        """Keep ``address`` to dial as soon as possible; True when it is new."""
        _host, port = address
        if not 0 < port < 65536 or self.is_banned(address) or address in self._own_addresses:
            return False
        if address in self._next_at or len(self._next_at) >= self.max_candidates:
            return False
        self._next_at[address] = 0.0
        return True

    def due(self, now: float, *, room: int, connected: Container[Address]) -> list[Address]:
        """Up to ``room`` addresses to dial now; they count as connecting until :meth:`dialled`."""
        out: list[Address] = []
        for address, at in self._next_at.items():
            if len(out) >= room:
                break
            if at > now or address in connected or address in self.connecting:
                continue
            if self.is_banned(address):
                continue
            out.append(address)
        self.connecting.update(out)
        return out

    def dialled(self, address: Address, *, ok: bool) -> None:
        """A dial ended; a success resets the address's back-off."""
        self.connecting.discard(address)
        if ok:
            self._delay.pop(address, None)

    def connected(self, address: Address) -> None:
        """We hold a link we dialled to ``address``: it is a candidate again once it ends."""
        self._next_at.setdefault(address, 0.0)

    def retry(self, address: Address, now: float, delay: float | None = None) -> bool:
        """Dial ``address`` again after ``delay``, else after the doubled back-off.

        Returns True when the address is a candidate (the dialer should look again)."""
        if delay is None:
            delay = min(self.reconnect_max, self._delay.get(address, self.reconnect_min / 2) * 2)
            self._delay[address] = delay
        if address not in self._next_at:
            return False
        self._next_at[address] = now + delay
        return True

    def is_own(self, address: Address) -> bool:
        """True for an address found to be ourselves."""
        return address in self._own_addresses

    def mark_own(self, address: Address) -> None:
        """We dialled ourselves at ``address`` (a tracker lists us too): never again."""
        self._own_addresses.add(address)
        self._next_at.pop(address, None)

    # --- trust and bans -------------------------------------------------------------------

    def is_banned(self, address: Address) -> bool:
        """True for an address (or its IP) banned for sending corrupt data."""
        return address[0] in self._banned_ips or address in self._banned_addresses

    def is_banned_peer_id(self, peer_id: bytes) -> bool:
        """True for a peer_id seen on a banned connection."""
        return peer_id in self._banned_peer_ids

    def trust(self, address: Address) -> int:
        """The trust points of ``address`` (0 when unknown)."""
        return self._trust.get(address, 0)

    def good_piece(self, address: Address) -> TrustChange:
        """``address`` contributed to a piece that passed its hash check."""
        return self.adjust_trust(address, 1)

    def bad_piece(
        self, address: Address, *, alone: bool, peer_id: bytes | None = None
    ) -> TrustChange:
        """``address`` contributed to a piece that failed; ``alone``: it sent all of it."""
        penalty = TRUST_SOLE_PENALTY if alone else TRUST_SHARED_PENALTY
        return self.adjust_trust(address, -penalty, peer_id=peer_id)

    def adjust_trust(
        self, address: Address, delta: int, *, peer_id: bytes | None = None
    ) -> TrustChange:
        """Add ``delta`` trust points; ban at ``TRUST_BAN`` (``banned``: this call banned it)."""
        trust = min(TRUST_MAX, self._trust.get(address, 0) + delta)
        self._trust[address] = trust
        if trust > TRUST_BAN or self.is_banned(address):
            return TrustChange(trust, banned=False)
        self._banned_addresses.add(address)
        if not address[0].startswith(_LOOPBACK_PREFIX):
            self._banned_ips.add(address[0])
        self._next_at.pop(address, None)
        if peer_id is not None:
            self._banned_peer_ids.add(peer_id)
        self.bans += 1
        return TrustChange(trust, banned=True)
