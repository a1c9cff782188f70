"""Hosts in one process joined by in-memory pipes: streams and datagrams without sockets.

Theory of operation
-------------------
A :class:`MemoryNetwork` holds hosts by address; ``network.host("10.0.0.1")`` is that host's
view, a :class:`hubswarm.net.StreamNetwork` and :class:`hubswarm.net.DatagramNetwork`, so
the swarm and the DHT run on it unchanged. Bytes are delivered through the event loop's
timers, never through a socket, so under a virtual-time loop (:mod:`hubswarm.vtime`) a whole
swarm runs in virtual time and deterministically.

The model is deliberately small; the lab's network model (issue 16) refines it:

- a path has a one-way ``latency`` (seconds); a connect costs one round trip;
- streams are reliable and ordered, with no rate limit; bytes written are "unacked" until
  delivered;
- a datagram is dropped with probability ``loss``, drawn from the network's seeded ``rng``;
- a connect to a port nobody listens on raises ``ConnectionRefusedError`` after the round
  trip; a datagram to one is dropped.
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["MemoryDatagram", "MemoryHost", "MemoryNetwork", "MemoryStream"]

_P = TypeVar("_P", bound=asyncio.BaseProtocol)
_D = TypeVar("_D", bound=asyncio.DatagramProtocol)

# Ephemeral ports are handed out from here up, per host (IANA's dynamic range, RFC 6335).
EPHEMERAL_PORT_FIRST = 49152

Address = tuple[str, int]


class MemoryNetwork:
    """The hosts and their listeners and datagram endpoints."""

    def __init__(
        self, *, latency: float = 0.0, loss: float = 0.0, rng: random.Random | None = None
    ) -> None:
        if latency < 0 or not 0.0 <= loss <= 1.0:
            raise ValueError("need latency >= 0 and 0 <= loss <= 1")
        self.latency = latency
        self.loss = loss
        self.rng = rng if rng is not None else random.Random(0)
        self._hosts: dict[str, MemoryHost] = {}
        self._listeners: dict[Address, _MemoryListener] = {}
        self._datagrams: dict[Address, MemoryDatagram] = {}

    def host(self, ip: str) -> MemoryHost:
        """The host at ``ip`` (made on first use)."""
        host = self._hosts.get(ip)
        if host is None:
            host = self._hosts[ip] = MemoryHost(self, ip)
        return host

    def delay(self, src: str, dst: str) -> float:
        """One-way delay from ``src`` to ``dst`` (0 on the same host)."""
        return 0.0 if src == dst else self.latency

    def open_pair(
        self, loop: asyncio.AbstractEventLoop, local: Address, remote: Address
    ) -> tuple[MemoryStream, MemoryStream]:
        """The two ends of a new stream from ``local`` to ``remote`` (a model overrides this)."""
        client = MemoryStream(loop, self, local, remote)
        server = MemoryStream(loop, self, remote, local)
        client.peer, server.peer = server, client
        return client, server

    def open_datagram(
        self, loop: asyncio.AbstractEventLoop, local: Address, protocol: asyncio.DatagramProtocol
    ) -> MemoryDatagram:
        """A new datagram endpoint bound at ``local`` (a model overrides this)."""
        return MemoryDatagram(loop, self, local, protocol)

    def _resolve(self, ip: str, host: str) -> str:
        # "0.0.0.0" / "" listen on the host's own address, as INADDR_ANY does.
        return ip if host in ("", "0.0.0.0", "::") else host


class MemoryHost:
    """One host's view of a :class:`MemoryNetwork`: dial, listen, bind."""

    name = "memory"

    def __init__(self, network: MemoryNetwork, ip: str) -> None:
        self.network = network
        self.ip = ip
        self._next_port = EPHEMERAL_PORT_FIRST

    def _ephemeral(self, taken: Callable[[Address], bool]) -> int:
        for _ in range(65536 - EPHEMERAL_PORT_FIRST):
            port = self._next_port
            self._next_port = port + 1 if port < 65535 else EPHEMERAL_PORT_FIRST
            if not taken((self.ip, port)):
                return port
        raise OSError(98, "no free ephemeral port")

    async def connect(
        self, protocol_factory: Callable[[], _P], host: str, port: int
    ) -> tuple[asyncio.Transport, _P]:
        net = self.network
        rtt = net.delay(self.ip, host) + net.delay(host, self.ip)
        if rtt > 0:
            await asyncio.sleep(rtt)  # SYN, SYN-ACK: the loop's clock, virtual or not
        listener = net._listeners.get((host, port))
        if listener is None or listener.closed:
            raise ConnectionRefusedError(111, f"connection refused: {host}:{port}")
        local = (self.ip, self._ephemeral(lambda a: False))
        loop = asyncio.get_running_loop()
        client, server = net.open_pair(loop, local, (host, port))
        protocol = protocol_factory()
        client.set_protocol(protocol)
        server.set_protocol(listener.protocol_factory())
        listener.accepted.add(server)
        server._listener = listener
        protocol.connection_made(client)
        server.protocol.connection_made(server)
        return client, protocol

    async def listen(
        self, protocol_factory: Callable[[], asyncio.BaseProtocol], host: str, port: int
    ) -> _MemoryListener:
        net = self.network
        ip = net._resolve(self.ip, host)
        if port == 0:
            port = self._ephemeral(lambda a: a in net._listeners)
        address = (ip, port)
        if address in net._listeners:
            raise OSError(98, f"address already in use: {ip}:{port}")
        listener = _MemoryListener(net, address, protocol_factory)
        net._listeners[address] = listener
        return listener

    async def bind(
        self, protocol_factory: Callable[[], _D], host: str, port: int
    ) -> tuple[asyncio.DatagramTransport, _D]:
        net = self.network
        ip = net._resolve(self.ip, host)
        if port == 0:
            port = self._ephemeral(lambda a: a in net._datagrams)
        address = (ip, port)
        if address in net._datagrams:
            raise OSError(98, f"address already in use: {ip}:{port}")
        protocol = protocol_factory()
        transport = net.open_datagram(asyncio.get_running_loop(), address, protocol)
        net._datagrams[address] = transport
        protocol.connection_made(transport)
        return transport, protocol


