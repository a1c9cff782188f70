"""One uTP connection as an ``asyncio.Transport``, made and driven by a ``UtpSocket``.

Theory of operation: the transport holds what the application wrote beyond the core's send
buffer (``pending``) and what the core delivered while reading was paused (``held``); its
owner (:class:`hubswarm.swarm.utp.UtpSocket`) feeds it datagrams, calls :meth:`handle` with
the core's events and :meth:`UtpTransport.on_deadline` from its one timer, and after each
of those calls its ``service()``: the pending bytes go into the core, the datagrams the
windows allow go out, and the deadline is re-armed. Bytes delivered are acknowledged to
the core only once the protocol took them, so ``pause_reading()`` closes the receive window.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from hubswarm.clock import Clock
from hubswarm.proto.utp import (
    TIME_WAIT,
    Closed,
    Connected,
    ConnectionReset,
    Data,
    EndOfStream,
    Event,
    State,
    TimedOut,
    UtpConnection,
)

__all__ = ["CLOSE_LINGER", "DEFAULT_WRITE_HIGH_WATER", "TransportOwner", "UtpTransport"]

log = logging.getLogger(__name__)

Address = tuple[str, int]

# How long a connection closed by its application may take to deliver its queued bytes and
# exchange FINs before it is reset and forgotten: TCP's FIN-WAIT-2 timeout on Linux
# (tcp_fin_timeout) is 60 s; our peer wire gives up on an idle peer after 180 s.
CLOSE_LINGER = 60.0
# Write buffer above which the protocol is paused (asyncio's default high-water mark is
# 64 KiB; the peer wire raises it). Counted: bytes queued but not yet sent.
DEFAULT_WRITE_HIGH_WATER = 64 * 1024
# Delivered bytes are handed to the core as consumed in batches of at least this much, or
# when the delivery queue drains: one window update per batch, not per packet.
_ACK_BATCH = 64 * 1024


class TransportOwner(Protocol):
    """What a :class:`UtpTransport` needs of its socket."""

    clock: Clock

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def address(self) -> Address: ...

    def service(self, stream: UtpTransport) -> None:
        """Feed the core, send what it allows, re-arm the timer."""

    def forget(self, stream: UtpTransport) -> None:
        """Stop routing datagrams to ``stream``."""

    def send(self, datagrams: list[bytes], remote: Address) -> None:
        """Send ``datagrams`` to ``remote`` from the socket's endpoint."""


