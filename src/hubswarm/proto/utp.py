"""uTP (BEP 29), one connection as a sans-IO state machine.

Theory of operation (modelled on h11): a :class:`UtpConnection` never touches a socket or a
clock. The shell feeds it the datagrams that arrive for it, ``receive_datagram(data, now)
-> list[Event]``, hands it application bytes with ``send(data)``, and after either asks
``datagrams_to_send(now) -> list[bytes]`` for what the windows allow right now (new data,
retransmissions, a FIN, or a bare ACK). ``timeout_at()`` is the next deadline; the shell
calls ``on_timeout(now)`` then. ``now`` is in seconds on any monotonic clock; the
microsecond timestamps of the packets are taken from it. Randomness (connection ids and
initial sequence numbers) comes from an injected ``random.Random``.

States (see ``TRANSITIONS`` in :mod:`hubswarm.proto.utp_state`)::

    IDLE --connect()--> SYN_SENT --STATE acking the SYN--> CONNECTED
    IDLE --accept(SYN)--> SYN_RECV --a packet acking exactly our STATE--> CONNECTED
    CONNECTED --close(), send buffer drained, FIN sent--> FIN_SENT
    FIN_SENT --our FIN acked and the peer's FIN (all data before it) received--> CLOSED
    SYN_SENT, SYN_RECV, CONNECTED, FIN_SENT --RESET received or abort()--> RESET
                                            --too many timeouts--> TIMED_OUT
                                            --malformed datagram, data past
                                              the FIN, a second FIN--> ERROR

A FIN from the peer only closes its direction (``EndOfStream``); we may go on sending until
we ``close()``. CLOSED still acks a retransmitted FIN, as TCP's TIME-WAIT does: the shell
keeps a closed connection routable for :data:`TIME_WAIT` seconds.

Wire rules (BEP 29 and libtorrent, whose ``utp_stream.cpp`` is the reference in the wild):

- the initiator picks ``recv_id`` and sends the SYN *with* ``recv_id``; everything else it
  sends carries ``send_id = recv_id + 1``. The responder inverts that: ``recv_id =
  syn.connection_id + 1``, ``send_id = syn.connection_id``;
- SYN, DATA and FIN consume a ``seq_nr``; STATE does not (it carries the next one). ``ack_nr``
  is the last ``seq_nr`` received in order; packets beyond it are held in a bounded reorder
  buffer and reported with the selective ACK extension;
- a responder answers a SYN with one bare STATE (as large as the SYN: 20 bytes, 26 with
  ``EXT_MAX_DATAGRAM``; no amplification) and sends nothing else until the initiator proves
  it saw that STATE by acking exactly its ``seq_nr - 1`` (our random initial ``seq_nr`` is
  the cookie a blind spoofer lacks). Until then it is unconfirmed: it never retransmits, a
  repeated SYN gets one more bare STATE, and it gives up silently after
  :data:`SYN_RECV_TIMEOUT`;
- packets are :data:`MAX_PACKET_SIZE` (1400) bytes, libtorrent's floor. With a peer whose SYN
  or SYN-ACK announced ``EXT_MAX_DATAGRAM`` (ours do),
  :class:`~hubswarm.proto.utp_send.MtuSearch` probes up to the smaller of that and the
  path's limit from the shell (:meth:`UtpConnection.set_path_max_datagram`; 65507 on
  loopback). Without it, never more: libtorrent reads 1500 bytes and would take a larger
  datagram truncated, not lost;
- a packet whose ``ack_nr`` acks what we never sent, or whose ``seq_nr`` lies beyond the
  reorder buffer, is dropped, not an error: anyone who knows the addresses and the id can
  inject such datagrams (libtorrent's reasoning), and a RESET would be as easy to forge.

The asyncio shell, one UDP endpoint routing datagrams to many connections, is
:mod:`hubswarm.swarm.utp`. What the sender makes of ACKs, losses and timeouts is
:class:`~hubswarm.proto.utp_recovery.LossRecovery`.
"""

from __future__ import annotations

import random

