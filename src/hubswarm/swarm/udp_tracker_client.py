"""UDP tracker client (BEP 15): an asyncio shell around :mod:`hubswarm.proto.udp_tracker`.

Theory of operation
-------------------
One :class:`UdpTrackerClient` serves every torrent of a peer. It binds one datagram endpoint
per address family on first use (through a :class:`hubswarm.net.DatagramNetwork`, so it
runs on the in-memory network too) and routes each reply to the request waiting for its
transaction id; a reply with an unknown transaction id, or from another address than the
tracker's, is dropped and counted (BEP 15: "ignore").

A request first needs a connection id: one from the same tracker younger than
``connection_id_lifetime`` (BEP 15: one minute) is reused, otherwise a connect exchange gets
a new one. Every transmission that gets no reply is repeated after ``15 * 2**n`` seconds,
n = 0 .. 8 (BEP 15), with the base and the count taken from :class:`UdpTrackerConfig`; a
caller's ``timeout`` bounds the whole exchange. Every wait reads the loop's clock through
:class:`hubswarm.clock.Clock`, so the schedule runs unchanged in virtual time.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import random
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

from hubswarm import net
from hubswarm.clock import Clock
from hubswarm.errors import TrackerError
from hubswarm.memnet import MemoryHost
from hubswarm.proto import tracker
from hubswarm.proto import udp_tracker as udp
from hubswarm.proto.compact import normalise_ip
from hubswarm.swarm.dualstack import DualNetwork

__all__ = [
    "UdpTrackerClient",
    "UdpTrackerConfig",
    "datagram_network",
    "is_udp_url",
    "parse_udp_url",
]

log = logging.getLogger(__name__)

Address = tuple[str, int]

# Connection ids remembered at once: a peer announces to a handful of trackers; this only
# bounds memory against a torrent listing thousands.
MAX_CACHED_CONNECTION_IDS = 1024
# How long a host name may take to resolve (the announce's own timeout also applies).
RESOLVE_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class UdpTrackerConfig:
    """BEP 15's timing: retransmit after ``retransmit_base * 2**n`` s for n up to
    ``max_retransmits``; reuse a connection id for ``connection_id_lifetime`` s."""

    retransmit_base: float = 15.0
    max_retransmits: int = 8
    connection_id_lifetime: float = 60.0

    def waits(self) -> list[float]:
        """The wait after each transmission: 15, 30, 60, ... 3840 s with the defaults."""
        return [self.retransmit_base * 2**n for n in range(self.max_retransmits + 1)]


def datagram_network(streams: net.StreamNetwork) -> net.DatagramNetwork:
    """The datagram side of a peer's stream network: the in-memory host it dials on (tests,
    the lab's sim), else the kernel's UDP."""
    base = streams.tcp if isinstance(streams, DualNetwork) else streams
    return base if isinstance(base, MemoryHost | net.TcpNetwork) else net.TcpNetwork()


def is_udp_url(url: str) -> bool:
    """True for a ``udp://`` tracker URL (BEP 15)."""
    return url[:6].lower() == "udp://"


def parse_udp_url(url: str) -> Address:
    """(host, port) of ``udp://host:port/anything``; the path is not used.

    Raises:
        TrackerError: not a udp URL, or no host or port.
    """
    if not is_udp_url(url):
        raise TrackerError(f"not a UDP tracker URL: {url[:100]!r}")
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise TrackerError(f"invalid UDP tracker URL {url[:100]!r}: {exc}") from exc
    if not host or not port:
        raise TrackerError(f"UDP tracker URL without host and port: {url[:100]!r}")
    return host, port


