"""uTP (BEP 29) over asyncio: one UDP endpoint, many connections, each an asyncio Transport.

Theory of operation
-------------------
A :class:`UtpSocket` owns one datagram endpoint (bound through a
:class:`hubswarm.net.DatagramNetwork`, so it runs on the kernel's UDP or on
:mod:`hubswarm.memnet`) and is its ``DatagramProtocol``. Each datagram is routed
synchronously, as libtorrent's ``utp_socket_manager`` does:

- not :func:`~hubswarm.proto.utp_packet.looks_like_utp` (KRPC starts with ``d``): handed to
  the other protocol sharing the port, the DHT node (:meth:`UtpSocket.datagrams`), or
  dropped;
- decoded (a :class:`~hubswarm.proto.utp_packet.UtpPacketError` is dropped) and looked up by
  ``(address, connection_id)``; a SYN by ``(address, connection_id + 1)``, the responder's
  ``recv_id``;
- an unknown SYN, while a listener is set, becomes a responder whose one bare STATE (as
  large as the SYN) is sent; at :data:`MAX_HALF_OPEN` unconfirmed responders (or
  :data:`MAX_HALF_OPEN_PER_ADDRESS` from its address) the oldest of them is forgotten to make
  room. An unknown non-SYN is dropped, never answered: a RESET would make
  us a reflector for spoofed packets.

Each connection is a :class:`UtpTransport` (``asyncio.Transport``): the listener's protocol
is made only when the initiator has proved its address (the core's ``Connected``), so a
spoofed SYN costs one small entry that expires after ``SYN_RECV_TIMEOUT``. ``write()``
queues bytes, hands the core what its send buffer takes and sends what the windows allow;
``pause_writing()`` is called above the high-water mark of bytes not yet sent. Received
bytes are acknowledged to the core (reopening the receive window) only once the protocol
took them, so ``pause_reading()`` is real back-pressure on the sender.

All deadlines (retransmission timers, the close linger, TIME-WAIT) sit in one heap served by
one task in the socket's TaskGroup. ``close()`` hands the connection to the socket, as a
kernel keeps a closed TCP socket: the FIN follows the queued bytes, ``connection_lost`` is
called once they are in the core, and the connection stays routable until both FINs are
acked plus :data:`~hubswarm.proto.utp.TIME_WAIT`, or for :data:`CLOSE_LINGER` at most.

Time comes from a :class:`hubswarm.clock.Clock` (the loop's), randomness (connection ids,
initial sequence numbers) from an injected ``random.Random``: on a :mod:`hubswarm.vtime`
loop over a :class:`hubswarm.memnet.MemoryNetwork`, a uTP transfer is deterministic.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import heapq
import ipaddress
import itertools
import logging
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from hubswarm.clock import Clock
from hubswarm.errors import RemoteProtocolError
from hubswarm.net import DatagramNetwork, Listener, TcpNetwork
from hubswarm.proto.utp import MAX_DATAGRAM_IN, State, UtpConnection
from hubswarm.proto.utp_packet import Packet, PacketType, UtpPacketError, decode, looks_like_utp
from hubswarm.swarm.utp_transport import CLOSE_LINGER, UtpTransport

__all__ = [
    "CLOSE_LINGER",
    "MAX_HALF_OPEN",
    "MAX_HALF_OPEN_PER_ADDRESS",
    "UtpNetwork",
    "UtpSocket",
    "UtpStats",
    "UtpTransport",
]

log = logging.getLogger(__name__)

_P = TypeVar("_P", bound=asyncio.BaseProtocol)
_D = TypeVar("_D", bound=asyncio.DatagramProtocol)
Address = tuple[str, int]

# Unconfirmed responders (SYN answered, initiator not yet heard from) held at once. Each is a
# few hundred bytes for SYN_RECV_TIMEOUT (10 s); past the cap a SYN is dropped unanswered,
# as the listener's MAX_PENDING_INCOMING (64, after libtorrent's half-open limit) caps TCP
# handshakes. A flood of spoofed SYNs thus pins at most 64 entries and earns 64 * 20 bytes.
# At the cap a new SYN replaces the oldest unconfirmed entry (as the TCP listener evicts its
# oldest half-open handshake) instead of being dropped: a flood then only shortens how long
# an entry waits, and an honest initiator needs one round trip of it (at 2,000 spoofed SYNs
# a second, 64 entries live 32 ms). One address holds at most MAX_HALF_OPEN_PER_ADDRESS of
# them: its next SYN replaces its own oldest, so a flood from one address cannot cycle out
# everyone else's.
MAX_HALF_OPEN = 64
MAX_HALF_OPEN_PER_ADDRESS = 8
# Kernel buffers asked for on a real UDP socket: a window of 1 MiB arrives in bursts that
# overflow Linux's default 208 KiB receive buffer on loopback (libtorrent asks for more too,
# via recv_socket_buffer_size). The kernel caps the request at net.core.rmem_max.
_SOCKET_BUFFER = 4 * 1024 * 1024
# Linux getsockopt names (not in Python's socket module): the MTU of the route a connected
# socket uses, as the kernel knows it (the link's MTU, or a smaller path MTU it learned).
_IP_MTU = 14
_IPV6_MTU = 24
# IPv4 + UDP headers, IPv6 + UDP headers: what a datagram adds to the uTP packet.
_IPV4_UDP_HEADERS = 20 + 8
_IPV6_UDP_HEADERS = 40 + 8


@dataclass(slots=True)
class UtpStats:
    """Counters of one socket; the defences show up here, never as exceptions."""

    datagrams_in: int = 0
    bytes_in: int = 0
    datagrams_out: int = 0
    bytes_out: int = 0
    other_in: int = 0  # not uTP: handed to the DHT (or dropped without one)
    malformed: int = 0
    unknown: int = 0  # no connection for it, not a SYN: dropped unanswered
    syn_refused: int = 0  # no listener
    syn_evicted: int = 0  # unconfirmed responders forgotten to make room for a new SYN
    accepted: int = 0  # SYNs answered
    connected_in: int = 0  # responders confirmed by their initiator
    connected_out: int = 0
    protocol_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def path_max_datagram(remote: Address) -> int | None:
    """The largest UDP payload the route to ``remote`` carries without fragmenting, from the
    kernel's MTU for that route (65507 on loopback, 1472 over Ethernet), or None if the
    kernel does not say. A connected UDP socket sends nothing: connect() only picks a route.
    """
    v6 = ":" in remote[0]
    family = socket.AF_INET6 if v6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(remote)
            if v6:
                mtu = probe.getsockopt(socket.IPPROTO_IPV6, _IPV6_MTU)
            else:
                mtu = probe.getsockopt(socket.IPPROTO_IP, _IP_MTU)
    except OSError:
        return None
    return min(MAX_DATAGRAM_IN, mtu - (_IPV6_UDP_HEADERS if v6 else _IPV4_UDP_HEADERS))


def _address(addr: Any) -> Address:
    # IPv6 sockets report (host, port, flowinfo, scope_id); the route needs (host, port).
    return str(addr[0]), int(addr[1])


class _Listener:
    """The socket's :class:`hubswarm.net.Listener`."""

    def __init__(self, owner: UtpSocket, factory: Callable[[], asyncio.BaseProtocol]) -> None:
        self._owner = owner
        self.factory = factory

    @property
    def address(self) -> Address:
        return self._owner.address

    def close(self) -> None:
        if self._owner._listener is self:
            self._owner._listener = None

    async def wait_closed(self) -> None:
        """Accepted connections outlive the listener (as with TCP): nothing to wait for."""


