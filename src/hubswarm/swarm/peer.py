"""One peer connection: a transport plus the sans-IO wire core (:mod:`hubswarm.proto.wire`).

Theory of operation
-------------------
A :class:`WireProtocol` owns a connection from its first byte: whatever network made the
transport (TCP, the in-memory network, uTP later) hands it the bytes, it feeds them to its
``PeerConnection`` and keeps the parsed events, the handshake first. Dialling
(:func:`dial`) and accepting (``SwarmPeer``) wait for that handshake; then a
:class:`PeerLink` runs the established connection.

The link's reader loop hands each event to its :class:`LinkOwner` (the torrent session),
which decides synchronously (picker, choker) and queues messages back with
:meth:`PeerLink.send`. Writes go straight into the transport's buffer; the reader awaits
``drain`` once per batch so a slow peer pushes back on us, never the other way round.

Uploads run in a second task: requests the peer makes are queued (bounded by
``MAX_INCOMING_REQUEST_QUEUE``, as libtorrent's 2000), each block is read from the store,
passes the upload rate limiters and is written. Choking the peer drops its queue (BEP 3),
answering each dropped request with ``reject`` when the fast extension is on (BEP 6).

A peer's protocol violation (RemoteProtocolError), a reset connection or an idle timeout
ends only this link; the owner is told once, in ``link_closed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
from collections import deque
from collections.abc import Callable
from typing import Protocol

from hubswarm import net
from hubswarm.clock import Clock
from hubswarm.errors import HubswarmError, RemoteProtocolError
from hubswarm.limits import (
    KEEPALIVE_INTERVAL,
    MAX_INCOMING_REQUEST_QUEUE,
    PEER_IDLE_TIMEOUT,
)
from hubswarm.proto import mse, wire
from hubswarm.proto.wire_events import Event, Handshake, KeepAlive, Piece, Reject, Request
from hubswarm.ratelimit import RateLimiter
from hubswarm.ratelimit import RateMeter as PureRateMeter
from hubswarm.swarm.rc4transport import Rc4Transport

log = logging.getLogger(__name__)

# Bytes received per call at most: large reads amortise the per-call overhead of asyncio and
# the parser; 256 KiB holds 16 piece messages.
READ_CHUNK = 256 * 1024
# A link's read buffer starts this small and doubles on each read that fills it, up to
# READ_CHUNK, and halves on reads that use an eighth of it: a link that carries only HAVEs
# (most of a large swarm's links) holds 1 KiB, not READ_CHUNK (libtorrent's receive buffer
# also grows with what arrives).
READ_CHUNK_MIN = 1024
# Drain the transport once its buffer holds this much (asyncio's default high-water mark is
# 64 KiB, too small to keep a loopback link full).
WRITE_HIGH_WATER = 4 * 1024 * 1024
# Piece messages joined into one write when no upload limit applies (16 blocks).
UPLOAD_BATCH_BYTES = 256 * 1024
# The most bytes the reader asks the kernel to gather before waking it (``SO_RCVLOWAT``):
# more than a 16 KiB block's frame, and far below the socket's receive buffer.
RCVLOWAT_MAX = 64 * 1024
# How long a closing link waits for its transport to report the connection lost.
CLOSE_TIMEOUT = 1.0


def _unlimited(limiter: RateLimiter | None) -> bool:
    """True when neither the limiter nor any of its parents limits the rate."""
    while limiter is not None:
        if not limiter.bucket.unlimited:
            return False
        limiter = limiter.parent
    return True


class RateMeter:
    """``ratelimit.RateMeter`` (the pure sliding-window estimate) read with a clock.

    The session and its links count bytes as they go (``add``) and read ``rate`` for the
    choker and the request queue depth.
    """

    __slots__ = ("_clock", "_meter")

    def __init__(self, window: float = 5.0, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock if clock is not None else Clock()
        self._meter = PureRateMeter(window)

    def add(self, n: int, now: float | None = None) -> None:
        """Count ``n`` bytes at ``now`` (default: read the clock; a caller that read it for
        a whole batch passes it: each read of the loop's clock costs a ``getpid``)."""
        self._meter.record(n, self._clock() if now is None else now)

    @property
    def total(self) -> int:
        """Bytes counted since the start."""
        return self._meter.total

    @property
    def rate(self) -> float:
        """Average bytes/s over the window."""
        return self._meter.rate(self._clock())


class LinkOwner(Protocol):
    """What a link needs from the torrent session that owns it."""

    async def on_event(self, link: PeerLink, event: Event) -> None:
        """Handle one event from the peer (may send messages through ``link.send``)."""

    def on_pieces(self, link: PeerLink, pieces: list[Piece]) -> None:
        """Handle a run of consecutive ``piece`` events (in order; none goes to on_event)."""

    async def read_block(self, link: PeerLink, request: Request) -> bytes | memoryview | None:
        """Bytes for an upload request, or None to reject it."""

    def link_closed(self, link: PeerLink, error: BaseException | None) -> None:
        """The link ended (called exactly once)."""

    def blocks_written(self, link: PeerLink, requests: list[Request], end: int) -> None:
        """Blocks went into the connection; they end at stream offset ``end`` (see
        :meth:`PeerLink.bytes_acked`)."""


class WireProtocol(asyncio.BufferedProtocol):
    """The connection's protocol from its first byte: receives into one reusable buffer
    and parses it there with the wire core (no copy through a StreamReader).

    Parsed events wait in ``events`` for the link (the handshake first); reading pauses
    while ``MAX_PENDING_BYTES`` of them wait (back-pressure). Write flow control
    (``pause_writing``) is kept for :meth:`drain`.
    """

    MAX_PENDING_BYTES = 2 * READ_CHUNK

    def __init__(
        self,
        conn: wire.PeerConnection,
        *,
        on_connected: Callable[[WireProtocol], None] | None = None,
    ) -> None:
        self.conn = conn
        self._on_connected = on_connected
        self._view = memoryview(bytearray(READ_CHUNK_MIN))
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self.events: list[Event] = []
        self.pending_bytes = 0
        self.error: BaseException | None = None
        self.eof = False
        self._lost = False
        self._write_paused = False
        # Every task waiting in drain() (the upload loop and the request sender may both
        # wait): one released waiter must not orphan another (asyncio's FlowControlMixin
        # keeps a deque for the same reason).
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._closed_waiter: asyncio.Future[None] | None = None
        # SO_RCVLOWAT now set on the socket; None when there is no socket or it refuses.
        self._sock: socket.socket | None = None
        self._lowat = 1
        self._full_read = False  # the last read filled the read buffer
        # Where received bytes go instead of the wire core: an MSE handshake, then RC4
        # decryption (see start_mse). None on a plaintext link: one attribute check per read.
        self._rx_hook: Callable[[memoryview], None] | None = None
        self._mse: mse.MseInitiator | mse.MseResponder | None = None

    @property
    def transport(self) -> asyncio.Transport:
        """The connection's transport (set once connected)."""
        if self._transport is None:
            raise RuntimeError("not connected")
        return self._transport

    # --- asyncio.BufferedProtocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        # A deeper buffer than asyncio's 64 KiB keeps a fast link full; drain() (uploads,
        # and the reader once per batch) still pushes back above it.
        with contextlib.suppress(AttributeError, NotImplementedError):
            transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        # Socket-only tuning: a transport without a socket (in memory, uTP) skips it.
        sock = transport.get_extra_info("socket")
        if hasattr(socket, "SO_RCVLOWAT") and sock is not None and sock.type == socket.SOCK_STREAM:
            self._sock = sock
        if self._on_connected is not None:
            self._on_connected(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        # A transport that knows how much is waiting says so (sizehint > 0); a socket's
        # (-1) lets the buffer grow read by read (buffer_updated).
        if sizehint > len(self._view):
            self._resize(sizehint)
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        view = self._view[:nbytes]
        size = len(self._view)
        self._full_read = nbytes == size
        if nbytes == size:
            self._resize(2 * size)  # more may have been waiting: a larger read next time
        elif nbytes <= size // 8:
            self._resize(size // 2)
        hook = self._rx_hook
        if hook is None:
            self._feed(view)
        else:
            hook(view)

    def _resize(self, size: int) -> None:
        """A new read buffer of ``size`` rounded up to a power of two within the bounds
        (what was read stays valid: the old buffer lives on in its views)."""
        size = max(READ_CHUNK_MIN, min(READ_CHUNK, 1 << (size - 1).bit_length()))
        if size != len(self._view):
            self._view = memoryview(bytearray(size))

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return True  # half-closed: the link closes the transport when it is done

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self._lost = True
        if exc is not None and self.error is None:
            self.error = exc
        self._wake()
        self._release_drain_waiters()
        waiter = self._closed_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._release_drain_waiters()

    def _release_drain_waiters(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # --- the link's side ------------------------------------------------------------------

    def _feed(self, data: memoryview) -> None:
        if self.error is not None:
            return
        try:
            self.events.extend(self.conn.receive_data(data))
        except Exception as exc:  # RemoteProtocolError: raised to the link by its loop
            self.error = exc
        self.pending_bytes += len(data)
        if self.pending_bytes >= self.MAX_PENDING_BYTES or self.error is not None:
            self._pause()
        if self.events or self.error is not None:
            self._wake()  # a part of a frame wakes nobody
        if self._sock is not None and self.error is None:
            # A read that filled the buffer means more is waiting: bytes come faster than
            # we read them, and a low-water mark would only cost a setsockopt per read.
            self._set_lowat(1 if self._full_read else self.conn.bytes_wanted())

    def start_mse(self, core: mse.MseInitiator | mse.MseResponder) -> None:
        """Route received bytes through an MSE/PE handshake core before the wire core.

        On ``Established`` the core's stream follows: with RC4, every later read is
        decrypted and :attr:`transport` becomes an :class:`Rc4Transport`; with a plaintext
        stream (or a plaintext handshake sniffed by a responder) nothing stays in the path.
        """
        self._mse = core
        self._rx_hook = self._mse_received

    def _mse_received(self, data: memoryview) -> None:
        core = self._mse
        if core is None or self.error is not None:
            return
        try:
            events = core.receive_data(data)
        except Exception as exc:  # MseError: raised to whoever waits for the handshake
            self.error = exc
            self._pause()
            self._wake()
            return
        for event in events:
            match event:
                case mse.SendData(data=out):
                    self.transport.write(out)
                case mse.PlaintextHandshake(data=plain):
                    self._mse, self._rx_hook = None, None
                    self._feed(memoryview(plain))
                case mse.Established(initial_payload=payload, leftover=leftover):
                    self._mse = None
                    cipher = core.cipher
                    if cipher.method is mse.CryptoMethod.RC4:
                        self._transport = Rc4Transport(self.transport, cipher)
                        self._rx_hook = self._make_decrypting_hook(cipher)
                    else:
                        self._rx_hook = None
                    self._feed(memoryview(payload + leftover))

    def _make_decrypting_hook(self, cipher: mse.CipherPair) -> Callable[[memoryview], None]:
        decrypt, feed = cipher.decrypt_in_place, self._feed

        def received(data: memoryview) -> None:
            # ``data`` is our own read buffer, which the parser copies out of: decrypt it
            # where it lies (no allocation, no copy per read).
            decrypt(data)
            feed(data)

        return received

    def parse_held(self) -> None:
        """Parse what the core held back until we accepted the handshake (BEP 3 pipelining)."""
        self._feed(memoryview(b""))

    def _set_lowat(self, want: int) -> None:
        """Let the kernel wake us only once the rest of the current frame has arrived.

        A 16 KiB block crosses a shaped link as a dozen segments, each of which would wake
        the event loop to read and parse a fraction of a frame. ``bytes_wanted`` never
        reaches past the frame, so nothing waits on data the peer has not sent; the kernel
        also wakes us when the receive window or memory runs short, and on FIN.
        """
        want = min(want, RCVLOWAT_MAX)
        if want == self._lowat or self._sock is None:
            return
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, want)
        except OSError:
            self._sock = None  # not supported here: wake on every segment
            return
        self._lowat = want

    def _pause(self) -> None:
        if not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def resume(self) -> None:
        """The link has caught up: read again."""
        if self._paused and self.error is None and self._transport is not None:
            self._paused = False
            if not self._transport.is_closing():
                self._transport.resume_reading()

    def take(self) -> tuple[list[Event], int]:
        """The events parsed so far and the bytes they came in."""
        events, nbytes = self.events, self.pending_bytes
        self.events, self.pending_bytes = [], 0
        return events, nbytes

    async def wait(self) -> None:
        """Until events, an error or EOF arrive."""
        if self.events or self.error is not None or self.eof:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def handshake(self) -> Handshake:
        """Wait for the peer's handshake (the caller sets the deadline); the events after
        it stay queued for the link.

        Raises:
            RemoteProtocolError: the peer broke the protocol or closed first.
        """
        while not self.events:
            if self.error is not None:
                raise self.error
            if self.eof:
                raise RemoteProtocolError("connection closed during the handshake")
            await self.wait()
        event = self.events.pop(0)
        if not isinstance(event, Handshake):  # the wire core parses the handshake first
            raise RemoteProtocolError(f"expected a handshake, got {type(event).__name__}")
        return event

    async def drain(self) -> None:
        """Wait while the transport is above its high-water mark.

        Raises:
            ConnectionResetError: the connection is gone.
        """
        if self._lost:
            raise ConnectionResetError("connection lost")
        if not self._write_paused:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drain_waiters.append(waiter)
        try:
            await waiter
        finally:
            with contextlib.suppress(ValueError):  # released: no longer in the list
                self._drain_waiters.remove(waiter)
        if self._lost:
            raise ConnectionResetError("connection lost")

    async def wait_closed(self) -> None:
        """Until the transport reports the connection lost."""
        if self._lost:
            return
        if self._closed_waiter is None:
            self._closed_waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._closed_waiter)


async def dial(
    network: net.StreamNetwork,
    conn: wire.PeerConnection,
    address: tuple[str, int],
    *,
    connect_timeout: float,
    handshake_timeout: float,
    encryption: mse.Policy = mse.Policy.DISABLED,
    redial: Callable[[], wire.PeerConnection] | None = None,
    randbytes: Callable[[int], bytes] = secrets.token_bytes,
) -> WireProtocol:
    """Connect, send our handshake, wait for the peer's.

    ``encryption``: REQUIRED dials MSE/PE offering RC4 only; ENABLED and DISABLED dial a
    plaintext handshake. ENABLED tries plaintext first because it costs no Diffie-Hellman
    and every peer accepts it (libtorrent's default accepts both); when the peer closes
    before its handshake (it may require encryption) and ``redial`` gives a fresh core,
    it dials once more with MSE.

    Raises:
        OSError, TimeoutError: the connection failed or a deadline passed.
        RemoteProtocolError: the peer broke the protocol or closed first.
    """
    use_mse = encryption is mse.Policy.REQUIRED
    protocol = await _connect(network, conn, address, connect_timeout)
    try:
        await _handshake(protocol, encryption if use_mse else None, handshake_timeout, randbytes)
    except (RemoteProtocolError, ConnectionError) as exc:
        if encryption is not mse.Policy.ENABLED or redial is None:
            raise
        log.debug("plaintext dial %s:%d failed (%s): retrying with MSE", *address, exc)
        protocol = await _connect(network, redial(), address, connect_timeout)
        await _handshake(protocol, encryption, handshake_timeout, randbytes)
    return protocol


async def _connect(
    network: net.StreamNetwork,
    conn: wire.PeerConnection,
    address: tuple[str, int],
    connect_timeout: float,
) -> WireProtocol:
    async with asyncio.timeout(connect_timeout):
        _, protocol = await network.connect(lambda: WireProtocol(conn), *address)
    return protocol


async def _handshake(
    protocol: WireProtocol,
    encryption: mse.Policy | None,
    handshake_timeout: float,
    randbytes: Callable[[int], bytes],
) -> None:
    """Send our handshake (inside MSE as its initial payload when ``encryption``) and wait
    for the peer's; the connection is closed on any failure."""
    conn = protocol.conn
    transport = protocol.transport
    try:
        if encryption is None:
            transport.write(conn.handshake())
        else:
            info_hash = conn.info_hash
            assert info_hash is not None  # an initiator knows its torrent
            core = mse.MseInitiator(
                info_hash, encryption, randbytes, initial_payload=conn.handshake()
            )
            protocol.start_mse(core)
            transport.write(core.initiate())
        async with asyncio.timeout(handshake_timeout):
            await protocol.handshake()
    except BaseException:
        transport.close()  # also when cancelled mid-handshake: leak no connection
        raise


class PeerLink:
    """One established connection (handshake done); run it with :meth:`run`."""

    def __init__(
        self,
        owner: LinkOwner,
        protocol: WireProtocol,
        address: tuple[str, int],
        *,
        outgoing: bool,
        upload_limiter: RateLimiter | None = None,
        download_limiter: RateLimiter | None = None,
        idle_timeout: float = PEER_IDLE_TIMEOUT,
        clock: Clock | None = None,
    ) -> None:
        self.owner = owner
        self.protocol = protocol
        self.conn = protocol.conn
        self.transport = protocol.transport
        self.address = address
        self.outgoing = outgoing
        self.upload_limiter = upload_limiter
        self.download_limiter = download_limiter
        self.idle_timeout = idle_timeout
        self.clock = clock if clock is not None else Clock()
        now = self.clock()
        self.connected_at = now
        self.download_rate = RateMeter(clock=self.clock)
        self.upload_rate = RateMeter(clock=self.clock)
        self._uploads: deque[Request] = deque()
        self._upload_ready = asyncio.Event()
        self._closed = False
        self._last_send_at = now
        self._last_recv_at = now
        self.bytes_written = 0  # all bytes this side wrote into the connection
        self._acked_at_close: int | None = None  # bytes_acked() read as the link closed

    def __repr__(self) -> str:
        return f"<PeerLink {self.address[0]}:{self.address[1]}>"

    @property
    def last_recv_at(self) -> float:
        """When the batch of messages being handled arrived (the clock read once per batch)."""
        return self._last_recv_at

    # --- sending --------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, event: Event) -> None:
        """Queue a message for the peer (never blocks; back-pressure is applied by ``run``)."""
        if self._closed:
            return
        self._write(self.conn.send(event))

    def send_many(self, events: list[Event]) -> None:
        """Queue several messages in one write."""
        if self._closed or not events:
            return
        self._write(b"".join(self.conn.send(e) for e in events))

    def send_bytes(self, data: bytes) -> None:
        """Queue messages already encoded by ``self.conn`` (e.g. ``send_requests``)."""
        if self._closed or not data:
            return
        self._write(data)

    def _write(self, data: bytes) -> None:
        self.transport.write(data)
        self.bytes_written += len(data)
        self._last_send_at = self.clock()

    def bytes_acked(self) -> int:
        """Bytes of ``bytes_written`` the peer has acknowledged: it holds them.

        Written, less what the transport still holds unacknowledged (``net.unacked_bytes``:
        asyncio's buffer plus the kernel's send queue for a socket). A block written is only
        queued; on a slow link, many blocks to many peers can wait in buffers for seconds.
        """
        if self._acked_at_close is not None:
            return self._acked_at_close
        return max(0, self.bytes_written - net.unacked_bytes(self.transport))

    async def drain(self) -> None:
        """Wait while the transport holds more than ``WRITE_HIGH_WATER`` bytes."""
        if self.transport.get_write_buffer_size() > WRITE_HIGH_WATER:
            await self.protocol.drain()

    # --- uploads --------------------------------------------------------------------------

    def queue_upload(self, request: Request) -> None:
        """Queue a block the peer asked for; an overflowing queue is rejected (BEP 6)."""
        if len(self._uploads) >= MAX_INCOMING_REQUEST_QUEUE:
            if self.conn.supports_fast:
                self.send(Reject(request.piece_index, request.begin, request.length))
            return
        self._uploads.append(request)
        self._upload_ready.set()

    def cancel_upload(self, request: Request) -> None:
        """The peer cancelled a request (BEP 3 ``cancel``)."""
        with contextlib.suppress(ValueError):
            self._uploads.remove(request)

    def clear_uploads(self, *, keep_pieces: set[int] | None = None) -> None:
        """We choked the peer: drop its queued requests (reject each with BEP 6)."""
        keep: deque[Request] = deque()
        for req in self._uploads:
            if keep_pieces and req.piece_index in keep_pieces:
                keep.append(req)
            elif self.conn.supports_fast and not self._closed:
                self.send(Reject(req.piece_index, req.begin, req.length))
        self._uploads = keep

    async def _upload_loop(self) -> None:
        while not self._closed:
            if not self._uploads:
                self._upload_ready.clear()
                await self._upload_ready.wait()
                continue
            # Without a rate limit, gather queued blocks into one write: one send() and one
            # drain per UPLOAD_BATCH_BYTES instead of per 16 KiB block. With a limit, each
            # block goes when its tokens are granted.
            batch = _unlimited(self.upload_limiter)
            parts: list[bytes | memoryview] = []
            sent: list[Request] = []
            size = 0
            while self._uploads:
                req = self._uploads.popleft()
                block = await self.owner.read_block(self, req)
                if block is None:
                    if self.conn.supports_fast:
                        self.send(Reject(req.piece_index, req.begin, req.length))
                    continue
                if not batch and self.upload_limiter is not None:
                    # (Unlimited up the chain: acquiring would only cost a clock read and
                    # two coroutines per block.)
                    await self.upload_limiter.acquire(len(block))
                if self._closed:
                    return
                parts.append(self.conn.piece_header(req.piece_index, req.begin, len(block)))
                parts.append(block)
                sent.append(req)
                size += len(block)
                if not batch or size >= UPLOAD_BATCH_BYTES:
                    break
            if not parts:
                continue
            if self.conn.am_choking:
                # Choked while the batch was gathered (a disk read yielded): BEP 3 sends
                # nothing after choke; BEP 6 rejects each dropped request.
                if self.conn.supports_fast:
                    self.send_many([Reject(r.piece_index, r.begin, r.length) for r in sent])
                continue
            self._write(b"".join(parts))  # the one copy of each block in user space
            self.upload_rate.add(size, self._last_send_at)
            self.owner.blocks_written(self, sent, self.bytes_written)
            await self.protocol.drain()

    # --- the connection -------------------------------------------------------------------

    async def run(self) -> None:
        """Read and dispatch until the peer goes away or misbehaves; then close."""
        error: BaseException | None = None
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._upload_loop())
                tg.create_task(self._timer_loop())
                await self._read_loop()
                self._closed = True
                self._upload_ready.set()
                raise _LinkDone
        except* _LinkDone:
            pass
        except* (RemoteProtocolError, HubswarmError, OSError, TimeoutError) as eg:
            error = eg.exceptions[0]
            log.debug("%r closed: %s", self, error)
        except* Exception as eg:
            # A bug of ours while handling this peer: end this link only, never the session.
            error = eg.exceptions[0]
            log.error("%r failed", self, exc_info=error)
        finally:
            self._closed = True
            self._close_transport()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self.protocol.wait_closed()
            self.owner.link_closed(self, error)

    async def _read_loop(self) -> None:
        """Dispatch parsed events in batches (the idle timeout is kept by _timer_loop)."""
        reading = self.protocol
        while True:
            if not reading.events:
                if reading.error is not None:
                    raise reading.error
                if reading.eof:
                    return
                await reading.wait()
                continue
            events, nbytes = reading.take()
            # One clock read per batch: the owner reads ``last_recv_at`` for its blocks.
            self._last_recv_at = now = self.clock()
            if not _unlimited(self.download_limiter):
                # (Unlimited up the chain: acquiring would only cost a clock read and two
                # coroutines per batch.)
                assert self.download_limiter is not None
                await self.download_limiter.acquire(nbytes)
            # Runs of consecutive piece messages go to the owner in one synchronous call
            # (its per-run bookkeeping is done once); every other event, in order between
            # them, one by one.
            received = 0
            owner = self.owner
            pieces: list[Piece] = []
            for event in events:
                if type(event) is Piece:
                    pieces.append(event)
                    received += len(event.block)
                    continue
                if pieces:
                    owner.on_pieces(self, pieces)
                    pieces = []
                await owner.on_event(self, event)
            if pieces:
                owner.on_pieces(self, pieces)
            if received:
                self.download_rate.add(received, now)
            reading.resume()
            await self.drain()

    async def _timer_loop(self) -> None:
        """Keep-alives out, and the idle timeout in: one clock check every quarter period.

        BEP 3: a keep-alive every two minutes so that the peer does not time us out; a peer
        silent for ``idle_timeout`` is dropped. Kept here rather than as a deadline around
        every wait of the reader: a deadline per wait was two timer-heap operations per
        wake-up of the reader.
        """
        period = min(KEEPALIVE_INTERVAL, self.idle_timeout) / 4
        while not self._closed:
            await self.clock.sleep(period)
            now = self.clock()
            if now - self._last_recv_at >= self.idle_timeout:
                raise TimeoutError(f"no message for {self.idle_timeout:g} s")
            if now - self._last_send_at >= KEEPALIVE_INTERVAL:
                self.send(KeepAlive())

    def close(self) -> None:
        """Ask the link to end (the reader sees EOF; ``run`` returns)."""
        if not self._closed:
            self._closed = True
            self._upload_ready.set()
            self._close_transport()

    def _close_transport(self) -> None:
        # The kernel's counters go with the socket: what the peer acknowledged is read first
        # (on its EOF, its FIN came after its last acknowledgement).
        if self._acked_at_close is None:
            self._acked_at_close = self.bytes_acked()
        self.transport.close()


class _LinkDone(Exception):
    """Internal: the reader finished normally; ends the link's task group."""
