"""One torrent in the swarm: its links, the request pipeline and piece completion.

Theory of operation
-------------------
A :class:`TorrentSession` is an ``async with`` object that owns one ``asyncio.TaskGroup``:
the dialer that keeps up to ``max_peers`` connections, the ticker (choke rounds, request
time-outs, PEX, super-seed offers), the tracker and DHT loops (:mod:`.announce`), the
web-seed workers (:mod:`.webseed_worker`), and one task per peer link. Connections accepted
by the listener (``SwarmPeer``) run in the same group through ``run_incoming``. Every task
is wrapped by ``_guard``: a bug in one link or loop is logged and ends only that task (a
critical loop fails the session with a one-line error instead).

Decisions are pure code, called synchronously, and then the I/O is done:

- :class:`.peerbook.PeerBook`: addresses to dial, back-off, trust and bans;
- :class:`.picker.PiecePicker`: which blocks to request; :class:`.choker.Choker`: whom to
  upload to; :class:`.superseed_driver.SuperSeedDriver`: BEP 16 offers and slots;
- :class:`.pex.PexPeer`: BEP 11 messages; :class:`.metadata.MetadataFetch`: BEP 9 pieces;
- :class:`.linkstate.LinkState`: the session's record of each link (its have-set, the
  requests in flight to it).

Every piece is SHA-1 checked before it is written or announced with ``have``; peers lose
trust for bad pieces they contributed to and are banned at the book's threshold. A magnet
starts without an info dict: links fetch the metadata (BEP 9), it is checked against the
info-hash, and the download proceeds as for a .torrent.

Time is the injected :class:`~hubswarm.clock.Clock`'s and connections are the injected
:class:`~hubswarm.net.StreamNetwork`'s, so a session runs unchanged in virtual time on an
in-memory network.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hubswarm import __version__, net
from hubswarm.clock import Clock
from hubswarm.errors import (
    ConfigError,
    HubswarmError,
    LocalProtocolError,
    MetainfoError,
    RemoteProtocolError,
    StorageError,
    SwarmError,
)
from hubswarm.limits import HANDSHAKE_TIMEOUT, MAX_INCOMING_REQUEST_QUEUE
from hubswarm.proto import wire
from hubswarm.proto.metainfo import InfoDict, parse_info
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
)
from hubswarm.proto.wire_events import Bitfield as BitfieldMsg
from hubswarm.ratelimit import RateLimiter
from hubswarm.swarm import announce
from hubswarm.swarm.bitfield import Bitfield
from hubswarm.swarm.choker import Choker, PeerStats
from hubswarm.swarm.http import LazyHttp
from hubswarm.swarm.linkstate import LinkState
from hubswarm.swarm.metadata import MetadataFetch, metadata_piece
from hubswarm.swarm.peer import PeerLink, RateMeter, WireProtocol, dial
from hubswarm.swarm.peerbook import RETRY_MAX, RETRY_MIN, PeerBook
from hubswarm.swarm.pex import PEX_REACHABLE
from hubswarm.swarm.picker import BlockRequest, PiecePicker, request_queue_depth
from hubswarm.swarm.storage import PieceStore
from hubswarm.swarm.superseed import Announce
from hubswarm.swarm.superseed_driver import SuperSeedDriver, merge
from hubswarm.swarm.webseed_worker import run_webseed_worker

log = logging.getLogger(__name__)

# Pieces kept in memory for uploads: each upload request for a block of a cached piece
# is served without a disk read (one read per piece instead of one per 16 KiB block).
UPLOAD_CACHE_PIECES = 16
# How often a super-seed reads its links' acknowledged bytes while written blocks wait:
# 10 ms is a third of a 32 KiB piece at 1 MiB/s.
DELIVERY_POLL = 0.01
# Requests kept in flight to a peer before its rate is known (libtorrent starts slow-start
# at a few requests and grows; 64 x 16 KiB = 1 MiB in flight fills a loopback link at once).
INITIAL_QUEUE_DEPTH = 64
# Our local extension ids (BEP 10: ids are chosen by the receiver).
UT_METADATA_ID = 1
UT_PEX_ID = 2
# The longest the dialer sleeps without being woken, and the ticker between its rounds.
DIALER_PERIOD = 1.0
TICK_PERIOD = 1.0


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
    # A seed unchokes this many interested peers at a time, in turn (the choker's
    # round-robin); None: the choker's usual rule.
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
        clock: Clock | None = None,
        network: net.StreamNetwork | None = None,
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
        self.clock = clock if clock is not None else Clock()
        self.network: net.StreamNetwork = network if network is not None else net.TcpNetwork()
        self.rng = random.Random(config.rng_seed)
        self.stats = TorrentStats()
        self.links: dict[PeerLink, LinkState] = {}
        self.store: PieceStore | None = None
        self.picker: PiecePicker | None = None
        self.choker = Choker(
            rng=self.rng,
            slots=config.unchoke_slots,
            choke_interval=config.choke_interval,
            optimistic_interval=config.optimistic_interval,
            snub_timeout=config.snub_timeout,
            seed_slots=config.seed_unchoke_slots,
        )
        self.peer_book = PeerBook(
            reconnect_min=config.reconnect_min, reconnect_max=config.reconnect_max
        )
        now, sleep = self.clock.now, self.clock.sleep
        self.upload_limiter = RateLimiter(config.upload_rate, clock=now, sleep=sleep)
        self.download_limiter = RateLimiter(config.download_rate, clock=now, sleep=sleep)
        self.listen_port = config.listen_port
        self.complete = asyncio.Event()
        self.metadata_ready = asyncio.Event()
        self.upload_meter = RateMeter(clock=self.clock)
        self.download_meter = RateMeter(clock=self.clock)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.error: HubswarmError | None = None
        self._failed = asyncio.Event()
        self._metadata = MetadataFetch(info_hash)
        self._setup_lock = asyncio.Lock()
        self._upload_cache: dict[int, bytes] = {}
        self._tg: asyncio.TaskGroup | None = None
        # Trackers and web seeds only: opened (and aiohttp imported) on first use.
        self.http = http if http is not None else LazyHttp()
        self._own_http = http is None
        self._wake_dialer = asyncio.Event()
        # Made by _mark_complete when we start complete with config.super_seed (BEP 16).
        self._superseed: SuperSeedDriver[PeerLink] | None = None
        self._delivery_watch: asyncio.Task[None] | None = None
        try:
            self._events_file = events_path.open("a") if events_path is not None else None
        except OSError as exc:
            raise ConfigError(f"cannot open {events_path}: {exc.strerror or exc}") from exc
        for address in peers:
            self.add_peer(address)

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> TorrentSession:
        self.stats.started_at = self.clock.wall()
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        try:
            if self.info is not None:
                await self._setup(self.info)
            self._spawn(self._dialer(), critical=True)
            self._spawn(self._ticker(), critical=True)
            if self.trackers:
                self._spawn(announce.announce_loop(self))
            if self.dht is not None and self.config.use_dht and not self.private:
                self._spawn(announce.dht_loop(self))
            if self.config.webseed_mode != "off":
                for url in self.web_seeds:
                    for n in range(self.config.webseed_workers):
                        self._spawn(run_webseed_worker(self, url, n))
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
                await announce.announce_all(self, "stopped", timeout=announce.STOPPED_TIMEOUT)
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
            await self.http.close()
        if self._events_file is not None:
            self._events_file.close()
            self._events_file = None

    @property
    def private(self) -> bool:
        """BEP 27: known to be private (a magnet's torrent only once its metadata came)."""
        return self.info is not None and self.info.private

    def _log_event(self, kind: str, **fields: Any) -> None:
        if self._events_file is not None:
            record = {"t": self.clock.wall(), "event": kind, **fields}
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
        self.stats.completed_at = self.clock.wall()
        self.complete.set()
        self._log_event("complete")
        log.info("torrent %s complete", self.info_hash.hex())
        downloaded = self.stats.downloaded_from_peers + self.stats.downloaded_from_webseeds
        if self.config.super_seed and downloaded == 0 and self.info is not None:
            self._start_superseeding(self.info)
        for link, st in list(self.links.items()):
            if link.conn.am_interested:
                link.send(NotInterested())
            if st.is_seed:  # two seeds have nothing to say to each other
                st.pointless = True
                link.close()
        if self.trackers and self._tg is not None and not self._stopping:
            self._spawn(self._announce_completed())

    async def _announce_completed(self) -> None:
        with contextlib.suppress(HubswarmError, TimeoutError):
            await announce.announce_all(self, "completed")

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

    # --- peer sources and connections -----------------------------------------------------

    def add_peer(self, address: tuple[str, int]) -> None:
        """A candidate address to dial (from a tracker, the DHT, a magnet or the CLI)."""
        if self.peer_book.add(address):
            self._wake_dialer.set()

    def is_banned(self, address: tuple[str, int]) -> bool:
        """True for an address (or its IP) banned for sending corrupt data."""
        return self.peer_book.is_banned(address)

    def connected_addresses(self) -> set[tuple[str, int]]:
        """Addresses we need not dial: every link's, and the listen port (BEP 10 ``p``) an
        incoming link told us, so that two peers finding each other do not connect twice."""
        out = {link.address for link in self.links}
        for link in self.links:
            ext = link.conn.remote_extended_handshake
            if not link.outgoing and ext is not None and ext.p:
                out.add((link.address[0], ext.p))
        return out

    async def _dialer(self) -> None:
        while True:
            self._wake_dialer.clear()
            book = self.peer_book
            if not (self.complete.is_set() and not self.config.seed):
                room = self.config.max_peers - len(self.links) - len(book.connecting)
                connected = self.connected_addresses()
                for address in book.due(self.clock(), room=room, connected=connected):
                    self._spawn(self._dial(address))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DIALER_PERIOD):
                    await self._wake_dialer.wait()

    async def _dial(self, address: tuple[str, int]) -> None:
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
        try:
            protocol = await dial(
                self.network,
                conn,
                address,
                connect_timeout=self.config.connect_timeout,
                handshake_timeout=HANDSHAKE_TIMEOUT,
            )
        except (RemoteProtocolError, OSError, TimeoutError) as exc:
            log.debug("dial %s:%d failed: %s", *address, exc)
            self.peer_book.dialled(address, ok=False)
            self._retry(address)
            return
        except BaseException:
            self.peer_book.dialled(address, ok=False)
            raise
        self.peer_book.dialled(address, ok=True)
        await self.run_link(protocol, address, outgoing=True)

    @property
    def _advertise_dht(self) -> bool:
        # BEP 27: a private torrent's peers must not advertise or use the DHT.
        return self.dht is not None and self.config.use_dht and not self.private

    def _retry(self, address: tuple[str, int], delay: float | None = None) -> None:
        """Dial ``address`` again later: after ``delay``, else with doubling back-off."""
        if self.peer_book.retry(address, self.clock(), delay):
            self._wake_dialer.set()

    async def run_incoming(self, protocol: WireProtocol, address: tuple[str, int]) -> None:
        """Run an accepted connection as a task of this session (it ends with the session)."""
        try:
            task = self._spawn(self.run_link(protocol, address, outgoing=False))
        except LocalProtocolError:
            protocol.transport.close()  # the session is stopping
            return
        try:
            # wait() rather than await: the link ending cancelled (the session stopped) is a
            # normal end for the listener's handler, which asyncio must not see cancelled.
            await asyncio.wait({task})
        except asyncio.CancelledError:
            task.cancel()
            raise

    async def run_link(
        self, protocol: WireProtocol, address: tuple[str, int], *, outgoing: bool
    ) -> None:
        """Run an established connection (ours or accepted by the listener) until it ends."""
        if not self._admit(protocol.conn, address, outgoing=outgoing):
            protocol.transport.close()
            return
        if self.info is not None:
            protocol.conn.set_num_pieces(self.info.num_pieces)
        limiter = self.upload_limiter
        if self.config.peer_upload_rate:
            limiter = RateLimiter(
                self.config.peer_upload_rate,
                parent=self.upload_limiter,
                clock=self.clock.now,
                sleep=self.clock.sleep,
            )
        link = PeerLink(
            self,
            protocol,
            address,
            outgoing=outgoing,
            upload_limiter=limiter,
            download_limiter=self.download_limiter,
            clock=self.clock,
        )
        self.links[link] = LinkState()
        if outgoing:
            self.peer_book.connected(address)
        self._log_event("peer_connected", peer=f"{address[0]}:{address[1]}", outgoing=outgoing)
        try:
            link.send_many(self._opening(link))
        except (OSError, LocalProtocolError) as exc:
            log.debug("opening to %r failed: %s", link, exc)
            link.close()
        await link.run()

    def _admit(
        self, conn: wire.PeerConnection, address: tuple[str, int], *, outgoing: bool
    ) -> bool:
        """Keep this connection? Not to ourselves, a banned peer, beyond the cap, nor a
        second one to the same peer (both ends keep the one the smaller peer_id dialled)."""
        hs = conn.remote_handshake
        if hs is not None and hs.peer_id == self.config.peer_id:
            self.peer_book.mark_own(address)  # we dialled ourselves (a tracker lists us too)
            return False
        book = self.peer_book
        if (
            hs is None
            or book.is_banned(address)
            or book.is_banned_peer_id(hs.peer_id)
            or len(self.links) >= self.config.max_peers * 2
        ):
            if outgoing:
                self._retry(address)
            return False
        for other in list(self.links):
            other_hs = other.conn.remote_handshake
            if other_hs is None or other_hs.peer_id != hs.peer_id:
                continue
            mine_first = self.config.peer_id < hs.peer_id
            if outgoing == mine_first and other.outgoing != mine_first:
                other.close()
                return True
            if outgoing:
                self._retry(address, self.config.reconnect_max)
            return False
        return True

    def _opening(self, link: PeerLink) -> list[Event]:
        """Our first messages: the extended handshake, then what we have (BEP 3, 6, 10, 16)."""
        conn = link.conn
        opening: list[Event] = []
        if conn.supports_extensions:
            opening.append(
                ExtendedHandshake(
                    m=self._extensions(),
                    metadata_size=len(self.info.raw) if self.info is not None else None,
                    v=f"hubswarm {__version__}",
                    p=self.listen_port or None,
                    reqq=MAX_INCOMING_REQUEST_QUEUE,
                )
            )
        have = self.picker.have if self.picker is not None else None
        offers = None
        if self._superseed is not None:
            # A new link starts choked (BEP 3): its offers' clocks wait for the unchoke.
            offers = self._superseed.opening(link, self.clock(), choked=conn.am_choking)
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
        return opening

    def link_closed(self, link: PeerLink, error: BaseException | None) -> None:
        """Forget a link: its pieces leave the availability count, its blocks go back."""
        st = self.links.pop(link, None)
        if st is None:
            return
        if self.picker is not None:
            self.picker.peer_left(link, st.has)
        self._metadata.peer_left(link)
        sup = self._superseed
        if sup is not None and sup.is_waiting(link):
            # What it acknowledged before it went counts; the rest is lost with it.
            out = sup.delivered(link, link.bytes_acked(), self.clock(), closed=True)
            if out or sup.policy.hunger_changed:
                self._superseed_announce(out)
        if self._superseed is not None:
            self._superseed.peer_left(link)
        st.inflight.clear()
        if link.outgoing and not self._stopping:
            # Seeds have nothing for a seed: call again only after the longest back-off.
            self._retry(link.address, self.config.reconnect_max if st.pointless else None)
        self._log_event("peer_closed", peer=f"{link.address[0]}:{link.address[1]}")
        self._wake_dialer.set()

    # --- events from links ----------------------------------------------------------------

    async def on_event(self, link: PeerLink, event: Event) -> None:
        """Dispatch one message from a peer (BEP 3, 6, 9, 10, 11)."""
        st = self.links.get(link)
        if st is None:
            return  # the link is being closed
        match event:
            case Piece():
                await self._on_piece(link, st, event)
            case Have(piece_index=i):
                self._on_have(link, st, i)
            case BitfieldMsg(bitfield=bits):
                if st.has is not None:
                    self._late_bitfield(link, st, bits, everything=False)
                    return
                st.pending_bitfield = bits
                self._adopt_pending(link)
            case HaveAll():
                if st.has is not None:
                    self._late_bitfield(link, st, b"", everything=True)
                    return
                st.pending_all = True
                self._adopt_pending(link)
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
                self._fill_requests(link, st)
            case Choke():
                if self.picker is not None:
                    for req in self.picker.peer_choked(link, st.allowed_fast):
                        st.inflight.discard(req)
            case Interested():
                self._maybe_unchoke_now(link)
            case Reject(piece_index=i, begin=b, length=n):
                req = BlockRequest(i, b, n)
                if self.picker is not None and req in st.inflight:
                    st.inflight.discard(req)
                    self.picker.request_rejected(link, req)
            case AllowedFast(piece_index=i):
                st.allowed_fast.add(i)
            case ExtendedHandshake():
                self._request_metadata(link)
                self._pex_round(self.clock())
            case PeerExchange(added=added):
                if self._pex_enabled() and st.pex.accept(self.clock()):
                    self._log_event("pex", peer=link.address[0], added=len(added))
                    for address in added:
                        self.add_peer(address)
            case MetadataRequest(piece=piece):
                self._serve_metadata(link, piece)
            case MetadataData():
                await self._on_metadata(link, event)
            case MetadataReject(piece=piece):
                self._metadata.rejected(link, piece)
            case _:
                pass  # keep-alive, have none, not interested, port, suggest, unknown ones

    def _on_have(self, link: PeerLink, st: LinkState, i: int) -> None:
        if st.has is None:
            st.remember_have(i)
            if self.picker is None:
                return
            self._adopt_pending(link)  # no bitfield came first: it starts empty
            if st.has is None or link.closed:
                return
        elif not st.has[i]:
            st.has.set(i)
            picker = self.picker
            if picker is not None:
                picker.peer_have(i)
                st.is_seed = st.has.is_complete
                # Haves are most of the messages of a swarm: one cannot make an interesting
                # peer more so, nor one whose piece we have; only top up the first's queue.
                if link.conn.am_interested:
                    self._fill_requests(link, st)
                elif not picker.have[i]:
                    self._update_interest(link, st)
        if self._superseed is not None and st.has is not None:
            now = self.clock()
            self._superseed_announce(self._superseed.peer_have(link, i, st.has, now))
            self._superseed_tick(now)

    def _adopt_pending(self, link: PeerLink) -> None:
        """Turn what the peer said before we knew the piece count into its have-set."""
        st = self.links.get(link)
        if st is None or self.info is None or self.picker is None:
            return
        try:
            new = st.adopt(self.info.num_pieces)
        except HubswarmError as exc:
            log.debug("%r: %s", link, exc)
            link.close()
            return
        if new is not None:
            self.picker.peer_bitfield(new)
        self._after_bitfield(link, st)

    def _late_bitfield(
        self, link: PeerLink, st: LinkState, bits: bytes, *, everything: bool
    ) -> None:
        """A bitfield or have-all after the first message (aria2 does it): new pieces only."""
        if self.picker is None:
            return
        for i in st.merge_late(bits, everything=everything):
            self.picker.peer_have(i)
        self._after_bitfield(link, st)

    def _after_bitfield(self, link: PeerLink, st: LinkState) -> None:
        if self.is_seed and st.is_seed:
            st.pointless = True
            link.close()
            return
        self._update_interest(link, st)

    def _update_interest(self, link: PeerLink, st: LinkState) -> None:
        if self.picker is None or st.has is None:
            return
        want = not self.picker.is_complete and self.picker.is_interesting(st.has)
        if want and not link.conn.am_interested:
            link.send(Interested())
        elif not want and link.conn.am_interested:
            link.send(NotInterested())
        if want:
            self._fill_requests(link, st)

    # --- the request pipeline -------------------------------------------------------------

    def _fill_requests(self, link: PeerLink, st: LinkState) -> None:
        """Keep the peer's request pipeline full (depth adapted to its measured rate)."""
        picker = self.picker
        if picker is None or st.has is None or link.closed or not link.conn.am_interested:
            return
        if link.conn.peer_choking and not st.allowed_fast:
            return
        # Called after every block: while the queue is above 3/4 of the depth chosen last
        # time, return before measuring the rate (refills come in batches of depth / 4).
        if st.queue_depth and len(st.inflight) > st.queue_depth - max(1, st.queue_depth // 4):
            return
        # Slow start: a new link gets a deep queue at once (its rate is unknown yet); then
        # rate x queue time.
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

    async def _on_piece(self, link: PeerLink, st: LinkState, event: Piece) -> None:
        if self.picker is None or self.store is None:
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
            # Hash and write in a task of the session, so this link keeps reading meanwhile.
            # The picker counts the piece as in progress until piece_complete, so
            # max_in_progress bounds these tasks and the memory they hold.
            try:
                self._spawn(self._finish_piece(req.piece_index, source="peer"))
            except LocalProtocolError:
                return  # the session is stopping: the piece is dropped with it
        self._fill_requests(link, st)

    async def accept_block(
        self, key: object, req: BlockRequest, block: bytes, *, source: str
    ) -> None:
        """Store one block (from a web seed); when its piece is complete, verify and announce it."""
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
            if not isinstance(other, PeerLink) or other.closed or other not in self.links:
                continue
            self.links[other].inflight.discard(dup)
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
            for link in links:
                self._judge(link, good=False, alone=len(contributors) == 1)
            return
        for link in links:
            self._judge(link, good=True)
        if source == "webseed":
            self.stats.pieces_from_webseeds += 1
        self._log_event(
            "piece", index=index, source=source, peers=[f"{lk.address[0]}" for lk in links]
        )
        for link, st in list(self.links.items()):
            if link.closed:
                continue
            if st.has is None or not st.has[index]:
                link.send(Have(index))
            has = st.has
            if link.conn.am_interested and has is not None and not picker.is_interesting(has):
                link.send(NotInterested())
        if picker.is_complete:
            self._mark_complete()

    def _judge(self, link: PeerLink, *, good: bool, alone: bool = False) -> None:
        """Trust for a piece ``link`` contributed to; a peer that falls too low is banned."""
        book, key = self.peer_book, link.address
        if good:
            book.good_piece(key)
            return
        hs = link.conn.remote_handshake
        change = book.bad_piece(key, alone=alone, peer_id=hs.peer_id if hs else None)
        if change.banned:
            log.warning("banning %s:%d: trust %d after bad pieces", *key, change.trust)
            self.stats.banned += 1
            self._log_event("banned", peer=f"{key[0]}:{key[1]}")
            link.close()

    # --- uploads and choking --------------------------------------------------------------

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

    def _maybe_unchoke_now(self, link: PeerLink) -> None:
        """A peer became interested: a free slot need not wait for the next round."""
        if self._superseed is not None:
            self._superseed_fill_slots()  # slots go to peers waiting for an offered piece
            return
        unchoked = sum(1 for lk in self.links if not lk.conn.am_choking)
        if link.conn.am_choking and self.choker.can_unchoke_now(unchoked, seeding=self.is_seed):
            self._set_choking(link, False)

    def _choke_round(self, now: float) -> None:
        links = [(lk, st) for lk, st in self.links.items() if not lk.closed]
        stats = [
            PeerStats(
                peer_id=lk,
                interested=lk.conn.peer_interested,
                download_rate=lk.download_rate.rate,
                upload_rate=lk.upload_rate.rate,
                connected_at=lk.connected_at,
                last_piece_at=st.last_piece_at,
                am_interested=lk.conn.am_interested,
                snubbed=st.snubbed,
            )
            for lk, st in links
        ]
        unchoke: set[PeerLink] | frozenset[object] = self.choker.decide(
            stats, now, seeding=self.is_seed
        ).unchoke
        if self._superseed is not None:
            unchoke = self._superseed.unchoke(*self._interested_links())
        for lk, _ in links:
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

    def _interested_links(self) -> tuple[list[PeerLink], set[PeerLink]]:
        """Interested links, oldest connection first, and those of them we unchoke."""
        ready = sorted(
            (lk for lk in self.links if not lk.closed and lk.conn.peer_interested),
            key=lambda lk: lk.connected_at,
        )
        return ready, {lk for lk in ready if not lk.conn.am_choking}

    # --- super-seeding (BEP 16; the decisions are SuperSeedDriver's) ----------------------

    def _start_superseeding(self, info: InfoDict) -> None:
        """Complete without downloading a byte: we started as a seed (BEP 16 is for the
        initial seed; a leech that finished seeds as usual)."""
        self._superseed = SuperSeedDriver(
            info.num_pieces,
            info.piece_size,
            rng=self.rng,
            # An offer not fetched and passed on within a request timeout has stalled.
            offer_timeout=self.config.request_timeout,
            slots=self.config.unchoke_slots + 1,
        )
        # Links opened before the metadata (magnet) were sent no pieces yet: offer some.
        now = self.clock()
        for link in list(self.links):
            offers = self._superseed.opening(link, now, choked=link.conn.am_choking)
            if offers:
                self._superseed_announce({link: offers})

    def blocks_written(self, link: PeerLink, requests: list[Request], end: int) -> None:
        """While super-seeding, remember written blocks until the peer holds them."""
        sup = self._superseed
        if sup is None or not requests:
            return
        sup.written(link, requests, end)
        watch = self._delivery_watch
        if watch is None or watch.done():
            with contextlib.suppress(LocalProtocolError):  # the session is stopping
                self._delivery_watch = self._spawn(self._watch_deliveries())

    async def _watch_deliveries(self) -> None:
        """Read the links' acknowledged bytes every ``DELIVERY_POLL`` while blocks wait."""
        while self._superseed is not None and self._superseed.waiting:
            await self.clock.sleep(DELIVERY_POLL)
            sup = self._superseed
            if sup is None:
                return
            now, out = self.clock(), Announce()
            for link in sup.waiting_peers():
                merge(out, sup.delivered(link, link.bytes_acked(), now, closed=link.closed))
            if out or sup.policy.hunger_changed:
                self._superseed_announce(out)

    def _superseed_tick(self, now: float) -> None:
        """Forget links that closed and replace offers that timed out."""
        if self._superseed is not None:
            out = self._superseed.tick(now, self.links)
            if out is not None:
                self._superseed_announce(out)

    def _superseed_announce(self, out: Announce) -> None:
        """Send the driver's offers as `have`; once it ends, seed as usual from then on."""
        sup = self._superseed
        if sup is None:
            return
        out, rebalance = sup.settle(out, self.clock())
        for peer, pieces in out.items():
            if isinstance(peer, PeerLink) and not peer.closed and pieces:
                peer.send_many([Have(i) for i in pieces])
        if rebalance:
            self._superseed_fill_slots()  # new offers, or a peer got its last one
        if not sup.active:
            self._superseed = None
            self.stats.uploaded_at_superseed_done = self.stats.uploaded
            self._log_event("superseed_done", uploaded=self.stats.uploaded)
            log.info("super-seeding ended: every piece is on a peer")

    def _superseed_fill_slots(self) -> None:
        """Unchoke waiting hungry peers now if fewer than the slots are being served.

        Only unchokes: a choke here could land between a block's accounting and its write
        (read_block runs inside the upload loop); the choke round takes the slots back.
        """
        if self._superseed is not None:
            for lk in self._superseed.to_unchoke_now(*self._interested_links()):
                self._set_choking(lk, False)

    # --- peer exchange (BEP 11; the messages are PexPeer's) -------------------------------

    def _extensions(self) -> dict[str, int]:
        """Our BEP 10 extension ids; no ut_pex for a torrent known to be private (BEP 27)."""
        m = {wire.UT_METADATA: UT_METADATA_ID}
        if self.config.use_pex and not self.private:
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
        """Tell each PEX peer what changed among our peers, at most once per interval."""
        if not self._pex_enabled():
            return
        current = self._pex_addresses()
        for link, st in list(self.links.items()):
            if link.closed or wire.UT_PEX not in link.conn.remote_extensions:
                continue
            ext = link.conn.remote_extended_handshake
            itself = {link.address, (link.address[0], ext.p if ext is not None and ext.p else 0)}
            message = st.pex.message(current, itself, now)
            if message is None:
                continue
            try:
                link.send(message)
            except LocalProtocolError as exc:
                log.debug("ut_pex to %r: %s", link, exc)
                continue
            st.pex.sent(message, now)

    # --- metadata (BEP 9; the pieces are MetadataFetch's) ---------------------------------

    def _request_metadata(self, link: PeerLink) -> None:
        size = link.conn.remote_metadata_size
        if self.info is not None or size is None:
            return
        if wire.UT_METADATA in link.conn.remote_extensions:
            link.send_many([MetadataRequest(p) for p in self._metadata.requests_for(link, size)])

    def _serve_metadata(self, link: PeerLink, piece: int) -> None:
        if wire.UT_METADATA not in link.conn.remote_extensions:
            return
        data = metadata_piece(self.info.raw, piece) if self.info is not None else None
        if data is None or self.info is None:
            link.send(MetadataReject(piece))
            return
        link.send(MetadataData(piece, len(self.info.raw), data))

    async def _on_metadata(self, link: PeerLink, event: MetadataData) -> None:
        if self.info is not None:
            self._metadata.rejected(link, event.piece)
            return
        try:
            raw = self._metadata.received(link, event)
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
                    st = self.links.get(key) if isinstance(key, PeerLink) else None
                    if st is not None:
                        st.inflight.discard(req)
                        st.snubbed = True
                for link, st in list(self.links.items()):
                    self._fill_requests(link, st)
            # Offers to peers that went quiet expire with the clock, not with traffic.
            self._superseed_tick(now)
            self._pex_round(now)
            await self.clock.sleep(min(TICK_PERIOD, self.config.choke_interval))

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
