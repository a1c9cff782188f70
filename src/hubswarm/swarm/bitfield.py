"""A compact piece bitfield (BEP 3 ``bitfield`` message layout).

Bit ``i`` is the high bit of byte ``i // 8`` shifted right by ``i % 8``: piece 0 is the
most significant bit of the first byte. Spare bits at the end must be zero (BEP 3).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from hubswarm.errors import RemoteProtocolError

# Bits set in each byte value, for a fast count().
_POPCOUNT = bytes(bin(i).count("1") for i in range(256))


class Bitfield:
    """A fixed-length set of piece indices backed by a bytearray."""

    __slots__ = ("_bits", "_count", "_length")

    def __init__(self, length: int) -> None:
        if length < 0:
            raise ValueError(f"negative bitfield length {length}")
        self._length = length
        self._bits = bytearray((length + 7) // 8)
        self._count = 0

    # --- constructors ---------------------------------------------------------------------

    @classmethod
    def none(cls, length: int) -> Bitfield:
        """An empty bitfield (BEP 6 HaveNone)."""
        return cls(length)

    @classmethod
    def all(cls, length: int) -> Bitfield:
        """A full bitfield (a seed, BEP 6 HaveAll)."""
        bf = cls(length)
        full, rest = divmod(length, 8)
        bf._bits[:full] = b"\xff" * full
        if rest:
            bf._bits[full] = (0xFF << (8 - rest)) & 0xFF
        bf._count = length
        return bf

    @classmethod
    def from_bytes(cls, data: bytes, length: int) -> Bitfield:
        """Parse a wire bitfield for ``length`` pieces.

        Raises:
            RemoteProtocolError: wrong size or a spare bit is set (BEP 3).
        """
        nbytes = (length + 7) // 8
        if len(data) != nbytes:
            raise RemoteProtocolError(
                f"bitfield is {len(data)} bytes, expected {nbytes} for {length} pieces"
            )
        rest = length % 8
        if rest and data[-1] & (0xFF >> rest):
            raise RemoteProtocolError("bitfield has spare bits set")
        bf = cls(length)
        bf._bits[:] = data
        bf._count = sum(_POPCOUNT[b] for b in data)
        return bf

    @classmethod
    def from_indices(cls, length: int, indices: Iterable[int]) -> Bitfield:
        """A bitfield with exactly ``indices`` set."""
        bf = cls(length)
        for i in indices:
            bf.set(i)
        return bf

    # --- access ---------------------------------------------------------------------------

    def _check(self, index: int) -> None:
        if not 0 <= index < self._length:
            raise IndexError(f"piece index {index} out of range 0..{self._length - 1}")

    def __len__(self) -> int:
        """Number of pieces (bits), not the number set: see ``count()``."""
        return self._length

    def __getitem__(self, index: int) -> bool:
        if not 0 <= index < self._length:  # _check inline: read a few times per block
            self._check(index)
        return bool(self._bits[index >> 3] & (0x80 >> (index & 7)))

    def get(self, index: int) -> bool:
        """True if piece ``index`` is set."""
        return self[index]

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and 0 <= index < self._length and self[index]

    def set(self, index: int, value: bool = True) -> None:
        """Set (or clear, with ``value=False``) piece ``index``."""
        self._check(index)
        mask = 0x80 >> (index & 7)
        byte = self._bits[index >> 3]
        was = bool(byte & mask)
        if value and not was:
            self._bits[index >> 3] = byte | mask
            self._count += 1
        elif not value and was:
            self._bits[index >> 3] = byte & ~mask & 0xFF
            self._count -= 1

    def clear(self, index: int) -> None:
        """Clear piece ``index``."""
        self.set(index, False)

    def count(self) -> int:
        """Number of pieces set."""
        return self._count

    @property
    def is_complete(self) -> bool:
        """True if every piece is set (a seed)."""
        return self._count == self._length

    @property
    def is_empty(self) -> bool:
        """True if no piece is set."""
        return self._count == 0

    def __iter__(self) -> Iterator[int]:
        """Indices of the pieces set, ascending."""
        for byte_index, byte in enumerate(self._bits):
            if not byte:
                continue
            base = byte_index << 3
            for bit in range(8):
                if byte & (0x80 >> bit):
                    yield base + bit

    def missing(self) -> Iterator[int]:
        """Indices of the pieces not set, ascending."""
        for i in range(self._length):
            if not self._bits[i >> 3] & (0x80 >> (i & 7)):
                yield i

    def to_bytes(self) -> bytes:
        """The wire form (BEP 3), spare bits zero."""
        return bytes(self._bits)

    def copy(self) -> Bitfield:
        """An independent copy."""
        bf = Bitfield(self._length)
        bf._bits[:] = self._bits
        bf._count = self._count
        return bf

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Bitfield):
            return NotImplemented
        return self._length == other._length and self._bits == other._bits

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Bitfield({self._count}/{self._length})"