from hubswarm.errors import LocalProtocolError, RemoteProtocolError
from hubswarm.proto.utp_events import (
    Closed,
    Connected,
    ConnectionReset,
    Data,
    EndOfStream,
    Event,
    TimedOut,
)
from hubswarm.proto.utp_packet import (
    HEADER_SIZE,
    SEQ_MASK,
    U32_MASK,
    Packet,
    PacketType,
    UtpPacketError,
    decode,
    encode,
    encode_fields,
    max_datagram_extension,
    max_datagram_of,
    seq_add,
)
from hubswarm.proto.utp_recovery import LossRecovery
from hubswarm.proto.utp_recv import MAX_REORDER_PACKETS, SACK_MAX_BYTES, ReceiveBuffer
from hubswarm.proto.utp_send import (
    DEFAULT_SEND_BUFFER,
    DUP_ACK_LIMIT,
    FIN_RESENDS,
    MAX_DATAGRAM_IN,
    MAX_PACKET_SIZE,
    MAX_PAYLOAD,
    MAX_UNACKED_PACKETS,
    NUM_RESENDS,
    SYN_RESENDS,
    MtuSearch,
    SendQueue,
    Sent,
)
from hubswarm.proto.utp_state import ACKING, ENDED, LIVE, TRANSITIONS, State, Trigger

__all__ = [
    "DEFAULT_RECV_WINDOW",
    "DEFAULT_SEND_BUFFER",
    "DUP_ACK_LIMIT",
    "FIN_RESENDS",
    "MAX_DATAGRAM_IN",
    "MAX_PACKET_SIZE",
    "MAX_PAYLOAD",
    "MAX_REORDER_PACKETS",
    "MAX_UNACKED_PACKETS",
    "NUM_RESENDS",
    "SACK_MAX_BYTES",
    "SYN_RECV_TIMEOUT",
    "SYN_RESENDS",
    "TIME_WAIT",
    "Closed",
    "Connected",
    "ConnectionReset",
    "Data",
    "EndOfStream",
    "Event",
    "State",
    "TimedOut",
    "UtpConnection",
]

# --- limits -----------------------------------------------------------------------------------
# (Packet sizes, the send buffer and the resend limits are the sending half's: utp_send.py.)
# libtorrent's receive buffer capacity is 1 MiB (m_receive_buffer_capacity); we advertise
# that much, less what the application has not consumed yet and what waits for a gap.
DEFAULT_RECV_WINDOW = 1024 * 1024
# An accepted SYN whose initiator is never heard of again (a spoofed address) is forgotten
# after this, restarted by each repeated SYN. libtorrent keeps such a socket until the peer
# wire's handshake timeout; this is the same 10 s (limits.HANDSHAKE_TIMEOUT).
SYN_RECV_TIMEOUT = 10.0
# How long the shell keeps a CLOSED connection routable to ack a retransmitted FIN: twice
# our own FIN retries from a 1 s timeout (1 + 2 + 4 + 8 s), as TCP's TIME-WAIT is 2 MSL.
TIME_WAIT = 30.0


def _timestamp(now: float) -> int:
    return int(now * 1_000_000) & U32_MASK


