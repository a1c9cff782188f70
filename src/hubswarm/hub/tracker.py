"""The BitTorrent tracker (BEP 3 announce, BEP 48 scrape) as aiohttp routes.

:class:`TrackerState` holds the swarms and decides every reply; it takes ``now`` and a seeded
``random.Random`` so that tests drive it without a clock. The routes are thin: they parse the
RAW query (aiohttp's ``request.query`` would turn ``%FF`` into U+FFFD), call the state and
always answer 200 with bencode; a bad request gets a ``failure reason`` (BEP 3), never a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from hubswarm.clock import Clock
from hubswarm.errors import ConfigError, TrackerError
from hubswarm.limits import (
    TRACKER_ANNOUNCES_PER_ADDRESS,
    TRACKER_BUDGET_ADDRESSES,
    TRACKER_DEFAULT_INTERVAL,
    TRACKER_DEFAULT_NUMWANT,
    TRACKER_MAX_PEERS_PER_SWARM,
    TRACKER_MAX_PEERS_TOTAL,
    TRACKER_MAX_SWARMS,
)
from hubswarm.oplog import ServerLog, ThrottledLog
from hubswarm.proto.tracker import (
    HASH_LEN,
    AnnounceRequest,
    AnnounceResponse,
    ScrapeFile,
    ScrapeRequest,
    ScrapeResponse,
    encode_failure,
    parse_query,
)
from hubswarm.ratelimit import KeyedBuckets, address_key

__all__ = [
    "PeerRecord",
    "TrackerConfig",
    "TrackerState",
    "add_tracker_routes",
    "create_tracker_app",
    "load_allowed",
    "run_tracker",
    "tracker_state_key",
]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PeerRecord:
    """What the tracker remembers of one peer in one swarm."""

    peer_id: bytes
    ip: str
    port: int
    left: int
    last_seen: float
    completed: bool = False

    @property
    def is_seed(self) -> bool:
        """A peer with nothing left to download (BEP 3 ``left=0``)."""
        return self.left == 0


@dataclass(slots=True)
class _Swarm:
    peers: dict[bytes, PeerRecord]  # by peer_id
    by_addr: dict[tuple[str, int], bytes]  # (ip, port) -> peer_id
    downloaded: int = 0


def _canonical_ip(text: str) -> str | None:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


class TrackerState:
    """Swarms by info-hash, with expiry and memory caps; time and randomness injected.

    Peers that do not re-announce within ``2 * interval`` are dropped. ``allowed`` (if not None)
    is the set of info-hashes served (BEP 27 private torrents need a closed tracker).
    Each source address may announce ``announces_per_address`` times per interval (a token
    bucket of that burst; None or 0: no limit); beyond it the announce fails and nothing
    is stored.
    """

    def __init__(
        self,
        *,
        interval: int = TRACKER_DEFAULT_INTERVAL,
        min_interval: int | None = None,
        rng: random.Random | None = None,
        clock: Clock | None = None,
        allowed: Iterable[bytes] | None = None,
        trust_ip_param: bool = False,
        max_swarms: int = TRACKER_MAX_SWARMS,
        max_peers_per_swarm: int = TRACKER_MAX_PEERS_PER_SWARM,
        max_peers_total: int = TRACKER_MAX_PEERS_TOTAL,
        announces_per_address: int | None = TRACKER_ANNOUNCES_PER_ADDRESS,
    ) -> None:
        if interval < 1:
            raise ConfigError("tracker interval must be at least 1 s")
        if announces_per_address is not None and announces_per_address < 0:
            raise ConfigError("announces per address must be >= 0 (0: no limit)")
        self.interval = interval
        self.min_interval = min_interval
        self.rng = rng if rng is not None else random.Random()
        # Read by the HTTP shell only (default: the running loop's); the methods take `now`.
        self.clock = clock if clock is not None else Clock()
        self.allowed = frozenset(allowed) if allowed is not None else None
        self.trust_ip_param = trust_ip_param
        self.max_swarms = max_swarms
        self.max_peers_per_swarm = max_peers_per_swarm
        self.max_peers_total = max_peers_total
        self._swarms: dict[bytes, _Swarm] = {}
        self._total_peers = 0
        # Per-address announce budgets: the burst refills over one interval.
        self.budgets = (
            KeyedBuckets(
                announces_per_address / interval, announces_per_address, TRACKER_BUDGET_ADDRESSES
            )
            if announces_per_address
            else None
        )
        self.rate_limited = 0  # announces refused for their address's budget

    # --- queries ------------------------------------------------------------------------

    @property
    def ttl(self) -> float:
        """How long a peer stays listed without announcing: two intervals."""
        return 2.0 * self.interval

    def peers(self, info_hash: bytes, now: float | None = None) -> list[PeerRecord]:
        """The live peers of a swarm (for tests, the CLI and the lab)."""
        swarm = self._swarms.get(info_hash)
        if swarm is None:
            return []
        if now is not None:
            self._expire(swarm, now)
        return list(swarm.peers.values())

    @property
    def swarm_count(self) -> int:
        """Number of swarms currently held."""
        return len(self._swarms)

    # --- bookkeeping --------------------------------------------------------------------

    def _remove(self, swarm: _Swarm, peer_id: bytes) -> None:
        record = swarm.peers.pop(peer_id, None)
        if record is not None:
            swarm.by_addr.pop((record.ip, record.port), None)
            self._total_peers -= 1

    def _expire(self, swarm: _Swarm, now: float) -> None:
        deadline = now - self.ttl
        for peer_id in [p for p, r in swarm.peers.items() if r.last_seen < deadline]:
            self._remove(swarm, peer_id)

    def _sweep(self, now: float) -> None:
        """Expire every swarm and drop empty ones (run only when a cap is reached)."""
        for info_hash in list(self._swarms):
            swarm = self._swarms[info_hash]
            self._expire(swarm, now)
            if not swarm.peers:
                del self._swarms[info_hash]

    def _check_allowed(self, info_hash: bytes) -> None:
        if self.allowed is not None and info_hash not in self.allowed:
            raise TrackerError("unregistered torrent")

    # --- the protocol ---------------------------------------------------------------------

    def announce(self, req: AnnounceRequest, peer_ip: str, now: float) -> AnnounceResponse:
        """Record one announce from ``peer_ip`` and choose peers to return.

        Raises:
            TrackerError: too many announces from ``peer_ip``, unregistered torrent, unusable
                address, or the tracker is full.
        """
        # The connecting address pays, whatever `ip` the request names; checked before
        # anything is looked at or stored.
        if self.budgets is not None:
            key = address_key(peer_ip)
            if not self.budgets.allow(key, now):
                self.rate_limited += 1
                wait = math.ceil(self.budgets.retry_after(key, now))
                raise TrackerError(f"too many announces from this address; retry in {wait} s")
        self._check_allowed(req.info_hash)
        ip = _canonical_ip(peer_ip)
        if self.trust_ip_param and req.ip is not None:
            # Only for labs behind NAT (`--trust-ip-param`): otherwise anyone could list
            # a victim's address in a swarm (BEP 3 leaves this to the tracker).
            ip = _canonical_ip(req.ip)
        if ip is None:
            raise TrackerError("cannot determine a usable peer address")

        swarm = self._swarms.get(req.info_hash)
        if swarm is None:
            if req.event == "stopped":
                return AnnounceResponse(
                    interval=self.interval,
                    min_interval=self.min_interval,
                    complete=0,
                    incomplete=0,
                )
            if len(self._swarms) >= self.max_swarms:
                self._sweep(now)
                if len(self._swarms) >= self.max_swarms:
                    raise TrackerError("tracker is full (too many torrents)")
            swarm = _Swarm(peers={}, by_addr={})
            self._swarms[req.info_hash] = swarm
        self._expire(swarm, now)

        if req.event == "stopped":
            self._remove(swarm, req.peer_id)
            candidates: list[PeerRecord] = []
        else:
            self._upsert(swarm, req, ip, now)
            candidates = [
                r
                for r in swarm.peers.values()
                if r.peer_id != req.peer_id and (r.ip, r.port) != (ip, req.port)
            ]
        numwant = TRACKER_DEFAULT_NUMWANT if req.numwant is None else req.numwant
        chosen = self.rng.sample(candidates, min(numwant, len(candidates)))
        complete = sum(1 for r in swarm.peers.values() if r.is_seed)
        response = AnnounceResponse(
            interval=self.interval,
            min_interval=self.min_interval,
            complete=complete,
            incomplete=len(swarm.peers) - complete,
            peers=tuple((r.ip, r.port) for r in chosen),
        )
        if not swarm.peers and swarm.downloaded == 0:
            del self._swarms[req.info_hash]
        return response

    def _upsert(self, swarm: _Swarm, req: AnnounceRequest, ip: str, now: float) -> None:
        record = swarm.peers.get(req.peer_id)
        addr = (ip, req.port)
        # A new peer_id at a known address is the same client restarted: replace it.
        old_id = swarm.by_addr.get(addr)
        if old_id is not None and old_id != req.peer_id:
            self._remove(swarm, old_id)
        if record is None:
            if len(swarm.peers) >= self.max_peers_per_swarm:
                return  # answered, but not listed: the swarm has enough peers to share
            if self._total_peers >= self.max_peers_total:
                self._sweep(now)
                if self._total_peers >= self.max_peers_total:
                    return
            record = PeerRecord(
                peer_id=req.peer_id, ip=ip, port=req.port, left=req.left, last_seen=now
            )
            swarm.peers[req.peer_id] = record
            self._total_peers += 1
        else:
            swarm.by_addr.pop((record.ip, record.port), None)
            record.ip, record.port, record.left, record.last_seen = ip, req.port, req.left, now
        swarm.by_addr[addr] = req.peer_id
        # BEP 3: `completed` is sent once when the download finishes; count it once per peer.
        if req.event == "completed" and not record.completed:
            record.completed = True
            swarm.downloaded += 1

    def scrape(self, info_hashes: Iterable[bytes], now: float) -> ScrapeResponse:
        """Counts for each known info-hash (BEP 48); unknown ones are left out."""
        files: dict[bytes, ScrapeFile] = {}
        for info_hash in info_hashes:
            if self.allowed is not None and info_hash not in self.allowed:
                continue
            swarm = self._swarms.get(info_hash)
            if swarm is None:
                continue
            self._expire(swarm, now)
            if not swarm.peers and swarm.downloaded == 0:
                del self._swarms[info_hash]  # forgotten, as announce would have done
                continue
            complete = sum(1 for r in swarm.peers.values() if r.is_seed)
            files[info_hash] = ScrapeFile(
                complete=complete,
                downloaded=swarm.downloaded,
                incomplete=len(swarm.peers) - complete,
            )
        return ScrapeResponse(files)


# --- HTTP shell -----------------------------------------------------------------------------

tracker_state_key = web.AppKey("hubswarm_tracker_state", TrackerState)


def _bencoded(body: bytes) -> web.Response:
    # BEP 3 practice: errors are 200 with a failure reason, which every client shows to users.
    return web.Response(body=body, content_type="text/plain", headers={"Cache-Control": "no-store"})


def add_tracker_routes(app: web.Application, state: TrackerState) -> None:
    """Add ``GET /announce`` and ``GET /scrape`` served from ``state`` to ``app``."""
    app[tracker_state_key] = state

    async def announce(request: web.Request) -> web.Response:
        try:
            req = parse_query(request.rel_url.raw_query_string)
            response = state.announce(req, request.remote or "", state.clock.now())
        except TrackerError as exc:
            return _bencoded(encode_failure(str(exc)))
        return _bencoded(response.encode(compact=req.compact))

    async def scrape(request: web.Request) -> web.Response:
        try:
            scrape_req = ScrapeRequest.parse_query(request.rel_url.raw_query_string)
            response = state.scrape(scrape_req.info_hashes, state.clock.now())
        except TrackerError as exc:
            return _bencoded(encode_failure(str(exc)))
        return _bencoded(response.encode())

    app.router.add_get("/announce", announce)
    app.router.add_get("/scrape", scrape)


@dataclass(frozen=True, slots=True)
class TrackerConfig:
    """Settings of the standalone tracker (``hubswarm tracker``)."""

    host: str = "127.0.0.1"
    port: int = 6969
    interval: int = TRACKER_DEFAULT_INTERVAL
    min_interval: int | None = None
    trust_ip_param: bool = False
    allowed: frozenset[bytes] | None = None
    udp_port: int | None = None  # also serve BEP 15 here (0: a free port); None: HTTP only
    # Announces per address per interval (TrackerState); None or 0: no limit.
    announces_per_address: int | None = TRACKER_ANNOUNCES_PER_ADDRESS


def load_allowed(path: Path) -> frozenset[bytes]:
    """Read an allow-list: one 40-hex info-hash per line, ``#`` comments and blanks ignored.

    Raises:
        ConfigError: unreadable file or a line that is not a hex info-hash.
    """
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    hashes = set()
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        try:
            value = bytes.fromhex(entry)
        except ValueError:
            value = b""
        if len(value) != HASH_LEN:
            raise ConfigError(f"{path}:{number}: not a 40-hex-digit info-hash")
        hashes.add(value)
    return frozenset(hashes)


def create_tracker_app(
    config: TrackerConfig,
    *,
    rng: random.Random | None = None,
    clock: Clock | None = None,
) -> web.Application:
    """An aiohttp application that is only a tracker."""
    app = web.Application()
    state = TrackerState(
        interval=config.interval,
        min_interval=config.min_interval,
        rng=rng,
        clock=clock,
        allowed=config.allowed,
        trust_ip_param=config.trust_ip_param,
        announces_per_address=config.announces_per_address,
    )
    add_tracker_routes(app, state)
    return app


async def run_tracker(
    config: TrackerConfig,
    stop: asyncio.Event,
    *,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the standalone tracker until ``stop`` is set; ``ready`` gets the announce URL.

    Raises:
        ConfigError: the address cannot be bound.
    """
    app = create_tracker_app(config)
    # Malformed requests and disconnects: one throttled line each, no traceback (issue 21).
    throttled = ThrottledLog(log, app[tracker_state_key].clock.now)
    server_log = ServerLog(throttled, logging.getLogger("aiohttp.server"))
    runner = web.AppRunner(app, handle_signals=False, logger=server_log)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(f"cannot listen on {config.host}:{config.port}: {exc}") from exc
        host, port = runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in host else host
        if ready is not None:
            ready(f"http://{shown}:{port}/announce")
        async with contextlib.AsyncExitStack() as stack:
            if config.udp_port is not None:
                from hubswarm.hub.udp_tracker import running_udp_tracker  # imports this module

                state, udp_port = app[tracker_state_key], config.udp_port
                udp = await stack.enter_async_context(
                    running_udp_tracker(state, config.host, udp_port)
                )
                if ready is not None:
                    ready(udp.url)
            await stop.wait()
    finally:
        await runner.cleanup()
