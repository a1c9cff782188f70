"""The web-seed worker's pure parts: which pieces a web seed serves, ranges per piece."""

from __future__ import annotations

from hubswarm.swarm.picker import BlockRequest
from hubswarm.swarm.webseed_worker import block_ranges, webseed_pieces


def test_fallback_mode_serves_only_pieces_no_peer_has() -> None:
    avail = [0, 2, 0, 1]
    assert list(webseed_pieces(4, avail, always=False, peers=True)) == [0, 2]
    assert list(webseed_pieces(4, avail, always=False, peers=False)) == [0, 1, 2, 3]
    assert list(webseed_pieces(4, avail, always=True, peers=True)) == [0, 1, 2, 3]


def test_blocks_of_a_piece_become_one_range() -> None:
    blocks = [
        BlockRequest(3, 16384, 16384),
        BlockRequest(3, 0, 16384),
        BlockRequest(5, 0, 1000),
    ]
    ranges = block_ranges(blocks)
    assert [(r.piece_index, r.start, r.end) for r in ranges] == [(3, 0, 32768), (5, 0, 1000)]
    assert ranges[0].blocks == (blocks[0], blocks[1])