class _MemoryListener:
    """A :class:`hubswarm.net.Listener`: accepted streams outlive it, as with TCP."""

    def __init__(
        self,
        network: MemoryNetwork,
        address: Address,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
    ) -> None:
        self._network = network
        self._address = address
        self.protocol_factory = protocol_factory
        self.accepted: set[MemoryStream] = set()
        self.closed = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def address(self) -> Address:
        return self._address

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._network._listeners.pop(self._address, None)

    async def wait_closed(self) -> None:
        """Like ``asyncio.Server.wait_closed``: returns once closed and no stream is open."""
        while self.accepted:
            self._idle.clear()
            await self._idle.wait()

    def _forget(self, stream: MemoryStream) -> None:
        self.accepted.discard(stream)
        if not self.accepted:
            self._idle.set()


class MemoryStream(asyncio.transports._FlowControlMixin):
    """One end of an in-memory stream. Bytes arrive at the peer, in order, after the latency.

    A ``_FlowControlMixin`` as asyncio's own transports are: ``loop.sendfile`` (aiohttp's
    FileResponse) falls back to reads and writes only on such a transport, and the mixin
    pauses and resumes the protocol's writing around ``get_write_buffer_size()``.
    """

    # No file descriptor to sendfile into: asyncio reads the file and writes it, as it does
    # for its TLS transport.
    _sendfile_compatible = asyncio.constants._SendfileMode.FALLBACK  # type: ignore[attr-defined]

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        network: MemoryNetwork,
        local: Address,
        remote: Address,
    ) -> None:
        super().__init__(loop=loop)
        self._loop: asyncio.AbstractEventLoop = loop
        self._network = network
        self._local = local
        self._remote = remote
        self.peer: MemoryStream | None = None
        self._protocol: asyncio.BaseProtocol = asyncio.Protocol()
        self._listener: _MemoryListener | None = None
        # Arrivals for this end, in order: (deliver_at, bytes, or None for EOF, or the close).
        self._inbox: collections.deque[tuple[float, bytes | Closed | None]] = collections.deque()
        self._pump_scheduled = False
        self._reading = True
        self._closing = False
        self._lost = False
        self._unacked = 0  # bytes this end wrote that the peer has not received

    # --- asyncio.BaseTransport -----------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        match name:
            case "peername":
                return self._remote
            case "sockname":
                return self._local
            case "unacked":
                return self._unacked
        return default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._send(_CLOSED)
        self._loop.call_soon(self._connection_lost)

    # The mixin's flow control (typeshed leaves its private half out).
    def pause_protocol_if_full(self) -> None:
        """Pause the protocol's writing above the high-water mark."""
        self._maybe_pause_protocol()  # type: ignore[attr-defined]

    def resume_protocol_if_drained(self) -> None:
        """Resume the protocol's writing below the low-water mark."""
        self._maybe_resume_protocol()  # type: ignore[attr-defined]

    @property
    def protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    # --- asyncio.ReadTransport ------------------------------------------------------------

    def is_reading(self) -> bool:
        return self._reading and not self._closing

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        if not self._reading:
            self._reading = True
            self._schedule_pump()

    # --- asyncio.WriteTransport -----------------------------------------------------------

    def get_write_buffer_size(self) -> int:
        return 0  # handed to the "wire" at once; what is in flight counts as unacked

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self.peer is None or not data:
            return
        payload = bytes(data)
        self._unacked += len(payload)
        self._send(payload)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        if not self._closing and self.peer is not None:
            self._send(None)

    def can_write_eof(self) -> bool:
        return True

    def abort(self) -> None:
        self.close()

    # --- delivery -------------------------------------------------------------------------

    def _send(self, item: bytes | Closed | None) -> None:
        """Hand ``item`` to the path: an ideal pipe, it reaches the peer after the delay."""
        peer = self.peer
        if peer is not None:
            delay = self._network.delay(self._local[0], peer._local[0])
            peer.receive(item, self._loop.time() + delay)

    def receive(self, item: bytes | Closed | None, at: float) -> None:
        """``item`` reaches this end at ``at`` (called in stream order)."""
        self._inbox.append((at, item))
        self._schedule_pump()

    def _acknowledge(self, n: int) -> None:
        """The peer's application has ``n`` more of our bytes."""
        self._unacked -= n

    def _schedule_pump(self) -> None:
        # While reading is paused nothing is delivered; resume_reading() schedules again.
        if self._pump_scheduled or not self._inbox or self._lost or not self._reading:
            return
        self._pump_scheduled = True
        at = self._inbox[0][0]
        if at <= self._loop.time():
            self._loop.call_soon(self._pump)  # due now: the ready queue, not the timer heap
        else:
            self._loop.call_at(at, self._pump)

    def _pump(self) -> None:
        self._pump_scheduled = False
        now = self._loop.time()
        while self._inbox and self._inbox[0][0] <= now and not self._lost:
            _, item = self._inbox[0]
            if not self._reading:
                break  # paused: bytes and the end wait here, as in a socket's receive buffer
            self._inbox.popleft()
            if isinstance(item, Closed):
                self._peer_closed()
                return
            if item is None:
                self._eof()
                continue
            if self.peer is not None:
                self.peer._acknowledge(len(item))
            if self._closing:
                continue  # we closed: what still arrives is discarded
            self._deliver(item)
        self._schedule_pump()

    def _deliver(self, data: bytes) -> None:
        protocol = self.protocol
        if isinstance(protocol, asyncio.BufferedProtocol):
            view = memoryview(data)
            while view:
                buf = memoryview(protocol.get_buffer(len(view))).cast("B")
                n = min(len(buf), len(view))
                if n == 0:
                    raise RuntimeError("get_buffer() returned an empty buffer")
                buf[:n] = view[:n]
                protocol.buffer_updated(n)
                view = view[n:]
        elif isinstance(protocol, asyncio.Protocol):
            protocol.data_received(data)

    def _eof(self) -> None:
        if self._closing:
            return
        protocol = self.protocol
        keep_open = isinstance(protocol, asyncio.Protocol | asyncio.BufferedProtocol) and bool(
            protocol.eof_received()
        )
        if not keep_open:
            self.close()

    def _peer_closed(self) -> None:
        # The peer closed: an EOF first (as a FIN would give), then the end of the stream.
        if not self._closing:
            self._eof()
        if not self._closing:
            self.close()

    def _connection_lost(self) -> None:
        if self._lost:
            return
        self._lost = True
        self._inbox.clear()
        if self._listener is not None:
            self._listener._forget(self)
        self.protocol.connection_lost(None)


