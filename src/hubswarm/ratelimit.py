"""Token-bucket rate limiting for the hub, the swarm and the lab: a pure bucket, a meter, and an
asyncio wrapper that chains buckets.

``TokenBucket`` is pure (``now`` is passed in): ``consume(n, now)`` *reserves* ``n`` bytes
and returns how long the caller must wait before sending them. The bucket may go into
debt, so a 16 KiB block passes a bucket whose burst is smaller, and callers are served in
the order they reserve (FIFO fairness between consumers of one bucket).

``RateLimiter`` wraps a bucket for asyncio; a per-peer limiter with ``parent=`` a global
limiter makes each send wait on both: first its own bucket, then the parent's (tokens
are taken from the global bucket only when the peer is ready to send, so a slow peer does
not hold global bandwidth hostage). A rate of 0 or None means unlimited.

``RateMeter`` is the matching pure measurement: bytes per second over a sliding window,
for ``PeerStats.download_rate``/``upload_rate`` and ``request_queue_depth``.

``KeyedBuckets`` is a bounded table of buckets, one per key (a source address): the DHT's
per-IP query budget and the tracker's per-address announce and connect budgets.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable

from hubswarm.clock import Clock
from hubswarm.limits import BLOCK_SIZE

# Default burst: 0.1 s of transfer, but at least 4 blocks so one piece message (16 KiB +
# 13 bytes) never has to wait on an idle link.
_DEFAULT_BURST_SECONDS = 0.1
_MIN_DEFAULT_BURST = 4 * BLOCK_SIZE


def default_burst(rate: float | None) -> float:
    """The burst used when none is given: max(0.1 s of rate, 64 KiB)."""
    if not rate:
        return 0.0
    return max(rate * _DEFAULT_BURST_SECONDS, _MIN_DEFAULT_BURST)


class TokenBucket:
    """A pure token bucket of ``rate`` refilling up to ``burst`` tokens."""

    __slots__ = ("_tokens", "_updated_at", "burst", "rate")

    def __init__(self, rate: float | None, burst: float | None, now: float) -> None:
        self.rate: float | None = None
        self.burst = 0.0
        self._tokens = 0.0
        self._updated_at = now
        self.set_rate(rate, burst, now)

    @property
    def unlimited(self) -> bool:
        """True when the rate is 0/None: every consume returns 0."""
        return not self.rate

    def set_rate(self, rate: float | None, burst: float | None, now: float) -> None:
        """Change the rate (None/0 = unlimited); the bucket starts full after a change."""
        if rate is not None and rate < 0:
            raise ValueError("rate must be >= 0")
        self.rate = rate or None
        self.burst = default_burst(self.rate) if burst is None else float(burst)
        self._tokens = self.burst
        self._updated_at = now

    def tokens(self, now: float) -> float:
        """Tokens available at ``now`` (negative while in debt)."""
        self._refill(now)
        return self._tokens

    def consume(self, n: int, now: float) -> float:
        """Reserve ``n`` bytes; return the delay in seconds before they may be sent."""
        if n < 0:
            raise ValueError("n must be >= 0")
        if self.rate is None:
            return 0.0
        self._refill(now)
        self._tokens -= n
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    reserve = consume

    def delay(self, n: int, now: float) -> float:
        """How long ``consume(n, now)`` would make the caller wait, without reserving."""
        if self.rate is None:
            return 0.0
        self._refill(now)
        left = self._tokens - n
        return 0.0 if left >= 0 else -left / self.rate

    def refund(self, n: int, now: float) -> None:
        """Give back a reservation that was not used (e.g. the sender was cancelled)."""
        if self.rate is None:
            return
        self._refill(now)
        self._tokens = min(self.burst, self._tokens + n)

    def _refill(self, now: float) -> None:
        assert self.rate is not None
        elapsed = now - self._updated_at
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._updated_at = now


class RateMeter:
    """Pure transfer-rate estimate over a sliding ``window`` (for the choker and queue depth).

    Bytes are summed in ``resolution``-second slots (bounded: window / resolution slots);
    ``rate(now)`` divides the bytes of the last ``window`` seconds by the window (or by the
    time since the first sample while younger than the window, so a new peer is not
    under-rated). libtorrent averages its rates over a few seconds the same way.
    """

    __slots__ = ("_slots", "_started_at", "resolution", "total", "window")

    def __init__(self, window: float = 5.0, resolution: float = 0.5) -> None:
        if window <= 0 or resolution <= 0 or resolution > window:
            raise ValueError("need 0 < resolution <= window")
        self.window = window
        self.resolution = resolution
        self.total = 0
        self._slots: deque[list[float]] = deque()  # [slot start, bytes]
        self._started_at: float | None = None

    def record(self, n: int, now: float) -> None:
        """Count ``n`` bytes transferred at ``now``."""
        if self._started_at is None:
            self._started_at = now
        self.total += n
        start = now - (now % self.resolution)
        if self._slots and self._slots[-1][0] == start:
            self._slots[-1][1] += n
        else:
            self._slots.append([start, float(n)])
        self._expire(now)

    def rate(self, now: float) -> float:
        """Bytes per second over the last ``window`` seconds."""
        if self._started_at is None:
            return 0.0
        self._expire(now)
        span = min(self.window, max(now - self._started_at, self.resolution))
        return sum(b for _, b in self._slots) / span

    def _expire(self, now: float) -> None:
        while self._slots and self._slots[0][0] + self.resolution <= now - self.window:
            self._slots.popleft()


class RateLimiter:
    """``await limiter.acquire(n)`` before sending ``n`` bytes; chains to ``parent``."""

    def __init__(
        self,
        rate: float | None,
        burst: float | None = None,
        *,
        parent: RateLimiter | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        """``clock`` and ``sleep`` default to a :class:`hubswarm.clock.Clock`'s (the loop's)."""
        default = Clock()
        self._clock = clock if clock is not None else default.now
        self._sleep = sleep if sleep is not None else default.sleep
        self.parent = parent
        self.bucket = TokenBucket(rate, burst, self._clock())

    def set_rate(self, rate: float | None, burst: float | None = None) -> None:
        """Change this limiter's rate (None/0 = unlimited)."""
        self.bucket.set_rate(rate, burst, self._clock())

    async def acquire(self, n: int) -> None:
        """Wait until ``n`` bytes may be sent under this limiter and all its parents.

        If cancelled while waiting, the reservation is refunded and CancelledError re-raised.
        """
        limiter: RateLimiter | None = self
        while limiter is not None:
            await limiter._acquire_one(n)
            limiter = limiter.parent

    async def _acquire_one(self, n: int) -> None:
        delay = self.bucket.consume(n, self._clock())
        if delay <= 0:
            return
        try:
            await self._sleep(delay)
        except asyncio.CancelledError:
            self.bucket.refund(n, self._clock())
            raise