class UtpTransport(asyncio.Transport):
    """One uTP connection as an ``asyncio.Transport`` (made by :class:`UtpSocket`)."""

    # No file descriptor: loop.sendfile reads the file and writes it, as for TLS.
    _sendfile_compatible = asyncio.constants._SendfileMode.FALLBACK  # type: ignore[attr-defined]

    def __init__(self, owner: TransportOwner, conn: UtpConnection, remote: Address) -> None:
        super().__init__()
        self._owner = owner
        self._loop = owner.loop
        self.conn = conn
        self.remote = remote
        self.key = (remote, conn.recv_id)
        self._protocol: asyncio.BaseProtocol | None = None
        self.factory: Callable[[], asyncio.BaseProtocol] | None = None
        self.connected_waiter: asyncio.Future[None] | None = None
        self._pending = bytearray()  # written, not yet in the core's send buffer
        self._held: deque[bytes] = deque()  # delivered by the core, not yet by us (paused)
        self._eof_held = False  # the peer's FIN came behind held bytes
        self._unreported = 0  # consumed by the protocol, not yet told to the core
        self._reading = True
        self._closing = False  # close() or abort(): the application is done with us
        self._lost = False  # connection_lost scheduled
        self._close_at: float | None = None  # the close linger's end
        self._expire_at: float | None = None  # TIME-WAIT's end
        self.armed_at: float | None = None  # earliest entry of ours in the socket's heap
        self._high_water = DEFAULT_WRITE_HIGH_WATER
        self._low_water = DEFAULT_WRITE_HIGH_WATER // 4
        self._write_paused = False

    def __repr__(self) -> str:
        return f"<UtpTransport {self.remote[0]}:{self.remote[1]} {self.conn.state.value}>"

    # --- asyncio.BaseTransport -----------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        match name:
            case "peername":
                return self.remote
            case "sockname":
                return self._owner.address
            case "unacked":
                return self.conn.unacked_bytes
            case "utp":
                return self.conn
        return default

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def close(self) -> None:
        """Send a FIN after the bytes already written; the socket finishes the close."""
        if self._closing:
            return
        self._closing = True
        self._reading = False
        self._held.clear()
        self._report_consumed(force=True)
        self._close_at = self._owner.clock.now() + CLOSE_LINGER
        self._owner.service(self)

    def abort(self) -> None:
        """Reset the connection at once (one RESET to a peer that knows us)."""
        self._closing = True
        self._reading = False
        self._pending.clear()
        self._held.clear()
        waiter = self.connected_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionAbortedError(errno.ECONNABORTED, "uTP dial aborted"))
        if self.conn.state is not State.SYN_RECV:  # an unconfirmed address may be spoofed
            self._owner.send(self.conn.abort(self._owner.clock.now()), self.remote)
        self._owner.forget(self)
        self._lose(None)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        assert self._protocol is not None
        return self._protocol

    # --- asyncio.ReadTransport ------------------------------------------------------------

    def is_reading(self) -> bool:
        return self._reading and not self.is_closing()

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        if self._reading or self.is_closing():
            return
        self._reading = True
        self._deliver_held()
        self._owner.service(self)

    # --- asyncio.WriteTransport -----------------------------------------------------------

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = DEFAULT_WRITE_HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high_water, self._low_water = high, low
        self._maybe_pause_protocol()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low_water, self._high_water

    def get_write_buffer_size(self) -> int:
        """Bytes written and not sent yet (ours and the core's); sent ones are ``unacked``."""
        conn = self.conn
        return len(self._pending) + conn.send_buffered - conn.unacked_bytes

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data or self._closing or self._lost:
            return
        self._pending += data
        self._owner.service(self)
        self._maybe_pause_protocol()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        raise NotImplementedError("uTP has no half-close of our own: close() sends the FIN")

    def can_write_eof(self) -> bool:
        return False

    # --- flow control ---------------------------------------------------------------------

    def _maybe_pause_protocol(self) -> None:
        protocol = self._protocol
        if (
            self._write_paused
            or protocol is None
            or self.get_write_buffer_size() <= self._high_water
        ):
            return
        self._write_paused = True
        try:
            protocol.pause_writing()
        except Exception as exc:  # the protocol's bug must not break the socket
            log.error("pause_writing() failed", exc_info=exc)

    def resume_protocol_if_drained(self) -> None:
        protocol = self._protocol
        if not self._write_paused or protocol is None:
            return
        if self.get_write_buffer_size() > self._low_water:
            return
        self._write_paused = False
        try:
            protocol.resume_writing()
        except Exception as exc:
            log.error("resume_writing() failed", exc_info=exc)

    # --- the socket's side ----------------------------------------------------------------

    def push_pending(self) -> None:
        """Hand the core as much of what was written as its send buffer takes."""
        conn = self.conn
        if self._pending and conn.state in (State.CONNECTED, State.SYN_RECV):
            free = conn.send_buffer_free
            if free:
                n = min(free, len(self._pending))
                conn.send(memoryview(self._pending)[:n])
                del self._pending[:n]
        if self._closing and not self._pending and not self._lost:
            conn.close()
            self._lose(None)

    def deadline(self) -> float | None:
        """The earliest of the core's timer, the close linger and TIME-WAIT's end."""
        candidates = [
            t for t in (self.conn.timeout_at(), self._close_at, self._expire_at) if t is not None
        ]
        return min(candidates) if candidates else None

    def on_deadline(self, now: float) -> list[Event]:
        """Whatever is due at ``now``: the core's timeout, or the end of a close or TIME-WAIT."""
        if self._expire_at is not None and now >= self._expire_at:
            self._owner.forget(self)
            return []
        if self._close_at is not None and now >= self._close_at and self._expire_at is None:
            log.debug("%r: closing took longer than %.0f s, reset", self, CLOSE_LINGER)
            self.abort()
            return []
        return self.conn.on_timeout(now)

    def handle(self, events: list[Event], now: float) -> None:
        """Act on the core's events (in order)."""
        for event in events:
            match event:
                case Connected():
                    self._on_connected()
                case Data(data):
                    if self._closing or self._protocol is None:
                        self.conn.acknowledge_received_data(len(data))  # nobody reads: discard
                    else:
                        # Delivered by deliver_held() when the socket services us: after a
                        # whole read batch, so the protocol parses one chunk, not each packet.
                        self._held.append(data)
                case EndOfStream():
                    self._eof_held = True
                    self._deliver_held()
                case Closed():
                    self._expire_at = now + TIME_WAIT
                    self._lose(None)
                case ConnectionReset():
                    self._end(ConnectionResetError(errno.ECONNRESET, "uTP connection reset"))
                case TimedOut():
                    self._end(TimeoutError(errno.ETIMEDOUT, "uTP connection timed out"))

    def fail(self, exc: Exception) -> None:
        """The peer broke the protocol: the core is in ERROR, the connection is gone."""
        self._end(exc)

    def _end(self, exc: Exception) -> None:
        self._owner.forget(self)
        waiter = self.connected_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
            return
        self._lose(exc)

    def _on_connected(self) -> None:
        factory = self.factory
        self.factory = None
        if factory is None:
            return
        protocol = factory()
        self._protocol = protocol
        # The dialler's waiter first: a protocol that closes us in connection_made() then
        # closes an established connection, as with asyncio's own transports.
        if self.connected_waiter is not None and not self.connected_waiter.done():
            self.connected_waiter.set_result(None)
        protocol.connection_made(self)

    def deliver_held(self) -> None:
        """Hand the protocol what the core delivered (the socket calls this in ``service``)."""
        if self._held or self._eof_held:
            self._deliver_held()

    def _deliver_held(self) -> None:
        protocol = self._protocol
        while self._held and self._reading and not self.is_closing() and protocol is not None:
            self._unreported += self._feed(protocol, self._held)
        self._report_consumed(force=not self._held)
        if self._eof_held and not self._held and not self.is_closing():
            self._eof_held = False
            keep_open = False
            if isinstance(protocol, asyncio.Protocol | asyncio.BufferedProtocol):
                keep_open = bool(protocol.eof_received())
            if not keep_open:
                self.close()

    def _feed(self, protocol: asyncio.BaseProtocol, held: deque[bytes]) -> int:
        """Give the protocol held packets' bytes in one call (several packets fill one
        ``get_buffer()``); return how much it took. Stops when the protocol pauses reading."""
        if isinstance(protocol, asyncio.BufferedProtocol):
            wanted = sum(len(data) for data in held)
            buf = memoryview(protocol.get_buffer(wanted)).cast("B")
            if len(buf) == 0:
                raise RuntimeError("get_buffer() returned an empty buffer")
            n = 0
            while held and n < len(buf):
                data = held[0]
                k = min(len(data), len(buf) - n)
                buf[n : n + k] = memoryview(data)[:k]
                n += k
                if k < len(data):
                    held[0] = data[k:]
                else:
                    held.popleft()
            protocol.buffer_updated(n)
            return n
        if isinstance(protocol, asyncio.Protocol):
            data = held.popleft() if len(held) == 1 else b"".join(held)
            held.clear()
            protocol.data_received(data)
            return len(data)
        held.clear()  # not a stream protocol: nobody reads
        return 0

    def _report_consumed(self, *, force: bool) -> None:
        n = self._unreported
        if n and (force or n >= _ACK_BATCH):
            self._unreported = 0
            self.conn.acknowledge_received_data(n)

    def _lose(self, exc: Exception | None) -> None:
        """Schedule ``connection_lost`` once (as asyncio's transports do, on the next turn)."""
        if self._lost:
            return
        self._lost = True
        self._closing = True
        self._reading = False
        protocol = self._protocol
        if protocol is not None:
            self._loop.call_soon(protocol.connection_lost, exc)
