"""Loss recovery of a uTP sender: what ACKs, delay samples and timeouts mean, pure.

Theory of operation (BEP 29, libtorrent's ``utp_stream.cpp``; QUIC keeps the same idea apart
in RFC 9002): every packet the peer sends acks our packets cumulatively through ``ack_nr``
and selectively in its SACK. :class:`LossRecovery` takes those packets out of the
:class:`~hubswarm.proto.utp_send.SendQueue`, measures round trips from packets sent once
(Karn), finds losses (three duplicate ACKs, or a hole followed by three selectively acked
packets: fast retransmit) and marks them for resending, and feeds LEDBAT: the acked bytes
with the queueing delay, a loss once per window, a timeout. It also tells the MTU search
whether its probe arrived. It reads no clock (``now`` is the caller's) and sends nothing:
:class:`~hubswarm.proto.utp.UtpConnection` owns the states, the timer and the packets, and
lives apart so that one file holds the stream and this one the sender's reading of the path.
"""

from __future__ import annotations

from collections import deque

from hubswarm.proto.ledbat import DelayHistory, Ledbat, RttEstimator
from hubswarm.proto.utp_packet import (
    HEADER_SIZE,
    Packet,
    PacketType,
    sack_seq_nrs,
    seq_add,
    seq_diff,
    seq_lt,
)
from hubswarm.proto.utp_send import (
    DUP_ACK_LIMIT,
    MAX_PAYLOAD,
    MAX_UNACKED_PACKETS,
    MtuSearch,
    SendQueue,
    Sent,
)

__all__ = ["LossRecovery"]

# uTorrent sometimes sends timestamp_difference = INT_MAX uninitialised (libtorrent ignores it).
_BOGUS_DELAY_SAMPLE = 0x7FFFFFFF
# libtorrent clamps the LEDBAT delay to the minimum of the last three samples.
_DELAY_SAMPLES = 3


