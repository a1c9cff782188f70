"""Strict bencode (BEP 3) through fastbencode.

fastbencode already rejects leading zeros, ``-0``, unsorted keys and trailing bytes, but it
recurses without a limit (a run of ``l`` bytes raises ``RecursionError``) and raises bare
``ValueError``. :func:`decode` therefore first walks the token structure iteratively
(:func:`scan`), which bounds the nesting depth and the total size, and records the exact byte
span of each top-level dictionary value, so that the info-hash can be taken over the original
bytes of ``info`` (never a re-encoding). Then fastbencode builds the objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import fastbencode

from hubswarm.errors import BencodeError
from hubswarm.limits import BENCODE_MAX_DEPTH, BENCODE_MAX_INT_DIGITS, BENCODE_MAX_SIZE

__all__ = ["Scan", "decode", "decode_prefix", "encode", "encode_checked", "info_span", "scan"]

_DIGITS = frozenset(b"0123456789")
_LONG_DIGITS = re.compile(rb"[0-9]{%d}" % (BENCODE_MAX_INT_DIGITS + 1))
# Documents with at most this many `l`/`d` bytes may take decode's fast path.
_FAST_MAX_CONTAINERS = 256


@dataclass(frozen=True, slots=True)
class Scan:
    """Result of :func:`scan`: where the first value ends and where top-level dict values lie."""

    end: int
    top_level_spans: dict[bytes, tuple[int, int]]


def _read_int(data: bytes, pos: int, stop: int) -> tuple[int, int]:
    """Parse the digits at ``data[pos:]`` up to the byte ``stop``; return (value, index after)."""
    end = data.find(bytes((stop,)), pos)
    if end < 0:
        raise BencodeError(f"unterminated number at offset {pos}")
    text = data[pos:end]
    negative = text.startswith(b"-")
    digits = text[1:] if negative else text
    if not digits or not all(c in _DIGITS for c in digits):
        raise BencodeError(f"invalid number {text[:32]!r} at offset {pos}")
    if len(digits) > BENCODE_MAX_INT_DIGITS:
        raise BencodeError(f"number of {len(digits)} digits at offset {pos} is too long")
    if len(digits) > 1 and digits[0] == 0x30:
        raise BencodeError(f"leading zero in number at offset {pos}")
    if negative and digits == b"0":
        raise BencodeError(f"negative zero at offset {pos}")
    return (-1 if negative else 1) * int(digits), end + 1


def scan(data: bytes, *, max_depth: int = BENCODE_MAX_DEPTH, start: int = 0) -> Scan:
    """Walk one bencoded value starting at ``start`` without building it.

    Checks the structure, canonical integers and string lengths, and the nesting depth.
    Key order is checked by fastbencode in :func:`decode`.

    Raises:
        BencodeError: malformed input, a length beyond the buffer, or nesting deeper than
            ``max_depth``.
    """
    n = len(data)
    pos = start
    # Each stack entry: [kind, expect_key, key_start] with kind b"l" or b"d".
    stack: list[list[Any]] = []
    spans: dict[bytes, tuple[int, int]] = {}
    current_key: bytes | None = None
    value_start = 0
    while True:
        if pos >= n:
            raise BencodeError("truncated input")
        c = data[pos]
        top = stack[-1] if stack else None
        if c == 0x65 and top is not None:  # 'e' closes a list or dict
            if top[0] == b"d" and not top[1]:
                raise BencodeError(f"dictionary key without value at offset {pos}")
            stack.pop()
            pos += 1
            if len(stack) == 1 and stack[0][0] == b"d" and current_key is not None:
                spans[current_key] = (value_start, pos)
                current_key = None
            if not stack:
                return Scan(end=pos, top_level_spans=spans)
            stack[-1][1] = stack[-1][0] == b"d" and not stack[-1][1]
            continue
        is_key = top is not None and top[0] == b"d" and top[1]
        if is_key and c not in _DIGITS:
            raise BencodeError(f"dictionary key is not a string at offset {pos}")
        if len(stack) == 1 and stack[0][0] == b"d" and not is_key:
            value_start = pos
        if c in _DIGITS:
            length, body = _read_int(data, pos, 0x3A)  # ':'
            if body + length > n:
                raise BencodeError(f"string of {length} bytes at offset {pos} runs past the end")
            if is_key and len(stack) == 1:
                current_key = data[body : body + length]
            pos = body + length
        elif c == 0x69:  # 'i'
            _, pos = _read_int(data, pos + 1, 0x65)
        elif c in (0x6C, 0x64):  # 'l', 'd'
            if len(stack) >= max_depth:
                raise BencodeError(f"nesting deeper than {max_depth} at offset {pos}")
            stack.append([b"l" if c == 0x6C else b"d", c == 0x64])
            pos += 1
            continue
        else:
            raise BencodeError(f"unexpected byte {bytes((c,))!r} at offset {pos}")
        # a scalar was read
        if not stack:
            return Scan(end=pos, top_level_spans=spans)
        if len(stack) == 1 and stack[0][0] == b"d" and not is_key and current_key is not None:
            spans[current_key] = (value_start, pos)
            current_key = None
        if top is not None and top[0] == b"d":
            top[1] = not top[1]


def decode(data: bytes, *, max_depth: int = BENCODE_MAX_DEPTH) -> Any:
    """Decode exactly one canonical bencoded value that fills ``data``.

    Raises:
        BencodeError: malformed, non-canonical, too deep, too large, or trailing bytes.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise BencodeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > BENCODE_MAX_SIZE:
        raise BencodeError(f"document of {len(data)} bytes exceeds {BENCODE_MAX_SIZE}")
    # Fast path: fastbencode first (C), then the nesting depth of what it built. The token
    # scan in Python cost ~0.3 ms per KRPC packet, most of a DHT node's work. fastbencode
    # refuses non-canonical input itself; it recurses, so it only gets documents with few
    # `l`/`d` bytes (a bound on the nesting, whatever the recursion limit), and numbers
    # longer than the cap are left to the scan. Whatever the fast path refuses goes through
    # the scan, which names the error precisely.
    containers = data.count(b"l") + data.count(b"d")
    if containers <= _FAST_MAX_CONTAINERS and not _LONG_DIGITS.search(data):
        try:
            value = fastbencode.bdecode(data)  # type: ignore[attr-defined]
        except (ValueError, TypeError, RecursionError):
            pass
        else:
            if _depth_at_most(value, max_depth):
                return value
    _scan_whole(data, max_depth)
    try:
        return fastbencode.bdecode(data)  # type: ignore[attr-defined]
    except (ValueError, TypeError, RecursionError) as exc:
        raise BencodeError(str(exc)) from exc