class _Endpoint(asyncio.DatagramProtocol):
    """One bound socket; hands each reply to the request waiting for its transaction id."""

    def __init__(self, owner: UdpTrackerClient) -> None:
        self._owner = owner
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The kernel's UDP transport is not an asyncio.DatagramTransport subclass in 3.11.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._owner._received(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the request's own time-out decides.
        log.debug("UDP tracker socket: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


@dataclass(slots=True)
class _Pending:
    address: Address
    reply: asyncio.Future[bytes]


class UdpTrackerClient:
    """Announce to and scrape UDP trackers; ``close()`` (or ``async with``) ends it.

    ``network`` binds the sockets (default: the kernel's UDP), ``rng`` draws transaction ids
    and the announce ``key``, ``config`` holds BEP 15's timing.
    """

    def __init__(
        self,
        network: net.DatagramNetwork | None = None,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        config: UdpTrackerConfig | None = None,
    ) -> None:
        self.network: net.DatagramNetwork = network if network is not None else net.TcpNetwork()
        self.clock = clock if clock is not None else Clock()
        self.rng = rng if rng is not None else random.Random()
        self.config = config if config is not None else UdpTrackerConfig()
        # BEP 15 "key": lets a tracker recognise us when our address changes; one per client.
        self.key = self.rng.getrandbits(32)
        self._endpoints: dict[int, _Endpoint] = {}
        self._binding: dict[int, asyncio.Lock] = {}
        self._pending: dict[int, _Pending] = {}
        self._connection_ids: dict[Address, tuple[int, float]] = {}
        self.sent = 0
        self.dropped = 0  # replies nobody waited for (wrong transaction id or source)
        self.connects = 0

    async def __aenter__(self) -> UdpTrackerClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the sockets; requests still waiting fail with :class:`TrackerError`."""
        for pending in self._pending.values():
            if not pending.reply.done():
                pending.reply.set_exception(TrackerError("UDP tracker client closed"))
        self._pending.clear()
        endpoints, self._endpoints = self._endpoints, {}
        for endpoint in endpoints.values():
            if endpoint.transport is not None:
                endpoint.transport.close()

    # --- the two requests ---------------------------------------------------------------

    async def announce(
        self, url: str, req: tracker.AnnounceRequest, *, timeout: float | None = None
    ) -> tracker.AnnounceResponse:
        """Announce ``req`` to the UDP tracker at ``url``; ``timeout`` bounds all retries.

        Raises:
            TrackerError: the tracker's error message, a bad reply, no reply in time.
        """
        ip = 0
        if req.ip is not None:
            try:
                addr = ipaddress.ip_address(req.ip)
            except ValueError:
                addr = None
            if isinstance(addr, ipaddress.IPv4Address):
                ip = int(addr)  # BEP 15's ip field is IPv4 only

        def build(connection_id: int, transaction_id: int) -> bytes:
            return udp.AnnounceRequest(
                connection_id=connection_id,
                transaction_id=transaction_id,
                info_hash=req.info_hash,
                peer_id=req.peer_id,
                downloaded=req.downloaded,
                left=req.left,
                uploaded=req.uploaded,
                event=udp.UdpEvent.from_name(req.event),
                ip=ip,
                key=self.key,
                num_want=-1 if req.numwant is None else req.numwant,
                port=req.port,
            ).encode()

        reply = await self._request(url, udp.Action.ANNOUNCE, build, timeout=timeout)
        assert isinstance(reply, udp.AnnounceResponse)
        return tracker.AnnounceResponse(
            interval=reply.interval,
            peers=reply.peers,
            complete=reply.seeders,
            incomplete=reply.leechers,
        )

    async def scrape(
        self, url: str, info_hashes: Sequence[bytes], *, timeout: float | None = None
    ) -> tracker.ScrapeResponse:
        """Counts for up to 74 ``info_hashes`` from the UDP tracker at ``url`` (BEP 15).

        Raises:
            TrackerError: too many or bad info-hashes, the tracker's error, no reply in time.
        """
        hashes = tuple(info_hashes)
        udp.ScrapeRequest(0, 0, hashes)  # validate before any traffic

        def build(connection_id: int, transaction_id: int) -> bytes:
            return udp.ScrapeRequest(connection_id, transaction_id, hashes).encode()

        reply = await self._request(
            url, udp.Action.SCRAPE, build, timeout=timeout, hashes=len(hashes)
        )
        assert isinstance(reply, udp.ScrapeResponse)
        return tracker.ScrapeResponse(dict(zip(hashes, reply.files, strict=False)))

    # --- the exchange -------------------------------------------------------------------

    async def _request(
        self,
        url: str,
        action: udp.Action,
        build: Callable[[int, int], bytes],
        *,
        timeout: float | None,
        hashes: int = udp.MAX_SCRAPE_HASHES,
    ) -> udp.Response:
        deadline = None if timeout is None else self.clock.now() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                address = await self._resolve(*parse_udp_url(url))
                return await self._exchange(address, action, build, hashes)
        except TimeoutError:
            raise TrackerError(f"UDP tracker {url} did not answer within {timeout:g} s") from None

    async def _exchange(
        self,
        address: Address,
        action: udp.Action,
        build: Callable[[int, int], bytes],
        hashes: int,
    ) -> udp.Response:
        ipv6 = ":" in address[0]
        waits = self.config.waits()
        n = 0  # BEP 15: grows after every transmission that went unanswered
        # Each pass either sends a connect that is answered (at most one per pass that
        # follows) or raises n; so there are at most 2 * len(waits) passes.
        for _ in range(2 * len(waits)):
            if n >= len(waits):
                break
            connection_id = self._connection_id(address)
            transaction_id = self._new_transaction_id()
            if connection_id is None:
                data = udp.ConnectRequest(transaction_id).encode()
                raw = await self._send_and_wait(address, transaction_id, data, waits[n])
                if raw is None:
                    n += 1
                    continue
                reply = _checked(raw, udp.Action.CONNECT, transaction_id, ipv6, hashes)
                assert isinstance(reply, udp.ConnectResponse)
                self.connects += 1
                self._remember(address, reply.connection_id)
                continue
            data = build(connection_id, transaction_id)
            raw = await self._send_and_wait(address, transaction_id, data, waits[n])
            if raw is None:
                n += 1
                continue
            return _checked(raw, action, transaction_id, ipv6, hashes)
        total = sum(waits)
        raise TrackerError(f"UDP tracker {address[0]}:{address[1]} silent for {total:g} s")

    async def _send_and_wait(
        self, address: Address, transaction_id: int, data: bytes, wait: float
    ) -> bytes | None:
        """Send ``data`` and wait ``wait`` seconds for its reply (None: no reply)."""
        endpoint = await self._endpoint(socket.AF_INET6 if ":" in address[0] else socket.AF_INET)
        reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[transaction_id] = _Pending(address, reply)
        try:
            if endpoint.transport is None:
                raise TrackerError("UDP tracker socket closed")
            endpoint.transport.sendto(data, address)
            self.sent += 1
            try:
                async with asyncio.timeout_at(self.clock.now() + wait):
                    return await reply
            except TimeoutError:
                return None
        finally:
            if self._pending.get(transaction_id) is not None:
                del self._pending[transaction_id]

    def _new_transaction_id(self) -> int:
        """A random id no request in flight uses (BEP 15: random per request)."""
        transaction_id = self.rng.getrandbits(32)
        for _ in range(8):  # a clash needs 2**32 / in-flight draws on average
            if transaction_id not in self._pending:
                break
            transaction_id = self.rng.getrandbits(32)
        return transaction_id

    def _received(self, data: bytes, addr: Any) -> None:
        try:
            _, transaction_id = udp.peek_header(data)
            source = (normalise_ip(str(addr[0])), int(addr[1]))
        except (TrackerError, ValueError, TypeError, IndexError):
            self.dropped += 1
            return
        pending = self._pending.get(transaction_id)
        if pending is None or pending.address != source or pending.reply.done():
            self.dropped += 1  # BEP 15: ignore a reply with another transaction id
            return
        pending.reply.set_result(bytes(data))

    # --- sockets, names and connection ids ------------------------------------------------

    async def _endpoint(self, family: int) -> _Endpoint:
        lock = self._binding.setdefault(family, asyncio.Lock())
        async with lock:
            endpoint = self._endpoints.get(family)
            if endpoint is None or endpoint.transport is None:
                host = "::" if family == socket.AF_INET6 else "0.0.0.0"
                try:
                    _, endpoint = await self.network.bind(lambda: _Endpoint(self), host, 0)
                except OSError as exc:
                    raise TrackerError(f"cannot open a UDP socket: {exc}") from exc
                self._endpoints[family] = endpoint
            return endpoint

    async def _resolve(self, host: str, port: int) -> Address:
        try:
            return normalise_ip(host), port
        except ValueError:
            pass
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except (OSError, TimeoutError) as exc:
            raise TrackerError(f"cannot resolve UDP tracker {host}: {exc}") from exc
        for family, _, _, _, sockaddr in infos:
            if family in (socket.AF_INET, socket.AF_INET6):
                return normalise_ip(str(sockaddr[0])), port
        raise TrackerError(f"no address for UDP tracker {host}")

    def _connection_id(self, address: Address) -> int | None:
        cached = self._connection_ids.get(address)
        if cached is None:
            return None
        connection_id, obtained_at = cached
        if self.clock.now() - obtained_at >= self.config.connection_id_lifetime:
            del self._connection_ids[address]
            return None
        return connection_id

    def _remember(self, address: Address, connection_id: int) -> None:
        self._connection_ids.pop(address, None)
        if len(self._connection_ids) >= MAX_CACHED_CONNECTION_IDS:
            del self._connection_ids[next(iter(self._connection_ids))]  # the oldest
        self._connection_ids[address] = (connection_id, self.clock.now())

    def forget_connection_id(self, address: Address) -> None:
        """Drop a cached connection id (the next request connects again)."""
        self._connection_ids.pop(address, None)


def _checked(
    raw: bytes, action: udp.Action, transaction_id: int, ipv6: bool, hashes: int
) -> udp.Response:
    reply = udp.parse_response(
        raw, action=action, transaction_id=transaction_id, ipv6=ipv6, hashes=hashes
    )
    if isinstance(reply, udp.ErrorResponse):
        raise TrackerError(f"tracker failure: {reply.message}")
    return reply