class LossRecovery:
    """The sender's books of one connection: acked, lost, round trips, congestion window.

    ``next_seq`` (the connection's next ``seq_nr`` to send) is passed to each call: it bounds
    what an ACK may ack and marks the end of the window a loss reacts to.
    """

    __slots__ = (
        "acked_seq",
        "delays",
        "dup_acks",
        "ledbat",
        "loss_seq",
        "mtu",
        "recent_delays",
        "rtt",
        "sendq",
    )

    def __init__(self, next_seq: int, sendq: SendQueue, mtu: MtuSearch) -> None:
        self.sendq = sendq
        self.mtu = mtu
        self.acked_seq = seq_add(next_seq, -1)  # all up to here acked by the peer
        self.loss_seq = self.acked_seq  # a loss at or before this was already reacted to
        self.dup_acks = 0
        self.rtt = RttEstimator()
        self.delays = DelayHistory()
        self.recent_delays: deque[int] = deque(maxlen=_DELAY_SAMPLES)
        self.ledbat = Ledbat(MAX_PAYLOAD)

    def delay_sample(self, sample: int, now: float) -> None:
        """The peer's ``timestamp_difference_microseconds`` (0 and uTorrent's bogus value
        are no sample): our one-way delay towards it."""
        if sample and sample != _BOGUS_DELAY_SAMPLE:
            self.recent_delays.append(self.delays.add_sample(sample, now))

    def ack_plausible(self, ack_nr: int, next_seq: int) -> bool:
        """Never an ACK of what we have not sent (a forged or corrupt packet); an old ACK is
        fine (reordering), it just carries no news."""
        ahead = seq_diff(ack_nr, seq_add(next_seq, -1))
        behind = seq_diff(self.acked_seq, ack_nr)
        return ahead <= 0 and behind <= MAX_UNACKED_PACKETS

    def on_ack(self, packet: Packet, next_seq: int, now: float, *, peer_window: int) -> bool:
        """Take what ``packet`` acks; return whether the peer acked or timed anything (the
        caller restarts its retransmission timer then)."""
        ack_nr = packet.ack_nr
        sendq = self.sendq
        in_flight_before = sendq.in_flight
        acked = 0
        min_rtt: float | None = None
        if seq_lt(self.acked_seq, ack_nr):
            seq = self.acked_seq
            while seq != ack_nr:
                seq = seq_add(seq, 1)
                sent = sendq.packets.pop(seq, None)
                if sent is not None:
                    acked += sendq.acked(sent)
                    min_rtt = self._min_rtt(min_rtt, sent, now)
            self.acked_seq = ack_nr
            self.dup_acks = 0
            if seq_lt(self.loss_seq, ack_nr):
                # Keep the marker near the window so that 16-bit wrap never confuses it.
                self.loss_seq = ack_nr
        elif packet.type is PacketType.ST_STATE and ack_nr == self.acked_seq and sendq.packets:
            self.dup_acks += 1
            if self.dup_acks >= DUP_ACK_LIMIT:
                self.lost(seq_add(ack_nr, 1), next_seq)
        sack = packet.sack
        if sack and sendq.packets:
            sacked = [s for s in sack_seq_nrs(ack_nr, sack) if seq_lt(s, next_seq)]
            for seq in sacked:
                sent = sendq.packets.pop(seq, None)
                if sent is not None:
                    acked += sendq.acked(sent)
                    min_rtt = self._min_rtt(min_rtt, sent, now)
            if len(sacked) >= DUP_ACK_LIMIT:
                # Every packet before the third-last one acked selectively is lost.
                seq = seq_add(ack_nr, 1)
                while seq_lt(seq, sacked[-DUP_ACK_LIMIT]):
                    self.lost(seq, next_seq)
                    seq = seq_add(seq, 1)
        probe_seq = self.mtu.probe_seq
        if probe_seq is not None and acked and probe_seq not in sendq.packets:
            self.mtu.acked()
            self.ledbat.set_mss(self.mtu.floor - HEADER_SIZE)
        if acked and in_flight_before and self.recent_delays:
            # The one-way delay can be no larger than the round trip (libtorrent's clamp).
            delay = min(self.recent_delays)
            if min_rtt is not None:
                delay = min(delay, int(min_rtt * 1_000_000))
            self.ledbat.on_ack(
                acked,
                delay,
                in_flight_before,
                saturated=in_flight_before + self.ledbat.mss > self.ledbat.window,
                peer_window=peer_window,
            )
        return min_rtt is not None or acked > 0

    def _min_rtt(self, current: float | None, sent: Sent, now: float) -> float | None:
        if sent.transmissions != 1:
            return current  # Karn: the ACK may be for either transmission
        sample = max(0.0, now - sent.sent_at)
        self.rtt.add_sample(sample)
        return sample if current is None else min(current, sample)

    def lost(self, seq_nr: int, next_seq: int) -> None:
        """``seq_nr`` is deemed lost: resend it now (once per packet); LEDBAT reacts once
        per window."""
        sent = self.sendq.packets.get(seq_nr)
        if sent is None or sent.fast_resent or sent.transmissions == 0:
            return
        sent.fast_resent = True
        if seq_nr == self.mtu.probe_seq:
            self.mtu.lost()
        self.sendq.mark_for_resend(sent, urgent=True)
        # React to congestion once per window: losses of packets sent before the last
        # reduction are the same congestion event (RFC 5681, libtorrent m_loss_seq_nr).
        if seq_lt(self.loss_seq, seq_nr):
            self.ledbat.on_loss()
            self.loss_seq = seq_add(next_seq, -1)

    def on_timeout(self, next_seq: int) -> None:
        """The retransmission timer fired with packets unacked (the caller checked).

        BEP 29: the window drops to one packet and everything unacked is resent as the
        window reopens, the oldest first and at once.
        """
        self.ledbat.on_timeout()
        self.loss_seq = seq_add(next_seq, -1)
        if self.mtu.probe_seq is not None:
            self.mtu.lost()
        packets = self.sendq.packets
        for sent in packets.values():
            self.sendq.mark_for_resend(sent, urgent=False)
        next(iter(packets.values())).urgent = True
