"""One peer process: a listening port shared by its torrents (every peer is also a server).

:class:`SwarmPeer` listens through its :class:`~hubswarm.net.StreamNetwork` (TCP by
default, the in-memory network in tests), reads each incoming connection's handshake with
a :class:`~hubswarm.swarm.peer.WireProtocol`, looks the torrent up by ``info_hash`` and
hands the connection to that :class:`TorrentSession` (which answers with our handshake
through ``PeerConnection.accept``). Unknown info-hashes are refused by closing the
connection, as BEP 3 peers do. Each handshake runs as a task of the peer's own TaskGroup.

Protocol encryption (MSE/PE): unless ``config.encryption`` is "disabled", each connection
starts with an :class:`~hubswarm.proto.mse.MseResponder` that sniffs the first bytes: a
plaintext handshake goes on to the wire core as it came (refused under "required"), anything
else is an MSE handshake for one of the torrents served here (looked up by its req2 hash).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

from hubswarm import net
from hubswarm.clock import Clock
from hubswarm.errors import ConfigError, RemoteProtocolError
from hubswarm.limits import HANDSHAKE_TIMEOUT
from hubswarm.memnet import MemoryHost
from hubswarm.proto import mse, wire
from hubswarm.proto.metainfo import InfoDict
from hubswarm.swarm.config import MAX_LINKS_FACTOR, DHTLike, SessionConfig
from hubswarm.swarm.dualstack import DualNetwork
from hubswarm.swarm.http import LazyHttp
from hubswarm.swarm.peer import WireProtocol
from hubswarm.swarm.session import TorrentSession

log = logging.getLogger(__name__)

# Connections still in their handshake that the listener holds at once (beyond the peers it
# may keep): bounds what a flood of idle sockets can pin (libtorrent: half_open_limit). At
# the cap a new connection replaces the oldest one still handshaking, so a flood of sockets
# that never finish delays an honest peer by nothing, not by a handshake time-out.
MAX_PENDING_INCOMING = 64
# How long leaving waits for handshakes in progress and for the listener to close.
CLOSE_TIMEOUT = 5.0


def _http_network(streams: net.StreamNetwork) -> net.StreamNetwork | None:
    """Where trackers and web seeds are dialled: the peer's TCP network when it is an
    in-memory one (tests, the lab's sim), else None (aiohttp's own sockets)."""
    tcp = streams.tcp if isinstance(streams, DualNetwork) else streams
    return tcp if isinstance(tcp, MemoryHost) else None


class SwarmPeer:
    """A listening peer and the torrents it serves; an async context manager."""

    def __init__(
        self,
        config: SessionConfig,
        *,
        host: str = "0.0.0.0",
        dht: DHTLike | None = None,
        network: net.StreamNetwork | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        try:
            self.encryption = mse.Policy(config.encryption)
        except ValueError:
            raise ConfigError(
                f"encryption must be disabled, enabled or required, not {config.encryption!r}"
            ) from None
        # HASH('req2', info_hash) -> info_hash of the torrents served: the MSE lookup.
        self._req2: dict[bytes, bytes] = {}
        self.host = host
        self.dht = dht
        self.network: net.StreamNetwork = network if network is not None else net.TcpNetwork()
        self.clock = clock if clock is not None else Clock()
        self.sessions: dict[bytes, TorrentSession] = {}
        self.port = 0
        self._listener: net.Listener | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._handlers: dict[asyncio.Task[None], WireProtocol] = {}
        # Connections still handshaking, oldest first (evicted first at the cap).
        self._half_open: dict[WireProtocol, None] = {}
        self._closing = False  # __aexit__ began: refuse what the listener still hands us
        # One HTTP client for all torrents' trackers and web seeds, opened on first use.
        self.http = LazyHttp(_http_network(self.network))

    async def __aenter__(self) -> SwarmPeer:
        tg = asyncio.TaskGroup()
        await tg.__aenter__()
        try:
            self._listener = await self.network.listen(
                self._new_protocol, self.host, self.config.listen_port
            )
        except OSError as exc:
            await tg.__aexit__(None, None, None)
            where = f"{self.host}:{self.config.listen_port}"
            raise ConfigError(f"cannot listen on {where}: {exc.strerror or exc}") from exc
        self._tg = tg
        self.port = int(self._listener.address[1])
        self.config.listen_port = self.port
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closing = True
        if self._listener is not None:
            self._listener.close()
        # Sessions have stopped (their links with them): what is left is handshaking. Closing
        # the connections ends those handlers normally.
        for protocol in list(self._handlers.values()):
            protocol.transport.close()
        if self._handlers:
            await asyncio.wait(set(self._handlers), timeout=CLOSE_TIMEOUT)
        for task in list(self._handlers):
            task.cancel()
        tg, self._tg = self._tg, None
        if tg is not None:
            await tg.__aexit__(None, None, None)
        if self._listener is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self._listener.wait_closed()
            self._listener = None
        await self.http.close()

    @contextlib.asynccontextmanager
    async def torrent(
        self,
        info_hash: bytes,
        out_dir: Path,
        *,
        info: InfoDict | None = None,
        trackers: Iterable[Iterable[str]] = (),
        web_seeds: Iterable[str] = (),
        peers: Iterable[tuple[str, int]] = (),
        events_path: Path | None = None,
        seed_mode: bool = False,
    ) -> AsyncIterator[TorrentSession]:
        """Run one torrent on this peer for the duration of the block.

        ``seed_mode``: the data was just hashed (see ``TorrentSession``): no recheck."""
        session = TorrentSession(
            info_hash,
            out_dir,
            self.config,
            info=info,
            trackers=trackers,
            web_seeds=web_seeds,
            peers=peers,
            dht=self.dht,
            http=self.http,
            events_path=events_path,
            seed_mode=seed_mode,
            network=self.network,
            clock=self.clock,
        )
        session.listen_port = self.port
        self.sessions[info_hash] = session
        self._req2[mse.req2_hash(info_hash)] = info_hash
        try:
            async with session:
                yield session
        finally:
            self.sessions.pop(info_hash, None)
            self._req2.pop(mse.req2_hash(info_hash), None)

    def _new_protocol(self) -> WireProtocol:
        conn = wire.PeerConnection(
            wire.Role.RESPONDER,
            tolerate_late_bitfield=True,
            info_hash=None,
            peer_id=self.config.peer_id,
            dht=self.dht is not None,
        )
        protocol = WireProtocol(conn, on_connected=self._on_connected)
        if self.encryption is not mse.Policy.DISABLED:
            responder = mse.MseResponder(self._req2.get, self.encryption, secrets.token_bytes)
            protocol.start_mse(responder)
        return protocol

    def _on_connected(self, protocol: WireProtocol) -> None:
        """A connection arrived: read its handshake in a task of ours, or refuse it."""
        cap = MAX_PENDING_INCOMING + MAX_LINKS_FACTOR * self.config.max_peers
        oldest = None
        if len(self._half_open) >= MAX_PENDING_INCOMING or len(self._handlers) >= cap:
            # A flood of half-open connections: the oldest still handshaking makes room
            # (its handler ends as the connection is lost).
            oldest = next(iter(self._half_open), None)
            if oldest is not None:
                del self._half_open[oldest]
                oldest.transport.abort()
        too_many = len(self._handlers) >= cap and oldest is None
        if self._closing or self._tg is None or too_many:
            # Accepted just as we close, or every slot holds a link: refuse before reading.
            protocol.transport.close()
            return
        self._half_open[protocol] = None
        task = self._tg.create_task(self._handle(protocol))
        self._handlers[task] = protocol
        task.add_done_callback(self._forget_handler)

    def _forget_handler(self, task: asyncio.Task[None]) -> None:
        self._handlers.pop(task, None)

    async def _handle(self, protocol: WireProtocol) -> None:
        try:
            await self._serve(protocol)
        except Exception as exc:
            # A bug while serving one connection must not go unseen, nor leak the connection.
            log.error("incoming connection failed", exc_info=exc)
        finally:
            # Also when cancelled mid-handshake: the connection is ours until a link took it,
            # and a link closes its own (closing twice is harmless).
            self._half_open.pop(protocol, None)
            protocol.transport.close()

    async def _serve(self, protocol: WireProtocol) -> None:
        peername = protocol.transport.get_extra_info("peername")
        address = (str(peername[0]), int(peername[1])) if peername else ("?", 0)
        conn = protocol.conn
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                handshake = await protocol.handshake()
            session = self.sessions.get(handshake.info_hash)
            if session is None:
                log.debug("refusing %s:%d: unknown info_hash", *address)
                return
            protocol.transport.write(conn.accept(session.info_hash))
            if session.info is not None:
                conn.set_num_pieces(session.info.num_pieces)  # check the pipelined messages too
            protocol.parse_held()
        except (RemoteProtocolError, OSError, TimeoutError) as exc:
            # Also an MSE/PE handshake our policy refuses (MseError): libtorrent falls back
            # to plaintext (or MSE) when the connection closes.
            log.debug("incoming %s:%d failed: %s", *address, exc)
            return
        self._half_open.pop(protocol, None)  # handshaken: the session's policy takes over
        await session.run_incoming(protocol, address)
