"""LEDBAT congestion control and the retransmission timer of uTP (BEP 29), pure.

Theory of operation: the receiver of each packet echoes, in
``timestamp_difference_microseconds``, how long that packet took from our clock to its
clock. The clocks are not synchronised, so one sample means nothing; the *lowest* sample of
the last two minutes (:class:`DelayHistory`) is taken as the fixed part of the path, and
what lies above it is queueing delay, the time our packets wait in some buffer.
:class:`Ledbat` grows the congestion window while that delay is under the 100 ms target and
shrinks it, in proportion, above it (BEP 29 "congestion control"), so a uTP flow fills an
idle link but steps aside as soon as another flow (TCP) builds a queue. Loss halves the
window; a timeout drops it to one packet. :class:`RttEstimator` keeps the smoothed round
trip and its variance and gives the retransmission timeout (BEP 29 "timeouts").

Nothing here reads a clock: ``now`` (seconds) and the delay samples come from the caller.
Windows are in bytes, delays in microseconds, times and timeouts in seconds.
"""

from __future__ import annotations

from collections import deque

__all__ = [
    "BASE_DELAY_BUCKET",
    "BASE_DELAY_WINDOW",
    "GAIN_BYTES_PER_RTT",
    "INITIAL_RTO",
    "LOSS_MULTIPLIER",
    "MAX_RTO",
    "MIN_RTO",
    "TARGET_DELAY_US",
    "DelayHistory",
    "Ledbat",
    "RttEstimator",
]

