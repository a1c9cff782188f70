"""Web-seed workers (BEP 19): the session's loop that downloads pieces over HTTP.

Theory of operation
-------------------
Each web-seed URL gets ``webseed_workers`` workers. A worker asks the session's picker for
blocks as a peer would (its own picker key, so its releases stay its own), among the pieces
the web seed may serve (:func:`webseed_pieces`: all of them in ``always`` mode, else only
those no connected peer has), fetches each piece's blocks as one byte range
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
from hubswarm.swarm.bitfield import Bitfield
from hubswarm.swarm.peerbook import RETRY_MAX, RETRY_MIN
from hubswarm.swarm.picker import BlockRequest

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


def webseed_pieces(
    num_pieces: int, availability: Sequence[int], *, always: bool, peers: bool
) -> Bitfield:
    """Pieces a web seed may serve: all of them (``always``, or no ``peers`` connected),
    else only those no connected peer has (BEP 19's fallback use)."""
    if always or not peers:
        return Bitfield.all(num_pieces)
    return Bitfield.from_indices(num_pieces, (i for i in range(num_pieces) if availability[i] <= 0))


async def run_webseed_worker(session: TorrentSession, url: str, worker: int = 0) -> None:
    """Fetch pieces from the web seed ``url`` until the torrent is complete."""
    await session.metadata_ready.wait()
    key = f"webseed:{worker}:{url}"  # one picker key per worker: releases stay its own
    failures = 0
    # Imported here: it imports aiohttp (see swarm.http).
    from hubswarm.swarm import webseed

    http = session.http.get()
    config, clock, stats = session.config, session.clock, session.stats
    while not session.complete.is_set():
        picker, store, info = session.picker, session.store, session.info
        assert picker is not None
        assert store is not None
        assert info is not None
        if worker > 0 and picker.in_endgame:
            await clock.sleep(ENDGAME_WAIT)
            continue
        has = webseed_pieces(
            info.num_pieces,
            picker.availability,
            always=config.webseed_mode == "always",
            peers=bool(session.links),
        )
        blocks = picker.next_requests(key, has, -(-info.piece_length // BLOCK_SIZE), clock())
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