class Closed:
    """The marker for "the peer closed" in a stream's inbox."""


_CLOSED = Closed()


class MemoryDatagram(asyncio.DatagramTransport):
    """A datagram endpoint: each datagram is dropped at the network's loss rate, or arrives
    at the bound endpoint after the one-way delay."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        network: MemoryNetwork,
        local: Address,
        protocol: asyncio.DatagramProtocol,
    ) -> None:
        super().__init__()
        self._loop = loop
        self._network = network
        self._local = local
        self._protocol = protocol
        self._closing = False
        self.sent = 0
        self.dropped = 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._local if name == "sockname" else default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._network._datagrams.get(self._local) is self:
            del self._network._datagrams[self._local]
        self._loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.DatagramProtocol)
        self._protocol = protocol

    def get_write_buffer_size(self) -> int:
        return 0

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        if self._closing or addr is None:
            return
        net = self._network
        self.sent += 1
        if net.loss and net.rng.random() < net.loss:
            self.dropped += 1
            return
        dst = (str(addr[0]), int(addr[1]))
        payload = bytes(data)
        delay = net.delay(self._local[0], dst[0])
        self._loop.call_at(self._loop.time() + delay, self._arrive, net, dst, payload)

    def _arrive(self, net: MemoryNetwork, dst: Address, payload: bytes) -> None:
        target = net._datagrams.get(dst)
        if target is not None and not target._closing:
            target._protocol.datagram_received(payload, self._local)