def _depth_at_most(value: Any, max_depth: int) -> bool:
    """True if no chain of nested lists/dicts in ``value`` is longer than ``max_depth``."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, list | dict):
            depth += 1
            if depth > max_depth:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, depth) for c in children if isinstance(c, list | dict))
    return True


def _scan_whole(data: bytes, max_depth: int) -> None:
    """Run the token scan over all of ``data`` (raises BencodeError naming the fault)."""
    result = scan(data, max_depth=max_depth)
    if result.end != len(data):
        raise BencodeError(f"{len(data) - result.end} trailing bytes after the value")


def decode_prefix(data: bytes, *, max_depth: int = BENCODE_MAX_DEPTH) -> tuple[Any, int]:
    """Decode the one value at the start of ``data``; return it and the offset after it.

    BEP 9 ``ut_metadata`` messages carry a bencoded dict followed by raw metadata bytes.
    """
    data = bytes(data)
    result = scan(data, max_depth=max_depth)
    return decode(data[: result.end], max_depth=max_depth), result.end


def info_span(data: bytes) -> tuple[int, int]:
    """Return the byte span of the top-level ``info`` value of a .torrent document.

    Raises:
        BencodeError: malformed input, or no ``info`` key at the top level.
    """
    result = scan(bytes(data))
    if result.end != len(data):
        raise BencodeError("trailing bytes after the value")
    if b"info" not in result.top_level_spans:
        raise BencodeError("no 'info' dictionary at the top level")
    return result.top_level_spans[b"info"]


def encode(value: Any) -> bytes:
    """Encode ``value`` (bytes, str, int, list, dict with bytes or str keys) canonically.

    Raises:
        BencodeError: a value that bencode cannot represent (float, None, ...).
    """
    try:
        return bytes(fastbencode.bencode(_normalise(value)))  # type: ignore[attr-defined]
    except (ValueError, TypeError) as exc:
        raise BencodeError(f"cannot encode: {exc}") from exc


def encode_checked(value: Any) -> bytes:
    """Encode a value a codec built itself from bytes keys, bytes, ints, lists and dicts only
    (no str, no bool, no views): :func:`encode` without its normalising walk, which cost a
    DHT node a third of its encoding time. Anything else still raises :class:`BencodeError`,
    except a bool, which is taken as an int: callers pass no bools.
    """
    try:
        return bytes(fastbencode.bencode(value))  # type: ignore[attr-defined]
    except (ValueError, TypeError) as exc:
        raise BencodeError(f"cannot encode: {exc}") from exc


def _normalise(value: Any) -> Any:
    """Turn str into UTF-8 bytes and reject types bencode has no form for."""
    if isinstance(value, bool):
        raise BencodeError("bool is not a bencode type")
    if isinstance(value, bytes | int):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    if isinstance(value, dict):
        out: dict[bytes, Any] = {}
        for k, v in value.items():
            key = k.encode() if isinstance(k, str) else k
            if not isinstance(key, bytes):
                raise BencodeError(f"dictionary key {k!r} is not a string")
            if key in out:
                raise BencodeError(f"duplicate dictionary key {key!r}")
            out[key] = _normalise(v)
        return out
    raise BencodeError(f"{type(value).__name__} is not a bencode type")
