"""What a ``Range`` header asks of a file of known size (RFC 9110 §14), decided before
aiohttp's FileResponse sees it.

FileResponse serves one ``bytes=first-last`` range well but errs at the edges: ``bytes=-0``
(a zero-length suffix, unsatisfiable by §14.1.1) gets a 206 with the whole file, an unknown
range unit (which §14.2 says MUST be ignored) and a satisfiable multi-range set both get 416.
``plan_range`` classifies the header; the handler then drops it (200), answers 416 itself with
``Content-Range: bytes */LEN``, or hands FileResponse one canonical ``bytes=first-last``.
"""

from __future__ import annotations

import email.utils
import enum
import math
import re
from dataclasses import dataclass

# A decimal position longer than this is beyond any file (2**64 has 20 digits); parsing it
# would only cost time (int() is quadratic, and refuses more than 4300 digits).
_MAX_DIGITS = 20
_HUGE = 1 << 64
# RFC 9110 §14.1.1: int-range = first-pos "-" [ last-pos ]; suffix-range = "-" suffix-length.
_SPEC = re.compile(r"([0-9]*)-([0-9]*)", re.ASCII)
# RFC 9110 §14.2: "A server MAY ignore or reject ... a set of many small ranges": a header
# with more specs than this is not parsed further (served whole, as any multi-range set).
_MAX_SPECS = 100


class RangeVerdict(enum.Enum):
    """What to do with the request's Range header."""

    IGNORE = "ignore"  # serve the whole file with 200 (§14.2: a server MAY ignore Range)
    UNSATISFIABLE = "unsatisfiable"  # 416 with Content-Range: bytes */size (§15.5.17)
    SINGLE = "single"  # one satisfiable range: first..last inclusive


@dataclass(frozen=True, slots=True)
class RangePlan:
    """The verdict and, for SINGLE, the inclusive byte positions within the file."""

    verdict: RangeVerdict
    first: int = 0
    last: int = 0

    @property
    def header(self) -> str:
        """The canonical single-range header handed to FileResponse."""
        return f"bytes={self.first}-{self.last}"


_IGNORE = RangePlan(RangeVerdict.IGNORE)
_UNSATISFIABLE = RangePlan(RangeVerdict.UNSATISFIABLE)


def _position(digits: str) -> int:
    return _HUGE if len(digits) > _MAX_DIGITS else int(digits)


def _is_nonzero_suffix(spec: str) -> bool:
    return spec.startswith("-") and spec[1:].isdigit() and spec[1:].strip("0") != ""


def _resolve(spec: str, size: int) -> tuple[int, int] | bool | None:
    """One byte-range-spec against ``size``: (first, last) if satisfiable, None if
    unsatisfiable, False if invalid (§14.1.1)."""
    m = _SPEC.fullmatch(spec)
    if m is None or m.group(1) == m.group(2) == "":
        return False
    first_s, last_s = m.groups()
    if first_s == "":
        # suffix-range: the last N bytes; N = 0 is unsatisfiable (§14.1.1 "non-zero
        # suffix-length"); a suffix longer than the file means the whole file.
        suffix = _position(last_s)
        if suffix == 0 or size == 0:
            return None
        return max(size - suffix, 0), size - 1
    first = _position(first_s)
    last = _position(last_s) if last_s else _HUGE
    if last < first:
        return False  # "invalid if the last-pos value is present and less than first-pos"
    if first >= size:
        return None
    return first, min(last, size - 1)


def plan_range(header: str, size: int) -> RangePlan:
    """Classify ``Range: header`` for a file of ``size`` bytes (RFC 9110 §14.1-14.2).

    Unknown unit -> IGNORE (§14.2 MUST ignore); a syntactically invalid set -> UNSATISFIABLE
    (§14.2 MAY reject; aiohttp, nginx and Apache answer 416); no satisfiable spec ->
    UNSATISFIABLE; one satisfiable spec -> SINGLE; several specs with at least one satisfiable
    -> IGNORE (we send no multipart/byteranges; §14.2 lets a server send the whole file).
    A zero-length file has no satisfiable range, but a suffix range on it is "satisfiable" by
    §14.1.1's letter; there is no Content-Range for zero bytes, so it is served whole (200).
    """
    unit, eq, rest = header.partition("=")
    if not eq or unit.strip().lower() != "bytes":
        return _IGNORE
    # range-set = 1#range-spec: a list, optional whitespace around commas, empty elements
    # tolerated by recipients (RFC 9110 §5.6.1.2).
    specs = [s.strip(" \t") for s in rest.split(",", _MAX_SPECS)]
    specs = [s for s in specs if s]
    if not specs:
        return _UNSATISFIABLE
    if len(specs) > _MAX_SPECS:
        return _IGNORE
    resolved = [_resolve(s, size) for s in specs]
    if any(r is False for r in resolved):
        return _UNSATISFIABLE
    satisfiable = [r for r in resolved if isinstance(r, tuple)]
    if not satisfiable:
        if size == 0 and any(_is_nonzero_suffix(s) for s in specs):
            return _IGNORE
        return _UNSATISFIABLE
    if len(specs) > 1:
        return _IGNORE
    first, last = satisfiable[0]
    return RangePlan(RangeVerdict.SINGLE, first, last)


# --- conditional requests (RFC 9110 §13) ------------------------------------------------

# RFC 9110 §8.8.2.2: a Last-Modified date is a strong validator only if the file is at least
# a second older than the date the server sends with it (dates have one-second resolution).
_WEAK_DATE_WINDOW = 1.0


def etag_list_matches(header: str, etag: str, *, weak: bool) -> bool:
    """RFC 9110 §13.1.1/§13.1.2 list match against our (strong) ETag."""
    for raw in header.split(","):
        tag = raw.strip()
        if tag == "*":
            return True
        if tag.startswith("W/"):
            if not weak:
                continue
            tag = tag[2:]
        if tag == etag:
            return True
    return False


def if_range_matches(value: str, etag: str, mtime: float, now: float) -> bool:
    """RFC 9110 §13.1.5: does ``If-Range`` still describe the current file?

    An entity-tag must match strongly; a date must equal Last-Modified exactly and the file must
    be at least a second older than now (else the date is only a weak validator).
    """
    value = value.strip()
    if value.startswith(('"', "W/")):
        return value == etag
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return False
    # aiohttp writes Last-Modified as ceil(st_mtime).
    last_modified = math.ceil(mtime)
    return int(when.timestamp()) == last_modified and now - mtime >= _WEAK_DATE_WINDOW
