"""Layout: pieces/blocks <-> file spans, at piece boundaries and with odd files."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubswarm.errors import LocalProtocolError
from hubswarm.proto.metainfo import FileEntry, build_info
from hubswarm.swarm.bitfield import Bitfield
from hubswarm.swarm.layout import Layout

P = 16 * 1024  # piece length used by these tests


def entries(*lengths: int) -> list[FileEntry]:
    out, offset = [], 0
    for i, n in enumerate(lengths):
        out.append(FileEntry(path=("t", f"f{i}"), length=n, offset=offset))
        offset += n
    return out


def spans_tuples(layout: Layout, piece: int, begin: int = 0, length: int | None = None):
    return [(s.file_index, s.file_offset, s.length) for s in layout.spans(piece, begin, length)]


@pytest.mark.parametrize("size", [P - 1, P, P + 1, 2 * P - 1, 2 * P, 2 * P + 1])
def test_single_file_sizes_around_boundaries(size: int) -> None:
    layout = Layout(P, entries(size))
    assert layout.num_pieces == -(-size // P)
    last = layout.num_pieces - 1
    assert layout.piece_size(last) == size - last * P
    assert spans_tuples(layout, last) == [(0, last * P, size - last * P)]
    assert list(layout.pieces_for_file(0)) == list(range(layout.num_pieces))


@pytest.mark.parametrize("first", [P - 1, P, P + 1])
def test_two_files_split_at_boundary(first: int) -> None:
    layout = Layout(P, entries(first, P))
    got = spans_tuples(layout, 0)
    if first < P:
        assert got == [(0, 0, first), (1, 0, P - first)]
        assert list(layout.pieces_for_file(1)) == [0, 1]
    elif first == P:
        assert got == [(0, 0, P)]
        assert list(layout.pieces_for_file(1)) == [1]
    else:
        assert got == [(0, 0, P)]
        assert spans_tuples(layout, 1) == [(0, P, 1), (1, 0, P - 1)]
        assert list(layout.pieces_for_file(0)) == [0, 1]


def test_zero_length_files_touch_nothing_and_are_complete() -> None:
    layout = Layout(P, entries(0, 10, 0, 0, 5, 0))
    assert spans_tuples(layout, 0) == [(1, 0, 10), (4, 0, 5)]
    assert list(layout.pieces_for_file(0)) == []
    assert layout.file_complete(0, Bitfield(1))
    assert not layout.file_complete(1, Bitfield(1))
    assert layout.file_complete(1, Bitfield.all(1))
    assert layout.files_for_piece(0) == [1, 4]


def test_many_tiny_files_in_one_piece() -> None:
    layout = Layout(P, entries(*([1] * 100)))
    got = spans_tuples(layout, 0)
    assert got == [(i, 0, 1) for i in range(100)]
    # A block in the middle: bytes 10..19.
    assert spans_tuples(layout, 0, 10, 10) == [(i, 0, 1) for i in range(10, 20)]
    have = Bitfield.all(1)
    assert layout.completed_files(0, have) == list(range(100))


def test_block_out_of_range_is_rejected() -> None:
    layout = Layout(P, entries(P + 5))
    with pytest.raises(LocalProtocolError):
        layout.spans(1, 0, 6)
    with pytest.raises(LocalProtocolError):
        layout.spans(2)
    with pytest.raises(LocalProtocolError):
        layout.spans(0, -1, 1)


def test_from_real_info() -> None:
    info = build_info("t", P, [b"\0" * 20] * 2, files=[(("a",), P - 1), (("b",), 2)])
    layout = Layout.from_info(info)
    assert layout.num_pieces == info.num_pieces == 2
    assert spans_tuples(layout, 0) == [(0, 0, P - 1), (1, 0, 1)]
    assert spans_tuples(layout, 1) == [(1, 1, 1)]
    assert layout.spans(0)[0].file.path == ("t", "a")


@settings(max_examples=150, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 1500), min_size=1, max_size=12),
    piece_length=st.integers(1, 1024),
    block=st.integers(1, 400),
)
def test_every_byte_mapped_exactly_once(lengths: list[int], piece_length: int, block: int) -> None:
    files = entries(*lengths)
    layout = Layout(piece_length, files)
    total = sum(lengths)
    assert layout.num_pieces * piece_length >= total > (layout.num_pieces - 1) * piece_length or (
        total == 0 and layout.num_pieces == 0
    )
    intervals: list[tuple[int, int]] = []
    touching: dict[int, set[int]] = {f: set() for f in range(len(files))}
    for piece in range(layout.num_pieces):
        size = layout.piece_size(piece)
        for begin in range(0, size, block):
            length = min(block, size - begin)
            pos = 0
            for s in layout.spans(piece, begin, length):
                assert s.buffer_offset == pos
                assert s.length > 0
                assert s.file_offset >= 0
                assert s.file_offset + s.length <= s.file.length
                start = s.file.offset + s.file_offset
                assert start == piece * piece_length + begin + pos  # stream position agrees
                intervals.append((start, start + s.length))
                touching[s.file_index].add(piece)
                pos += s.length
            assert pos == length
    # The intervals tile [0, total) with no gap and no overlap: every byte exactly once.
    intervals.sort()
    cursor = 0
    for a, b in intervals:
        assert a == cursor
        cursor = b
    assert cursor == total
    # files <-> pieces agree with the spans
    for f, entry in enumerate(files):
        assert sorted(touching[f]) == list(layout.pieces_for_file(f))
        assert (entry.length == 0) == (not touching[f])
