"""One torrent in the swarm: lifecycle, peer links, event dispatch, uploads.

Theory of operation
-------------------
A :class:`TorrentSession` is an ``async with`` object whose tasks live in one
:class:`.supervisor.Supervisor` (a TaskGroup in which a bug ends only its own task): the
:class:`.dialer.Dialer`, the ticker (choke rounds, request time-outs, PEX, super-seed
offers), the tracker and DHT loops (:mod:`.announce`), the web-seed workers
(:mod:`.webseed_worker`), and one task per peer link, incoming ones (``run_incoming``) too.

Each link's events come to :meth:`TorrentSession.on_event`, which decides synchronously with
pure code and then does the I/O: the :class:`.peerbook.PeerBook` (candidates, back-off,
trust, bans), :mod:`.admission` (which connections stay, their first messages), the
:class:`.picker.PiecePicker` (which blocks to request), the :class:`.choker.Choker`, and
:class:`.linkstate.LinkState` (each link's have-set and requests in flight). The I/O around
the other policies lives in shells beside them: :mod:`.pipeline` (requests out, blocks in,
pieces verified), :mod:`.choke_shell`, :mod:`.guard_shell`, :mod:`.pex_shell` (BEP 11),
:mod:`.metadata_shell` (BEP 9) and :mod:`.superseed_shell` (BEP 16).

Every piece is SHA-1 checked before it is written or announced with ``have``; peers lose
trust for bad pieces they contributed to and are banned at the book's threshold. A magnet
starts without an info dict: links fetch it (BEP 9), and the download proceeds as for a
.torrent. Time is the injected :class:`~hubswarm.clock.Clock`'s and connections the injected
:class:`~hubswarm.net.StreamNetwork`'s: a session runs unchanged in virtual time in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Coroutine, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from hubswarm import net
from hubswarm.clock import Clock
from hubswarm.errors import HubswarmError, LocalProtocolError, StorageError
from hubswarm.proto import wire
from hubswarm.proto.metainfo import InfoDict
from hubswarm.proto.wire_events import (
    AllowedFast,
    Cancel,
    Choke,
    Event,
    ExtendedHandshake,
    Have,
    HaveAll,
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
from hubswarm.swarm import (
    admission,
    announce,
    choke_shell,
    guard_shell,
    metadata_shell,
    pex_shell,
    pipeline,
)
from hubswarm.swarm.choker import Choker
from hubswarm.swarm.config import (
    CORRUPT_PREFIX,
    DHTLike,
    SessionConfig,
    TorrentStats,
)
from hubswarm.swarm.dialer import Dialer
from hubswarm.swarm.eventlog import EventLog
from hubswarm.swarm.http import LazyHttp
from hubswarm.swarm.linkstate import LinkState
from hubswarm.swarm.metadata import MetadataFetch
from hubswarm.swarm.peer import PeerLink, RateMeter, WireProtocol
from hubswarm.swarm.peerbook import PeerBook
from hubswarm.swarm.picker import BlockRequest, PiecePicker
from hubswarm.swarm.storage import PieceStore
from hubswarm.swarm.superseed_shell import SuperSeeding
from hubswarm.swarm.supervisor import Supervisor
from hubswarm.swarm.webseed_worker import run_webseed_worker

__all__ = ["SessionConfig", "TorrentSession", "TorrentStats"]  # the config: for hubswarm.lab

log = logging.getLogger(__name__)

# Pieces kept in memory for uploads: each upload request for a block of a cached piece
# is served without a disk read (one read per piece instead of one per 16 KiB block).
UPLOAD_CACHE_PIECES = 16
# The longest the ticker sleeps between its rounds (choke rounds come at most this late).
TICK_PERIOD = 1.0


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
        # Hands the slots of unchoked peers that ask for nothing to waiting ones.
        self.slot_watch = choke_shell.SlotWatch(self)
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
        self._tasks = Supervisor(self.fail)
        self.error: HubswarmError | None = None
        self._failed = asyncio.Event()
        self.metadata = MetadataFetch(info_hash)
        self._setup_lock = asyncio.Lock()
        self._upload_cache: dict[int, bytes] = {}
        # Trackers and web seeds only: opened (and aiohttp imported) on first use.
        self.http = http if http is not None else LazyHttp()
        self._own_http = http is None
        self.dialer = Dialer(self)
        # Made by mark_complete when we start complete with config.super_seed (BEP 16).
        self.superseed: SuperSeeding | None = None
        self._events = EventLog(events_path, self.clock)
        for address in peers:
            self.add_peer(address)

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> TorrentSession:
        self.stats.started_at = self.clock.wall()
        await self._tasks.start()
        try:
            if self.info is not None:
                await self.setup(self.info)
            self.spawn(self.dialer.run(), critical=True)
            self.spawn(self._ticker(), critical=True)
            if self.trackers:
                self.spawn(announce.announce_loop(self))
            if self.dht is not None and self.config.use_dht and not self.private:
                self.spawn(announce.dht_loop(self))
            if self.config.webseed_mode != "off":
                for url in self.web_seeds:
                    for n in range(self.config.webseed_workers):
                        self.spawn(run_webseed_worker(self, url, n))
        except BaseException:
            await self._stop()
            raise
        return self

    def spawn(
        self, coro: Coroutine[Any, Any, None], *, critical: bool = False
    ) -> asyncio.Task[None]:
        """Start a task of the session (see :class:`.supervisor.Supervisor`); a bug in one
        ends only that task, or fails the session in a ``critical`` loop (dialer, ticker).

        Raises:
            LocalProtocolError: the session is not running.
        """
        return self._tasks.spawn(coro, critical=critical)

    def fail(self, error: HubswarmError) -> None:
        """A fatal error (disk full, ...): ``wait_complete`` raises it."""
        if self.error is None:
            self.error = error
            self.log_event("failed", error=str(error))
            self._failed.set()

    async def __aexit__(self, *exc_info: object) -> None:
        await self._stop()

    async def _stop(self) -> None:
        if self.trackers and self._tasks.running:
            with contextlib.suppress(HubswarmError, TimeoutError):
                await announce.announce_all(self, "stopped", timeout=announce.STOPPED_TIMEOUT)
        self._tasks.begin_close()
        for link in list(self.links):
            link.close()
        await self._tasks.close()  # cancels the long-running loops, waits for every task
        if self.store is not None:
            await self.store.close()
        if self._own_http:
            await self.http.close()
        self._events.close()

    @property
    def private(self) -> bool:
        """BEP 27: known to be private (a magnet's torrent only once its metadata came)."""
        return self.info is not None and self.info.private

    def log_event(self, kind: str, **fields: Any) -> None:
        """A record in the ``events_path`` log (see :class:`.eventlog.EventLog`)."""
        self._events.write(kind, **fields)

    async def setup(self, info: InfoDict) -> None:
        """Open the storage, recheck existing data and build the picker."""
        async with self._setup_lock:
            if self.store is not None:
                return
            self.info = info
            store = PieceStore(info, self.out_dir, piece_pool=self.config.piece_pool)
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
            self.log_event("metadata", pieces=info.num_pieces, have=have.count())
            if self.picker.is_complete:
                self.mark_complete()
            for link in list(self.links):
                self._adopt_pending(link)
            pex_shell.pex_round(self, self.clock())  # a magnet's: now it is known public

    @property
    def left(self) -> int:
        """Bytes still missing (for tracker announces)."""
        if self.info is None or self.picker is None:
            return 1  # unknown yet (a magnet): anything but 0, which would make us a seed
        return sum(self.info.piece_size(i) for i in self.picker.have.missing())

    @property
    def is_seed(self) -> bool:
        return self.picker is not None and self.picker.is_complete

    @property
    def stopping(self) -> bool:
        """The session is closing: its tasks are being cancelled, start no new work."""
        return self._tasks.closing

    def mark_complete(self) -> None:
        """Every piece is verified: tell the waiters, peers and trackers (once)."""
        if self.complete.is_set():
            return
        self.stats.completed_at = self.clock.wall()
        self.complete.set()
        self.log_event("complete")
        log.info("torrent %s complete", self.info_hash.hex())
        downloaded = self.stats.downloaded_from_peers + self.stats.downloaded_from_webseeds
        if self.config.super_seed and downloaded == 0 and self.info is not None:
            # BEP 16 is for the initial seed; a leech that finished seeds as usual.
            self.superseed = SuperSeeding(self, self.info)
            self.superseed.start(self.links)
        for link, st in list(self.links.items()):
            if link.conn.am_interested:
                link.send(NotInterested())
            if st.is_seed:  # two seeds have nothing to say to each other
                st.pointless = True
                link.close()
        if self.trackers and self._tasks.running:
            self.spawn(self._announce_completed())

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
        self.dialer.add(address)

    def is_banned(self, address: tuple[str, int]) -> bool:
        """True for an address (or its IP) banned for sending corrupt data."""
        return self.peer_book.is_banned(address)

    @property
    def advertise_dht(self) -> bool:
        """BEP 27: a private torrent's peers must not advertise or use the DHT."""
        return self.dht is not None and self.config.use_dht and not self.private

    async def run_incoming(self, protocol: WireProtocol, address: tuple[str, int]) -> None:
        """Run an accepted connection as a task of this session (it ends with the session)."""
        try:
            task = self.spawn(self.run_link(protocol, address, outgoing=False))
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
        limiter, rate, clock = self.upload_limiter, self.config.peer_upload_rate, self.clock
        if rate:  # a limit per peer, within the limit of all peers together
            limiter = RateLimiter(rate, parent=limiter, clock=clock.now, sleep=clock.sleep)
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
        self.log_event("peer_connected", peer=f"{address[0]}:{address[1]}", outgoing=outgoing)
        try:
            link.send_many(self._opening(link))
        except (OSError, LocalProtocolError) as exc:
            log.debug("opening to %r failed: %s", link, exc)
            link.close()
        await link.run()

    def _admit(
        self, conn: wire.PeerConnection, address: tuple[str, int], *, outgoing: bool
    ) -> bool:
        """Keep this connection? (the connection policy: :func:`.guard_shell.admit`)."""
        return guard_shell.admit(self, conn, address, outgoing=outgoing)

    def _opening(self, link: PeerLink) -> list[Event]:
        """Our first messages (BEP 3, 6, 10, 16): see :func:`.admission.opening`."""
        conn, info = link.conn, self.info
        handshake = None
        if conn.supports_extensions:
            handshake = admission.extended_handshake(
                admission.our_extensions(use_pex=self.config.use_pex, private=self.private),
                len(info.raw) if info is not None else None,
                self.listen_port,
            )
        return admission.opening(
            handshake=handshake,
            supports_fast=conn.supports_fast,
            have=self.picker.have if self.picker is not None else None,
            offers=self.superseed.opening(link) if self.superseed is not None else None,
        )

    def link_closed(self, link: PeerLink, error: BaseException | None) -> None:
        """Forget a link: its pieces leave the availability count, its blocks go back."""
        st = self.links.pop(link, None)
        if st is None:
            return
        if self.picker is not None:
            self.picker.peer_left(link, st.has)
        self.metadata.peer_left(link)
        if self.superseed is not None:
            self.superseed.link_closed(link)
        st.inflight.clear()
        if link.outgoing and not self._tasks.closing:
            # Seeds have nothing for a seed: call again only after the longest back-off.
            self.dialer.retry(link.address, self.config.reconnect_max if st.pointless else None)
        self.log_event("peer_closed", peer=f"{link.address[0]}:{link.address[1]}")
        self.dialer.wake()

    # --- events from links ----------------------------------------------------------------

    async def on_event(self, link: PeerLink, event: Event) -> None:
        """Dispatch one message from a peer (BEP 3, 6, 9, 10, 11)."""
        st = self.links.get(link)
        if st is None:
            return  # the link is being closed
        match event:
            case Piece():
                self.on_pieces(link, [event])
            case Request():  # second: a seed's every message
                sup = self.superseed
                if link.conn.am_choking or (
                    sup is not None and not sup.allows(link, event.piece_index)
                ):
                    if link.conn.supports_fast:
                        link.send(Reject(event.piece_index, event.begin, event.length))
                    return
                link.queue_upload(event)
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
            case Cancel(piece_index=i, begin=b, length=n):
                link.cancel_upload(Request(i, b, n))
            case Unchoke():
                pipeline.fill_requests(self, link, st)
            case Choke():
                if self.picker is not None:
                    for req in self.picker.peer_choked(link, st.allowed_fast):
                        st.inflight.discard(req)
            case Interested():
                choke_shell.unchoke_now(self, link)
            case NotInterested():
                choke_shell.give_slot_back(self, link)
            case Reject(piece_index=i, begin=b, length=n):
                req = BlockRequest(i, b, n)
                if self.picker is not None and req in st.inflight:
                    st.inflight.discard(req)
                    self.picker.request_rejected(link, req)
            case AllowedFast(piece_index=i):
                st.allowed_fast.add(i)
            case ExtendedHandshake():
                metadata_shell.request_metadata(self, link)
                pex_shell.pex_round(self, self.clock())
            case PeerExchange(added=added):
                pex_shell.on_pex(self, link, st, added)
            case MetadataRequest(piece=piece):
                metadata_shell.serve_metadata(self, link, piece)
            case MetadataData():
                await metadata_shell.on_metadata(self, link, event)
            case MetadataReject(piece=piece):
                self.metadata.rejected(link, piece)
            case _:
                pass  # keep-alive, have none, not interested, port, suggest, unknown ones

    def _on_have(self, link: PeerLink, st: LinkState, i: int) -> None:
        if st.has is None:
            first = not st.pending_haves and st.pending_bitfield is None and not st.pending_all
            st.remember_have(i)
            if self.picker is None:
                if first:
                    metadata_shell.request_metadata(self, link, holder=True)
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
                    pipeline.fill_requests(self, link, st)
                elif not picker.have[i]:
                    self._update_interest(link, st)
        if self.superseed is not None and st.has is not None:
            self.superseed.peer_have(link, i, st.has)

    def _adopt_pending(self, link: PeerLink) -> None:
        """Turn what the peer said before we knew the piece count into its have-set."""
        st = self.links.get(link)
        if st is None:
            return
        if self.info is None or self.picker is None:
            if st.pending_bitfield is not None or st.pending_all:
                metadata_shell.request_metadata(self, link, holder=True)
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
            pipeline.fill_requests(self, link, st)

    # --- the download path (:mod:`.pipeline`) ---------------------------------------------

    def on_pieces(self, link: PeerLink, pieces: list[Piece]) -> None:
        """Handle a run of ``piece`` messages from one read: :func:`.pipeline.on_pieces`."""
        pipeline.on_pieces(self, link, pieces)

    async def accept_block(
        self, key: object, req: BlockRequest, block: bytes, *, source: str
    ) -> None:
        """Store one block (from a web seed); when its piece is complete, verify and announce it."""
        await pipeline.accept_block(self, key, req, block, source=source)

    # --- uploads and choking --------------------------------------------------------------

    async def read_block(self, link: PeerLink, request: Request) -> bytes | memoryview | None:
        """Bytes for an upload (from the piece cache, else one disk read per piece): a view
        into the cached piece, copied once when the link joins its batch into one write."""
        store = self.store
        if store is None or link.conn.am_choking:
            return None
        i = request.piece_index
        if not store.have[i]:
            return None
        sup = self.superseed
        if sup is not None:
            if not sup.allows(link, i):
                return None
            sup.tick(self.clock())
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
        block: bytes | memoryview = memoryview(piece)[request.begin : end]
        if self.config.corrupt_uploads:
            n = CORRUPT_PREFIX
            block = bytes(b ^ 0xFF for b in block[:n]) + block[n:]
        return block

    def set_choking(self, link: PeerLink, choke: bool) -> None:
        """Choke or unchoke a link; a super-seed's offers time out only while unchoked."""
        link.send(Choke() if choke else Unchoke())
        if not choke:
            self.slot_watch.unchoked(link)
        if self.superseed is not None:
            self.superseed.set_choked(link, choke)

    def blocks_written(self, link: PeerLink, requests: list[Request], end: int) -> None:
        """Count uploaded blocks (once per write: one clock read per batch, not per block);
        while super-seeding, remember written blocks until the peer holds them."""
        n = sum(r.length for r in requests)
        self.stats.uploaded += n
        self.upload_meter.add(n)
        if self.superseed is not None and requests:
            self.superseed.blocks_written(link, requests, end)

    def superseeding_ended(self, ended: SuperSeeding) -> None:
        """Every piece is on some peer: seed as usual from now on (BEP 16)."""
        if self.superseed is not ended:
            return
        self.superseed = None
        self.stats.uploaded_at_superseed_done = self.stats.uploaded
        self.log_event("superseed_done", uploaded=self.stats.uploaded)
        log.info("super-seeding ended: every piece is on a peer")

    # --- periodic work --------------------------------------------------------------------

    async def _ticker(self) -> None:
        """Choke rounds and request time-outs (one loop, so they never race)."""
        while True:
            now = self.clock()
            if now >= self.choker.next_round_at():
                choke_shell.choke_round(self, now)
            pipeline.expire_requests(self, now)
            # Offers to peers that went quiet expire with the clock, not with traffic.
            if self.superseed is not None:
                self.superseed.tick(now)
            pex_shell.pex_round(self, now)
            guard_shell.guard_round(self, now)
            await self.clock.sleep(min(TICK_PERIOD, self.config.choke_interval))

    # --- reporting ------------------------------------------------------------------------

    def progress(self) -> dict[str, Any]:
        """A snapshot for progress displays and the lab."""
        return {
            "pieces": self.picker.have.count() if self.picker is not None else 0,
            "total_pieces": self.info.num_pieces if self.info is not None else 0,
            "peers": len(self.links),
            "down_rate": self.download_meter.rate,
            "up_rate": self.upload_meter.rate,
            "left": self.left if self.info is not None else None,
            "stats": asdict(self.stats),
        }
