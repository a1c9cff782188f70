"""The receiving half of a uTP stream: in-order delivery, a bounded reorder buffer, the window.

Theory of operation: ``ack_nr`` is the last ``seq_nr`` delivered in order (BEP 29). A packet
at ``ack_nr + 1`` is delivered at once, together with whatever it unblocks; one further
ahead waits in the reorder buffer (at most :data:`MAX_REORDER_PACKETS` ahead, and only while
our advertised window has room) and is reported to the sender in the selective ACK bitmask.
The FIN takes a ``seq_nr`` of its own: the stream ends when everything before it has been
delivered. Delivered bytes count against the window until the application consumes them.
"""

from __future__ import annotations

from hubswarm.errors import RemoteProtocolError
from hubswarm.proto.utp_packet import sack_bitmask, seq_add, seq_diff

__all__ = ["MAX_REORDER_PACKETS", "SACK_MAX_BYTES", "ReceiveBuffer"]

# libtorrent's reorder buffer holds max(16, capacity / 1100) packets (953 for its 1 MiB); a
# packet further ahead than this is dropped and left to the sender's retransmission.
MAX_REORDER_PACKETS = 1024
# The selective ACK we send covers the whole reorder buffer: 1024 packets in 128 bytes (the
# extension's length field would allow 255).
SACK_MAX_BYTES = MAX_REORDER_PACKETS // 8


class ReceiveBuffer:
    """Reassembles one direction of a stream; ``capacity`` is the receive window in bytes.

    ``slack`` more bytes are accepted beyond the window: a sender with nothing in flight may
    send one packet into a closed window (a probe), and dropping it would only repeat it.
    """

    def __init__(self, capacity: int, *, slack: int) -> None:
        self.capacity = capacity
        self.slack = slack
        self.ack_nr = 0
        self.unread = 0  # delivered, not yet consumed by the application
        self.eof_seq: int | None = None
        self.eof = False  # the FIN and everything before it delivered
        self._held: dict[int, bytes] = {}
        self._held_bytes = 0
        self._sack: bytes | None = None

    @property
    def window(self) -> int:
        """Bytes we can still take: capacity less unread and reordered bytes."""
        return max(0, self.capacity - self.unread - self._held_bytes)

    @property
    def held(self) -> int:
        """Packets waiting in the reorder buffer for an earlier one."""
        return len(self._held)

    def consumed(self, nbytes: int) -> None:
        """The application has taken ``nbytes`` of what was delivered (caller checks bounds)."""
        self.unread -= nbytes

    def receive(self, seq_nr: int, payload: bytes, *, fin: bool) -> tuple[bytes, bool]:
        """Take one DATA (or FIN) packet; return the bytes now deliverable in order and
        whether the stream just ended. Duplicates and packets out of reach return nothing.

        Raises:
            RemoteProtocolError: data after the FIN, or a second FIN elsewhere.
        """
        ahead = seq_diff(seq_nr, self.ack_nr)
        if ahead <= 0:
            return b"", False  # already delivered
        if self.eof_seq is not None and seq_diff(seq_nr, self.eof_seq) > 0:
            raise RemoteProtocolError(f"seq_nr {seq_nr} after the FIN at {self.eof_seq}")
        if fin:
            # BEP 29: a FIN carries no payload; libtorrent never sends one, so ignore it.
            if self.eof_seq is not None and seq_nr != self.eof_seq:
                raise RemoteProtocolError(f"second FIN at {seq_nr}, first at {self.eof_seq}")
            self.eof_seq = seq_nr
            for later in [s for s in self._held if seq_diff(s, seq_nr) > 0]:
                self._held_bytes -= len(self._held.pop(later))
            return self._deliver()
        if ahead > MAX_REORDER_PACKETS or seq_nr in self._held:
            return b"", False
        if self.unread + self._held_bytes + len(payload) > self.capacity + self.slack:
            return b"", False  # the sender ignores our window
        self._held[seq_nr] = payload
        self._held_bytes += len(payload)
        return self._deliver()

    def _deliver(self) -> tuple[bytes, bool]:
        self._sack = None
        chunks: list[bytes] = []
        ended = False
        while True:
            nxt = seq_add(self.ack_nr, 1)
            if nxt in self._held:
                payload = self._held.pop(nxt)
                self._held_bytes -= len(payload)
                chunks.append(payload)
                self.ack_nr = nxt
            elif nxt == self.eof_seq:
                self.ack_nr = nxt
                self.eof = ended = True
                break
            else:
                break
        data = b"".join(chunks)
        self.unread += len(data)
        return data, ended

    def sack(self) -> bytes:
        """The selective ACK bitmask of what is held, b"" when nothing is (cached)."""
        if self._sack is None:
            self._sack = (
                sack_bitmask(self.ack_nr, self._held, SACK_MAX_BYTES) if self._held else b""
            )
        return self._sack

    def clear(self) -> None:
        """Drop what is held (the connection ended)."""
        self._held.clear()
        self._held_bytes = 0
        self._sack = None
