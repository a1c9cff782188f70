"""The sending half of a uTP stream: packet sizes, resend limits, and the unacked packets.

Theory of operation: every SYN, DATA and FIN we send stays in a :class:`SendQueue`, in
``seq_nr`` order, until the peer acks it (BEP 29: cumulatively through ``ack_nr`` or in the
selective ACK). The queue keeps the byte counts the windows are measured in: payload in
flight (sent, not acked, not deemed lost), payload unacked, and how many packets wait to be
resent. :class:`~hubswarm.proto.utp.UtpConnection` decides when a packet is lost or resent
(duplicate ACKs, the SACK, timeouts) and what LEDBAT makes of it; the queue only keeps the
books straight. The limits here bound what a sender holds and how long it retries.
"""

from __future__ import annotations

from dataclasses import dataclass

from hubswarm.proto.utp_packet import HEADER_SIZE, PacketType

__all__ = [
    "DEFAULT_SEND_BUFFER",
    "DUP_ACK_LIMIT",
    "FIN_RESENDS",
    "MAX_PACKET_SIZE",
    "MAX_PAYLOAD",
    "MAX_UNACKED_PACKETS",
    "NUM_RESENDS",
    "SYN_RESENDS",
    "SendQueue",
    "Sent",
]

# UDP payload of one packet, header included. libtorrent starts at 1404 (an Ethernet MTU of
# 1500 minus IPv4, UDP and 68 bytes of tunnel headroom) and probes upwards; 1400 also fits
# IPv6 (40-byte header) on any path that carries 1500-byte frames. No path MTU discovery.
MAX_PACKET_SIZE = 1400
MAX_PAYLOAD = MAX_PACKET_SIZE - HEADER_SIZE
# Application bytes we hold, unsent plus unacked; the shell pauses its writer well before.
DEFAULT_SEND_BUFFER = 2 * 1024 * 1024
# Packets we keep unacked at most, whatever the windows say: far inside the 32768 a 16-bit
# seq_nr can order, and no more than a peer with our reorder buffer could hold.
MAX_UNACKED_PACKETS = 1024
# libtorrent dup_ack_limit = 3: three duplicate ACKs, or a hole followed by three selectively
# acked packets, mean the packet was lost (as TCP's fast retransmit, RFC 5681).
DUP_ACK_LIMIT = 3
# How many retransmissions without a word from the peer before the connection is given up.
# libtorrent stops at utp_num_resends = 3 (utp_syn_resends and utp_fin_resends = 2): a
# BitTorrent client has other peers to try, and it falls back to TCP. We allow more, so that
# a path losing 20 % of the packets each way (a round trip fails 36 % of the time) keeps its
# connections: 0.36 ** 9 = 1e-4 per loss episode. With the timeout doubling from 0.5 s up to
# 60 s, that is 183 s of silence, when the peer wire's own idle timeout (180 s) fires too.
# SYN and FIN: Linux's tcp_syn_retries = 6 (a dialer's fall-back to TCP is the dial policy's
# much shorter timeout, not this one).
NUM_RESENDS = 8
SYN_RESENDS = 6
FIN_RESENDS = 6


@dataclass(slots=True)
class Sent:
    """A packet we sent that needs an ACK (SYN, DATA, FIN), until it gets one."""

    seq_nr: int
    type: PacketType
    payload: bytes
    sent_at: float = 0.0
    transmissions: int = 0
    in_flight: bool = False  # counted in bytes in flight (sent, not acked, not deemed lost)
    need_resend: bool = False
    urgent: bool = False  # resend now, whatever the window (fast retransmit, timeout)
    fast_resent: bool = False  # fast retransmit at most once per packet


class SendQueue:
    """Packets sent and not yet acked (``packets``, in seq order) and their byte counts."""

    __slots__ = ("in_flight", "packets", "resend_pending", "unacked_payload")

    def __init__(self) -> None:
        self.packets: dict[int, Sent] = {}  # seq order: packets are added in seq order
        self.in_flight = 0
        self.unacked_payload = 0
        self.resend_pending = 0  # packets marked need_resend

    def add(self, sent: Sent) -> None:
        """A new packet (SYN, DATA or FIN), about to be transmitted for the first time."""
        self.packets[sent.seq_nr] = sent
        self.unacked_payload += len(sent.payload)

    def acked(self, sent: Sent) -> int:
        """Account for ``sent``, just popped from :attr:`packets`; return its payload size."""
        size = len(sent.payload)
        if sent.in_flight:
            self.in_flight -= size
        if sent.need_resend:
            self.resend_pending -= 1
        self.unacked_payload -= size
        return size

    def mark_for_resend(self, sent: Sent, *, urgent: bool) -> None:
        """``sent`` is deemed lost: out of flight, and resent (``urgent``: whatever the window)."""
        if sent.in_flight:
            self.in_flight -= len(sent.payload)
            sent.in_flight = False
        if not sent.need_resend:
            sent.need_resend = True
            self.resend_pending += 1
        sent.urgent = sent.urgent or urgent

    def transmitted(self, sent: Sent, now: float) -> None:
        """``sent`` goes out (again) at ``now``: it is in flight and no longer waits."""
        sent.sent_at = now
        sent.transmissions += 1
        if sent.need_resend:
            sent.need_resend = False
            self.resend_pending -= 1
        sent.urgent = False
        if not sent.in_flight:
            sent.in_flight = True
            self.in_flight += len(sent.payload)

    def clear(self) -> None:
        """Forget every packet (the connection ended)."""
        self.packets.clear()
        self.in_flight = self.unacked_payload = self.resend_pending = 0