class _SharedDatagram(asyncio.DatagramTransport):
    """The other protocol's view of the socket's endpoint: sends through it; closing only
    detaches (the uTP socket owns the endpoint)."""

    def __init__(self, owner: UtpSocket, protocol: asyncio.DatagramProtocol) -> None:
        super().__init__()
        self._owner = owner
        self._protocol = protocol
        self._closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        transport = self._owner._transport
        return default if transport is None else transport.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._owner._other is self:
            self._owner._other = None
        asyncio.get_running_loop().call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def get_protocol(self) -> asyncio.DatagramProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.DatagramProtocol)
        self._protocol = protocol

    def get_write_buffer_size(self) -> int:
        return 0  # datagrams go straight to the endpoint

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        transport = self._owner._transport
        if not self._closing and transport is not None:
            transport.sendto(data, addr)

    def deliver(self, data: bytes, addr: Any) -> None:
        self._protocol.datagram_received(data, addr)


class _SharedPort:
    """A :class:`hubswarm.net.DatagramNetwork` binding to the uTP socket's own endpoint."""

    def __init__(self, owner: UtpSocket) -> None:
        self._owner = owner

    async def bind(
        self, protocol_factory: Callable[[], _D], host: str, port: int
    ) -> tuple[asyncio.DatagramTransport, _D]:
        owner = self._owner
        if owner._transport is None:
            raise OSError(errno.ENOTCONN, "the uTP socket is not open")
        if owner._other is not None:
            raise OSError(errno.EADDRINUSE, "the uTP socket's port is already shared")
        if port not in (0, owner.address[1]):
            raise OSError(errno.EADDRNOTAVAIL, f"the shared port is {owner.address[1]}")
        protocol = protocol_factory()
        shared = _SharedDatagram(owner, protocol)
        owner._other = shared
        protocol.connection_made(shared)
        return shared, protocol


