"""Metadata exchange (pure): which pieces to ask whom for, and what we serve (BEP 9)."""

from __future__ import annotations

import hashlib

from hubswarm.limits import METADATA_PIECE_SIZE
from hubswarm.proto.wire_events import MetadataData
from hubswarm.swarm.metadata import MetadataFetch, metadata_piece

RAW = bytes(range(256)) * 200  # 51,200 bytes: 4 pieces
INFO_HASH = hashlib.sha1(RAW).digest()


def piece(i: int) -> MetadataData:
    data = metadata_piece(RAW, i)
    assert data is not None
    return MetadataData(i, len(RAW), data)


def test_pieces_are_spread_over_peers_and_freed_when_one_leaves() -> None:
    fetch = MetadataFetch(INFO_HASH)
    assert fetch.requests_for("a", len(RAW)) == [0, 1, 2, 3]
    assert fetch.requests_for("b", len(RAW)) == [0, 1, 2, 3]  # all busy: ask b too
    fetch.peer_left("a")
    fetch.peer_left("b")
    assert fetch.requests_for("c", len(RAW)) == [0, 1, 2, 3]
    assert fetch.requests_for("d", len(RAW) + 1) == []  # disagrees with the first size


def test_a_reject_frees_the_piece_and_the_whole_is_verified() -> None:
    fetch = MetadataFetch(INFO_HASH)
    fetch.requests_for("a", len(RAW))
    fetch.rejected("a", 2)
    assert fetch.requests_for("b", len(RAW)) == [2]
    out = None
    for i in range(4):
        out = fetch.received("a", piece(i))
    assert out == RAW


def test_served_pieces_are_16_kib_slices_and_out_of_range_is_none() -> None:
    assert metadata_piece(RAW, 0) == RAW[:METADATA_PIECE_SIZE]
    assert metadata_piece(RAW, 3) == RAW[3 * METADATA_PIECE_SIZE :]
    assert metadata_piece(RAW, 4) is None
    assert metadata_piece(RAW, -1) is None
