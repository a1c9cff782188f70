"""Web-seed workers (BEP 19): the session's loop that downloads pieces over HTTP.

Theory of operation
-------------------
Each web-seed URL gets ``webseed_workers`` workers. A worker asks the session's picker for
blocks as a peer would (its own picker key, so its releases stay its own), among the pieces
the web seed may serve now (:func:`~hubswarm.swarm.webseed_policy.webseed_allowed` under
``config.webseed_mode``: by default only while no peer feeds us, see that module), fetches
each piece's blocks as one byte range
(:func:`block_ranges`), and hands the blocks to the session like blocks from a peer.
Failures back off, doubling from ``RETRY_MIN`` to ``RETRY_MAX``; in endgame one worker per
URL is enough (the others would only duplicate requested blocks).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hubswarm.errors import HubswarmError
from hubswarm.limits import BLOCK_SIZE
from hubswarm.swarm.peerbook import RETRY_MAX, RETRY_MIN
from hubswarm.swarm.picker import BlockRequest
from hubswarm.swarm.webseed_policy import WebSeedView, webseed_allowed

if TYPE_CHECKING:
    from hubswarm.swarm.session import TorrentSession

log = logging.getLogger(__name__)

# How long a worker waits when it has nothing to fetch (seconds): the picker has no block
# for it now, or it stands aside in endgame; short, since pieces free up as peers fail.
IDLE_WAIT = 0.5
ENDGAME_WAIT = 0.2


@dataclass(frozen=True, slots=True)
class BlockRange:
    """The blocks of one piece fetched as one HTTP range: ``[start, end)`` in the piece."""

    piece_index: int
    start: int
    end: int
    blocks: tuple[BlockRequest, ...]


def block_ranges(blocks: Sequence[BlockRequest]) -> list[BlockRange]:
    """One range per piece, from its first requested byte to its last (in request order)."""
    by_piece: dict[int, list[BlockRequest]] = {}
    for b in blocks:
        by_piece.setdefault(b.piece_index, []).append(b)
    return [
        BlockRange(
            index,
            min(r.begin for r in reqs),
            max(r.begin + r.length for r in reqs),
            tuple(reqs),
        )
        for index, reqs in by_piece.items()
    ]


def webseed_view(
    session: TorrentSession, now: float, started: float, last: float | None
) -> WebSeedView:
    """What the web-seed policy reads from the session at ``now`` (see ``webseed_policy``);
    ``last``: the last peer block seen before (a link's record goes with it when it closes)."""
    picker, info = session.picker, session.info
    assert picker is not None
    assert info is not None
    inflight: set[int] = set()
    for st in session.links.values():
        inflight.update(r.piece_index for r in st.inflight)
        if st.last_piece_at is not None and (last is None or st.last_piece_at > last):
            last = st.last_piece_at
    return WebSeedView(
        now=now,
        num_pieces=info.num_pieces,
        availability=picker.availability,
        peer_inflight=frozenset(inflight),
        last_peer_block=last,
        started=started,
        peers=bool(session.links),
        endgame=picker.in_endgame,
    )


async def run_webseed_worker(session: TorrentSession, url: str, worker: int = 0) -> None:
    """Fetch pieces from the web seed ``url`` until the torrent is complete."""
    await session.metadata_ready.wait()
    key = f"webseed:{worker}:{url}"  # one picker key per worker: releases stay its own
    failures = 0
    # Imported here: it imports aiohttp (see swarm.http).
    from hubswarm.swarm import webseed

    http = session.http.get()
    config, clock, stats = session.config, session.clock, session.stats
    started, last_peer_block = clock(), None
    while not session.complete.is_set():
        picker, store, info = session.picker, session.store, session.info
        assert picker is not None
        assert store is not None
        assert info is not None
        if worker > 0 and picker.in_endgame:
            await clock.sleep(ENDGAME_WAIT)
            continue
        now = clock()
        view = webseed_view(session, now, started, last_peer_block)
        last_peer_block = view.last_peer_block
        has = webseed_allowed(config.webseed_mode, view)
        blocks = picker.next_requests(key, has, -(-info.piece_length // BLOCK_SIZE), now)
        if not blocks:
            picker.peer_left(key, None)
            await clock.sleep(IDLE_WAIT)
            continue
        try:
            for rng in block_ranges(blocks):
                offset = rng.piece_index * info.piece_length + rng.start
                data = await webseed.fetch(
                    http,
                    url,
                    info,
                    store.layout,
                    offset,
                    rng.end - rng.start,
                    timeout=config.request_timeout,
                )
                stats.downloaded_from_webseeds += len(data)
                session.download_meter.add(len(data))
                await session.download_limiter.acquire(len(data))
                for r in rng.blocks:
                    chunk = data[r.begin - rng.start : r.begin - rng.start + r.length]
                    await session.accept_block(key, r, chunk, source="webseed")
            failures = 0
        except HubswarmError as exc:
            picker.peer_left(key, None)
            failures += 1
            log.info("web seed %s: %s", url, exc)
            await clock.sleep(min(RETRY_MAX, RETRY_MIN * 2**failures))