class UtpSocket(asyncio.DatagramProtocol):
    """One UDP endpoint carrying uTP connections (and, optionally, the DHT).

    Use as ``async with UtpSocket(host=..., port=...) as sock``; leaving resets every
    connection still open and closes the endpoint.
    """

    def __init__(
        self,
        *,
        host: str = "0.0.0.0",
        port: int = 0,
        network: DatagramNetwork | None = None,
        rng: random.Random | None = None,
        clock: Clock | None = None,
        max_half_open: int = MAX_HALF_OPEN,
        mtu_discovery: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self._network: DatagramNetwork = network if network is not None else TcpNetwork()
        self.rng = rng if rng is not None else random.Random()
        self.clock = clock if clock is not None else Clock()
        self.max_half_open = max_half_open
        # Announce that we read whole datagrams (EXT_MAX_DATAGRAM) and probe up to the
        # route's MTU with peers that announce the same; False: libtorrent's 1400 bytes.
        self.max_datagram_in = MAX_DATAGRAM_IN if mtu_discovery else None
        self.stats = UtpStats()
        self._transport: asyncio.DatagramTransport | None = None
        self._address: Address = (host, port)
        self._routes: dict[tuple[Address, int], UtpTransport] = {}
        # Connections that received datagrams in the transport's current read batch.
        self._dirty: dict[tuple[Address, int], UtpTransport] = {}
        self._batched = False
        self._batch_now: float | None = None  # the clock at the current batch's start
        # Unconfirmed responders, oldest first (a dict keeps insertion order).
        self._half_open: dict[tuple[Address, int], UtpTransport] = {}
        self._listener: _Listener | None = None
        self._other: _SharedDatagram | None = None
        self._heap: list[tuple[float, int, UtpTransport]] = []
        self._tiebreak = itertools.count()
        self._wake_at = float("inf")
        self._wakeup: asyncio.Event | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._timer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kernel = False

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "UtpSocket is not open"
        return self._loop

    @property
    def address(self) -> Address:
        """The bound ``(host, port)``."""
        return self._address

    @property
    def connections(self) -> int:
        """Connections routable now: open, half-open, closing or in TIME-WAIT."""
        return len(self._routes)

    @property
    def half_open(self) -> int:
        """Responders whose initiator has not confirmed its address yet."""
        return len(self._half_open)

    async def __aenter__(self) -> UtpSocket:
        self._loop = asyncio.get_running_loop()
        transport, _ = await self._network.bind(lambda: self, self.host, self.port)
        self._transport = transport
        self._batched = bool(transport.get_extra_info("read_batch"))
        # Only a kernel socket has a route whose MTU we can ask for; elsewhere (memnet)
        # packets keep libtorrent's size.
        self._kernel = transport.get_extra_info("socket") is not None
        self._address = _address(transport.get_extra_info("sockname"))
        sock = transport.get_extra_info("socket")
        if sock is not None:
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, option, _SOCKET_BUFFER)
        self._wakeup = asyncio.Event()
        tg = asyncio.TaskGroup()
        await tg.__aenter__()
        self._tg = tg
        self._timer = tg.create_task(self._run_timers())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._listener = None
        for stream in list(self._routes.values()):
            if not stream.is_closing():
                stream.abort()
            else:
                self.send(stream.conn.abort(self.clock.now()), stream.remote)
        self._routes.clear()
        self._dirty.clear()
        self._batch_now = None
        self._half_open.clear()
        self._heap.clear()
        if self._timer is not None:
            self._timer.cancel()
        tg, self._tg = self._tg, None
        try:
            if tg is not None:
                await tg.__aexit__(None, None, None)
        finally:
            if self._other is not None:
                self._other.close()
            if self._transport is not None:
                self._transport.close()
                self._transport = None
            await asyncio.sleep(0)  # connection_lost callbacks run before we return

    def datagrams(self) -> _SharedPort:
        """A :class:`hubswarm.net.DatagramNetwork` for the DHT node: it binds to this very
        endpoint and receives every datagram that is not uTP (libtorrent shares its port so)."""
        return _SharedPort(self)

    # --- asyncio.DatagramProtocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        pass  # __aenter__ keeps the transport bind() returns

    def connection_lost(self, exc: Exception | None) -> None:
        pass

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the connection's timers give up by themselves.
        log.debug("utp socket error: %s", exc)
        if self._other is not None:
            self._other.get_protocol().error_received(exc)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        stats = self.stats
        stats.datagrams_in += 1
        stats.bytes_in += len(data)
        if not looks_like_utp(data):
            stats.other_in += 1
            if self._other is not None:
                self._other.deliver(data, addr)
            return
        try:
            packet = decode(data)
        except UtpPacketError:
            stats.malformed += 1
            return
        remote = _address(addr)
        if packet.type is PacketType.ST_SYN:
            stream = self._routes.get((remote, (packet.connection_id + 1) & 0xFFFF))
            if stream is None:
                self._accept(packet, remote)
                return
        else:
            stream = self._routes.get((remote, packet.connection_id))
            if stream is None:
                stats.unknown += 1
                return
        self._receive(stream, packet)

    # --- routing --------------------------------------------------------------------------

    def _receive(self, stream: UtpTransport, packet: Packet) -> None:
        now = self._batch_now
        if now is None:
            now = self.clock.now()
            if self._batched:
                # Every datagram of a read batch was waiting when the batch began: one
                # clock read serves them all (it was a sixth of a leech's time per packet).
                self._batch_now = now
        was_half_open = stream.conn.state is State.SYN_RECV
        try:
            events = stream.conn.receive_packet(packet, now)
        except RemoteProtocolError as exc:
            self.stats.protocol_errors += 1
            log.debug("%r: %s", stream, exc)
            if was_half_open:
                self._half_open.pop(stream.key, None)
            stream.fail(exc)
            return
        if was_half_open and stream.conn.state is not State.SYN_RECV:
            self._half_open.pop(stream.key, None)
            if stream.conn.state is State.CONNECTED:
                self.stats.connected_in += 1
                self._set_path_mtu(stream.conn, stream.remote)
                listener = self._listener
                if listener is None:
                    stream.abort()  # the listener closed while the handshake ran
                    return
                stream.factory = listener.factory
        stream.handle(events, now)
        self._service_soon(stream)

    def _service_soon(self, stream: UtpTransport) -> None:
        """Service now, or once the transport's batch of datagrams is read: one ACK and one
        round of sends per batch (libtorrent acks when its socket is drained)."""
        if self._batched:
            self._dirty[stream.key] = stream
        else:
            self.service(stream)

    def datagrams_drained(self) -> None:
        """The transport read what was waiting: service every connection that got some."""
        self._batch_now = None
        dirty, self._dirty = self._dirty, {}
        for stream in dirty.values():
            self.service(stream)

    def _accept(self, syn: Packet, remote: Address) -> None:
        if self._listener is None or self.max_half_open <= 0:
            self.stats.syn_refused += 1
            return
        self._make_room(remote[0])
        conn = UtpConnection.accept(
            syn, self.clock.now(), self.rng, max_datagram_in=self.max_datagram_in
        )
        stream = UtpTransport(self, conn, remote)
        self._routes[stream.key] = stream
        self._half_open[stream.key] = stream
        self.stats.accepted += 1
        self._service_soon(stream)

    def _make_room(self, host: str) -> None:
        """Before a new responder: forget the oldest unconfirmed one of ``host`` if it holds
        its share, else the oldest of all if the cap is reached. Forgotten without a word,
        as a spoofed SYN's entry is when it times out."""
        mine = [key for key in self._half_open if key[0][0] == host]
        if len(mine) >= MAX_HALF_OPEN_PER_ADDRESS:
            victim = mine[0]
        elif len(self._half_open) >= self.max_half_open:
            victim = next(iter(self._half_open))
        else:
            return
        stream = self._half_open.pop(victim)
        if self._routes.get(victim) is stream:
            del self._routes[victim]
        self.stats.syn_evicted += 1
        # The forgotten entry's timer stays in the heap until it fires (10 s): under a flood
        # drop such entries once they outnumber the live ones, so memory follows the cap.
        heap = self._heap
        if len(heap) > 2 * len(self._routes) + 2 * self.max_half_open:
            routes = self._routes
            heap[:] = [entry for entry in heap if routes.get(entry[2].key) is entry[2]]
            heapq.heapify(heap)

    def forget(self, stream: UtpTransport) -> None:
        if self._routes.get(stream.key) is stream:
            del self._routes[stream.key]
            if stream.conn.state is State.SYN_RECV:
                self._half_open.pop(stream.key, None)

    def service(self, stream: UtpTransport) -> None:
        """After anything happened to ``stream``: feed its core, send, re-arm its timer."""
        if self._routes.get(stream.key) is not stream:
            return
        stream.deliver_held()
        stream.push_pending()
        now = self.clock.now()
        self.send(stream.conn.datagrams_to_send(now), stream.remote)
        stream.resume_protocol_if_drained()
        state = stream.conn.state
        if state in (State.RESET, State.TIMED_OUT, State.ERROR):
            self.forget(stream)
            return
        self._arm(stream)

    def send(self, datagrams: list[bytes], remote: Address) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        for datagram in datagrams:
            self.stats.datagrams_out += 1
            self.stats.bytes_out += len(datagram)
            transport.sendto(datagram, remote)

    def _set_path_mtu(self, conn: UtpConnection, remote: Address) -> None:
        if self._kernel and self.max_datagram_in is not None:
            size = path_max_datagram(remote)
            if size is not None:
                conn.set_path_max_datagram(size)

    # --- dialling and listening -----------------------------------------------------------

    async def connect(
        self, protocol_factory: Callable[[], _P], host: str, port: int
    ) -> tuple[asyncio.Transport, _P]:
        """Dial ``host:port``; the caller's timeout scope bounds the wait.

        Raises:
            ConnectionRefusedError: the peer answered with a RESET.
            TimeoutError: no answer after the core's SYN retries.
            OSError: the socket is closed, ``host`` cannot be resolved or is of the other
                address family (IPv4 / IPv6) than the socket's.
        """
        if self._transport is None:
            raise OSError(errno.ENOTCONN, "the uTP socket is not open")
        remote = await self._resolve(host, port)
        if (":" in remote[0]) != (":" in self._address[0]):
            # An AF_INET socket cannot send to IPv6 (nor AF_INET6 to a plain IPv4 address).
            raise OSError(errno.EAFNOSUPPORT, f"uTP on {self._address[0]} cannot reach {host}")
        recv_id = self.rng.randrange(0x10000)
        while (remote, recv_id) in self._routes:
            recv_id = (recv_id + 1) & 0xFFFF
        conn = UtpConnection.initiator(
            self.rng, recv_id=recv_id, max_datagram_in=self.max_datagram_in
        )
        self._set_path_mtu(conn, remote)
        stream = UtpTransport(self, conn, remote)
        stream.factory = protocol_factory
        waiter = self.loop.create_future()
        stream.connected_waiter = waiter
        self._routes[stream.key] = stream
        self.send(conn.connect(self.clock.now()), remote)
        self._arm(stream)
        try:
            await waiter
        except ConnectionResetError as exc:
            raise ConnectionRefusedError(
                errno.ECONNREFUSED, f"uTP refused by {host}:{port}"
            ) from exc
        except BaseException:
            stream.abort()  # cancelled (the dial policy's timeout) or given up
            raise
        self.stats.connected_out += 1
        protocol = stream.get_protocol()
        return stream, protocol  # type: ignore[return-value]

    async def listen(
        self, protocol_factory: Callable[[], asyncio.BaseProtocol], host: str, port: int
    ) -> Listener:
        """Accept connections on this socket's port; ``port`` must be 0 or that port.

        Raises:
            OSError: another listener is set, or ``port`` is not this socket's.
        """
        if self._transport is None:
            raise OSError(errno.ENOTCONN, "the uTP socket is not open")
        if self._listener is not None:
            raise OSError(errno.EADDRINUSE, f"uTP already listening on {self.address[1]}")
        if port not in (0, self.address[1]):
            raise OSError(errno.EADDRNOTAVAIL, f"the uTP socket is bound to {self.address[1]}")
        self._listener = _Listener(self, protocol_factory)
        return self._listener

    async def _resolve(self, host: str, port: int) -> Address:
        try:
            return str(ipaddress.ip_address(host)), port
        except ValueError:
            pass
        infos = await self.loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        if not infos:
            raise OSError(errno.EHOSTUNREACH, f"cannot resolve {host}")
        return _address(infos[0][4])

    # --- the one timer --------------------------------------------------------------------

    def _arm(self, stream: UtpTransport) -> None:
        """Make sure the heap holds an entry for ``stream`` no later than its deadline.

        A deadline that moved later keeps its old entry: when that fires, the stream finds
        nothing due and is re-armed. So the heap holds about one entry per connection.
        """
        deadline = stream.deadline()
        if deadline is None or (stream.armed_at is not None and stream.armed_at <= deadline):
            return
        stream.armed_at = deadline
        heapq.heappush(self._heap, (deadline, next(self._tiebreak), stream))
        if deadline < self._wake_at and self._wakeup is not None:
            self._wakeup.set()

    async def _run_timers(self) -> None:
        assert self._wakeup is not None
        wakeup = self._wakeup
        while True:
            wakeup.clear()
            if self._heap:
                self._wake_at = self._heap[0][0]
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(self._wake_at):
                        await wakeup.wait()
            else:
                self._wake_at = float("inf")
                await wakeup.wait()
            self._wake_at = float("inf")
            self._fire(self.clock.now())

    def _fire(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, stream = heapq.heappop(heap)
            if stream.armed_at == deadline:
                stream.armed_at = None
            if self._routes.get(stream.key) is not stream:
                continue
            due = stream.deadline()
            if due is None or due > now:
                self._arm(stream)
                continue
            was_half_open = stream.conn.state is State.SYN_RECV
            events = stream.on_deadline(now)
            if was_half_open and stream.conn.state is State.TIMED_OUT:
                self._half_open.pop(stream.key, None)
                del self._routes[stream.key]  # a spoofed SYN, forgotten without a word
                continue
            stream.handle(events, now)
            self.service(stream)


class UtpNetwork:
    """A :class:`hubswarm.net.StreamNetwork` over a :class:`UtpSocket` (``name = "utp"``)."""

    name = "utp"

    def __init__(self, sock: UtpSocket) -> None:
        self.socket = sock

    async def connect(
        self, protocol_factory: Callable[[], _P], host: str, port: int
    ) -> tuple[asyncio.Transport, _P]:
        return await self.socket.connect(protocol_factory, host, port)

    async def listen(
        self, protocol_factory: Callable[[], asyncio.BaseProtocol], host: str, port: int
    ) -> Listener:
        return await self.socket.listen(protocol_factory, host, port)