class UtpConnection:
    """One uTP connection, sans-IO; build it with :meth:`initiator` or :meth:`accept`.

    Raises:
        LocalProtocolError: a window or buffer size out of range.
    """

    def __init__(
        self,
        *,
        recv_id: int,
        send_id: int,
        rng: random.Random,
        recv_window: int = DEFAULT_RECV_WINDOW,
        send_buffer: int = DEFAULT_SEND_BUFFER,
        max_datagram_in: int | None = None,
    ) -> None:
        if not (0 <= recv_id <= 0xFFFF and 0 <= send_id <= 0xFFFF):
            raise LocalProtocolError("connection ids are 16-bit")
        if not MAX_PAYLOAD <= recv_window <= U32_MASK:
            raise LocalProtocolError(f"recv_window {recv_window} out of range")
        if send_buffer < MAX_PAYLOAD:
            raise LocalProtocolError(f"send_buffer {send_buffer} smaller than one packet")
        if max_datagram_in is not None and not MAX_PACKET_SIZE <= max_datagram_in <= SEQ_MASK:
            raise LocalProtocolError(f"max_datagram_in {max_datagram_in} out of range")
        self.recv_id = recv_id
        self.send_id = send_id
        self._rng = rng
        self._state = State.IDLE
        self._send_buffer_size = send_buffer
        # Sending side.
        self._seq_nr = rng.randrange(0x10000)  # next seq_nr to use
        self._sendq = SendQueue()
        self._send_buf = bytearray()
        self._close_requested = False
        self._fin_seq: int | None = None
        self._peer_wnd = MAX_PACKET_SIZE  # libtorrent assumes one packet until told
        self._syn_seq = 0  # ours (initiator) or the peer's (responder)
        # Packet size: path MTU discovery between MAX_PACKET_SIZE and what both the path
        # (the shell's set_path_max_datagram) and the peer (its EXT_MAX_DATAGRAM) allow.
        self._mtu = MtuSearch()
        self._path_max = MAX_PACKET_SIZE
        self._peer_max: int | None = None
        # Announced in our SYN, or in our SYN-ACK if the peer's SYN announced its own (a
        # responder's answer is never larger than the SYN).
        self._max_in = max_datagram_in
        self._announce = max_datagram_in is not None
        # Receiving side.
        slack = MAX_PAYLOAD if max_datagram_in is None else max_datagram_in - HEADER_SIZE
        self._recv = ReceiveBuffer(recv_window, slack=slack)
        self._ack_pending = False
        self._advertised = recv_window
        # Timing and congestion.
        self._reply_micro = 0
        self._timeout_at: float | None = None
        self._num_timeouts = 0
        # ACKs, losses, round trips and LEDBAT's window: the sender's reading of the path.
        self._recovery = LossRecovery(self._seq_nr, self._sendq, self._mtu)

    # --- construction -----------------------------------------------------------------------

    @classmethod
    def initiator(
        cls,
        rng: random.Random,
        *,
        recv_id: int | None = None,
        recv_window: int = DEFAULT_RECV_WINDOW,
        send_buffer: int = DEFAULT_SEND_BUFFER,
        max_datagram_in: int | None = None,
    ) -> UtpConnection:
        """A connection to dial; ``recv_id`` random unless the shell picks a free one.

        ``max_datagram_in``: announce (``EXT_MAX_DATAGRAM``) that we read datagrams this
        large in full (the shell's :data:`MAX_DATAGRAM_IN`); None announces nothing.
        """
        if recv_id is None:
            recv_id = rng.randrange(0x10000)
        return cls(
            recv_id=recv_id,
            send_id=(recv_id + 1) & SEQ_MASK,
            rng=rng,
            recv_window=recv_window,
            send_buffer=send_buffer,
            max_datagram_in=max_datagram_in,
        )

    @classmethod
    def accept(
        cls,
        syn: Packet,
        now: float,
        rng: random.Random,
        *,
        recv_window: int = DEFAULT_RECV_WINDOW,
        send_buffer: int = DEFAULT_SEND_BUFFER,
        max_datagram_in: int | None = None,
    ) -> UtpConnection:
        """The responder for ``syn``, in SYN_RECV; ``datagrams_to_send`` gives its one STATE.

        ``max_datagram_in`` as for :meth:`initiator`; announced only if ``syn`` announced
        its own.

        Raises:
            LocalProtocolError: ``syn`` is not an ST_SYN packet.
        """
        if syn.type is not PacketType.ST_SYN:
            raise LocalProtocolError(f"accept() needs an ST_SYN, got {syn.type.name}")
        conn = cls(
            recv_id=(syn.connection_id + 1) & SEQ_MASK,
            send_id=syn.connection_id,
            rng=rng,
            recv_window=recv_window,
            send_buffer=send_buffer,
            max_datagram_in=max_datagram_in,
        )
        conn._transition(Trigger.ACCEPT)
        conn._peer_max = max_datagram_of(syn)
        conn._announce = conn._announce and conn._peer_max is not None
        conn._update_mtu_ceiling()
        conn._syn_seq = syn.seq_nr
        conn._recv.ack_nr = syn.seq_nr
        conn._note_timestamp(syn, now)
        conn._ack_pending = True
        conn._timeout_at = now + SYN_RECV_TIMEOUT
        return conn

    # --- properties -------------------------------------------------------------------------

    @property
    def state(self) -> State:
        """The current :class:`State`."""
        return self._state

    @property
    def send_buffered(self) -> int:
        """Application bytes held: not yet sent plus sent and unacked."""
        return len(self._send_buf) + self._sendq.unacked_payload

    @property
    def send_buffer_free(self) -> int:
        """Bytes :meth:`send` accepts now."""
        return max(0, self._send_buffer_size - self.send_buffered)

    @property
    def unacked_bytes(self) -> int:
        """Sent payload the peer has not acknowledged (for ``net.unacked_bytes``)."""
        return self._sendq.unacked_payload

    @property
    def in_flight(self) -> int:
        """Payload bytes sent and neither acked nor deemed lost."""
        return self._sendq.in_flight

    @property
    def cwnd(self) -> int:
        """LEDBAT's congestion window, in bytes."""
        return self._recovery.ledbat.window

    @property
    def peer_window(self) -> int:
        """The receive window the peer last advertised, in bytes."""
        return self._peer_wnd

    @property
    def receive_window(self) -> int:
        """The window we advertise: receive buffer space not used by unread or reordered data."""
        return self._recv.window

    @property
    def reorder_buffered(self) -> int:
        """Packets held in the reorder buffer (always at most :data:`MAX_REORDER_PACKETS`)."""
        return self._recv.held

    @property
    def seq_nr(self) -> int:
        """The next seq_nr we will send."""
        return self._seq_nr

    @property
    def ack_nr(self) -> int:
        """The last seq_nr received in order."""
        return self._recv.ack_nr

    @property
    def rtt(self) -> float | None:
        """Smoothed round-trip time in seconds, once measured."""
        return self._recovery.rtt.rtt

    @property
    def remote_eof(self) -> bool:
        """The peer's FIN and every byte before it have been delivered."""
        return self._recv.eof

    @property
    def packet_size(self) -> int:
        """The datagram size of our ordinary packets (path MTU discovery's floor)."""
        return self._mtu.floor

    def set_path_max_datagram(self, size: int) -> None:
        """The largest datagram the path carries (the shell asks the kernel: the route's
        MTU less the IP and UDP headers); MTU probes never go past it nor the peer's."""
        self._path_max = max(MAX_PACKET_SIZE, min(size, SEQ_MASK))
        self._update_mtu_ceiling()

    def _update_mtu_ceiling(self) -> None:
        peer = self._peer_max
        # A peer that announced nothing reads (as libtorrent does) into a buffer of about
        # 1500 bytes and would take a larger datagram truncated: never more than the floor.
        ceiling = MAX_PACKET_SIZE if peer is None else min(self._path_max, peer)
        if ceiling != self._mtu.ceiling:
            self._mtu.set_ceiling(ceiling)

    def timeout_at(self) -> float | None:
        """When the shell must call :meth:`on_timeout`, or None."""
        return self._timeout_at if self._state in LIVE else None

    # --- state machinery --------------------------------------------------------------------

    def _transition(self, trigger: Trigger) -> None:
        try:
            self._state = TRANSITIONS[self._state][trigger]
        except KeyError:
            raise LocalProtocolError(
                f"no transition from {self._state.name} on {trigger.name}"
            ) from None
        if self._state in ENDED or self._state is State.ERROR:
            self._release()

    def _release(self) -> None:
        # A finished connection holds no buffers and no timer.
        self._send_buf = bytearray()
        self._sendq.clear()
        self._recv.clear()
        self._timeout_at = None

    def _violation(self, message: str) -> RemoteProtocolError:
        self._transition(Trigger.VIOLATION)
        return RemoteProtocolError(message)

    # --- application calls ------------------------------------------------------------------

    def connect(self, now: float) -> list[bytes]:
        """Start the handshake; return the SYN to send.

        Raises:
            LocalProtocolError: not IDLE.
        """
        if self._state is not State.IDLE:
            raise LocalProtocolError(f"connect() in state {self._state.name}")
        self._transition(Trigger.CONNECT)
        syn = Sent(self._seq_nr, PacketType.ST_SYN, b"")
        self._syn_seq = self._seq_nr
        self._sendq.add(syn)
        self._seq_nr = seq_add(self._seq_nr, 1)
        return [self._transmit(syn, now)]

    def send(self, data: bytes | bytearray | memoryview) -> None:
        """Queue application bytes; :meth:`datagrams_to_send` packetizes them.

        Raises:
            LocalProtocolError: after close() or the end of the connection, or more than
                :attr:`send_buffer_free` bytes.
        """
        if self._close_requested or self._state not in (LIVE | {State.IDLE}):
            raise LocalProtocolError(f"send() after close, in state {self._state.name}")
        if len(data) > self.send_buffer_free:
            raise LocalProtocolError(
                f"send() of {len(data)} bytes, only {self.send_buffer_free} free"
            )
        self._send_buf += data

    def close(self) -> None:
        """Close our direction: a FIN follows the bytes already queued. Idempotent."""
        self._close_requested = True

    def abort(self, now: float) -> list[bytes]:
        """Drop the connection at once; return the RESET to send (if the peer knows us)."""
        if self._state not in LIVE:
            return []
        reset = Packet(
            PacketType.ST_RESET,
            self.send_id,
            _timestamp(now),
            self._reply_micro,
            0,
            self._rng.randrange(0x10000),
            self._recv.ack_nr,
        )
        self._transition(Trigger.RESET)
        return [encode(reset)]

    def acknowledge_received_data(self, nbytes: int) -> None:
        """The application consumed ``nbytes`` of delivered :class:`Data`: reopen the window.

        Raises:
            LocalProtocolError: more than was delivered and not yet acknowledged.
        """
        if not 0 <= nbytes <= self._recv.unread:
            raise LocalProtocolError(f"acknowledged {nbytes} bytes, {self._recv.unread} unread")
        self._recv.consumed(nbytes)
        # A window that we advertised as too small for one packet has reopened: tell the
        # sender now rather than let it wait for a timeout.
        if self._advertised < MAX_PAYLOAD <= self.receive_window and self._state in LIVE:
            self._ack_pending = True

    # --- receiving --------------------------------------------------------------------------

    def receive_datagram(self, data: bytes | bytearray | memoryview, now: float) -> list[Event]:
        """Feed one datagram routed to this connection; return the events it causes.

        Raises:
            RemoteProtocolError: the datagram is malformed or breaks the stream (state
                becomes ERROR), or the connection was already in ERROR.
            LocalProtocolError: the connection was never started (IDLE).
        """
        self._check_receivable()
        try:
            packet = decode(data)
        except UtpPacketError as exc:
            if self._state in ENDED:
                return []
            self._transition(Trigger.VIOLATION)
            raise exc
        return self.receive_packet(packet, now)

    def receive_packet(self, packet: Packet, now: float) -> list[Event]:
        """Like :meth:`receive_datagram`, for a packet the shell already decoded to route it."""
        self._check_receivable()
        if self._state in (State.RESET, State.TIMED_OUT):
            return []
        if packet.type is PacketType.ST_SYN:
            self._on_syn(packet, now)
            return []
        if packet.connection_id != self.recv_id:
            return []
        if not self._recovery.ack_plausible(packet.ack_nr, self._seq_nr):
            return []
        events: list[Event] = []
        if self._state is State.SYN_SENT:
            if packet.type is PacketType.ST_RESET:
                self._transition(Trigger.RESET)
                return [ConnectionReset()]
            if packet.ack_nr != self._syn_seq:
                return []
            # The SYN-ACK is a STATE carrying the responder's next seq_nr, which it has not
            # used yet; ack_nr is the one before it (libtorrent does the same).
            self._recv.ack_nr = seq_add(packet.seq_nr, -1)
            if self._announce:
                self._peer_max = max_datagram_of(packet)
                self._update_mtu_ceiling()
            self._transition(Trigger.SYN_ACKED)
            events.append(Connected())
        elif self._state is State.SYN_RECV:
            if packet.type is PacketType.ST_RESET:
                self._transition(Trigger.RESET)
                return [ConnectionReset()]
            if packet.ack_nr != seq_add(self._seq_nr, -1):
                # The initiator has seen exactly our STATE, so it acks exactly the seq_nr
                # before it: our random initial seq_nr is the cookie a blind spoofer lacks.
                return []
            self._transition(Trigger.CONFIRMED)
            self._timeout_at = None
            events.append(Connected())
        if packet.type is PacketType.ST_RESET:
            if self._state is State.CLOSED:
                return events
            self._transition(Trigger.RESET)
            events.append(ConnectionReset())
            return events
        if self._state is State.CLOSED:
            # TIME-WAIT: the peer missed our ACK of its FIN (or of data before it).
            if packet.type is not PacketType.ST_STATE:
                self._ack_pending = True
            return events
        # Only now, past every check, may the packet's timestamps feed our delay estimates.
        self._note_timestamp(packet, now)
        self._num_timeouts = 0  # the peer is alive
        self._peer_wnd = packet.wnd_size
        if self._recovery.on_ack(packet, self._seq_nr, now, peer_window=self._peer_wnd):
            self._num_timeouts = 0
            timeout = self._recovery.rtt.timeout()
            self._timeout_at = now + timeout if self._sendq.packets else None
        self._on_seq(packet, events)
        if (
            self._state is State.FIN_SENT
            and self._recv.eof
            and self._fin_seq is not None
            and self._fin_seq not in self._sendq.packets
        ):
            self._transition(Trigger.FINISHED)
            events.append(Closed())
        return events

    def _check_receivable(self) -> None:
        if self._state is State.ERROR:
            raise RemoteProtocolError("connection is in ERROR state")
        if self._state is State.IDLE:
            raise LocalProtocolError("receive before connect() or accept()")

    def _on_syn(self, syn: Packet, now: float) -> None:
        # Only an unconfirmed responder answers its initiator's repeated SYN (our STATE was
        # lost): one more bare STATE, never more than one per SYN. Once confirmed, the
        # initiator has seen our STATE and a late SYN is a stale duplicate.
        if (
            self._state is State.SYN_RECV
            and syn.connection_id == self.send_id
            and syn.seq_nr == self._syn_seq
        ):
            self._note_timestamp(syn, now)
            self._ack_pending = True
            self._timeout_at = now + SYN_RECV_TIMEOUT

    def _note_timestamp(self, packet: Packet, now: float) -> None:
        # BEP 29: echo (our receive time - their send time) in our next packet, so the peer
        # can measure its one-way delay towards us.
        if packet.timestamp_microseconds:
            self._reply_micro = (_timestamp(now) - packet.timestamp_microseconds) & U32_MASK
        if self._state is not State.SYN_RECV:
            self._recovery.delay_sample(packet.timestamp_difference_microseconds, now)

    def _on_seq(self, packet: Packet, events: list[Event]) -> None:
        kind = packet.type
        if kind is PacketType.ST_STATE:
            return
        self._ack_pending = True  # DATA and FIN are acked, duplicates too
        try:
            data, ended = self._recv.receive(
                packet.seq_nr, packet.payload, fin=kind is PacketType.ST_FIN
            )
        except RemoteProtocolError:
            self._transition(Trigger.VIOLATION)
            raise
        if data:
            events.append(Data(data))
        if ended:
            events.append(EndOfStream())

    # --- timers -----------------------------------------------------------------------------

    def on_timeout(self, now: float) -> list[Event]:
        """Handle the deadline of :meth:`timeout_at`; early or late calls are safe."""
        deadline = self.timeout_at()
        if deadline is None or now < deadline:
            return []
        if self._state is State.SYN_RECV:
            # Unconfirmed: the SYN's address may be spoofed, so nothing is retransmitted.
            self._transition(Trigger.TIMEOUT)
            return [TimedOut()]
        packets = self._sendq.packets
        if not packets:
            self._timeout_at = None
            return []
        self._num_timeouts += 1
        if self._state is State.SYN_SENT:
            limit = SYN_RESENDS
        elif self._state is State.FIN_SENT and len(packets) == 1:
            limit = FIN_RESENDS
        else:
            limit = NUM_RESENDS
        if self._num_timeouts > limit:
            self._transition(Trigger.TIMEOUT)
            return [TimedOut()]
        self._recovery.on_timeout(self._seq_nr)
        self._timeout_at = now + self._recovery.rtt.timeout(self._num_timeouts)
        return []

    # --- sending ----------------------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[bytes]:
        """What the windows allow now: retransmissions, new data, a FIN, or a bare ACK."""
        state = self._state
        out: list[bytes] = []
        if state in (State.SYN_SENT, State.CONNECTED, State.FIN_SENT):
            self._resend(now, out)
        if state is State.CONNECTED:
            self._send_new(now, out)
        if self._ack_pending and state in ACKING:
            out.append(self._bare_ack(now))
        self._ack_pending = False
        return out

    def _window(self) -> int:
        return min(self._recovery.ledbat.window, self._peer_wnd)

    def _resend(self, now: float, out: list[bytes]) -> None:
        sendq = self._sendq
        if not sendq.resend_pending:
            return
        window = self._window()
        for sent in list(sendq.packets.values()):
            if not sent.need_resend:
                continue
            size = len(sent.payload)
            if sent.urgent or sendq.in_flight == 0 or sendq.in_flight + size <= window:
                out.append(self._transmit(sent, now))

    def _send_new(self, now: float, out: list[bytes]) -> None:
        sendq = self._sendq
        window = self._window()
        probe = self._mtu.next_probe()
        while self._send_buf and len(sendq.packets) < MAX_UNACKED_PACKETS:
            free = window - sendq.in_flight
            if probe is not None:
                # An MTU probe carries data, a whole one only, with no SACK (libtorrent
                # probes only with that much queued, too).
                size = probe - HEADER_SIZE
                if len(self._send_buf) >= size and (free >= size or not sendq.in_flight):
                    out.append(self._send_data(size, now))
                    self._mtu.sent(seq_add(self._seq_nr, -1), len(out[-1]))
                    probe = None
                    continue
                probe = None
            room = self._payload_room()
            size = min(room, len(self._send_buf))
            if free < size:
                if sendq.in_flight:
                    break  # wait for ACKs rather than send a sliver (silly window)
                # Nothing in flight: one packet goes anyway, so a window below one packet
                # (or a zero window, as a probe) cannot stall us until a timeout.
                size = max(1, min(size, free))
            out.append(self._send_data(size, now))
        if (
            self._close_requested
            and not self._send_buf
            and self._fin_seq is None
            and len(sendq.packets) < MAX_UNACKED_PACKETS
        ):
            fin = Sent(self._seq_nr, PacketType.ST_FIN, b"")
            self._fin_seq = fin.seq_nr
            sendq.add(fin)
            self._seq_nr = seq_add(self._seq_nr, 1)
            self._transition(Trigger.FIN_SENT)
            out.append(self._transmit(fin, now))

    def _send_data(self, size: int, now: float) -> bytes:
        payload = bytes(self._send_buf[:size])
        del self._send_buf[:size]
        sent = Sent(self._seq_nr, PacketType.ST_DATA, payload)
        self._sendq.add(sent)
        self._seq_nr = seq_add(self._seq_nr, 1)
        return self._transmit(sent, now)

    def _payload_room(self) -> int:
        sack = self._recv.sack()
        return self._mtu.floor - HEADER_SIZE - (2 + len(sack) if sack else 0)

    def _header(
        self, kind: PacketType, seq_nr: int, now: float, payload: bytes, *, with_sack: bool
    ) -> bytes:
        """The encoded packet (``encode_fields``: no Packet object per packet sent)."""
        sack = self._recv.sack() if with_sack else b""
        if sack and 2 + len(sack) + len(payload) > self._mtu.floor - HEADER_SIZE:
            # A retransmission keeps its payload (and a probe is as large as it is meant
            # to be); the SACK is optional.
            sack = b""
        window = self.receive_window
        self._advertised = window
        syn = kind is PacketType.ST_SYN
        fields = (
            kind,
            self.recv_id if syn else self.send_id,
            _timestamp(now),
            0 if syn else self._reply_micro,
            window,
            seq_nr,
            0 if syn else self._recv.ack_nr,
        )
        if self._announce and (syn or self._state is State.SYN_RECV):
            # The handshake, once per connection: a Packet with our EXT_MAX_DATAGRAM.
            announce = max_datagram_extension(self._max_in or MAX_DATAGRAM_IN)
            return encode(Packet(*fields, (announce,), payload))
        return encode_fields(*fields, sack, payload)

    def _transmit(self, sent: Sent, now: float) -> bytes:
        datagram = self._header(sent.type, sent.seq_nr, now, sent.payload, with_sack=True)
        self._sendq.transmitted(sent, now)
        if sent.type is not PacketType.ST_SYN:
            self._ack_pending = False  # every packet carries our ack_nr
        if self._timeout_at is None:
            self._timeout_at = now + self._recovery.rtt.timeout(self._num_timeouts)
        return datagram

    def _bare_ack(self, now: float) -> bytes:
        # An unconfirmed responder's answer is the bare 20-byte header: never larger than
        # the SYN that caused it.
        with_sack = self._state is not State.SYN_RECV
        return self._header(PacketType.ST_STATE, self._seq_nr, now, b"", with_sack=with_sack)
