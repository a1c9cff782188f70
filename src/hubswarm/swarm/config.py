"""A peer's knobs and counters: :class:`SessionConfig`, :class:`TorrentStats`, the peer id.

This module owns what a caller sets before a torrent starts (the CLI, the lab's timing
preset, tests) and what it reads back while it runs, with each default and its source
(libtorrent's settings or the BEPs); and :class:`DHTLike`, the little a session needs from
a DHT node. The session, the listener and the API import these from here.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from hubswarm.limits import REQUEST_QUEUE_TIME
from hubswarm.swarm.peerbook import RETRY_MAX, RETRY_MIN

# Connections a peer keeps per torrent (transmission's peer-limit-per-torrent: 50; aria2's
# --bt-max-peers: 55).
DEFAULT_MAX_PEERS = 50
# Addresses asked of a tracker per announce (BEP 3: ``numwant`` defaults to 50).
DEFAULT_NUMWANT = 50
# Unchoke slots (BEP 3's reference client: 4; libtorrent's unchoke_slots_limit is 8).
DEFAULT_UNCHOKE_SLOTS = 4
# Choke rounds every 10 s and an optimistic unchoke every 30 s (BEP 3's reference client;
# libtorrent: 15 s and 30 s).
DEFAULT_CHOKE_INTERVAL = 10.0
DEFAULT_OPTIMISTIC_INTERVAL = 30.0
# A peer that sent no block for a minute counts as snubbing us (the choker's rule).
DEFAULT_SNUB_TIMEOUT = 60.0
# A request unanswered this long goes back to the picker and snubs the peer (libtorrent's
# request_timeout: 60 s; half of it re-requests sooner from a peer that went quiet).
DEFAULT_REQUEST_TIMEOUT = 30.0
# A TCP connect that has not completed in this many seconds is given up (libtorrent:
# peer_connect_timeout = 15 s; a dialer with many candidates moves on sooner).
DEFAULT_CONNECT_TIMEOUT = 5.0
# Links a peer keeps at most, as a multiple of ``max_peers``: the dialler stops at
# ``max_peers``, and peers that dial us still get in up to this cap, so a swarm whose
# peers are all full still admits newcomers.
MAX_LINKS_FACTOR = 2
# Requests kept in flight to a peer before its rate is known (libtorrent starts slow-start
# at a few requests and grows; 64 x 16 KiB = 1 MiB in flight fills a fast link at once).
INITIAL_QUEUE_DEPTH = 64
# Lab fault (``corrupt_uploads``): the first bytes of each block served are inverted, which
# fails the piece's SHA-1 whatever the data.
CORRUPT_PREFIX = 16
# Web-seed workers per URL: one fetches while the other waits for its reply.
DEFAULT_WEBSEED_WORKERS = 2
# Links per torrent to one IP address (libtorrent: allow_multiple_connections_per_ip =
# false, i.e. one). Tests and the lab run many peers on one address and raise it.
DEFAULT_MAX_PER_ADDRESS = 1
# A link with no interest either way and no payload for this long is dropped (libtorrent's
# inactivity_timeout: 600 s). Keep-alives do not count as activity.
DEFAULT_INACTIVITY_TIMEOUT = 600.0
# When full, an idle link (no interest, nothing exchanged) at least this old makes room for a
# newcomer; younger links get the time to send their bitfield and interest.
DEFAULT_EVICT_MIN_IDLE = 10.0
# A peer that unchoked us while we want its data but sends no whole block for this long
# trickles: cut it (twice libtorrent's request_timeout of 60 s).
DEFAULT_STALL_TIMEOUT = 120.0


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
    max_peers: int = DEFAULT_MAX_PEERS
    upload_rate: float | None = None  # bytes/s, all peers together
    download_rate: float | None = None
    peer_upload_rate: float | None = None  # bytes/s per peer
    unchoke_slots: int = DEFAULT_UNCHOKE_SLOTS
    choke_interval: float = DEFAULT_CHOKE_INTERVAL
    optimistic_interval: float = DEFAULT_OPTIMISTIC_INTERVAL
    snub_timeout: float = DEFAULT_SNUB_TIMEOUT
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    announce_interval: float | None = None  # override the tracker's interval
    # Steady DHT re-lookup interval once peers are connected (None: announce_interval, else
    # dhtramp.DHT_STEADY_INTERVAL). Each lookup is ~10 KRPC round trips that every node on
    # the way decodes.
    dht_interval: float | None = None
    numwant: int = DEFAULT_NUMWANT
    webseed_mode: str = "assist"  # swarm.webseed_policy: "assist", "fallback", "always", "off"
    webseed_workers: int = DEFAULT_WEBSEED_WORKERS
    seed: bool = True  # keep seeding after completion
    use_dht: bool = True
    use_pex: bool = True  # peer exchange (BEP 11); never for a private torrent (BEP 27)
    # Listen on uTP (BEP 29) too, on the TCP port's number, sharing the DHT's UDP socket:
    # libtorrent and the clients built on it dial uTP first (a TCP-only peer costs each of
    # them a ~3 s time-out, some never fall back). Our own dials try TCP first (swarm.dualstack).
    use_utp: bool = True
    # Listen and dial on TCP (with use_utp False: uTP only, as libtorrent's
    # enable_incoming_tcp/enable_outgoing_tcp off; benchmarks/utp_pair.py runs a pair so).
    use_tcp: bool = True
    announce_ip: str | None = None  # the tracker `ip` parameter (lab behind addresses)
    corrupt_uploads: bool = False  # lab fault: this peer serves corrupt blocks
    rng_seed: int | None = None
    # Requests kept in flight per peer: at least initial_queue_depth, else rate x queue time
    # (limits.REQUEST_QUEUE_TIME: libtorrent's request_queue_time).
    initial_queue_depth: int = INITIAL_QUEUE_DEPTH
    request_queue_time: float = REQUEST_QUEUE_TIME
    reconnect_min: float = RETRY_MIN  # first delay before re-dialling a peer that went away
    reconnect_max: float = RETRY_MAX  # the delay doubles per failure up to this
    # A seed unchokes this many interested peers at a time, in turn (the choker's
    # round-robin); None: the choker's usual rule.
    seed_unchoke_slots: int | None = None
    # BEP 16 super-seeding while we are a seed that started as one (share): offer each peer
    # a few pieces at a time instead of a full bitfield, so each piece leaves us about once.
    super_seed: bool = False
    # Protocol encryption (MSE/PE): "disabled" (plaintext only), "enabled" (accept both; dial
    # plaintext first) or "required" (MSE with RC4 only, both ways); see proto.mse.Policy.
    encryption: str = "enabled"
    # Verified pieces by SHA-1, shared by the sessions of one process that fetch the same
    # content (the lab's sim runs a thousand peers of one torrent in one process): each
    # store's read cache holds a reference to one copy instead of a copy of its own.
    # None: every store keeps its own (a peer process has one session per torrent).
    piece_pool: dict[bytes, bytes] | None = None
    # Connection policy against squatting and trickling (issue 21); None: no address limit.
    max_per_address: int | None = DEFAULT_MAX_PER_ADDRESS
    inactivity_timeout: float = DEFAULT_INACTIVITY_TIMEOUT
    evict_min_idle: float = DEFAULT_EVICT_MIN_IDLE
    stall_timeout: float = DEFAULT_STALL_TIMEOUT


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
