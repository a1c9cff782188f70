"""Peer sources of a session: tracker announces (BEP 3, 12, 15) and DHT lookups (BEP 5).

Both loops run as tasks of the session. The tracker loop announces to the first tracker
that answers in each tier (BEP 12), at the interval the trackers ask for (or the config's),
retrying with a doubling back-off while none answers. ``http(s)://`` trackers are asked over
HTTP, ``udp://`` ones over BEP 15 by a :class:`UdpTrackerClient` the loop owns (its socket
and connection ids live as long as the loop; a lone ``completed`` or ``stopped`` announce
opens its own). The DHT loop looks the torrent up and
announces our port with the tokens of the same lookup, at the waits :class:`DHTRamp`
decides; never for a private torrent (BEP 27), which a magnet's metadata may reveal late.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from hubswarm.errors import HubswarmError, TrackerError
from hubswarm.proto.tracker import AnnounceRequest, AnnounceResponse
from hubswarm.swarm.dhtramp import DHT_STEADY_INTERVAL, DHTRamp
from hubswarm.swarm.dialer import connected_addresses
from hubswarm.swarm.peerbook import RETRY_MAX, RETRY_MIN
from hubswarm.swarm.udp_tracker_client import UdpTrackerClient, datagram_network, is_udp_url

if TYPE_CHECKING:
    from hubswarm.swarm.session import TorrentSession

log = logging.getLogger(__name__)

# The port announced before we listen on one: BEP 3's customary first port (6881-6889).
DEFAULT_PORT = 6881
# Seconds an announce may take; the "stopped" one on the way out gets less.
ANNOUNCE_TIMEOUT = 10.0
STOPPED_TIMEOUT = 2.0
# Never announce more often than this, whatever a tracker asks (seconds).
MIN_ANNOUNCE_INTERVAL = 1.0


def announce_request(session: TorrentSession, event: str | None) -> AnnounceRequest:
    """Our announce, with the session's counters (BEP 3)."""
    stats = session.stats
    return AnnounceRequest(
        info_hash=session.info_hash,
        peer_id=session.config.peer_id,
        port=session.listen_port or DEFAULT_PORT,
        uploaded=stats.uploaded,
        downloaded=stats.downloaded_from_peers + stats.downloaded_from_webseeds,
        left=session.left,
        event=event,  # type: ignore[arg-type]
        numwant=session.config.numwant,
        ip=session.config.announce_ip,
    )


def udp_tracker_client(session: TorrentSession) -> UdpTrackerClient:
    """A UDP tracker client on the session's network, drawing from the session's rng."""
    return UdpTrackerClient(datagram_network(session.network), clock=session.clock, rng=session.rng)


async def _announce_one(
    session: TorrentSession,
    url: str,
    req: AnnounceRequest,
    timeout: float,
    udp: UdpTrackerClient | None,
) -> AnnounceResponse:
    if is_udp_url(url):
        async with contextlib.AsyncExitStack() as stack:
            if udp is None:  # a lone announce (completed, stopped): a socket of its own
                udp = await stack.enter_async_context(udp_tracker_client(session))
            return await udp.announce(url, req, timeout=timeout)
    # Imported here: it imports aiohttp (see swarm.http).
    from hubswarm.swarm import tracker_client

    return await tracker_client.announce(session.http.get(), url, req, timeout=timeout)


async def announce_all(
    session: TorrentSession,
    event: str | None,
    *,
    timeout: float = ANNOUNCE_TIMEOUT,
    udp: UdpTrackerClient | None = None,
) -> float | None:
    """Announce to every tier; add the peers found; return the smallest interval asked.

    ``udp`` asks ``udp://`` trackers (None: a client made for this call)."""
    intervals: list[float] = []
    for tier in session.trackers:
        for url in tier:
            try:
                resp = await _announce_one(
                    session, url, announce_request(session, event), timeout, udp
                )
            except TrackerError as exc:
                log.info("tracker %s: %s", url, exc)
                continue
            intervals.append(float(resp.min_interval or resp.interval))
            for address in resp.peers:
                session.add_peer(address)
            break  # BEP 12: the first tracker of a tier that answers is enough
    return min(intervals) if intervals else None


async def announce_loop(session: TorrentSession) -> None:
    """``started``, then regular announces until the session ends."""
    event: str | None = "started"
    failures = 0
    async with udp_tracker_client(session) as udp:
        while True:
            interval = await announce_all(session, event, udp=udp)
            if interval is None:
                failures += 1
                interval = min(RETRY_MAX, RETRY_MIN * 2**failures)
            else:
                failures, event = 0, None
            if session.config.announce_interval is not None:
                interval = min(interval, session.config.announce_interval)
            await session.clock.sleep(max(MIN_ANNOUNCE_INTERVAL, interval))


async def dht_loop(session: TorrentSession) -> None:
    """Look the torrent up on the DHT and announce our port, at the ramp's waits."""
    config = session.config
    ramp = DHTRamp(config.dht_interval or config.announce_interval or DHT_STEADY_INTERVAL)
    # BEP 27: a magnet's metadata may turn out private; then the DHT is never used again.
    while not session.private:
        fresh = await dht_lookup(session)
        await session.clock.sleep(ramp.next_wait(fresh, connected=bool(session.links)))


async def dht_lookup(session: TorrentSession) -> int:
    """One lookup for peers, then our announce with its tokens (one lookup serves both);
    returns how many of the addresses found were new to us."""
    dht = session.dht
    assert dht is not None
    fresh = 0

    def found(addresses: list[tuple[str, int]]) -> None:
        nonlocal fresh
        known = connected_addresses(session.links)
        for address in addresses:
            if address not in session.peer_book and address not in known:
                fresh += 1
            session.add_peer(address)  # dialled now, not after the announce's replies

    try:
        if session.listen_port and not session.private:
            await dht.get_peers_and_announce(session.info_hash, session.listen_port, found)
        else:
            found(await dht.get_peers(session.info_hash))
    except HubswarmError as exc:
        log.info("DHT: %s", exc)
    return fresh
