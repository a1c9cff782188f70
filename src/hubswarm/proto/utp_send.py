"""The sending half of a uTP stream: packet sizes, resend limits, and the unacked packets.

Theory of operation: every SYN, DATA and FIN we send stays in a :class:`SendQueue`, in
``seq_nr`` order, until the peer acks it (BEP 29: cumulatively through ``ack_nr`` or in the
selective ACK). The queue keeps the byte counts the windows are measured in: payload in
flight (sent, not acked, not deemed lost), payload unacked, and how many packets wait to be
resent. :class:`~hubswarm.proto.utp_recovery.LossRecovery` decides when a packet is lost or
resent (duplicate ACKs, the SACK, timeouts) and what LEDBAT makes of it; the queue only keeps
the books straight. The limits here bound what a sender holds and how long it retries.
"""

from __future__ import annotations

from dataclasses import dataclass

from hubswarm.proto.utp_packet import HEADER_SIZE, PacketType

__all__ = [
    "DEFAULT_SEND_BUFFER",
    "DUP_ACK_LIMIT",
    "FIN_RESENDS",
    "MAX_DATAGRAM_IN",
    "MAX_PACKET_SIZE",
    "MAX_PAYLOAD",
    "MAX_UNACKED_PACKETS",
    "MTU_RESOLUTION",
    "NUM_RESENDS",
    "SYN_RESENDS",
    "MtuSearch",
    "SendQueue",
    "Sent",
]

# UDP payload of one packet, header included, before (and without) path MTU discovery.
# libtorrent starts at 1404 (an Ethernet MTU of 1500 minus IPv4, UDP and 68 bytes of tunnel
# headroom) and probes upwards; 1400 also fits IPv6 (40-byte header) on any path that carries
# 1500-byte frames. It is the floor of :class:`MtuSearch` and all we ever send to a peer that
# has not said it reads more (``EXT_MAX_DATAGRAM``).
MAX_PACKET_SIZE = 1400
MAX_PAYLOAD = MAX_PACKET_SIZE - HEADER_SIZE
# What we announce we read in full: the largest UDP payload over IPv4 (65535 - 20 - 8); the
# shell reads whole datagrams (hubswarm.net reads 65535 bytes).
MAX_DATAGRAM_IN = 65507
# The MTU search stops once floor and ceiling are this close (bytes): a step that small
# changes the per-packet overhead by well under 1 % at Ethernet sizes.
MTU_RESOLUTION = 64
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


class MtuSearch:
    """Path MTU discovery by probing (libtorrent's ``m_mtu_floor`` / ``m_mtu_ceiling``).

    ``floor`` is the largest datagram known to arrive (ordinary packets are this size),
    ``ceiling`` the largest the path and the peer may take (the link's MTU, as the shell
    reads it from the kernel, and the peer's ``EXT_MAX_DATAGRAM``). One DATA packet at a time
    is sent larger than the floor, as a probe: acked, it raises the floor to its size; lost,
    it lowers the ceiling below it. The first probe tries the ceiling itself (the kernel's
    MTU is usually right), later ones bisect, until the two are :data:`MTU_RESOLUTION` apart.
    A lost probe is resent as it is (the kernel fragments it if it must; libtorrent resends
    a probe refused by the kernel without DF the same way).
    """

    __slots__ = ("_tried", "ceiling", "floor", "probe_seq", "probe_size")

    def __init__(self, floor: int = MAX_PACKET_SIZE) -> None:
        self.floor = floor
        self.ceiling = floor
        self.probe_seq: int | None = None  # the probe in flight
        self.probe_size = 0
        self._tried = False  # the ceiling itself was tried

    def set_ceiling(self, ceiling: int) -> None:
        """The largest datagram path and peer allow; never below the floor."""
        self.ceiling = max(self.floor, ceiling)
        self._tried = False

    def next_probe(self) -> int | None:
        """The datagram size of the next probe, None while one is in flight or when done."""
        if self.probe_seq is not None or self.ceiling - self.floor < MTU_RESOLUTION:
            return None
        return self.ceiling if not self._tried else (self.floor + self.ceiling) // 2

    def sent(self, seq_nr: int, size: int) -> None:
        """A probe of ``size`` bytes went out as ``seq_nr``."""
        self.probe_seq = seq_nr
        self.probe_size = size
        self._tried = True

    def acked(self) -> None:
        """The probe arrived: the path carries its size."""
        self.floor = max(self.floor, self.probe_size)
        self.probe_seq = None

    def lost(self) -> None:
        """The probe was deemed lost: the path (probably) does not carry its size."""
        self.ceiling = max(self.floor, self.probe_size - 1)
        self.probe_seq = None


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