# BEP 29 CCONTROL_TARGET: "the target delay is 100 ms" (libtorrent utp_target_delay = 100).
TARGET_DELAY_US = 100_000
# BEP 29 MAX_CWND_INCREASE_BYTES_PER_RTT = 3000 (libtorrent utp_gain_factor = 3000): at zero
# queueing delay the window grows by at most this much per round trip.
GAIN_BYTES_PER_RTT = 3000
# BEP 29 (2012 revision, "update the loss factor from 0.78 to 0.5"); libtorrent
# utp_loss_multiplier = 50 %.
LOSS_MULTIPLIER = 0.5
# BEP 29: base_delay is the minimum delay sample of the last two minutes, kept as per-minute
# minima so that a route change (a new, higher base) is forgotten within two minutes.
BASE_DELAY_WINDOW = 120.0
BASE_DELAY_BUCKET = 60.0
_BASE_DELAY_BUCKETS = int(BASE_DELAY_WINDOW // BASE_DELAY_BUCKET) + 1
# BEP 29: "the initial timeout is set to 1000 ms"; timeout = max(rtt + rtt_var * 4, 500 ms)
# (libtorrent utp_min_timeout = 500 ms). libtorrent caps a backed-off timeout at 60 s.
INITIAL_RTO = 1.0
MIN_RTO = 0.5
MAX_RTO = 60.0

_U32 = 1 << 32
_U32_HALF = 1 << 31


def _u32_lt(a: int, b: int) -> bool:
    # Delay samples are differences of two unrelated 32-bit clocks: they wrap, so compare
    # the way seq_nrs are compared.
    return (a - b) % _U32 >= _U32_HALF


class DelayHistory:
    """Base delay: the lowest one-way delay sample of the last :data:`BASE_DELAY_WINDOW`."""

    def __init__(self) -> None:
        self._minima: deque[int] = deque(maxlen=_BASE_DELAY_BUCKETS)
        self._bucket_started_at: float | None = None

    @property
    def base(self) -> int | None:
        """The base delay sample (raw 32-bit value), None before the first sample."""
        if not self._minima:
            return None
        base = self._minima[0]
        for m in self._minima:
            if _u32_lt(m, base):
                base = m
        return base

    def add_sample(self, sample: int, now: float) -> int:
        """Record a raw 32-bit delay sample; return its queueing delay in microseconds."""
        sample %= _U32
        started = self._bucket_started_at
        if started is None or now - started >= BASE_DELAY_BUCKET:
            self._minima.append(sample)
            self._bucket_started_at = now
        elif _u32_lt(sample, self._minima[-1]):
            self._minima[-1] = sample
        base = self.base
        assert base is not None
        return (sample - base) % _U32


class RttEstimator:
    """Smoothed round-trip time and its variance; the retransmission timeout (BEP 29)."""

    def __init__(self) -> None:
        self.rtt: float | None = None
        self.rtt_var = 0.0

    def add_sample(self, rtt: float) -> None:
        """Add one round trip (seconds) of a packet sent once (Karn: resent ones are ambiguous)."""
        if self.rtt is None:
            # RFC 6298 2.2: the first sample sets rtt, and rtt_var to half of it.
            self.rtt = rtt
            self.rtt_var = rtt / 2
            return
        # BEP 29: delta = rtt - packet_rtt; rtt_var += (|delta| - rtt_var) / 4;
        # rtt += (packet_rtt - rtt) / 8.
        delta = self.rtt - rtt
        self.rtt_var += (abs(delta) - self.rtt_var) / 4
        self.rtt += (rtt - self.rtt) / 8

    def timeout(self, backoff: int = 0) -> float:
        """The retransmission timeout, doubled ``backoff`` times (BEP 29), at most 60 s."""
        base = INITIAL_RTO if self.rtt is None else max(MIN_RTO, self.rtt + 4 * self.rtt_var)
        return min(MAX_RTO, base * (1 << min(backoff, 16)))


class Ledbat:
    """The congestion window (bytes) of one uTP connection.

    ``mss`` is the largest payload of one packet; the window never drops below it (RFC 6817
    and libtorrent: BEP 29 lets it reach 0, which stalls a sender until its next timeout).
    """

    def __init__(
        self,
        mss: int,
        *,
        target_delay_us: int = TARGET_DELAY_US,
        gain: int = GAIN_BYTES_PER_RTT,
    ) -> None:
        self.mss = mss
        self.target_delay_us = target_delay_us
        self.gain = gain
        # libtorrent starts at one Ethernet MTU and in slow start.
        self.cwnd = float(mss)
        self.slow_start = True
        self.ssthresh: float | None = None

    @property
    def window(self) -> int:
        """Bytes the congestion window lets be in flight."""
        return int(self.cwnd)

    def set_mss(self, mss: int) -> None:
        """Path MTU discovery found larger packets: the window is at least one of them
        (libtorrent raises ``m_cwnd`` to the new MTU in ``update_mtu_limits``)."""
        self.mss = mss
        self.cwnd = max(self.cwnd, float(mss))

    def on_ack(
        self,
        acked_bytes: int,
        queueing_delay_us: int,
        in_flight: int,
        *,
        saturated: bool,
        peer_window: int,
    ) -> None:
        """Adjust the window for ``acked_bytes`` newly acked out of ``in_flight``.

        ``saturated``: the sender had more to send than the window allowed (an idle sender
        learns nothing about the path, so the window only shrinks then, never grows).
        Growth never takes the window past ``peer_window``, the receiver's advertised space.
        """
        if acked_bytes <= 0 or in_flight <= 0:
            return
        target = self.target_delay_us
        off_target = target - queueing_delay_us
        if off_target <= 0 and self.slow_start:
            # Delay reached the target: slow start is over (libtorrent).
            self.ssthresh = self.cwnd / 2
            self.slow_start = False
        # BEP 29: scaled_gain = MAX_CWND_INCREASE * delay_factor * window_factor, with
        # window_factor = acked / in flight, so the gain adds up to ``gain`` per round trip.
        window_factor = min(1.0, acked_bytes / in_flight)
        delay_factor = off_target / target
        linear = self.gain * delay_factor * window_factor
        if linear > 0 and not saturated:
            return
        change = linear
        if self.slow_start and saturated:
            # libtorrent mimics TCP slow start below the target: grow by what was acked,
            # until the slow-start threshold of an earlier loss or timeout.
            if self.ssthresh is not None and self.cwnd + acked_bytes > self.ssthresh:
                self.slow_start = False
            else:
                change = max(float(acked_bytes), linear)
        cwnd = self.cwnd + change
        if change > 0:
            cwnd = min(cwnd, max(self.cwnd, float(peer_window)))
        self.cwnd = max(float(self.mss), cwnd)

    def on_loss(self) -> None:
        """A packet was lost (duplicate ACKs or a selective ACK hole): halve the window."""
        self.cwnd = max(float(self.mss), self.cwnd * LOSS_MULTIPLIER)
        self.ssthresh = self.cwnd
        self.slow_start = False

    def on_timeout(self) -> None:
        """The retransmission timer fired: back to one packet, slow start up to half of before."""
        self.ssthresh = max(float(self.mss), self.cwnd / 2)
        self.cwnd = float(self.mss)
        self.slow_start = True
