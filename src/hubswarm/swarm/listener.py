"""One peer process: a listening port shared by its torrents (every peer is also a server).

:class:`SwarmPeer` accepts incoming connections, reads the remote handshake, looks the
torrent up by ``info_hash`` and hands the connection to that :class:`TorrentSession`
(which answers with our handshake through ``PeerConnection.accept``). Unknown info-hashes
are refused by closing the socket, as BEP 3 peers do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from hubswarm.errors import ConfigError, RemoteProtocolError
from hubswarm.limits import HANDSHAKE_TIMEOUT
from hubswarm.proto import wire
from hubswarm.proto.metainfo import InfoDict
from hubswarm.swarm.http import LazyHttp
from hubswarm.swarm.peer import READ_CHUNK, read_handshake
from hubswarm.swarm.session import DHTLike, SessionConfig, TorrentSession

log = logging.getLogger(__name__)

# Connections still in their handshake that the listener holds at once (beyond the peers it
# may keep): bounds what a flood of idle sockets can pin (libtorrent: half_open_limit).
MAX_PENDING_INCOMING = 64


class SwarmPeer:
    """A listening peer and the torrents it serves; an async context manager."""

    def __init__(
        self, config: SessionConfig, *, host: str = "0.0.0.0", dht: DHTLike | None = None
    ) -> None:
        self.config = config
        self.host = host
        self.dht = dht
        self.sessions: dict[bytes, TorrentSession] = {}
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._closing = False  # __aexit__ began: refuse what the listener still hands us
        # One HTTP client for all torrents' trackers and web seeds, opened on first use.
        self.http = LazyHttp()

    async def __aenter__(self) -> SwarmPeer:
        try:
            self._server = await asyncio.start_server(
                self._on_connection, self.host, self.config.listen_port, limit=READ_CHUNK * 2
            )
        except OSError as exc:
            where = f"{self.host}:{self.config.listen_port}"
            raise ConfigError(f"cannot listen on {where}: {exc.strerror or exc}") from exc
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.config.listen_port = self.port
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._closing = True
        if self._server is not None:
            # Stop accepting first, then let connections accepted in this tick reach their
            # handler (which refuses them) before the server closes: Python 3.11 leaks the
            # socket of a connection whose transport is made after Server.close() (its
            # _attach() asserts, and nothing closes the socket). Seen in the PEX tests,
            # where a peer dials a leech as it leaves.
            loop = asyncio.get_running_loop()
            for sock in self._server.sockets:
                loop.remove_reader(sock.fileno())
            for _ in range(3):
                await asyncio.sleep(0)
            self._server.close()
        # Sessions have stopped (their links with them): what is left is handshaking. Closing
        # the sockets ends those handlers normally (asyncio logs a handler that ends cancelled).
        for writer in list(self._handlers.values()):
            writer.close()
        if self._handlers:
            await asyncio.wait(set(self._handlers), timeout=5)
        for task in list(self._handlers):
            task.cancel()
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()
            self._server = None
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
        )
        session.listen_port = self.port
        self.sessions[info_hash] = session
        try:
            async with session:
                yield session
        finally:
            self.sessions.pop(info_hash, None)

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self._closing or len(self._handlers) >= MAX_PENDING_INCOMING + 2 * self.config.max_peers:
            # Accepted just as we close (its handler starts after __aexit__ closed the
            # others), or a connection flood: refuse before reading anything.
            writer.close()
            return
        self._handlers[task] = writer
        try:
            await self._serve(reader, writer)
        except Exception as exc:
            # A bug while serving one connection must not go unseen, nor leak the socket.
            log.error("incoming connection failed", exc_info=exc)
        finally:
            self._handlers.pop(task, None)
            # Also when cancelled mid-handshake (the event loop ending): the socket is ours
            # until a link took it, and a link closes its own (closing twice is harmless).
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        address = (str(peername[0]), int(peername[1])) if peername else ("?", 0)
        conn = wire.PeerConnection(
            wire.Role.RESPONDER,
            tolerate_late_bitfield=True,
            info_hash=None,
            peer_id=self.config.peer_id,
            dht=self.dht is not None,
        )
        try:
            _, _hs = await read_handshake(conn, reader, HANDSHAKE_TIMEOUT)
            session = self.sessions.get(conn.remote_handshake.info_hash)  # type: ignore[union-attr]
            if session is None:
                log.debug("refusing %s:%d: unknown info_hash", *address)
                writer.close()
                return
            writer.write(conn.accept(session.info_hash))
            if session.info is not None:
                conn.set_num_pieces(session.info.num_pieces)  # check the pipelined messages too
            rest = conn.receive_data(b"")
        except (RemoteProtocolError, OSError, TimeoutError) as exc:
            # Also what an MSE/PE (encrypted) handshake gets: we speak plaintext only, and
            # libtorrent falls back to plaintext when the socket closes.
            log.debug("incoming %s:%d failed: %s", *address, exc)
            writer.close()
            return
        except BaseException:
            writer.close()
            raise
        await session.run_incoming(conn, reader, writer, address, rest)
