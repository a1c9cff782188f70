"""Announce tokens (BEP 5) and per-IP query rate limits: pure, ``now`` and rng injected.

BEP 5: "the BitTorrent implementation uses the SHA1 hash of the IP address concatenated onto
a secret that changes every five minutes and tokens up to ten minutes old are accepted."
Nothing is stored per peer: two secrets (current, previous) cover every valid token.

The per-IP limit is :class:`hubswarm.ratelimit.KeyedBuckets` (the code base's one token
bucket, one per source IP, in a bounded table), one token per query.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from dataclasses import dataclass

from hubswarm.limits import (
    DHT_RATE_BURST,
    DHT_RATE_MAX_IPS,
    DHT_RATE_PER_IP,
    DHT_TOKEN_LEN,
    DHT_TOKEN_ROTATE,
)
from hubswarm.ratelimit import KeyedBuckets

__all__ = ["PerIPLimiter", "TokenSecrets"]

# Bytes of each secret: 128 random bits make tokens unguessable (BEP 5 sets no size).
_SECRET_LEN = 16


@dataclass(slots=True)
class TokenSecrets:
    """Two rotating secrets; a token for an IP is SHA-1(secret + ip), truncated."""

    rng: random.Random
    rotate_after: float = DHT_TOKEN_ROTATE
    _current: bytes = b""
    _previous: bytes = b""
    _rotate_at: float | None = None

    def __post_init__(self) -> None:
        self._current = self.rng.randbytes(_SECRET_LEN)
        self._previous = self.rng.randbytes(_SECRET_LEN)

    @staticmethod
    def _token(secret: bytes, ip: str) -> bytes:
        return hashlib.sha1(secret + ip.encode()).digest()[:DHT_TOKEN_LEN]

    def token_for(self, ip: str) -> bytes:
        """The token to hand to ``ip`` in a get_peers response."""
        return self._token(self._current, ip)

    def is_valid(self, token: bytes, ip: str) -> bool:
        """True if ``token`` was issued to ``ip`` by the current or the previous secret."""
        return any(
            hmac.compare_digest(token, self._token(s, ip)) for s in (self._current, self._previous)
        )

    def tick(self, now: float) -> bool:
        """Rotate the secrets when due (every ``rotate_after`` seconds); True if rotated."""
        if self._rotate_at is None:
            self._rotate_at = now + self.rotate_after
            return False
        if now < self._rotate_at:
            return False
        self._previous, self._current = self._current, self.rng.randbytes(_SECRET_LEN)
        self._rotate_at = now + self.rotate_after
        return True


class PerIPLimiter(KeyedBuckets):
    """A token bucket per source IP, one token per query (the excess is dropped
    silently, as libtorrent's dht_block_ratelimit does); at most ``max_ips`` IPs are
    remembered, the least recently seen forgotten first."""

    __slots__ = ()

    def __init__(
        self,
        rate: float = DHT_RATE_PER_IP,
        burst: float = DHT_RATE_BURST,
        max_ips: int = DHT_RATE_MAX_IPS,
    ) -> None:
        super().__init__(rate, burst, max_ips)
