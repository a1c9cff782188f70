"""Announce tokens (BEP 5) and per-IP query rate limits: pure, ``now`` and rng injected.

BEP 5: "the BitTorrent implementation uses the SHA1 hash of the IP address concatenated onto
a secret that changes every five minutes and tokens up to ten minutes old are accepted."
Nothing is stored per peer: two secrets (current, previous) cover every valid token.

The per-IP limit is one :class:`hubswarm.ratelimit.TokenBucket` per source IP (the code
base's one token bucket), one token per query.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from dataclasses import dataclass, field

from hubswarm.limits import (
    DHT_RATE_BURST,
    DHT_RATE_MAX_IPS,
    DHT_RATE_PER_IP,
    DHT_TOKEN_LEN,
    DHT_TOKEN_ROTATE,
)
from hubswarm.ratelimit import TokenBucket

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


@dataclass(slots=True)
class PerIPLimiter:
    """A token bucket per source IP, one token per query; the table of IPs is bounded
    (the least recently seen IP is forgotten first)."""

    rate: float = DHT_RATE_PER_IP
    burst: float = DHT_RATE_BURST
    max_ips: int = DHT_RATE_MAX_IPS
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A rate of 0 would mean "unlimited" to TokenBucket: refuse it rather than guess.
        if self.rate <= 0 or self.burst < 1 or self.max_ips < 1:
            raise ValueError("need rate > 0, burst >= 1 and max_ips >= 1")

    def allow(self, ip: str, now: float) -> bool:
        """Spend one token of ``ip``'s bucket; False if it has none (drop the query)."""
        bucket = self._buckets.pop(ip, None)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, now)
        # Re-inserted at the end: dict order is least-recently-seen first.
        self._buckets[ip] = bucket
        while len(self._buckets) > self.max_ips:
            del self._buckets[next(iter(self._buckets))]
        if bucket.tokens(now) < 1.0:
            return False
        bucket.consume(1, now)
        return True

    def __len__(self) -> int:
        return len(self._buckets)
