"""Peers announced to us (BEP 5 announce_peer), with expiry and bounded memory; pure.

Each (info_hash, peer) lives ``ttl`` seconds after its last announce. Caps: ``max_per_hash``
peers per info-hash (the oldest announce is dropped), ``max_per_ip`` announces from one IP
(that IP's oldest is dropped) and ``max_total`` overall (the oldest announce anywhere is
dropped), so a flood of announces costs a bounded amount of memory, and one address cannot
push everybody else's announces out.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from dataclasses import dataclass, field

from hubswarm.limits import (
    DHT_MAX_PEERS_PER_HASH,
    DHT_MAX_PEERS_PER_IP,
    DHT_MAX_PEERS_TOTAL,
    DHT_PEER_TTL,
)

__all__ = ["PeerStore"]

Address = tuple[str, int]


@dataclass(slots=True)
class PeerStore:
    """Announced peers by info-hash; insertion order is expiry order (TTL is constant)."""

    ttl: float = DHT_PEER_TTL
    max_per_hash: int = DHT_MAX_PEERS_PER_HASH
    max_total: int = DHT_MAX_PEERS_TOTAL
    max_per_ip: int = DHT_MAX_PEERS_PER_IP
    _all: OrderedDict[tuple[bytes, Address], float] = field(default_factory=OrderedDict)
    _by_hash: dict[bytes, OrderedDict[Address, None]] = field(default_factory=dict)
    _by_ip: dict[str, OrderedDict[tuple[bytes, Address], None]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._all)

    @property
    def info_hashes(self) -> int:
        """How many info-hashes have at least one peer."""
        return len(self._by_hash)

    def from_ip(self, ip: str) -> int:
        """How many announces from ``ip`` are stored."""
        return len(self._by_ip.get(ip, ()))

    def _drop(self, info_hash: bytes, peer: Address) -> None:
        self._all.pop((info_hash, peer), None)
        peers = self._by_hash.get(info_hash)
        if peers is not None:
            peers.pop(peer, None)
            if not peers:
                del self._by_hash[info_hash]
        keys = self._by_ip.get(peer[0])
        if keys is not None:
            keys.pop((info_hash, peer), None)
            if not keys:
                del self._by_ip[peer[0]]

    def add(self, info_hash: bytes, peer: Address, now: float) -> None:
        """Store or refresh ``peer`` for ``info_hash`` until ``now + ttl``."""
        self.expire(now)
        key = (info_hash, peer)
        if key in self._all:
            self._drop(info_hash, peer)
        peers = self._by_hash.setdefault(info_hash, OrderedDict())
        if len(peers) >= self.max_per_hash:
            self._drop(info_hash, next(iter(peers)))
        mine = self._by_ip.get(peer[0])
        if mine is not None and len(mine) >= self.max_per_ip:
            self._drop(*next(iter(mine)))
        while len(self._all) >= self.max_total:
            (old_hash, old_peer), _ = next(iter(self._all.items()))
            self._drop(old_hash, old_peer)
        peers = self._by_hash.setdefault(info_hash, OrderedDict())
        peers[peer] = None
        self._by_ip.setdefault(peer[0], OrderedDict())[key] = None
        self._all[key] = now + self.ttl

    def get(
        self, info_hash: bytes, now: float, limit: int, rng: random.Random | None = None
    ) -> list[Address]:
        """Up to ``limit`` live peers of ``info_hash`` (a random sample when there are more)."""
        self.expire(now)
        peers = list(self._by_hash.get(info_hash, ()))
        if len(peers) > limit:
            peers = (rng or random.Random(0)).sample(peers, limit)
        return peers

    def expire(self, now: float) -> int:
        """Forget announces older than ``ttl``; return how many were dropped."""
        dropped = 0
        while self._all:
            (info_hash, peer), expires_at = next(iter(self._all.items()))
            if expires_at > now:
                break
            self._drop(info_hash, peer)
            dropped += 1
        return dropped
