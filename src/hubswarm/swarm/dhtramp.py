"""Pure DHT announce ramp: how long the session waits before its next DHT lookup.

Theory of operation
-------------------
While no peer is connected, the lookup is retried after ``retry_first`` (a quarter of a
second), doubling up to ``retry_max`` (30 s), so a fresh swarm meets within a second: in a
flash crowd most first lookups come before the others' announces and find nobody, and a
newcomer that waited a whole second for its second look sat idle while the crowd traded
(at N = 1,000 in the lab, a third of the peers had fewer than four links at 1 s). The
doubling keeps it to seven lookups in the first half minute, two more than from 1 s.

Once connected, lookups repeat at the ``steady`` interval (libtorrent: 15 min), reached
by doubling from ``DHT_RAMP_FIRST``: in a flash crowd every peer's first lookup finds
nobody (no one has announced yet), and only a lookup soon after finds the others.

The ramp ends early, at the steady interval, once ``DHT_RAMP_EMPTY`` lookups in a row bring
no new address after one that did: the crowd has met, and each further lookup (about ten
KRPC round trips, decoded by every node on the way) would only find it again. One empty
lookup is not enough: it may have come just before the others announced.

No clock and no I/O: the session reports each lookup's result and sleeps what it is told.
"""

from __future__ import annotations

# The first re-lookup once connected (seconds), doubling up to the steady interval.
DHT_RAMP_FIRST = 0.25
# Lookups in a row that bring nobody new (after one that did) before the ramp ends.
DHT_RAMP_EMPTY = 2
# While nobody is connected: retry after 0.25 s, doubling up to 30 s.
DHT_RETRY_FIRST, DHT_RETRY_MAX = 0.25, 30.0
# The steady interval when neither the config nor the tracker sets one (libtorrent's
# dht_announce_interval is 15 min; a third of that keeps a lab's swarm fresh).
DHT_STEADY_INTERVAL = 300.0


class DHTRamp:
    """The waits between DHT lookups; feed it each lookup's count of new addresses."""

    def __init__(
        self,
        steady: float = DHT_STEADY_INTERVAL,
        *,
        first: float = DHT_RAMP_FIRST,
        empty_to_end: int = DHT_RAMP_EMPTY,
        retry_first: float = DHT_RETRY_FIRST,
        retry_max: float = DHT_RETRY_MAX,
    ) -> None:
        if not (first > 0 and 0 < retry_first <= retry_max and steady > 0 and empty_to_end > 0):
            raise ValueError("intervals must be positive, retry_first <= retry_max")
        self.steady = steady
        self.first = first
        self.empty_to_end = empty_to_end
        self.retry_first = retry_first
        self.retry_max = retry_max
        self._hits = 0  # lookups while connected: the ramp's exponent
        self._misses = 0  # lookups in a row while nobody was connected
        self._empty = 0  # lookups in a row that brought nobody new, after one that did
        self._met = False  # some lookup brought new addresses
        self.ended = False  # the ramp is over: every wait is the steady one

    def next_wait(self, fresh: int, *, connected: bool) -> float:
        """Seconds until the next lookup, after one that found ``fresh`` new addresses."""
        self._empty = self._empty + 1 if self._met and not fresh else 0
        if self._empty >= self.empty_to_end:
            self.ended = True
        self._met = self._met or fresh > 0
        if not connected:
            wait = min(self.retry_max, self.retry_first * 2.0 ** min(self._misses, 32))
            self._misses += 1
            return wait
        self._misses = 0
        if self.ended:
            return self.steady
        wait = min(self.steady, self.first * 2.0**self._hits)
        if wait >= self.steady:
            self.ended = True
        self._hits += 1
        return wait
