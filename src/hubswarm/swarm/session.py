"""One torrent in the swarm: peers, piece picking, choking, trackers, web seeds, metadata.

Theory of operation
-------------------
A :class:`TorrentSession` is an ``async with`` object that owns one ``asyncio.TaskGroup``:
the tracker announce loop, the DHT loop (when a DHT node is given and the torrent is not
private, BEP 27), the dialer that keeps up to ``max_peers`` connections, the choke round,
the request-timeout sweep, one worker per web seed, and one task per peer link.

Connections accepted by the listener (``SwarmPeer``) run in the same group through
``run_incoming``. Every task is wrapped by ``_guard``: a bug in one link or loop is logged
and ends only that task (a critical loop fails the session with a one-line error instead);
``_stop`` announces ``stopped``, closes the links, cancels every task and closes the store.

Decisions are made synchronously by pure code (``PiecePicker``, ``Choker``) and then the
I/O is done (messages written to links, blocks read or written by ``PieceStore`` in
worker threads). Every piece is SHA-1 checked before it is written or announced with
``have``; peers lose trust points for bad pieces they contributed to (more when they sent
it alone) and are disconnected and banned (address and peer_id) at ``TRUST_BAN``.

Peers that went away are dialled again with a doubling back-off (``reconnect_min`` ..
``reconnect_max``), so a seed that restarts on the same port is found again.

A magnet link starts the session without an info dict: links fetch the metadata with
``ut_metadata`` (BEP 9), the info dict is checked against the info-hash, and then the
storage and the picker are set up and the download proceeds as for a .torrent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hubswarm import __version__
from hubswarm.errors import (
    ConfigError,
    HubswarmError,
    LocalProtocolError,
    MetainfoError,
    RemoteProtocolError,
    StorageError,
    SwarmError,
    TrackerError,
)
from hubswarm.limits import BLOCK_SIZE, HANDSHAKE_TIMEOUT
from hubswarm.proto import wire
from hubswarm.proto.metainfo import InfoDict, parse_info
from hubswarm.proto.tracker import AnnounceRequest
from hubswarm.proto.wire_events import (
    AllowedFast,
    Cancel,
    Choke,
    Event,
    ExtendedHandshake,
    Have,
    HaveAll,
    HaveNone,
    Interested,
    MetadataData,
    MetadataReject,
    MetadataRequest,
    NotInterested,
    PeerExchange,
    Piece,
    Reject,
    Request,
    Unchoke,
    metadata_piece_count,
)
from hubswarm.proto.wire_events import (
    Bitfield as BitfieldMsg,
)
from hubswarm.ratelimit import RateLimiter
from hubswarm.swarm.bitfield import Bitfield
from hubswarm.swarm.choker import Choker, PeerStats
from hubswarm.swarm.http import LazyHttp
from hubswarm.swarm.peer import (
    PeerLink,
    RateMeter,
    open_stream,
    read_handshake,
)
from hubswarm.swarm.picker import BlockRequest, PiecePicker, request_queue_depth
from hubswarm.swarm.storage import PieceStore
from hubswarm.swarm.superseed import Announce, SuperSeeder

log = logging.getLogger(__name__)

# Trust points, as libtorrent's (peer_connection::received_invalid_data): a peer earns one per
# good piece it contributed to (up to TRUST_MAX) and loses TRUST_SHARED_PENALTY per bad piece it
# shared with others, TRUST_SOLE_PENALTY when it alone sent the bad piece. At TRUST_BAN or below
# it is banned: two bad pieces of its own, or about four shared ones without good work between.
# (One honest mistake is forgiven; a peer flipping bytes in every block fails every piece.)
TRUST_MAX = 8
TRUST_SHARED_PENALTY = 2
TRUST_SOLE_PENALTY = 4
TRUST_BAN = -7
# Haves remembered per peer before the metadata tells the piece count (magnet): a honest peer
# has at most one per piece; 2**20 pieces cover any torrent our metadata cap admits.
MAX_PENDING_HAVES = 1 << 20
# Pieces kept in memory for uploads: each upload request for a block of a cached piece
# is served without a disk read (one read per piece instead of one per 16 KiB block).
UPLOAD_CACHE_PIECES = 16
# How often a super-seed reads its links' acknowledged bytes while written blocks wait:
# 10 ms is a third of a 32 KiB piece at 1 MiB/s.
DELIVERY_POLL = 0.01
# Requests kept in flight to a peer before its rate is known (libtorrent starts slow-start
# at a few requests and grows; 64 x 16 KiB = 1 MiB in flight fills a loopback link at once).
INITIAL_QUEUE_DEPTH = 64
# Our local extension id for ut_metadata (BEP 10: ids are chosen by the receiver).
UT_METADATA_ID = 1
UT_PEX_ID = 2
# BEP 11: at most one ut_pex message a minute to a peer, at most 50 added and 50 dropped
# peers in one. The first goes as soon as there is a peer to tell of.
PEX_INTERVAL = 60.0
PEX_MAX_SEND = 50
PEX_REACHABLE = 0x10  # BEP 11 flag: we dialled this peer, so it accepts connections
# A peer's ut_pex messages closer together than this are ignored (it breaks BEP 11's rate).
PEX_MIN_GAP = 10.0
# Addresses kept to dial (trackers, DHT, PEX, magnets): a bound on what peers can make us
# hold; newer ones are dropped when full (libtorrent: max_peerlist_size = 3000).
MAX_CANDIDATES = 2000
# Seconds between retries of an unreachable peer address, doubling up to the maximum.
RETRY_MIN, RETRY_MAX = 2.0, 60.0
# First DHT re-lookup once connected (seconds), doubling up to the announce interval: peers
# of a flash crowd announce just after each other's first lookup, the second one finds them.
DHT_RAMP_FIRST = 0.25
# Lookups in a row that bring nobody new before the ramp ends: after only one, a lookup that
# came before the others' announces ended it (lab, N = 8: 4 peers never met, 1.8x the bound).
DHT_RAMP_EMPTY = 2
DHT_RAMP_DONE = 16  # 0.25 s * 2**16: past any interval, i.e. the steady one


def make_peer_id(rng: random.Random | None = None) -> bytes:
    """An Azureus-style peer id: ``-HS0100-`` and 12 random characters."""
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    pick = rng.choice if rng is not None else secrets.choice
    return b"-HS0100-" + "".join(pick(alphabet) for _ in range(12)).encode()


class DHTLike(Protocol):
    """What the session needs from a DHT node (``hubswarm.swarm.dht``)."""

    async def get_peers(self, info_hash: bytes) -> list[tuple[str, int]]: ...

    async def get_peers_and_announce(
        self, info_hash: bytes, port: int, found: Callable[[list[tuple[str, int]]], None]
    ) -> Any: ...


@dataclass(slots=True)
class SessionConfig:
    """Knobs of one peer process; intervals are configurable so the lab can run in seconds."""

    peer_id: bytes = field(default_factory=make_peer_id)
    listen_port: int = 0
    max_peers: int = 50
    upload_rate: float | None = None  # bytes/s, all peers together
    download_rate: float | None = None
    peer_upload_rate: float | None = None  # bytes/s per peer
    unchoke_slots: int = 4
    choke_interval: float = 10.0
    optimistic_interval: float = 30.0
    snub_timeout: float = 60.0
    request_timeout: float = 30.0
    connect_timeout: float = 5.0
    announce_interval: float | None = None  # override the tracker's interval
    # Steady DHT re-lookup interval once peers are connected (None: announce_interval, else
    # 5 min). Each lookup is ~10 KRPC round trips that every node on the way decodes.
    dht_interval: float | None = None
    numwant: int = 50
    webseed_mode: str = "fallback"  # "fallback": only pieces no peer has; "always"; "off"
    webseed_workers: int = 2
    seed: bool = True  # keep seeding after completion
    use_dht: bool = True
    use_pex: bool = True  # peer exchange (BEP 11); never for a private torrent (BEP 27)
    announce_ip: str | None = None  # the tracker `ip` parameter (lab behind addresses)
    corrupt_uploads: bool = False  # lab fault: this peer serves corrupt blocks
    rng_seed: int | None = None
    # Requests kept in flight per peer: at least initial_queue_depth, else rate x queue time
    # (libtorrent: request_queue_time = 3 s).
    initial_queue_depth: int = INITIAL_QUEUE_DEPTH
    request_queue_time: float = 3.0
    reconnect_min: float = RETRY_MIN  # first delay before re-dialling a peer that went away
    reconnect_max: float = RETRY_MAX  # the delay doubles per failure up to this
    # A seed unchokes this many interested peers at a time, in turn (round-robin, one turn
    # per choke round) instead of the fastest ones; None: the choker's rule. Few slots make
    # each peer pick what to ask the seed when its turn comes, so the seed's upload goes to
    # pieces the swarm lacks (the aim of BEP 16 super-seeding) instead of duplicates.
    seed_unchoke_slots: int | None = None
    # BEP 16 super-seeding while we are a seed that started as one (share): offer each peer
    # a few pieces at a time instead of a full bitfield, so each piece leaves us about once.
    super_seed: bool = False


@dataclass(slots=True)
class TorrentStats:
    """Counters for the CLI and the lab (bytes are payload bytes)."""

    started_at: float = 0.0
    completed_at: float | None = None
    downloaded_from_peers: int = 0
    downloaded_from_webseeds: int = 0
    uploaded: int = 0
    bad_pieces: int = 0
    banned: int = 0
    pieces_from_webseeds: int = 0
    # Super-seeding (BEP 16): bytes uploaded when every piece was on some peer.
    uploaded_at_superseed_done: int | None = None


class TorrentSession:
    """Download and/or seed one torrent; ``async with`` runs it, leaving stops it."""

    def __init__(
        self,
        info_hash: bytes,
        out_dir: Path,
        config: SessionConfig,
        *,
        info: InfoDict | None = None,
        trackers: Iterable[Iterable[str]] = (),
        web_seeds: Iterable[str] = (),
        peers: Iterable[tuple[str, int]] = (),
        dht: DHTLike | None = None,
        http: LazyHttp | None = None,
        events_path: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        seed_mode: bool = False,
    ) -> None:
        """``seed_mode``: the data was hashed moments ago (``share`` just made the torrent):
        adopt every piece without a recheck, each is hashed on its first upload instead."""
        self.info_hash = info_hash
        self.seed_mode = seed_mode
        self.out_dir = Path(out_dir)
        self.config = config
        self.info = info
        self.trackers = [list(t) for t in trackers if t]
        self.web_seeds = list(web_seeds)
        self.dht = dht
        self.clock = clock
        self.rng = random.Random(config.rng_seed)
        self.stats = TorrentStats()
        self.links: set[PeerLink] = set()
        self.store: PieceStore | None = None
        self.picker: PiecePicker | None = None
        self.choker = Choker(
            rng=self.rng,
            slots=config.unchoke_slots,
            choke_interval=config.choke_interval,
            optimistic_interval=config.optimistic_interval,
            snub_timeout=config.snub_timeout,
        )
        self.upload_limiter = RateLimiter(config.upload_rate)
        self.download_limiter = RateLimiter(config.download_rate)
        self.listen_port = config.listen_port
        self.complete = asyncio.Event()
        self.metadata_ready = asyncio.Event()
        self.upload_meter = RateMeter()
        self.download_meter = RateMeter()
        self._candidates: dict[tuple[str, int], float] = {}  # address -> next attempt at
        self._retry_after: dict[tuple[str, int], float] = {}
        self._connecting: set[tuple[str, int]] = set()
        self._banned: set[str] = set()
        self._banned_addresses: set[tuple[str, int]] = set()
        self._self_addresses: set[tuple[str, int]] = set()
        self._banned_peer_ids: set[bytes] = set()
        self._trust: dict[tuple[str, int], int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.error: HubswarmError | None = None
        self._failed = asyncio.Event()
        self._metadata: wire.MetadataAssembler | None = None
        self._setup_lock = asyncio.Lock()
        self._upload_cache: dict[int, bytes] = {}
        self._tg: asyncio.TaskGroup | None = None
        # Trackers and web seeds only: opened (and aiohttp imported) on first use.
        self._http = http if http is not None else LazyHttp()
        self._own_http = http is None
        self._wake_dialer = asyncio.Event()
        # Created by _mark_complete when we start complete with config.super_seed (BEP 16).
        self._superseed: SuperSeeder | None = None
        self._superseed_pruned_at = 0.0
        # Super-seeding: blocks written to each link, by the stream offset where they end,
        # until the peer's TCP acknowledged them (see _watch_deliveries).
        self._undelivered: dict[PeerLink, deque[tuple[int, list[Request]]]] = {}
        self._delivery_watch: asyncio.Task[None] | None = None
        try:
            self._events_file = events_path.open("a") if events_path is not None else None
        except OSError as exc:
            raise ConfigError(f"cannot open {events_path}: {exc.strerror or exc}") from exc
        for address in peers:
            self.add_peer(address)

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> TorrentSession:
        self.stats.started_at = time.time()
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        try:
            if self.info is not None:
                await self._setup(self.info)
            self._spawn(self._dialer(), critical=True)
            self._spawn(self._ticker(), critical=True)
            if self.trackers:
                self._spawn(self._announce_loop())
            if self.dht is not None and self.config.use_dht and not self._private:
                self._spawn(self._dht_loop())
            if self.config.webseed_mode != "off":
                for url in self.web_seeds:
                    for n in range(self.config.webseed_workers):
                        self._spawn(self._webseed_worker(url, n))
        except BaseException:
            await self._stop()
            raise
        return self

    def _spawn(
        self, coro: Coroutine[Any, Any, None], *, critical: bool = False
    ) -> asyncio.Task[None]:
        """Start a task in the session's group; remembered so that ``_stop`` can cancel it.

        A bug (an unexpected exception) in a task must not cancel the whole group: it is
        logged; in a ``critical`` loop (dialer, ticker) it fails the session instead.
        """
        if self._tg is None or self._stopping:
            coro.close()
            raise LocalProtocolError("session is not running")
        task = self._tg.create_task(self._guard(coro, critical))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        # A task cancelled before its first step never awaited ``coro``: close it (no warning).
        task.add_done_callback(lambda _: coro.close())
        return task

    async def _guard(self, coro: Coroutine[Any, Any, None], critical: bool) -> None:
        try:
            await coro
        except HubswarmError as exc:
            log.info("task ended: %s", exc)
            if critical:
                self.fail(exc)
        except Exception as exc:
            log.error("internal error in a session task", exc_info=exc)
            if critical:
                self.fail(SwarmError(f"internal error: {type(exc).__name__}: {exc}"))

    def fail(self, error: HubswarmError) -> None:
        """A fatal error (disk full, ...): ``wait_complete`` raises it."""
        if self.error is None:
            self.error = error
            self._log_event("failed", error=str(error))
            self._failed.set()

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stop()

    async def _stop(self) -> None:
        if self.trackers and self._tg is not None:
            with contextlib.suppress(HubswarmError, TimeoutError):
                await self._announce_all("stopped", timeout=2.0)
        self._stopping = True
        for link in list(self.links):
            link.close()
        tg, self._tg = self._tg, None
        if tg is not None:
            # Cancel the long-running loops: the group ends when every task has finished.
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tg.__aexit__(None, None, None)
        if self.store is not None:
            await self.store.close()
        if self._own_http:
            await self._http.close()
        if self._events_file is not None:
            self._events_file.close()
            self._events_file = None

    @property
    def _private(self) -> bool:
        return self.info is not None and self.info.private

    def _log_event(self, kind: str, **fields: Any) -> None:
        if self._events_file is not None:
            record = {"t": time.time(), "event": kind, **fields}
            self._events_file.write(json.dumps(record) + "\n")
            self._events_file.flush()

    async def _setup(self, info: InfoDict) -> None:
        """Open the storage, recheck existing data and build the picker."""
        async with self._setup_lock:
            if self.store is not None:
                return
            self.info = info
            store = PieceStore(info, self.out_dir)
            await store.__aenter__()
            try:
                have = await (store.assume_complete() if self.seed_mode else store.recheck())
            except BaseException:
                await store.close()
                raise
            self.store = store
            self.picker = PiecePicker(
                info.num_pieces,
                info.piece_size,
                rng=self.rng,
                have=have,
                max_in_progress=store.max_pieces_in_flight,
            )
            self.metadata_ready.set()
            self._log_event("metadata", pieces=info.num_pieces, have=have.count())
            if self.picker.is_complete:
                self._mark_complete()
            for link in list(self.links):
                self._adopt_pending(link)
            self._pex_round(self.clock())  # a magnet's: now we know it is not private

    @property
    def left(self) -> int:
        """Bytes still missing (for tracker announces)."""
        if self.info is None or self.picker is None:
            return 1
        return sum(self.info.piece_size(i) for i in self.picker.have.missing())

    @property
    def is_seed(self) -> bool:
        return self.picker is not None and self.picker.is_complete

    def _mark_complete(self) -> None:
        if self.complete.is_set():
            return
        self.stats.completed_at = time.time()
        self.complete.set()
        self._log_event("complete")
        log.info("torrent %s complete", self.info_hash.hex())
        downloaded = self.stats.downloaded_from_peers + self.stats.downloaded_from_webseeds
        if self.config.super_seed and downloaded == 0 and self.info is not None:
            # Complete without downloading a byte: we started as a seed (BEP 16 is for the
            # initial seed; a leech that finished seeds as usual).
            self._superseed = SuperSeeder(
                self.info.num_pieces,
                rng=self.rng,
                # An offer not fetched and passed on within a request timeout has stalled.
                offer_timeout=self.config.request_timeout,
            )
            # Links opened before the metadata (magnet) were sent no pieces yet: offer some.
            now = self.clock()
            for link in list(self.links):
                offers = self._superseed.opening(link, now, choked=link.conn.am_choking)
                if offers:
                    self._superseed_announce({link: offers})
        for link in list(self.links):
            if link.conn.am_interested:
                link.send(NotInterested())
            if link.state.is_seed:  # two seeds have nothing to say to each other
                link.state.pointless = True
                link.close()
        if self.trackers and self._tg is not None and not self._stopping:
            self._spawn(self._announce_completed())

    async def wait_complete(self, timeout: float | None = None) -> None:
        """Wait until every piece is verified."""
        async with asyncio.timeout(timeout), asyncio.TaskGroup() as tg:
            done = tg.create_task(self.complete.wait())
            failed = tg.create_task(self._failed.wait())
            await asyncio.wait({done, failed}, return_when=asyncio.FIRST_COMPLETED)
            done.cancel()
            failed.cancel()
        if self.error is not None:
            raise self.error

    # --- peer sources ---------------------------------------------------------------------

    def add_peer(self, address: tuple[str, int]) -> None:
        """A candidate address to dial (from a tracker, the DHT, a magnet or the CLI)."""
        _host, port = address
        if not 0 < port < 65536 or self.is_banned(address) or address in self._self_addresses:
            return
        if address not in self._candidates and len(self._candidates) < MAX_CANDIDATES:
            self._candidates[address] = 0.0
            self._wake_dialer.set()

    def _connected_addresses(self) -> set[tuple[str, int]]:
        """Addresses we need not dial: every link's, and the listen port (BEP 10 ``p``) an
        incoming link told us, so that two peers finding each other do not connect twice
        (a second handshake per pair, then closed: N^2 / 2 of them in a flash crowd)."""
        out = {link.address for link in self.links}
        for link in self.links:
            ext = link.conn.remote_extended_handshake
            if not link.outgoing and ext is not None and ext.p:
                out.add((link.address[0], ext.p))
        return out

    async def _dialer(self) -> None:
        while True:
            self._wake_dialer.clear()
            now = self.clock()
            connected = self._connected_addresses()
            room = self.config.max_peers - len(self.links) - len(self._connecting)
            if not (self.complete.is_set() and not self.config.seed):
                for address, at in list(self._candidates.items()):
                    if room <= 0:
                        break
                    if at > now or address in connected or address in self._connecting:
                        continue
                    if self.is_banned(address):
                        continue
                    self._connecting.add(address)
                    room -= 1
                    assert self._tg is not None
                    self._spawn(self._dial(address))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self._wake_dialer.wait()

    async def _dial(self, address: tuple[str, int]) -> None:
        writer: asyncio.StreamWriter | None = None
        try:
            reader, writer = await open_stream(*address, timeout=self.config.connect_timeout)
            conn = wire.PeerConnection(
                wire.Role.INITIATOR,
                tolerate_late_bitfield=True,
                info_hash=self.info_hash,
                peer_id=self.config.peer_id,
                dht=self._advertise_dht,
                # Known before the handshake, so that what the peer pipelines after its
                # handshake is checked against it too.
                num_pieces=self.info.num_pieces if self.info is not None else None,
            )
            writer.write(conn.handshake())
            rest, _ = await read_handshake(conn, reader, HANDSHAKE_TIMEOUT)
        except (RemoteProtocolError, OSError, TimeoutError) as exc:
            log.debug("dial %s:%d failed: %s", *address, exc)
            if writer is not None:
                writer.close()
            self._retry(address)
            return
        except BaseException:
            if writer is not None:
                writer.close()  # cancelled mid-handshake: leak no socket
            raise
        finally:
            self._connecting.discard(address)
        self._retry_after.pop(address, None)
        await self.run_link(conn, reader, writer, address, rest, outgoing=True)

    @property
    def _advertise_dht(self) -> bool:
        # BEP 27: a private torrent's peers must not advertise or use the DHT.
        return self.dht is not None and self.config.use_dht and not self._private

    def _retry(self, address: tuple[str, int], delay: float | None = None) -> None:
        """Dial ``address`` again later: after ``delay``, else with doubling back-off."""
        if delay is None:
            first = self.config.reconnect_min
            delay = min(self.config.reconnect_max, self._retry_after.get(address, first / 2) * 2)
            self._retry_after[address] = delay
        if address in self._candidates:
            self._candidates[address] = self.clock() + delay
            self._wake_dialer.set()

    async def run_incoming(
        self,
        conn: wire.PeerConnection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        address: tuple[str, int],
        first_events: list[Event],
    ) -> None:
        """Run an accepted connection as a task of this session (it ends with the session)."""
        try:
            task = self._spawn(
                self.run_link(conn, reader, writer, address, first_events, outgoing=False)
            )
        except LocalProtocolError:
            writer.close()  # the session is stopping
            return
        try:
            # wait() rather than await: the link ending cancelled (the session stopped) is a
            # normal end for the listener's handler, which asyncio must not see cancelled.
            await asyncio.wait({task})
        except asyncio.CancelledError:
            task.cancel()
            raise

    async def run_link(
        self,
        conn: wire.PeerConnection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        address: tuple[str, int],
        first_events: list[Event],
        *,
        outgoing: bool,
    ) -> None:
        """Run an established connection (ours or accepted by the listener) until it ends."""
        hs = conn.remote_handshake
        if hs is not None and hs.peer_id == self.config.peer_id:
            # We dialled ourselves (a tracker lists us too): never again.
            self._self_addresses.add(address)
            self._candidates.pop(address, None)
            hs = None
        if (
            hs is None
            or self.is_banned(address)
            or hs.peer_id in self._banned_peer_ids
            or len(self.links) >= self.config.max_peers * 2
        ):
            writer.close()
            if outgoing:
                self._retry(address)
            return
        for other in list(self.links):
            other_hs = other.conn.remote_handshake
            if other_hs is None or other_hs.peer_id != hs.peer_id:
                continue
            # Connected both ways at once: both ends keep the connection that the peer with
            # the smaller peer_id initiated, so they agree without talking.
            mine_first = self.config.peer_id < hs.peer_id
            if outgoing == mine_first and other.outgoing != mine_first:
                other.close()
                break
            writer.close()
            if outgoing:
                self._retry(address, self.config.reconnect_max)
            return
        if self.info is not None:
            conn.set_num_pieces(self.info.num_pieces)
        limiter = (
            RateLimiter(self.config.peer_upload_rate, parent=self.upload_limiter)
            if self.config.peer_upload_rate
            else self.upload_limiter
        )
        link = PeerLink(
            self,
            conn,
            reader,
            writer,
            address,
            outgoing=outgoing,
            upload_limiter=limiter,
            download_limiter=self.download_limiter,
        )
        self.links.add(link)
        if outgoing:
            self._candidates.setdefault(address, 0.0)
        self._log_event("peer_connected", peer=f"{address[0]}:{address[1]}", outgoing=outgoing)
        try:
            self._send_opening(link)
        except (OSError, LocalProtocolError) as exc:
            log.debug("opening to %r failed: %s", link, exc)
            link.close()
        await link.run(first_events)

    def _send_opening(self, link: PeerLink) -> None:
        conn = link.conn
        opening: list[Event] = []
        if conn.supports_extensions:
            opening.append(
                ExtendedHandshake(
                    m=self._extensions(),
                    metadata_size=len(self.info.raw) if self.info is not None else None,
                    v=f"hubswarm {__version__}",
                    p=self.listen_port or None,
                    reqq=2000,
                )
            )
        have = self.picker.have if self.picker is not None else None
        offers = None
        if self._superseed is not None:
            # A new link starts choked (BEP 3): its offers' clocks wait for the unchoke.
            offers = self._superseed.opening(link, self.clock(), choked=link.conn.am_choking)
        if offers is not None:
            # BEP 16: masquerade as a peer with nothing (no bitfield without BEP 6), then
            # reveal a few pieces with `have`.
            if conn.supports_fast:
                opening.append(HaveNone())
            opening.extend(Have(i) for i in offers)
        elif have is None or have.count() == 0:
            if conn.supports_fast:
                opening.append(HaveNone())
        elif have.is_complete and conn.supports_fast:
            opening.append(HaveAll())
        else:
            opening.append(BitfieldMsg(have.to_bytes()))
        link.send_many(opening)

    # --- events from links ----------------------------------------------------------------

    async def on_event(self, link: PeerLink, event: Event) -> None:
        """Dispatch one message from a peer (BEP 3, 6, 9, 10)."""
        st = link.state
        match event:
            case Piece():
                await self._on_piece(link, event)
            case Have(piece_index=i):
                if st.has is None:
                    if len(st.pending_haves) >= MAX_PENDING_HAVES:
                        raise RemoteProtocolError("too many haves before the metadata")
                    st.pending_haves.add(i)
                    if self.picker is None:
                        return
                    # No bitfield came first (BEP 6 have none, or BEP 3: a peer with no
                    # pieces may omit it): its have-set starts empty, as in libtorrent.
                    # Else its haves would wait here forever and it would never be asked.
                    self._adopt_pending(link)
                    if st.has is None or link.closed:
                        return
                elif not st.has[i]:
                    st.has.set(i)
                    picker = self.picker
                    if picker is not None:
                        picker.peer_have(i)
                        st.is_seed = st.has.is_complete
                        # Haves are most of the messages of a swarm (N=32: ~3,000 per peer for
                        # 96 pieces): one cannot make an interesting peer more so, nor one we
                        # already have the piece of; only top up the first one's queue.
                        if link.conn.am_interested:
                            self._fill_requests(link)
                        elif not picker.have[i]:
                            self._update_interest(link)
                if self._superseed is not None:
                    self._superseed_on_have(link, i)
            case BitfieldMsg(bitfield=bits):
                if st.has is not None:
                    self._late_bitfield(link, bits, everything=False)
                    return
                st.pending_bitfield = bits
                self._adopt_pending(link)
            case HaveAll():
                if st.has is not None:
                    self._late_bitfield(link, b"", everything=True)
                    return
                st.pending_all = True
                self._adopt_pending(link)
            case HaveNone():
                pass
            case Request():
                sup = self._superseed
                # BEP 16: only pieces offered to this peer (libtorrent rejects the rest too).
                if link.conn.am_choking or (
                    sup is not None and not sup.allows(link, event.piece_index)
                ):
                    if link.conn.supports_fast:
                        link.send(Reject(event.piece_index, event.begin, event.length))
                    return
                link.queue_upload(event)
            case Cancel(piece_index=i, begin=b, length=n):
                link.cancel_upload(Request(i, b, n))
            case Unchoke():
                self._fill_requests(link)
            case Choke():
                if self.picker is not None:
                    released = self.picker.peer_choked(link, st.allowed_fast)
                    for req in released:
                        st.inflight.discard(req)
            case Interested():
                self._maybe_unchoke_now(link)
            case NotInterested():
                pass
            case Reject(piece_index=i, begin=b, length=n):
                if self.picker is not None:
                    req = BlockRequest(i, b, n)
                    if req in st.inflight:
                        st.inflight.discard(req)
                        self.picker.request_rejected(link, req)
            case AllowedFast(piece_index=i):
                st.allowed_fast.add(i)
            case ExtendedHandshake():
                self._maybe_request_metadata(link)
                self._pex_round(self.clock())
            case PeerExchange(added=added):
                now = self.clock()
                if self._pex_enabled() and (
                    st.pex_received_at is None or now - st.pex_received_at >= PEX_MIN_GAP
                ):
                    st.pex_received_at = now
                    self._log_event("pex", peer=link.address[0], added=len(added))
                    for address in added:
                        self.add_peer(address)
            case MetadataRequest(piece=piece):
                self._serve_metadata(link, piece)
            case MetadataData():
                await self._on_metadata(link, event)
            case MetadataReject(piece=piece):
                st.metadata_inflight.discard(piece)
            case _:
                pass  # keep-alive, port, suggest, unknown and other extensions

    def _adopt_pending(self, link: PeerLink) -> None:
        """Turn what the peer said before we knew the piece count into its have-set."""
        st = link.state
        if self.info is None or self.picker is None:
            return
        n = self.info.num_pieces
        if st.has is None:
            has = Bitfield(n)
            if st.pending_all:
                has = Bitfield.all(n)
            elif st.pending_bitfield is not None:
                try:
                    has = Bitfield.from_bytes(st.pending_bitfield, n)
                except (ValueError, HubswarmError):
                    link.close()
                    return
            if any(i >= n for i in st.pending_haves):
                link.close()  # BEP 3: a have beyond the last piece is a protocol violation
                return
            for i in st.pending_haves:
                has.set(i)
            st.has = has
            self.picker.peer_bitfield(has)
        elif st.pending_bitfield is not None or st.pending_all:
            return  # a second bitfield: the wire core already refuses it
        st.pending_bitfield, st.pending_all = None, False
        st.pending_haves.clear()
        st.is_seed = st.has.is_complete
        if self.is_seed and st.is_seed:
            st.pointless = True
            link.close()
            return
        self._update_interest(link)

    def _late_bitfield(self, link: PeerLink, bits: bytes, *, everything: bool) -> None:
        """A bitfield or have-all after the first message (aria2 does it): new pieces only."""
        st, picker = link.state, self.picker
        if st.has is None or picker is None:
            return
        n = len(st.has)
        new = Bitfield.all(n) if everything else Bitfield.from_bytes(bits, n)
        for i in new:
            if not st.has[i]:
                st.has.set(i)
                picker.peer_have(i)
        st.is_seed = st.has.is_complete
        if self.is_seed and st.is_seed:
            st.pointless = True
            link.close()
            return
        self._update_interest(link)

    def _update_interest(self, link: PeerLink) -> None:
        st = link.state
        if self.picker is None or st.has is None:
            return
        want = not self.picker.is_complete and self.picker.is_interesting(st.has)
        if want and not link.conn.am_interested:
            link.send(Interested())
        elif not want and link.conn.am_interested:
            link.send(NotInterested())
        if want:
            self._fill_requests(link)

    def _fill_requests(self, link: PeerLink) -> None:
        """Keep the peer's request pipeline full (depth adapted to its measured rate)."""
        picker, st = self.picker, link.state
        if picker is None or st.has is None or link.closed or not link.conn.am_interested:
            return
        if link.conn.peer_choking and not st.allowed_fast:
            return
        # Called after every block: while the queue is above 3/4 of the depth chosen last
        # time, return before measuring the rate (refills come in batches of depth / 4).
        if st.queue_depth and len(st.inflight) > st.queue_depth - max(1, st.queue_depth // 4):
            return
        # Slow start: a new link gets a deep queue at once (rate unknown yet, and a loopback or
        # LAN link fills 16 requests in well under a millisecond); then rate x queue time.
        # On a slow link with a small file that depth can exceed the file: the lab lowers both
        # (a queue deeper than needed makes a seed upload the same pieces to several peers).
        cfg = self.config
        depth = request_queue_depth(
            link.download_rate.rate, cfg.request_queue_time, minimum=cfg.initial_queue_depth
        )
        st.queue_depth = depth
        missing = depth - len(st.inflight)
        if missing < max(1, depth // 4):
            return  # refill in batches: fewer picker calls, larger writes
        has = st.has
        if link.conn.peer_choking:
            has = Bitfield.from_indices(len(has), (i for i in st.allowed_fast if has[i]))
        reqs = picker.next_requests(link, has, missing, self.clock())
        if not reqs:
            return
        st.inflight.update(reqs)
        link.send_bytes(link.conn.send_requests((r.piece_index, r.begin, r.length) for r in reqs))

    async def _on_piece(self, link: PeerLink, event: Piece) -> None:
        picker, store, st = self.picker, self.store, link.state
        if picker is None or store is None:
            return
        block = event.block
        req = BlockRequest(event.piece_index, event.begin, len(block))
        inflight = st.inflight
        if req not in inflight:
            return  # unrequested or cancelled: BEP 3 allows it to arrive; ignore
        inflight.discard(req)
        st.last_piece_at = self.clock()
        st.snubbed = False
        self.stats.downloaded_from_peers += len(block)
        self.download_meter.add(len(block))
        if self._store_block(link, req, block):
            # Hash and write in a task of the session, so this link keeps reading meanwhile
            # (awaiting here stalled the socket once per piece). The picker counts the piece
            # as in progress until piece_complete, so max_in_progress bounds these tasks and
            # the memory they hold.
            try:
                self._spawn(self._finish_piece(req.piece_index, source="peer"))
            except LocalProtocolError:
                return  # the session is stopping: the piece is dropped with it
        self._fill_requests(link)

    async def _accept_block(
        self, key: object, req: BlockRequest, block: bytes, *, source: str
    ) -> None:
        """Store one block; when its piece is complete, verify and announce it."""
        if self._store_block(key, req, block):
            await self._finish_piece(req.piece_index, source=source)

    def _store_block(self, key: object, req: BlockRequest, block: bytes) -> bool:
        """Record and buffer one block; True when its piece is complete (hash it next)."""
        picker, store = self.picker, self.store
        assert picker is not None
        assert store is not None
        try:
            received = picker.block_received(key, req)
        except LocalProtocolError:
            return False
        for other, dup in received.cancels:
            if isinstance(other, PeerLink) and not other.closed:
                other.state.inflight.discard(dup)
                other.send(Cancel(dup.piece_index, dup.begin, dup.length))
        if not received.stored:
            return False
        store.add_block(req.piece_index, req.begin, block)
        return received.piece_done

    async def _finish_piece(self, index: int, *, source: str) -> None:
        picker, store = self.picker, self.store
        assert picker is not None
        assert store is not None
        try:
            ok = await store.finish_piece(index)
        except StorageError as exc:
            # Disk full or an I/O error: the piece goes back to the pool, the download stops
            # with that error (the peer did nothing wrong: its link stays up).
            picker.piece_complete(index, False)
            if not self._stopping:
                self.fail(exc)
            return
        contributors = picker.piece_complete(index, ok)
        links = [peer for peer in contributors if isinstance(peer, PeerLink)]
        if not ok:
            self.stats.bad_pieces += 1
            self._log_event("bad_piece", index=index)
            log.warning("piece %d failed its hash check", index)
            penalty = TRUST_SOLE_PENALTY if len(contributors) == 1 else TRUST_SHARED_PENALTY
            for peer in links:
                self._adjust_trust(peer, -penalty)
            return
        for peer in links:
            self._adjust_trust(peer, 1)
        if source == "webseed":
            self.stats.pieces_from_webseeds += 1
        self._log_event(
            "piece", index=index, source=source, peers=[f"{lk.address[0]}" for lk in links]
        )
        for link in list(self.links):
            if link.closed:
                continue
            if link.state.has is None or not link.state.has[index]:
                link.send(Have(index))
            has = link.state.has
            if link.conn.am_interested and has is not None and not picker.is_interesting(has):
                link.send(NotInterested())
        if picker.is_complete:
            self._mark_complete()

    def _adjust_trust(self, link: PeerLink, delta: int) -> None:
        key = link.address
        trust = min(TRUST_MAX, self._trust.get(key, 0) + delta)
        self._trust[key] = trust
        if trust > TRUST_BAN or self.is_banned(key):
            return
        log.warning("banning %s:%d: trust %d after bad pieces", *key, trust)
        # On loopback (and in a single-IP lab) every peer shares one address: ban the
        # (ip, port) there, the whole IP elsewhere.
        self._banned_addresses.add(key)
        if not key[0].startswith("127."):
            self._banned.add(key[0])
        self._candidates.pop(key, None)
        if link.conn.remote_handshake is not None:
            self._banned_peer_ids.add(link.conn.remote_handshake.peer_id)
        self.stats.banned += 1
        self._log_event("banned", peer=f"{key[0]}:{key[1]}")
        link.close()

    def is_banned(self, address: tuple[str, int]) -> bool:
        """True for an address (or its IP) banned for sending corrupt data."""
        return address[0] in self._banned or address in self._banned_addresses

    def _maybe_unchoke_now(self, link: PeerLink) -> None:
        # Do not make a new interested peer wait for the next round when a slot is free.
        if self._superseed is not None:
            self._superseed_fill_slots()  # slots go to peers waiting for an offered piece
            return
        unchoked = sum(1 for lk in self.links if not lk.conn.am_choking)
        slots = self.config.unchoke_slots + 1
        if self.is_seed and self.config.seed_unchoke_slots is not None:
            slots = self.config.seed_unchoke_slots
        if link.conn.am_choking and unchoked < slots:
            self._set_choking(link, False)

    async def read_block(self, link: PeerLink, request: Request) -> bytes | None:
        """Bytes for an upload (from the piece cache, else one disk read per piece)."""
        store = self.store
        if store is None or link.conn.am_choking:
            return None
        i = request.piece_index
        if not store.have[i]:
            return None
        if self._superseed is not None:
            if not self._superseed.allows(link, i):
                return None
            self._superseed_tick(self.clock())
        piece = self._upload_cache.get(i)
        if piece is None:
            try:
                piece = await store.read_block(i, 0, store.layout.piece_size(i))
            except (StorageError, LocalProtocolError):
                return None
            if len(self._upload_cache) >= UPLOAD_CACHE_PIECES:
                self._upload_cache.pop(next(iter(self._upload_cache)))
            self._upload_cache[i] = piece
        end = request.begin + request.length
        if end > len(piece):
            return None
        block = piece[request.begin : end]
        if self.config.corrupt_uploads:
            block = bytes(b ^ 0xFF for b in block[:16]) + block[16:]
        self.stats.uploaded += len(block)
        self.upload_meter.add(len(block))
        return block

    # --- super-seeding (BEP 16; the decisions are hubswarm.swarm.superseed's) -------------

    def blocks_written(self, link: PeerLink, requests: list[Request], end: int) -> None:
        """While super-seeding, remember written blocks until the peer holds them."""
        if self._superseed is None or not requests:
            return
        self._undelivered.setdefault(link, deque()).append((end, requests))
        watch = self._delivery_watch
        if watch is None or watch.done():
            with contextlib.suppress(LocalProtocolError):  # the session is stopping
                self._delivery_watch = self._spawn(self._watch_deliveries())

    async def _watch_deliveries(self) -> None:
        """Tell the super-seeding policy of each block once the peer's TCP acknowledged it.

        A piece counts as passed on (and the peer's slot goes to the next hungry peer) when
        it arrived, not when it was written: at the start of a flash crowd the seed wrote
        16 pieces to 8 peers in its first 0.25 s (N = 8, 256 KiB/s: 2 s of its upload),
        and they all crossed its link at a fraction of its rate while nobody could trade.
        The kernel's counter is read every ``DELIVERY_POLL`` seconds while blocks wait.
        """
        while self._undelivered:
            await asyncio.sleep(DELIVERY_POLL)
            self._check_deliveries(list(self._undelivered))

    def _check_deliveries(self, links: list[PeerLink]) -> None:
        """Pass the blocks these links' peers acknowledged on to the super-seeding policy."""
        sup, store = self._superseed, self.store
        if sup is None or store is None:
            self._undelivered.clear()
            return
        now = self.clock()
        out: Announce = {}
        for link in links:
            pending = self._undelivered.get(link)
            if pending is None:
                continue
            acked = link.bytes_acked()
            while pending and pending[0][0] <= acked:
                for r in pending.popleft()[1]:
                    i = r.piece_index
                    size = store.layout.piece_size(i)
                    sent = sup.block_sent(link, i, r.begin, r.length, size, now)
                    for peer, offers in sent.items():
                        out.setdefault(peer, []).extend(offers)
            if not pending or link.closed:
                del self._undelivered[link]  # a closed link's unacknowledged blocks: lost
        if out or sup.hunger_changed:
            self._superseed_announce(out)

    def _superseed_on_have(self, link: PeerLink, index: int) -> None:
        sup, has = self._superseed, link.state.has
        if sup is None or has is None:
            return
        now = self.clock()
        # The first have tells the policy the peer's whole have-set (its bitfield included).
        out = (
            sup.peer_have(link, index, now)
            if sup.synced(link)
            else sup.peer_bitfield(link, has, now)
        )
        self._superseed_announce(out)
        self._superseed_tick(now)

    def _superseed_tick(self, now: float) -> None:
        """Forget links that closed (once a second) and replace offers that timed out."""
        sup = self._superseed
        if sup is None:
            return
        if now - self._superseed_pruned_at >= 1.0:
            self._superseed_pruned_at = now
            for peer in sup.peers():
                if peer not in self.links:
                    sup.peer_left(peer)
        deadline = sup.next_deadline()
        if deadline is not None and deadline <= now:
            self._superseed_announce(sup.expire(now))

    def _superseed_announce(self, out: Announce) -> None:
        """Send the policy's offers as `have`; once it ends, seed as usual from then on."""
        sup = self._superseed
        # Called for every block and have: rebalance only when who is hungry may differ.
        rebalance = sup is not None and sup.hunger_changed
        if sup is not None and rebalance:
            # Nobody left to serve: release fetched offers rather than idle (see unstall).
            for peer, pieces in sup.unstall(self.clock()).items():
                out.setdefault(peer, []).extend(pieces)
        for peer, pieces in out.items():
            if isinstance(peer, PeerLink) and not peer.closed and pieces:
                peer.send_many([Have(i) for i in pieces])
        if sup is not None and rebalance:
            sup.hunger_changed = False
            # New offers, or a peer got its last one: serve who waits for the seed.
            self._superseed_fill_slots()
        if self._superseed is not None and not self._superseed.active:
            self._superseed = None
            self.stats.uploaded_at_superseed_done = self.stats.uploaded
            self._log_event("superseed_done", uploaded=self.stats.uploaded)
            log.info("super-seeding ended: every piece is on a peer")

    def link_closed(self, link: PeerLink, error: BaseException | None) -> None:
        """Forget a link: its pieces leave the availability count, its blocks go back."""
        self.links.discard(link)
        if self.picker is not None:
            self.picker.peer_left(link, link.state.has)
        if link in self._undelivered:
            self._check_deliveries([link])  # what it acknowledged before it went
        if self._superseed is not None:
            self._superseed.peer_left(link)
        link.state.inflight.clear()
        if link.outgoing and not self._stopping:
            # Seeds have nothing for a seed: call again only after the longest back-off.
            self._retry(link.address, self.config.reconnect_max if link.state.pointless else None)
        self._log_event("peer_closed", peer=f"{link.address[0]}:{link.address[1]}")
        self._wake_dialer.set()

    # --- metadata (BEP 9) -----------------------------------------------------------------

    def _maybe_request_metadata(self, link: PeerLink) -> None:
        if self.info is not None:
            return
        size = link.conn.remote_metadata_size
        if size is None or wire.UT_METADATA not in link.conn.remote_extensions:
            return
        if self._metadata is None:
            try:
                self._metadata = wire.MetadataAssembler(self.info_hash, size)
            except HubswarmError:
                return
        elif self._metadata.metadata_size != size:
            return
        busy: set[int] = set()
        for other in self.links:
            busy |= other.state.metadata_inflight
        for piece in self._metadata.missing():
            if piece not in busy or len(busy) >= len(self._metadata.missing()):
                link.state.metadata_inflight.add(piece)
                link.send(MetadataRequest(piece))

    def _serve_metadata(self, link: PeerLink, piece: int) -> None:
        if self.info is None or wire.UT_METADATA not in link.conn.remote_extensions:
            if wire.UT_METADATA in link.conn.remote_extensions:
                link.send(MetadataReject(piece))
            return
        raw = self.info.raw
        if piece >= metadata_piece_count(len(raw)):
            link.send(MetadataReject(piece))
            return
        start = piece * 16384
        link.send(MetadataData(piece, len(raw), raw[start : start + 16384]))

    async def _on_metadata(self, link: PeerLink, event: MetadataData) -> None:
        link.state.metadata_inflight.discard(event.piece)
        if self.info is not None or self._metadata is None:
            return
        try:
            raw = self._metadata.add(event)
        except MetainfoError as exc:
            log.warning("metadata from %r rejected: %s", link, exc)
            return
        if raw is None:
            return
        info = parse_info(raw, self.info_hash)
        self._log_event("metadata_fetched", size=len(raw), peer=f"{link.address[0]}")
        for other in self.links:
            other.conn.set_num_pieces(info.num_pieces)
        await self._setup(info)

    # --- periodic work --------------------------------------------------------------------

    async def _ticker(self) -> None:
        """Choke rounds and request time-outs (one loop, so they never race)."""
        while True:
            now = self.clock()
            if now >= self.choker.next_round_at():
                self._choke_round(now)
            if self.picker is not None:
                for key, req in self.picker.expired_requests(now, self.config.request_timeout):
                    self.picker.request_timed_out(key, req)
                    if isinstance(key, PeerLink):
                        key.state.inflight.discard(req)
                        key.state.snubbed = True
                for link in list(self.links):
                    self._fill_requests(link)
            # Offers to peers that went quiet expire with the clock, not with traffic.
            self._superseed_tick(now)
            self._pex_round(now)
            await asyncio.sleep(min(1.0, self.config.choke_interval))

    def _choke_round(self, now: float) -> None:
        links = [lk for lk in self.links if not lk.closed]
        stats = [
            PeerStats(
                peer_id=lk,
                interested=lk.conn.peer_interested,
                download_rate=lk.download_rate.rate,
                upload_rate=lk.upload_rate.rate,
                connected_at=lk.connected_at,
                last_piece_at=lk.state.last_piece_at,
                am_interested=lk.conn.am_interested,
                snubbed=lk.state.snubbed,
            )
            for lk in links
        ]
        decision = self.choker.decide(stats, now, seeding=self.is_seed)
        unchoke: set[PeerLink] | frozenset[object] = decision.unchoke
        slots = self.config.seed_unchoke_slots
        if self._superseed is not None:
            unchoke = self._superseed_unchoke()
        elif self.is_seed and slots is not None:
            # Round-robin by connection age; the turn is a function of the clock, so the
            # order needs no state and a newcomer joins the rotation at once.
            ready = sorted(
                (lk for lk in links if lk.conn.peer_interested), key=lambda lk: lk.connected_at
            )
            turn = int(now / max(self.config.choke_interval, 1e-3)) * slots
            unchoke = {ready[(turn + j) % len(ready)] for j in range(min(slots, len(ready)))}
        for lk in links:
            if lk in unchoke and lk.conn.am_choking:
                self._set_choking(lk, False)
            elif lk not in unchoke and not lk.conn.am_choking:
                self._set_choking(lk, True)
                lk.clear_uploads()

    def _set_choking(self, link: PeerLink, choke: bool) -> None:
        """Choke or unchoke a link; a super-seed's offers time out only while unchoked."""
        link.send(Choke() if choke else Unchoke())
        if self._superseed is not None:
            self._superseed.set_choked(link, choke, self.clock())

    def _superseed_candidates(self) -> tuple[list[PeerLink], set[PeerLink]]:
        """Interested links, oldest connection first, and those of them we unchoke."""
        ready = sorted(
            (lk for lk in self.links if not lk.closed and lk.conn.peer_interested),
            key=lambda lk: lk.connected_at,
        )
        return ready, {lk for lk in ready if not lk.conn.am_choking}

    def _superseed_unchoke(self) -> set[PeerLink]:
        """While super-seeding: slots go to peers waiting for an offered piece (the policy's
        ``choose_unchoked``). Only offered pieces may be fetched from us, so a slot held by a
        peer that has its offers uploads nothing (measured, N = 8 in the lab: the seed idle
        in 0.1 s windows, its first copy of the file 20-70 % late)."""
        assert self._superseed is not None
        ready, serving = self._superseed_candidates()
        slots = self.config.unchoke_slots + 1
        return set(self._superseed.choose_unchoked(ready, serving, slots))

    def _superseed_fill_slots(self) -> None:
        """Unchoke waiting hungry peers now if fewer than the slots are being served.

        Only unchokes: a choke here could land between a block's accounting and its write
        (read_block runs inside the upload loop); the choke round takes the slots back.
        """
        sup = self._superseed
        if sup is None or not sup.active:
            return
        ready, serving = self._superseed_candidates()
        for lk in sup.to_unchoke_now(ready, serving, self.config.unchoke_slots + 1):
            self._set_choking(lk, False)

    # --- peer exchange (BEP 11) -----------------------------------------------------------

    def _extensions(self) -> dict[str, int]:
        """Our BEP 10 extension ids; no ut_pex for a torrent known to be private (BEP 27)."""
        m = {wire.UT_METADATA: UT_METADATA_ID}
        if self.config.use_pex and not self._private:
            m[wire.UT_PEX] = UT_PEX_ID
        return m

    def _pex_enabled(self) -> bool:
        """PEX once the torrent is known not to be private (a magnet's: after its metadata)."""
        return self.config.use_pex and self.info is not None and not self.info.private

    def _pex_addresses(self) -> dict[tuple[str, int], int]:
        """Where our peers accept connections, with BEP 11 flags: the address we dialled,
        or an incoming peer's IP with the listen port of its extended handshake."""
        out: dict[tuple[str, int], int] = {}
        for link in self.links:
            if link.closed:
                continue
            if link.outgoing:
                out[link.address] = PEX_REACHABLE
            else:
                ext = link.conn.remote_extended_handshake
                if ext is not None and ext.p:
                    out[(link.address[0], ext.p)] = 0
        return out

    def _pex_round(self, now: float) -> None:
        """Tell each PEX peer what changed among our peers, at most once per interval.

        A peer's first message waits until there is somebody to tell of: in a flash crowd
        the first peers to connect learn of the later ones from it, within a round trip of
        their arrival, where a DHT re-lookup takes a quarter of a second or more.
        """
        if not self._pex_enabled():
            return
        current = self._pex_addresses()
        for link in list(self.links):
            st = link.state
            if link.closed or wire.UT_PEX not in link.conn.remote_extensions:
                continue
            if st.pex_sent is not None and now - st.pex_at < PEX_INTERVAL:
                continue
            told = st.pex_sent or set()
            ext = link.conn.remote_extended_handshake
            itself = {link.address, (link.address[0], ext.p if ext is not None else None)}
            added = [a for a in current if a not in told and a not in itself][:PEX_MAX_SEND]
            dropped = [a for a in told if a not in current][:PEX_MAX_SEND]
            if not added and not dropped:
                continue
            flags = tuple(current[a] for a in added)
            try:
                link.send(PeerExchange(tuple(added), flags, tuple(dropped)))
            except LocalProtocolError as exc:
                log.debug("ut_pex to %r: %s", link, exc)
                continue
            st.pex_sent = (told | set(added)) - set(dropped)
            st.pex_at = now

    # --- trackers -------------------------------------------------------------------------

    def _announce_request(self, event: str | None) -> AnnounceRequest:
        return AnnounceRequest(
            info_hash=self.info_hash,
            peer_id=self.config.peer_id,
            port=self.listen_port or 6881,
            uploaded=self.stats.uploaded,
            downloaded=self.stats.downloaded_from_peers + self.stats.downloaded_from_webseeds,
            left=self.left,
            event=event,  # type: ignore[arg-type]
            numwant=self.config.numwant,
            ip=self.config.announce_ip,
        )

    async def _announce_all(self, event: str | None, *, timeout: float = 10.0) -> float | None:
        """Announce to every tracker; return the smallest interval they asked for."""
        # Imported here: it imports aiohttp (see swarm.http).
        from hubswarm.swarm import tracker_client

        http = self._http.get()
        intervals: list[float] = []
        for tier in self.trackers:
            for url in tier:
                try:
                    resp = await tracker_client.announce(
                        http, url, self._announce_request(event), timeout=timeout
                    )
                except TrackerError as exc:
                    log.info("tracker %s: %s", url, exc)
                    continue
                intervals.append(float(resp.min_interval or resp.interval))
                for address in resp.peers:
                    self.add_peer(address)
                break  # BEP 12: the first tracker of a tier that answers is enough
        return min(intervals) if intervals else None

    async def _announce_loop(self) -> None:
        event: str | None = "started"
        failures = 0
        while True:
            interval = await self._announce_all(event)
            if interval is None:
                failures += 1
                interval = min(RETRY_MAX, RETRY_MIN * 2**failures)
            else:
                failures, event = 0, None
            if self.config.announce_interval is not None:
                interval = min(interval, self.config.announce_interval)
            await asyncio.sleep(max(1.0, interval))

    async def _announce_completed(self) -> None:
        with contextlib.suppress(HubswarmError, TimeoutError):
            await self._announce_all("completed")

    async def _dht_loop(self) -> None:
        """Look the torrent up on the DHT and announce our port (BEP 5), never if private.

        The first lookup and announce run at once; while no peer is connected the lookup is
        retried after 1 s, doubling up to 30 s, so a fresh swarm meets within seconds; with
        peers it repeats every ``announce_interval`` (default 5 min; libtorrent: 15 min),
        reached by doubling from ``DHT_RAMP_FIRST``: in a flash crowd every peer's first
        lookup finds nobody (no one has announced yet), and waiting a full interval for the
        second one left the lab's peers alone with the seed for 1.3 s of a 1.5 s bound.
        The ramp ends early, at the steady interval, once two lookups in a row bring no new
        address after one that did: the crowd has met, and every further lookup (about 20 KRPC
        queries sent, as many answered by others) would only find it again.
        """
        assert self.dht is not None
        retry_first, retry_max = 1.0, 30.0
        steady = self.config.dht_interval or self.config.announce_interval or 300.0
        misses = hits = empty = 0
        met = False  # a lookup has brought new addresses
        # BEP 27: a magnet's metadata may turn out private; then the DHT is never used again.
        while not self._private:
            # One lookup both finds peers and collects the tokens to announce with (two
            # lookups were ~20 % of a lab peer's CPU, N = 8: 1,170 KRPC packets in 2.5 s).
            fresh = await self._dht_get_peers()
            empty = empty + 1 if met and not fresh else 0
            if empty >= DHT_RAMP_EMPTY:
                hits = DHT_RAMP_DONE
            met = met or fresh > 0
            if self.links:
                misses, wait = 0, min(steady, DHT_RAMP_FIRST * 2**hits)
                hits = min(hits + 1, DHT_RAMP_DONE)
            else:
                wait = min(retry_max, retry_first * 2**misses)
                misses += 1
            await asyncio.sleep(wait)

    async def _dht_get_peers(self) -> int:
        """One DHT lookup for peers; then announce our port with its tokens (BEP 5).

        Returns how many of the addresses found were new to us."""
        assert self.dht is not None
        fresh = 0

        def found(addresses: list[tuple[str, int]]) -> None:
            nonlocal fresh
            known = self._connected_addresses()
            for address in addresses:
                if address not in self._candidates and address not in known:
                    fresh += 1
                self.add_peer(address)  # dialled now, not after the announce's replies

        try:
            if self.listen_port and not self._private:
                await self.dht.get_peers_and_announce(self.info_hash, self.listen_port, found)
            else:
                found(await self.dht.get_peers(self.info_hash))
        except HubswarmError as exc:
            log.info("DHT: %s", exc)
        return fresh

    # --- web seeds (BEP 19) ---------------------------------------------------------------

    async def _webseed_worker(self, url: str, worker: int = 0) -> None:
        await self.metadata_ready.wait()
        key = f"webseed:{worker}:{url}"  # one picker key per worker: releases stay its own
        failures = 0
        # Imported here: it imports aiohttp (see swarm.http).
        from hubswarm.swarm import webseed

        http = self._http.get()
        while not self.complete.is_set():
            picker, store, info = self.picker, self.store, self.info
            assert picker is not None
            assert store is not None
            assert info is not None
            if worker > 0 and picker.in_endgame:
                # Endgame duplicates blocks already requested: one worker per URL is enough.
                await asyncio.sleep(0.2)
                continue
            has = self._webseed_candidates()
            blocks = picker.next_requests(
                key, has, -(-info.piece_length // BLOCK_SIZE), self.clock()
            )
            if not blocks:
                picker.peer_left(key, None)
                await asyncio.sleep(0.5)
                continue
            by_piece: dict[int, list[BlockRequest]] = {}
            for b in blocks:
                by_piece.setdefault(b.piece_index, []).append(b)
            try:
                for index, reqs in by_piece.items():
                    start = min(r.begin for r in reqs)
                    end = max(r.begin + r.length for r in reqs)
                    offset = index * info.piece_length + start
                    data = await webseed.fetch(
                        http,
                        url,
                        info,
                        store.layout,
                        offset,
                        end - start,
                        timeout=self.config.request_timeout,
                    )
                    self.stats.downloaded_from_webseeds += len(data)
                    self.download_meter.add(len(data))
                    if self.download_limiter is not None:
                        await self.download_limiter.acquire(len(data))
                    for r in reqs:
                        chunk = data[r.begin - start : r.begin - start + r.length]
                        await self._accept_block(key, r, chunk, source="webseed")
                failures = 0
            except HubswarmError as exc:
                picker.peer_left(key, None)
                failures += 1
                log.info("web seed %s: %s", url, exc)
                await asyncio.sleep(min(RETRY_MAX, RETRY_MIN * 2**failures))

    def _webseed_candidates(self) -> Bitfield:
        """Pieces the web seed may serve: all of them, or only those no peer has (fallback)."""
        assert self.picker is not None
        assert self.info is not None
        n = self.info.num_pieces
        if self.config.webseed_mode == "always" or not self.links:
            return Bitfield.all(n)
        avail = self.picker.availability
        return Bitfield.from_indices(n, (i for i in range(n) if avail[i] <= 0))

    # --- reporting ------------------------------------------------------------------------

    def progress(self) -> dict[str, Any]:
        """A snapshot for progress displays and the lab."""
        have = self.picker.have.count() if self.picker is not None else 0
        total = self.info.num_pieces if self.info is not None else 0
        return {
            "pieces": have,
            "total_pieces": total,
            "peers": len(self.links),
            "down_rate": self.download_meter.rate,
            "up_rate": self.upload_meter.rate,
            "left": self.left if self.info is not None else None,
            "stats": asdict(self.stats),
        }
