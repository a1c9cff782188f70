"""The UDP tracker (BEP 15), serving the same :class:`TrackerState` as the HTTP routes.

Theory of operation
-------------------
:class:`UdpTrackerHandler` turns one datagram into at most one reply, synchronously; the
asyncio shell only moves bytes. Announces and scrapes go through the HTTP tracker's state,
so swarms, numwant caps, intervals, peer expiry and the allow-list are the same whichever
protocol a peer speaks.

Connection ids need no per-client state and cannot be forged: each is an HMAC, under a key
drawn at start, of the client's IP address and the current minute, and an id is accepted
during that minute and the two after it (at least two minutes, as opentracker does; BEP 15
asks clients to use one for one minute only). Nothing is amplified: a connect, the only
request answered without a valid id, gets 16 bytes for its 16; an announce or scrape with
a bad id gets nothing; an error reply is never longer than the request it answers.
Malformed datagrams are dropped and counted, never logged one by one. Connects are
budgeted per source address (a token bucket; the excess is dropped unanswered, as a
spoofed source deserves); announces share the HTTP tracker's per-address budget, and one
over it gets a BEP 15 error.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import random
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web

from hubswarm import net
from hubswarm.clock import Clock
from hubswarm.errors import ConfigError, TrackerError
from hubswarm.hub.tracker import TrackerState
from hubswarm.limits import (
    TRACKER_BUDGET_ADDRESSES,
    TRACKER_DEFAULT_NUMWANT,
    TRACKER_MAX_SCRAPE,
    TRACKER_UDP_CONNECT_BURST,
    TRACKER_UDP_CONNECTS_PER_SECOND,
)
from hubswarm.proto import tracker
from hubswarm.proto import udp_tracker as udp
from hubswarm.proto.compact import normalise_ip
from hubswarm.proto.tracker import ScrapeFile
from hubswarm.ratelimit import KeyedBuckets, address_key

__all__ = [
    "ConnectionIds",
    "UdpTrackerHandler",
    "UdpTrackerServer",
    "UdpTrackerStats",
    "add_udp_tracker",
    "running_udp_tracker",
]

log = logging.getLogger(__name__)

# Longest request read: a full scrape (16 + 74 * 20 bytes) with room for BEP 41 options
# after an announce; anything longer is not BEP 15.
MAX_REQUEST = 2048
# Peers in one IPv6 reply: (1500 - 40 - 8 - 20) // 18, so it fits an Ethernet frame
# unfragmented. IPv4 replies (6 bytes a peer) stay under it at the HTTP cap (200 peers).
MAX_PEERS_V6 = 79
# Connection ids: one window a minute, accepted for the window they were made in and the two
# after it.
ID_WINDOW = 60.0
ID_WINDOWS_ACCEPTED = 3


class ConnectionIds:
    """Stateless, unforgeable connection ids: HMAC-SHA-256(key, ip, minute), 64 bits."""

    def __init__(self, key: bytes, *, window: float = ID_WINDOW) -> None:
        if len(key) < 16:
            raise ConfigError("connection id key needs at least 16 bytes")
        self._key = key
        self.window = window

    def _make(self, ip: str, index: int) -> int:
        message = ipaddress.ip_address(ip).packed + index.to_bytes(8, "big", signed=True)
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return int.from_bytes(digest[:8], "big")

    def issue(self, ip: str, now: float) -> int:
        """The id for ``ip`` now."""
        return self._make(ip, int(now // self.window))

    def valid(self, connection_id: int, ip: str, now: float) -> bool:
        """True if ``connection_id`` was issued to ``ip`` within the accepted windows."""
        index = int(now // self.window)
        return any(
            hmac.compare_digest(
                self._make(ip, index - age).to_bytes(8, "big"), connection_id.to_bytes(8, "big")
            )
            for age in range(ID_WINDOWS_ACCEPTED)
        )


@dataclass(slots=True)
class UdpTrackerStats:
    """Counters of one UDP tracker (for tests, logs and the lab)."""

    received: int = 0
    connects: int = 0
    announces: int = 0
    scrapes: int = 0
    errors: int = 0  # error replies sent
    malformed: int = 0  # dropped: not BEP 15
    bad_connection_id: int = 0  # dropped: unknown, expired or forged connection id
    connects_limited: int = 0  # dropped: over the source address's connect budget


class UdpTrackerHandler:
    """Datagram in, reply (or None) out; time passed in, no I/O."""

    def __init__(
        self,
        state: TrackerState,
        ids: ConnectionIds,
        *,
        connects_per_second: float | None = TRACKER_UDP_CONNECTS_PER_SECOND,
        connect_burst: int = TRACKER_UDP_CONNECT_BURST,
    ) -> None:
        """``connects_per_second`` None or 0: connects are not budgeted."""
        self.state = state
        self.ids = ids
        self.stats = UdpTrackerStats()
        self.connect_budgets = (
            KeyedBuckets(connects_per_second, connect_burst, TRACKER_BUDGET_ADDRESSES)
            if connects_per_second
            else None
        )

    def handle(self, data: bytes, source: tuple[str, int], now: float) -> bytes | None:
        """The reply to ``data`` from ``source``, or None to send nothing."""
        self.stats.received += 1
        try:
            ip = normalise_ip(source[0])
        except ValueError:
            self.stats.malformed += 1
            return None
        if len(data) > MAX_REQUEST:
            self.stats.malformed += 1
            return None
        try:
            request = udp.parse_request(data)
        except TrackerError:
            self.stats.malformed += 1
            return None
        if isinstance(request, udp.ConnectRequest):
            budgets = self.connect_budgets
            if budgets is not None and not budgets.allow(address_key(ip), now):
                self.stats.connects_limited += 1
                return None
            self.stats.connects += 1
            return udp.ConnectResponse(request.transaction_id, self.ids.issue(ip, now)).encode()
        if not self.ids.valid(request.connection_id, ip, now):
            self.stats.bad_connection_id += 1
            return None
        try:
            if isinstance(request, udp.AnnounceRequest):
                self.stats.announces += 1
                return self._announce(request, ip, now).encode()
            self.stats.scrapes += 1
            return self._scrape(request, now).encode()
        except TrackerError as exc:
            self.stats.errors += 1
            reply = udp.ErrorResponse(request.transaction_id, str(exc))
            return reply.encode(limit=len(data) - 8)  # never more than the request

    def _announce(self, request: udp.AnnounceRequest, ip: str, now: float) -> udp.AnnounceResponse:
        ipv6 = ":" in ip  # BEP 15: a request over IPv6 gets 18-byte peers
        numwant = TRACKER_DEFAULT_NUMWANT if request.numwant is None else request.numwant
        if ipv6:
            numwant = min(numwant, MAX_PEERS_V6)
        http_request = tracker.AnnounceRequest(
            info_hash=request.info_hash,
            peer_id=request.peer_id,
            port=request.port,
            uploaded=request.uploaded,
            downloaded=request.downloaded,
            left=request.left,
            event=request.event.text,
            numwant=numwant,
            ip=request.ip_text,
            key=request.key.to_bytes(4, "big"),
        )
        response = self.state.announce(http_request, ip, now)
        # One family per reply (BEP 15 has no peers6): the one the request came over.
        peers = tuple(p for p in response.peers if (":" in p[0]) == ipv6)
        return udp.AnnounceResponse(
            transaction_id=request.transaction_id,
            interval=self.state.interval,
            leechers=min(response.incomplete or 0, 2**32 - 1),
            seeders=min(response.complete or 0, 2**32 - 1),
            peers=peers,
            ipv6=ipv6,
        )

    def _scrape(self, request: udp.ScrapeRequest, now: float) -> udp.ScrapeResponse:
        if len(request.info_hashes) > TRACKER_MAX_SCRAPE:
            raise TrackerError(f"more than {TRACKER_MAX_SCRAPE} info_hashes in one scrape")
        files = self.state.scrape(request.info_hashes, now).files
        none = ScrapeFile(0, 0, 0)
        # BEP 15 answers by position: an unknown torrent is all zeros.
        entries = tuple(files.get(h, none) for h in request.info_hashes)
        return udp.ScrapeResponse(request.transaction_id, entries)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, handler: UdpTrackerHandler, clock: Clock) -> None:
        self.handler = handler
        self.clock = clock
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The kernel's UDP transport is not an asyncio.DatagramTransport subclass in 3.11.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            source = (str(addr[0]), int(addr[1]))
        except (TypeError, ValueError, IndexError):
            self.handler.stats.malformed += 1
            return
        reply = self.handler.handle(bytes(data), source, self.clock.now())
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP tracker socket: %s", exc)  # ICMP from a client gone away


@dataclass(frozen=True, slots=True)
class UdpTrackerServer:
    """A running UDP tracker: where it listens and what it counted."""

    address: tuple[str, int]
    handler: UdpTrackerHandler

    @property
    def stats(self) -> UdpTrackerStats:
        return self.handler.stats

    @property
    def url(self) -> str:
        """The announce URL clients put in torrents."""
        host, port = self.address
        shown = f"[{host}]" if ":" in host else host
        return f"udp://{shown}:{port}/announce"


@contextlib.asynccontextmanager
async def running_udp_tracker(
    state: TrackerState,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    network: net.DatagramNetwork | None = None,
    rng: random.Random | None = None,
) -> AsyncIterator[UdpTrackerServer]:
    """Serve ``state`` over UDP on ``host:port`` (0: a free port) while the block runs.

    ``rng`` draws the connection-id key (None: from the OS); time is ``state.clock``.

    Raises:
        ConfigError: the address cannot be bound.
    """
    key = rng.randbytes(32) if rng is not None else secrets.token_bytes(32)
    handler = UdpTrackerHandler(state, ConnectionIds(key))
    binder = network if network is not None else net.TcpNetwork()
    try:
        transport, _ = await binder.bind(lambda: _Protocol(handler, state.clock), host, port)
    except OSError as exc:
        raise ConfigError(f"cannot listen on UDP {host}:{port}: {exc.strerror or exc}") from exc
    try:
        sockname = transport.get_extra_info("sockname")
        yield UdpTrackerServer((str(sockname[0]), int(sockname[1])), handler)
    finally:
        transport.close()
        s = handler.stats
        log.info(
            "UDP tracker: %d datagrams, %d malformed, %d with a bad connection id, "
            "%d connects over budget",
            s.received,
            s.malformed,
            s.bad_connection_id,
            s.connects_limited,
        )


def add_udp_tracker(
    app: web.Application,
    state: TrackerState,
    host: str,
    port: int,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve ``state`` over UDP too while ``app`` runs; ``ready`` gets the announce URL."""

    async def udp_tracker(app: web.Application) -> AsyncIterator[None]:
        async with running_udp_tracker(state, host, port) as server:
            if ready is not None:
                ready(server.url)
            yield

    app.cleanup_ctx.append(udp_tracker)
