"""What ``hubswarm share`` and ``hubswarm fetch`` do, as library functions.

The CLI parses arguments and prints; these functions own the peer, the torrent session
and (optionally) a DHT node, and return typed results. Time and connections go through an
optional ``clock`` and ``network`` (one host's view: streams for the peer, datagrams for its
DHT node), so a whole fetch or share runs in virtual time on an in-memory network.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hubswarm import net
from hubswarm.clock import Clock
from hubswarm.errors import ConfigError, MetainfoError, NoPeersError
from hubswarm.proto.metainfo import Magnet, Metainfo, build_magnet, parse_magnet, parse_metainfo
from hubswarm.swarm.config import DHTLike, SessionConfig
from hubswarm.swarm.listener import SwarmPeer
from hubswarm.swarm.maketorrent import create_torrent
from hubswarm.swarm.session import TorrentSession

log = logging.getLogger(__name__)

ProgressCallback = Callable[[TorrentSession], None]

# How often a running fetch or share reports progress (and a fetch checks for a stall).
PROGRESS_PERIOD = 1.0
# How long a fetch waits for completion between two stall checks.
STALL_CHECK_PERIOD = 0.5


class HostNetwork(net.StreamNetwork, net.DatagramNetwork, Protocol):
    """One host's network: streams for the peer, datagrams for its DHT node (TCP/UDP by
    default; ``MemoryNetwork.host(ip)`` in tests)."""


@dataclass(frozen=True, slots=True)
class Source:
    """What to download: from a .torrent file or a magnet link."""

    info_hash: bytes
    name: str | None
    metainfo: Metainfo | None
    trackers: tuple[tuple[str, ...], ...]
    web_seeds: tuple[str, ...]
    peers: tuple[tuple[str, int], ...]


def load_source(text: str) -> Source:
    """Parse a magnet link or read and parse a .torrent file.

    Raises:
        MetainfoError: invalid magnet or torrent; ConfigError: unreadable file.
    """
    if text.startswith("magnet:"):
        m = parse_magnet(text)
        return Source(
            m.info_hash, m.display_name, None, tuple((t,) for t in m.trackers), m.web_seeds, m.peers
        )
    try:
        data = Path(text).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {text}: {exc.strerror or exc}") from exc
    mi = parse_metainfo(data)
    return Source(mi.info_hash, mi.info.name, mi, mi.announce_list, mi.url_list, ())


@dataclass(frozen=True, slots=True)
class FetchResult:
    """A finished download: every piece verified."""

    info_hash: str
    name: str
    path: Path
    total_length: int
    seconds: float
    stats: dict[str, Any] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def _maybe_dht(
    bootstrap: Sequence[tuple[str, int]],
    host: str,
    state_file: Path | None,
    *,
    clock: Clock | None = None,
    network: net.DatagramNetwork | None = None,
    rng: random.Random | None = None,
) -> AsyncIterator[DHTLike | None]:
    """A DHT node bootstrapped from ``bootstrap`` and/or the contacts saved in ``state_file``.

    None when neither is given. The routing table is written back to ``state_file`` on exit.
    ``rng`` draws its node id and token secrets (None: from the OS).
    """
    if not bootstrap and state_file is None:
        yield None
        return
    if ":" in host:
        # BEP 32 (the IPv6 DHT) is left out: a peer listening on IPv6 runs without a DHT.
        log.warning("no DHT on the IPv6 address %s (BEP 32 is not supported)", host)
        yield None
        return
    from hubswarm.swarm.dht.node import DHTNode  # the DHT is optional at run time

    # The torrent starts at once; the bootstrap runs on, and the torrent's first lookup waits
    # for the bootstrap nodes' answer. Waiting for it here would delay every peer's first
    # connection (to a magnet's x.pe peer) by a round trip through the bootstrap node, and
    # by a whole query time-out when that answer is lost.
    async with DHTNode(
        host=host,
        port=0,
        bootstrap=list(bootstrap),
        state_path=state_file,
        lookups_in_background=True,
        rng=rng,
        clock=clock,
        network=network,
    ) as node:
        yield node


# With "any free port", the UDP socket picks a number and TCP takes the same one; when TCP
# finds that number taken (another process's connection), both start again on a new number.
PORT_PAIR_ATTEMPTS = 8


@contextlib.asynccontextmanager
async def _running_peer(
    config: SessionConfig,
    host: str,
    private: bool,
    dht_bootstrap: Sequence[tuple[str, int]],
    dht_state: Path | None,
    *,
    clock: Clock,
    network: HostNetwork | None,
) -> AsyncIterator[SwarmPeer]:
    """A listening peer with its DHT node; a private torrent (BEP 27) gets no DHT node.

    With ``config.use_utp`` one UDP socket carries uTP and the DHT (as libtorrent's does) and
    the peer listens on TCP and uTP on the same port number, dialling TCP first
    (:class:`DualNetwork`).
    """
    any_port = config.listen_port == 0
    attempts = PORT_PAIR_ATTEMPTS if config.use_utp and any_port else 1
    for attempt in range(attempts):
        stack = contextlib.AsyncExitStack()
        try:
            peer = await _open_peer(
                stack, config, host, private, dht_bootstrap, dht_state, clock=clock, network=network
            )
        except ConfigError:
            await stack.aclose()
            if attempt == attempts - 1:
                raise
            config.listen_port = 0  # the number UDP took was busy on TCP: start again
            continue
        except BaseException:
            await stack.aclose()
            raise
        async with stack:
            yield peer
        return


async def _open_peer(
    stack: contextlib.AsyncExitStack,
    config: SessionConfig,
    host: str,
    private: bool,
    dht_bootstrap: Sequence[tuple[str, int]],
    dht_state: Path | None,
    *,
    clock: Clock,
    network: HostNetwork | None,
) -> SwarmPeer:
    """Open the UDP socket (with uTP), the DHT node and the peer on ``stack``.

    Raises:
        ConfigError: neither TCP nor uTP, or the UDP port cannot be bound.
    """
    if not (config.use_tcp or config.use_utp):
        raise ConfigError("no transport: TCP and uTP are both switched off")
    base = network if network is not None else net.TcpNetwork()
    seeded = None if config.rng_seed is None else f"{config.rng_seed}"
    streams: net.StreamNetwork = base
    datagrams: net.DatagramNetwork = base
    if config.use_utp:
        from hubswarm.swarm.dualstack import DualNetwork
        from hubswarm.swarm.utp import UtpNetwork, UtpSocket

        sock = UtpSocket(
            host=host,
            port=config.listen_port,
            network=base,
            rng=None if seeded is None else random.Random(f"{seeded}:utp"),
            clock=clock,
        )
        try:
            await stack.enter_async_context(sock)
        except OSError as exc:
            where = f"{host}:{config.listen_port} (UDP)"
            raise ConfigError(f"cannot listen on {where}: {exc.strerror or exc}") from exc
        config.listen_port = sock.address[1]  # TCP takes the same number
        utp_streams = UtpNetwork(sock)
        streams = DualNetwork(base, utp_streams) if config.use_tcp else utp_streams
        datagrams = sock.datagrams()
    dht = await stack.enter_async_context(
        _maybe_dht(
            () if private else dht_bootstrap,
            host,
            None if private else dht_state,
            clock=clock,
            network=datagrams,
            # A seeded session (the lab's sim) gets a seeded node id: runs repeat exactly.
            rng=None if seeded is None else random.Random(f"{seeded}:dht"),
        )
    )
    return await stack.enter_async_context(
        SwarmPeer(config, host=host, dht=dht, network=streams, clock=clock)
    )


async def fetch(
    source_text: str,
    out_dir: Path,
    *,
    config: SessionConfig,
    host: str = "0.0.0.0",
    peers: Sequence[tuple[str, int]] = (),
    extra_trackers: Sequence[str] = (),
    seed_after: bool = False,
    stall_timeout: float = 60.0,
    timeout: float | None = None,
    progress: ProgressCallback | None = None,
    events_path: Path | None = None,
    dht_bootstrap: Sequence[tuple[str, int]] = (),
    dht_state: Path | None = None,
    on_complete: Callable[[FetchResult], None] | None = None,
    network: HostNetwork | None = None,
    clock: Clock | None = None,
) -> FetchResult:
    """Download a torrent or magnet into ``out_dir``; return once every piece is verified.

    With ``seed_after`` keep seeding until cancelled (Ctrl-C) after ``on_complete``.
    ``network`` and ``clock`` (default: TCP/UDP and the running loop's) carry every
    connection and every wait of the peer, its session and its DHT node.

    Raises:
        NoPeersError: nothing arrived for ``stall_timeout`` seconds, or not complete
            after ``timeout`` seconds.
        MetainfoError, ConfigError, StorageError (DiskFullError).
    """
    src = load_source(source_text)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {out_dir}: {exc.strerror or exc}") from exc
    config.seed = seed_after
    trackers = list(src.trackers) + [(t,) for t in extra_trackers]
    clock = clock if clock is not None else Clock()
    started = clock.now()
    # BEP 27: a private torrent gets its peers from its tracker only.
    private = src.metainfo is not None and src.metainfo.info.private
    async with (
        _running_peer(
            config, host, private, dht_bootstrap, dht_state, clock=clock, network=network
        ) as peer,
        peer.torrent(
            src.info_hash,
            out_dir,
            info=src.metainfo.info if src.metainfo else None,
            trackers=trackers,
            web_seeds=src.web_seeds,
            peers=list(src.peers) + list(peers),
            events_path=events_path,
        ) as session,
    ):
        await _wait(session, stall_timeout, timeout, progress, clock)
        assert session.info is not None
        result = FetchResult(
            info_hash=src.info_hash.hex(),
            name=session.info.name,
            path=out_dir / session.info.name,
            total_length=session.info.total_length,
            seconds=clock.now() - started,
            stats=session.progress()["stats"],
        )
        if on_complete is not None:
            on_complete(result)
        if seed_after:
            while True:
                if progress is not None:
                    progress(session)
                await clock.sleep(PROGRESS_PERIOD)
        return result


async def _wait(
    session: TorrentSession,
    stall_timeout: float,
    timeout: float | None,
    progress: ProgressCallback | None,
    clock: Clock,
) -> None:
    deadline = None if timeout is None else clock.now() + timeout
    last_bytes, last_change = -1, clock.now()
    while not session.complete.is_set():
        if session.error is not None:
            raise session.error
        st = session.stats
        got = st.downloaded_from_peers + st.downloaded_from_webseeds
        now = clock.now()
        if got != last_bytes:
            last_bytes, last_change = got, now
        if now - last_change > stall_timeout:
            what = "no peers" if not session.links else "no data from peers"
            raise NoPeersError(f"{what} for {stall_timeout:.0f} s")
        if deadline is not None and now > deadline:
            raise NoPeersError(f"download not complete after {timeout:g} s")
        if progress is not None:
            progress(session)
        with contextlib.suppress(TimeoutError):
            await session.wait_complete(STALL_CHECK_PERIOD)
    if progress is not None:
        progress(session)


@dataclass(frozen=True, slots=True)
class ShareInfo:
    """What ``share`` tells the user once it is seeding."""

    torrent_path: Path
    info_hash: str
    magnet: str
    port: int
    name: str
    total_length: int


async def share(
    path: Path,
    *,
    config: SessionConfig,
    host: str = "0.0.0.0",
    torrent_out: Path | None = None,
    trackers: Sequence[str] = (),
    web_seeds: Sequence[str] = (),
    piece_length: int | None = None,
    private: bool = False,
    ready: Callable[[ShareInfo], None] | None = None,
    progress: ProgressCallback | None = None,
    events_path: Path | None = None,
    dht_bootstrap: Sequence[tuple[str, int]] = (),
    dht_state: Path | None = None,
    duration: float | None = None,
    super_seed: bool | None = None,
    network: HostNetwork | None = None,
    clock: Clock | None = None,
) -> ShareInfo:
    """Make a torrent of ``path`` (a file or a folder), write it and seed the data.

    Seeds until cancelled, or for ``duration`` seconds. ``super_seed``: BEP 16 initial
    seeding (None: as ``config.super_seed`` says). ``network``, ``clock``: as for ``fetch``.

    Raises:
        MetainfoError, ConfigError: bad input; the data must verify completely.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} does not exist")
    info, data = await asyncio.to_thread(
        create_torrent,
        path,
        piece_length=piece_length,
        trackers=tuple(trackers),
        web_seeds=tuple(web_seeds),
        private=private,
    )
    mi = parse_metainfo(data)
    torrent_path = torrent_out or Path(f"{info.name}.torrent")
    try:
        torrent_path.write_bytes(data)
    except OSError as exc:
        raise ConfigError(f"cannot write {torrent_path}: {exc.strerror or exc}") from exc
    config.seed = True
    if super_seed is not None:
        config.super_seed = super_seed
    clock = clock if clock is not None else Clock()
    async with (
        _running_peer(
            config, host, private, dht_bootstrap, dht_state, clock=clock, network=network
        ) as peer,
        peer.torrent(
            mi.info_hash,
            path.parent,
            info=mi.info,
            trackers=mi.announce_list,
            web_seeds=mi.url_list,
            events_path=events_path,
            # create_torrent hashed these very files a moment ago: no second full hash
            # (each piece is still hashed on its first upload).
            seed_mode=True,
        ) as session,
    ):
        if not session.is_seed:
            missing = session.info.num_pieces - session.picker.have.count()  # type: ignore[union-attr]
            raise MetainfoError(f"{path}: {missing} pieces do not verify; cannot seed")
        magnet = Magnet(
            info_hash=mi.info_hash,
            display_name=info.name,
            trackers=tuple(mi.trackers),
            web_seeds=mi.url_list,
            peers=((_advertised_host(host), peer.port),),
        )
        shared = ShareInfo(
            torrent_path=torrent_path,
            info_hash=mi.info_hash.hex(),
            magnet=build_magnet(magnet),
            port=peer.port,
            name=info.name,
            total_length=info.total_length,
        )
        if ready is not None:
            ready(shared)
        deadline = None if duration is None else clock.now() + duration
        while deadline is None or clock.now() < deadline:
            if progress is not None:
                progress(session)
            await clock.sleep(PROGRESS_PERIOD)
        return shared


def _advertised_host(host: str) -> str:
    # A peer bound to every interface is reachable on loopback from this machine.
    # asyncio's TCP listener on "::" takes IPv6 only (IPV6_V6ONLY), so that one is ::1.
    return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
