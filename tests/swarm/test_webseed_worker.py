"""The web-seed worker's pure parts: ranges per piece, and what it reads from the session."""

from __future__ import annotations

from hubswarm.swarm.picker import BlockRequest
from hubswarm.swarm.webseed_worker import block_ranges


def test_blocks_of_a_piece_become_one_range() -> None:
    blocks = [
        BlockRequest(3, 16384, 16384),
        BlockRequest(3, 0, 16384),
        BlockRequest(5, 0, 1000),
    ]
    ranges = block_ranges(blocks)
    assert [(r.piece_index, r.start, r.end) for r in ranges] == [(3, 0, 32768), (5, 0, 1000)]
    assert ranges[0].blocks == (blocks[0], blocks[1])