class MinProgress:
    """Pure minimum-progress rule: at least ``min_bytes`` in every ``interval`` seconds.

    Apache's mod_reqtimeout does this for request bodies (``MinRate``): a per-read timeout
    alone restarts with every byte, so a client sending one byte a second holds the slot for
    ever. Time is whatever the caller charges the other side for (the hub passes only the
    time it spent waiting on the client, not its own throttling). ``min_bytes`` 0 disables.
    """

    __slots__ = ("_bytes", "_window_at", "interval", "min_bytes")

    def __init__(self, min_bytes: int, interval: float, now: float) -> None:
        if min_bytes < 0 or interval <= 0:
            raise ValueError("need min_bytes >= 0 and interval > 0")
        self.min_bytes = min_bytes
        self.interval = interval
        self._window_at = now
        self._bytes = 0

    def time_left(self, now: float) -> float:
        """Seconds until the current window is judged (inf when disabled)."""
        if not self.min_bytes:
            return float("inf")
        return max(self._window_at + self.interval - now, 0.0)

    def record(self, n: int, now: float) -> bool:
        """Count ``n`` bytes moved at ``now``; False once a whole window fell short."""
        if not self.min_bytes:
            return True
        ok = self.check(now)
        self._bytes += n
        return ok

    def check(self, now: float) -> bool:
        """Judge every window that ended by ``now``; False if one moved too little."""
        if not self.min_bytes:
            return True
        while now >= self._window_at + self.interval:
            if self._bytes < self.min_bytes:
                return False
            self._window_at += self.interval
            self._bytes = 0
        return True


# IPv6 budgets are kept per /64: one subscriber usually holds a whole /64 (RFC 6177), so a
# key per address would give one host 2**64 fresh budgets.
_IPV6_BUDGET_PREFIX = 64


def address_key(ip: str) -> str:
    """The budget key of a source address: the IPv4 address itself (IPv4-mapped IPv6
    included), an IPv6 address's /64; text that is no address is its own key."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, _IPV6_BUDGET_PREFIX), strict=False))
    return str(addr)


class KeyedBuckets:
    """Pure per-key budgets: a :class:`TokenBucket` of ``rate`` and ``burst`` per key, one
    token per event; the table holds at most ``max_keys`` keys, least recently seen
    forgotten first.

    Forgetting a key whose bucket has refilled (not seen for ``burst / rate`` seconds) loses
    nothing; with more busy keys than ``max_keys`` a forgotten key starts again full, so a
    source needs ``max_keys`` other addresses to wash its own budget.
    """

    __slots__ = ("_buckets", "burst", "max_keys", "rate")

    def __init__(self, rate: float, burst: float, max_keys: int) -> None:
        # A rate of 0 would mean "unlimited" to TokenBucket: refuse it rather than guess.
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("need rate > 0, burst >= 1 and max_keys >= 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def allow(self, key: str, now: float, cost: int = 1) -> bool:
        """Spend ``cost`` tokens of ``key``'s bucket; False (nothing spent) if it has fewer."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, now)
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        if bucket.tokens(now) < cost:
            return False
        bucket.consume(cost, now)  # never into debt: the tokens were there
        return True

    def retry_after(self, key: str, now: float, cost: int = 1) -> float:
        """Seconds until ``key`` may spend ``cost`` again (0 if it may now)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        return max(cost - bucket.tokens(now), 0.0) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)
