"""PieceHasher: the same hashes whatever the chunking; hub_torrent round-trips."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubswarm.errors import MetainfoError
from hubswarm.proto.metainfo import parse_magnet, parse_metainfo
from hubswarm.proto.pieces import PieceHasher, hub_torrent, piece_length_for

_PL = 16 * 1024


def _reference(data: bytes, piece_length: int) -> bytes:
    return b"".join(
        hashlib.sha1(data[i : i + piece_length]).digest() for i in range(0, len(data), piece_length)
    )


@given(
    data=st.binary(max_size=5 * _PL + 7),
    cuts=st.lists(st.integers(min_value=0, max_value=5 * _PL + 7), max_size=12),
)
def test_any_chunking_gives_the_reference_hashes(data: bytes, cuts: list[int]) -> None:
    h = PieceHasher(_PL)
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    for a, b in itertools.pairwise(bounds):
        h.update(data[a:b])
    assert h.length == len(data)
    assert h.pieces() == _reference(data, _PL)


@pytest.mark.parametrize("size", [_PL - 1, _PL, _PL + 1, 3 * _PL])
def test_piece_boundaries(size: int) -> None:
    data = bytes(range(256)) * (size // 256 + 1)
    data = data[:size]
    h = PieceHasher(_PL)
    h.update(data)
    assert len(h.pieces()) == 20 * -(-size // _PL)
    assert h.pieces() == _reference(data, _PL)


@given(st.binary(max_size=3 * _PL), st.binary(max_size=3 * _PL), st.binary(max_size=_PL))
def test_copy_rolls_back_a_refused_chunk(a: bytes, refused: bytes, b: bytes) -> None:
    h = PieceHasher(_PL)
    h.update(a)
    saved = h.copy()
    h.update(refused)
    saved.update(b)
    assert saved.pieces() == _reference(a + b, _PL)
    assert saved.length == len(a) + len(b)


def test_bad_piece_length() -> None:
    with pytest.raises(MetainfoError):
        PieceHasher(0)


@given(size=st.integers(min_value=1, max_value=10**12), name=st.text(min_size=1, max_size=40))
def test_hub_torrent_round_trips(size: int, name: str) -> None:
    if any(c in name for c in "/\\\x00") or name in (".", ".."):
        return
    plen = piece_length_for(size)
    n = -(-size // plen)
    if n > 5000:
        return
    pieces = bytes(20 * n)
    t = hub_torrent(
        f"folder/{name}",
        size,
        plen,
        pieces,
        announce=["http://h/announce"],
        web_seeds=["http://h/files/x"],
    )
    mi = parse_metainfo(t.data)
    assert mi.info.name == name
    assert mi.info.total_length == size
    assert mi.url_list == ("http://h/files/x",)
    assert mi.trackers == ["http://h/announce"]
    assert not mi.info.is_multi_file
    m = parse_magnet(t.magnet)
    assert m.info_hash == mi.info_hash
    assert t.info_hash == mi.info_hash.hex()


def test_hub_torrent_refuses_wrong_pieces() -> None:
    with pytest.raises(MetainfoError):
        hub_torrent("x", 100, _PL, b"\x00" * 19)
    with pytest.raises(MetainfoError):
        hub_torrent("x", 3 * _PL, _PL, b"\x00" * 20)
