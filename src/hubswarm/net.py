"""The one seam for connections: how the swarm and the DHT dial, listen and send datagrams.

Theory of operation
-------------------
Code that opens or accepts connections is handed a :class:`StreamNetwork` (reliable, ordered
byte streams) and, for the DHT, a :class:`DatagramNetwork`. Both speak asyncio's own
transport/protocol interface, the one ``loop.create_connection`` and ``loop.create_server``
use, so any implementation slots in without the caller knowing:

- :class:`TcpNetwork`: the kernel's TCP and UDP, through the running loop (the default);
- :class:`hubswarm.memnet.MemoryNetwork`: hosts in one process joined by in-memory pipes,
  for tests and the virtual-time lab;
- a uTP network (BEP 29) later: streams over the DHT's UDP port.

:func:`open_stream` and :func:`start_stream_server` give ``asyncio.StreamReader`` /
``StreamWriter`` pairs on any of them, as ``asyncio.open_connection`` and
``asyncio.start_server`` do for TCP. :func:`unacked_bytes` reads how many written bytes the
remote end has not yet acknowledged, the kernel's count (SIOCOUTQ) for a socket or the
transport's own for the others.

:class:`TcpNetwork` binds UDP with :class:`BatchedDatagramTransport` rather than asyncio's
datagram transport, which reads one datagram per turn of the loop: ours reads what is
waiting, up to :data:`READ_BATCH` datagrams, and then tells a protocol that has
``datagrams_drained()`` (the uTP socket acks and sends once per batch, as libtorrent's
``utp_socket_manager`` does when its socket is drained).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

__all__ = [
    "READ_BATCH",
    "BatchedDatagramTransport",
    "DatagramNetwork",
    "Listener",
    "StreamHandler",
    "StreamNetwork",
    "TcpNetwork",
    "open_stream",
    "start_stream_server",
    "unacked_bytes",
]

_P = TypeVar("_P", bound=asyncio.BaseProtocol)
_D = TypeVar("_D", bound=asyncio.DatagramProtocol)
StreamHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

# asyncio's own default for StreamReader's buffer limit (asyncio.streams._DEFAULT_LIMIT).
DEFAULT_STREAM_LIMIT = 64 * 1024
# Datagrams read per readiness of a UDP socket before the loop runs other work: a 1 MiB uTP
# window is ~750 packets, so a batch stays well under a millisecond of Python.
READ_BATCH = 64
# Largest datagram read (UDP's own limit); the protocols drop what they cannot parse.
_MAX_DATAGRAM = 65535
# Datagrams held while the kernel's send buffer is full; more are dropped, as a full router
# queue drops them (uTP and KRPC resend what matters).
_SEND_QUEUE_MAX = 1024

_SIOCOUTQ: int | None  # Unix: the kernel's count of written, unacknowledged bytes
try:
    import fcntl
    import termios

    _SIOCOUTQ = termios.TIOCOUTQ
except ImportError:  # pragma: no cover - not on Windows
    _SIOCOUTQ = None


class Listener(Protocol):
    """A listening endpoint; ``address`` is where it listens (port 0 resolved)."""

    @property
    def address(self) -> tuple[str, int]: ...

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...


class StreamNetwork(Protocol):
    """Dial and listen for reliable, ordered byte streams."""

    name: str

    async def connect(
        self, protocol_factory: Callable[[], _P], host: str, port: int
    ) -> tuple[asyncio.Transport, _P]:
        """Connect to (host, port). Raises OSError (refused, unreachable)."""
        ...

    async def listen(
        self, protocol_factory: Callable[[], asyncio.BaseProtocol], host: str, port: int
    ) -> Listener:
        """Listen on (host, port); port 0 picks a free one. Raises OSError (in use)."""
        ...


class DatagramNetwork(Protocol):
    """Bind datagram endpoints (the DHT's UDP socket)."""

    async def bind(
        self, protocol_factory: Callable[[], _D], host: str, port: int
    ) -> tuple[asyncio.DatagramTransport, _D]:
        """Bind (host, port); port 0 picks a free one. Raises OSError (in use)."""
        ...


# Loop iterations between accepting a connection and its transport's creation (asyncio's
# _accept_connection schedules _accept_connection2, which makes the transport), with margin.
_ACCEPT_ITERATIONS = 3


class _ServerListener:
    """A :class:`Listener` over an ``asyncio.Server``."""

    def __init__(self, server: asyncio.Server) -> None:
        self._server = server
        self._closing = False
        sockname = server.sockets[0].getsockname()
        self._address = (str(sockname[0]), int(sockname[1]))

    @property
    def address(self) -> tuple[str, int]:
        return self._address

    def close(self) -> None:
        """Stop accepting at once; the server itself closes in :meth:`wait_closed`.

        Python 3.11 leaks the socket of a connection accepted just before
        ``Server.close()``: its transport, made a loop iteration later, fails
        ``Server._attach`` and is never closed. So the listening sockets stop being read
        here, and the server closes only after those transports exist.
        """
        if self._closing:
            return
        self._closing = True
        loop = self._server.get_loop()
        for sock in self._server.sockets:
            loop.remove_reader(sock.fileno())

    async def wait_closed(self) -> None:
        """Close (after :meth:`close`) and wait until the server is closed."""
        if self._closing and self._server.is_serving():
            for _ in range(_ACCEPT_ITERATIONS):
                await asyncio.sleep(0)  # let accepted connections make their transports
            self._server.close()
        await self._server.wait_closed()


class TcpNetwork:
    """The kernel's TCP and UDP through the running event loop."""

    name = "tcp"

    async def connect(
        self, protocol_factory: Callable[[], _P], host: str, port: int
    ) -> tuple[asyncio.Transport, _P]:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_connection(protocol_factory, host, port)
        return transport, protocol

    async def listen(
        self, protocol_factory: Callable[[], asyncio.BaseProtocol], host: str, port: int
    ) -> Listener:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(protocol_factory, host, port)
        return _ServerListener(server)

    async def bind(
        self, protocol_factory: Callable[[], _D], host: str, port: int
    ) -> tuple[asyncio.DatagramTransport, _D]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        if not infos:
            raise OSError(errno.EADDRNOTAVAIL, f"cannot resolve {host}")
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.bind(address)
        except BaseException:
            sock.close()
            raise
        protocol = protocol_factory()
        transport = BatchedDatagramTransport(loop, sock, protocol)
        return transport, protocol


class BatchedDatagramTransport(asyncio.DatagramTransport):
    """A UDP socket's transport that reads up to :data:`READ_BATCH` datagrams per readiness,
    then calls the protocol's ``datagrams_drained()`` if it has one (see the module doc)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        protocol: asyncio.DatagramProtocol,
    ) -> None:
        super().__init__()
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._drained: Callable[[], None] | None = getattr(protocol, "datagrams_drained", None)
        self._queue: collections.deque[tuple[bytes, Any]] = collections.deque()
        self._closing = False
        # "read_batch": a protocol may wait for datagrams_drained() to answer (see above).
        self._extra: dict[str, Any] = {
            "socket": sock,
            "sockname": sock.getsockname(),
            "read_batch": READ_BATCH,
        }
        # Made and reading before bind() returns, as after create_datagram_endpoint.
        protocol.connection_made(self)
        if not self._closing:
            loop.add_reader(self._fd, self._read_ready)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._extra.get(name, default)

    def is_closing(self) -> bool:
        return self._closing

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.DatagramProtocol)
        self._protocol = protocol
        self._drained = getattr(protocol, "datagrams_drained", None)

    def get_write_buffer_size(self) -> int:
        return sum(len(data) for data, _ in self._queue)

    def _read_ready(self) -> None:
        recvfrom = self._sock.recvfrom
        protocol = self._protocol
        try:
            for _ in range(READ_BATCH):
                if self._closing:
                    return
                try:
                    data, addr = recvfrom(_MAX_DATAGRAM)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:  # ICMP errors (port unreachable) arrive here on Linux
                    protocol.error_received(exc)
                    continue
                protocol.datagram_received(data, addr)
        finally:  # even after a protocol's exception: a batch always ends with its drain
            drained = self._drained
            if drained is not None and not self._closing:
                drained()

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        if self._closing or not data:
            return
        if not self._queue:
            try:
                self._sock.sendto(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                self._loop.add_writer(self._fd, self._write_ready)
            except OSError as exc:
                self._protocol.error_received(exc)
                return
        if len(self._queue) < _SEND_QUEUE_MAX:
            self._queue.append((bytes(data), addr))

    def _write_ready(self) -> None:
        while self._queue:
            data, addr = self._queue[0]
            try:
                self._sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._protocol.error_received(exc)
            self._queue.popleft()
        self._loop.remove_writer(self._fd)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._queue.clear()
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        self._loop.call_soon(self._finish)

    def _finish(self) -> None:
        try:
            self._protocol.connection_lost(None)
        finally:
            self._sock.close()

    def abort(self) -> None:
        self.close()


async def open_stream(
    network: StreamNetwork, host: str, port: int, *, limit: int = DEFAULT_STREAM_LIMIT
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``asyncio.open_connection`` on any :class:`StreamNetwork`."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    transport, protocol = await network.connect(
        lambda: asyncio.StreamReaderProtocol(reader, loop=loop), host, port
    )
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


async def start_stream_server(
    network: StreamNetwork,
    handler: StreamHandler,
    host: str,
    port: int,
    *,
    limit: int = DEFAULT_STREAM_LIMIT,
) -> Listener:
    """``asyncio.start_server`` on any :class:`StreamNetwork`: one ``handler`` per stream."""
    loop = asyncio.get_running_loop()

    def factory() -> asyncio.StreamReaderProtocol:
        reader = asyncio.StreamReader(limit=limit, loop=loop)
        return asyncio.StreamReaderProtocol(reader, handler, loop=loop)

    return await network.listen(factory, host, port)


def unacked_bytes(transport: asyncio.BaseTransport) -> int:
    """Bytes written to ``transport`` that the remote end has not acknowledged yet.

    asyncio's write buffer plus, for a socket, the kernel's send queue (SIOCOUTQ); a
    transport that is not a socket reports its own count as ``get_extra_info("unacked")``.
    """
    unacked = 0
    if isinstance(transport, asyncio.WriteTransport):
        unacked = transport.get_write_buffer_size()
    own = transport.get_extra_info("unacked")
    if isinstance(own, int):
        return unacked + own
    sock = transport.get_extra_info("socket")
    if _SIOCOUTQ is not None and sock is not None and sock.fileno() >= 0:
        with contextlib.suppress(OSError):
            queued = fcntl.ioctl(sock.fileno(), _SIOCOUTQ, b"\0" * 4)
            unacked += struct.unpack("i", queued)[0]
    return unacked
