"""Pure mapping between pieces/blocks and files (BEP 3: pieces cut the concatenation of files).

A torrent's files are laid end to end in one byte stream in ``info.files`` order; pieces
are ``piece_length`` slices of that stream, the last one shorter. A block
``(piece_index, begin, length)`` can span several files, and a file several pieces.
Zero-length files occupy no bytes: they touch no piece and are complete from the start.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hubswarm.errors import LocalProtocolError

if TYPE_CHECKING:
    from hubswarm.proto.metainfo import FileEntry, InfoDict
    from hubswarm.swarm.bitfield import Bitfield


@dataclass(frozen=True, slots=True)
class FileSpan:
    """A run of bytes inside one file: ``length`` bytes at ``file_offset`` of ``file``.

    ``buffer_offset`` is where the run starts inside the requested range (0 for the first span).
    """

    file_index: int
    file: FileEntry
    file_offset: int
    length: int
    buffer_offset: int


class Layout:
    """Pieces <-> files for one torrent; immutable after construction."""

    __slots__ = (
        "_nonempty",
        "_starts",
        "files",
        "num_pieces",
        "piece_length",
        "total_length",
    )

    def __init__(self, piece_length: int, files: Sequence[FileEntry]) -> None:
        if piece_length <= 0:
            raise ValueError(f"piece_length must be positive, got {piece_length}")
        offset = 0
        for entry in files:
            # Offsets come from metainfo; a gap or overlap would silently corrupt data.
            if entry.offset != offset or entry.length < 0:
                raise ValueError(
                    f"file {entry.path!r} has offset {entry.offset}, expected {offset}"
                )
            offset += entry.length
        self.piece_length = piece_length
        self.files: tuple[FileEntry, ...] = tuple(files)
        self.total_length = offset
        self.num_pieces = (offset + piece_length - 1) // piece_length
        # Indices of files that hold bytes, and their start offsets, for bisect.
        self._nonempty = [i for i, f in enumerate(self.files) if f.length > 0]
        self._starts = [self.files[i].offset for i in self._nonempty]

    @classmethod
    def from_info(cls, info: InfoDict) -> Layout:
        """The layout of a parsed info dict."""
        return cls(info.piece_length, info.files)

    # --- pieces ---------------------------------------------------------------------------

    def piece_size(self, piece_index: int) -> int:
        """Size of piece ``piece_index``; the last piece may be shorter."""
        if not 0 <= piece_index < self.num_pieces:
            raise LocalProtocolError(f"piece index {piece_index} out of range")
        start = piece_index * self.piece_length
        return min(self.piece_length, self.total_length - start)

    def piece_offset(self, piece_index: int) -> int:
        """Byte offset of the piece in the torrent's byte stream."""
        return piece_index * self.piece_length

    def check_block(self, piece_index: int, begin: int, length: int) -> None:
        """Raise ``LocalProtocolError`` unless the block lies inside the piece."""
        size = self.piece_size(piece_index)
        if begin < 0 or length < 0 or begin + length > size:
            raise LocalProtocolError(
                f"block ({piece_index}, {begin}, {length}) outside piece of {size} bytes"
            )

    # --- bytes -> files -------------------------------------------------------------------

    def spans(self, piece_index: int, begin: int = 0, length: int | None = None) -> list[FileSpan]:
        """File spans covering ``length`` bytes at ``begin`` of the piece (whole piece by default).

        Raises:
            LocalProtocolError: the range is not inside the piece.
        """
        if length is None:
            length = self.piece_size(piece_index) - begin
        self.check_block(piece_index, begin, length)
        return self.byte_spans(piece_index * self.piece_length + begin, length)

    def byte_spans(self, offset: int, length: int) -> list[FileSpan]:
        """File spans covering ``length`` bytes at ``offset`` of the torrent's byte stream."""
        if offset < 0 or length < 0 or offset + length > self.total_length:
            raise LocalProtocolError(f"range ({offset}, {length}) outside {self.total_length}")
        out: list[FileSpan] = []
        if length == 0:
            return out
        k = bisect.bisect_right(self._starts, offset) - 1
        done = 0
        while done < length:
            index = self._nonempty[k]
            entry = self.files[index]
            file_offset = offset + done - entry.offset
            n = min(entry.length - file_offset, length - done)
            out.append(FileSpan(index, entry, file_offset, n, done))
            done += n
            k += 1
        return out

    # --- files -> pieces ------------------------------------------------------------------

    def pieces_for_file(self, file_index: int) -> range:
        """Pieces that hold at least one byte of the file (empty for a zero-length file)."""
        entry = self.files[file_index]
        if entry.length == 0:
            return range(0)
        first = entry.offset // self.piece_length
        last = (entry.offset + entry.length - 1) // self.piece_length
        return range(first, last + 1)

    def files_for_piece(self, piece_index: int) -> list[int]:
        """Indices of the (non-empty) files the piece touches, in order."""
        return [s.file_index for s in self.spans(piece_index)]

    def file_complete(self, file_index: int, have: Bitfield) -> bool:
        """True if every piece touching the file is in ``have`` (always for zero-length files)."""
        return all(have[p] for p in self.pieces_for_file(file_index))

    def completed_files(self, piece_index: int, have: Bitfield) -> list[int]:
        """Files touched by ``piece_index`` that ``have`` completes (call after setting it)."""
        return [i for i in self.files_for_piece(piece_index) if self.file_complete(i, have)]
