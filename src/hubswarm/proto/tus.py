"""tus 1.0 (resumable uploads, https://tus.io/protocols/resumable-upload): headers, sans-IO.

Parses and validates what a tus client sends (``Tus-Resumable``, ``Upload-Length``,
``Upload-Offset``, ``Upload-Metadata``, ``Upload-Checksum``) and formats what the server
answers (``Upload-Expires``, metadata for clients). Every malformed value raises
:class:`~hubswarm.errors.RemoteProtocolError`; the hub's handlers (``hub/tus.py``) answer it
with 400. Nothing here reads a clock or a socket.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
from dataclasses import dataclass
from typing import Any

from hubswarm.errors import RemoteProtocolError

__all__ = [
    "CHECKSUM_ALGORITHMS",
    "EXTENSIONS",
    "TUS_VERSION",
    "Checksum",
    "check_resumable",
    "encode_metadata",
    "format_expires",
    "parse_checksum",
    "parse_metadata",
    "parse_offset",
]

TUS_VERSION = "1.0.0"
EXTENSIONS = ("creation", "termination", "checksum", "expiration")
# tus checksum extension: a server MUST support sha1; sha256 is what the hub stores.
CHECKSUM_ALGORITHMS: dict[str, int] = {"sha1": 20, "sha256": 32}
# A decimal offset or length: 2**63 has 19 digits (tusd and nginx parse int64 as well).
_MAX_DIGITS = 19
# Upload-Metadata as a whole, and its number of pairs: a file name, a type, a checksum fit
# many times over (tusd caps the header block at 1 MiB; we only need a few keys).
MAX_METADATA = 8 * 1024
_MAX_PAIRS = 32


def check_resumable(value: str | None) -> None:
    """Every request but OPTIONS must say ``Tus-Resumable: 1.0.0`` (else the server's 412)."""
    if value is None or value.strip() != TUS_VERSION:
        raise RemoteProtocolError(f"Tus-Resumable must be {TUS_VERSION}, got {value!r}")


def parse_offset(value: str | None, what: str = "Upload-Offset") -> int:
    """A non-negative decimal integer (no sign, no spaces inside, at most 19 digits)."""
    if value is None:
        raise RemoteProtocolError(f"{what} is missing")
    text = value.strip()
    if not text or len(text) > _MAX_DIGITS or not text.isascii() or not text.isdigit():
        raise RemoteProtocolError(f"{what} must be a non-negative integer, got {value[:40]!r}")
    return int(text)


def _key_ok(key: str) -> bool:
    # tus: keys are ASCII, non-empty, and contain neither spaces nor commas.
    return bool(key) and key.isascii() and key.isprintable() and " " not in key and "," not in key


def parse_metadata(value: str | None) -> dict[str, bytes]:
    """``Upload-Metadata``: comma-separated ``key base64value`` (or a bare ``key``) pairs.

    A bare key maps to ``b""``. Raises on a bad key, bad base64, a duplicate key or size.
    """
    if value is None or not value.strip():
        return {}
    if len(value) > MAX_METADATA:
        raise RemoteProtocolError(f"Upload-Metadata longer than {MAX_METADATA} characters")
    out: dict[str, bytes] = {}
    pairs = value.split(",")
    if len(pairs) > _MAX_PAIRS:
        raise RemoteProtocolError(f"Upload-Metadata has more than {_MAX_PAIRS} pairs")
    for pair in pairs:
        parts = pair.strip().split(" ")
        if len(parts) > 2 or not _key_ok(parts[0]):
            raise RemoteProtocolError(f"malformed Upload-Metadata pair {pair[:40]!r}")
        key = parts[0]
        if key in out:
            raise RemoteProtocolError(f"Upload-Metadata repeats the key {key!r}")
        raw = b""
        if len(parts) == 2:
            try:
                raw = base64.b64decode(parts[1], validate=True)
            except (binascii.Error, ValueError):
                raise RemoteProtocolError(f"Upload-Metadata {key!r} is not base64") from None
        out[key] = raw
    return out


def encode_metadata(pairs: dict[str, bytes]) -> str:
    """The ``Upload-Metadata`` value of ``pairs`` (what a client sends)."""
    for key in pairs:
        if not _key_ok(key):
            raise RemoteProtocolError(f"bad Upload-Metadata key {key!r}")
    return ",".join(f"{k} {base64.b64encode(v).decode('ascii')}" for k, v in pairs.items())


@dataclass(frozen=True, slots=True)
class Checksum:
    """An ``Upload-Checksum``: the algorithm and the digest the client computed for a chunk."""

    algorithm: str
    digest: bytes

    def hasher(self) -> Any:
        """A fresh hashlib object of the algorithm."""
        return hashlib.new(self.algorithm)


def parse_checksum(value: str | None) -> Checksum | None:
    """``Upload-Checksum: <algorithm> <base64 digest>``; None if absent.

    Raises on an unknown algorithm (the server's 400, tus checksum extension) or bad digest.
    """
    if value is None:
        return None
    algo, _, b64 = value.strip().partition(" ")
    algo = algo.lower()
    if algo not in CHECKSUM_ALGORITHMS:
        raise RemoteProtocolError(f"unsupported checksum algorithm {algo[:20]!r}")
    try:
        digest = base64.b64decode(b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise RemoteProtocolError("Upload-Checksum digest is not base64") from None
    if len(digest) != CHECKSUM_ALGORITHMS[algo]:
        raise RemoteProtocolError(
            f"Upload-Checksum {algo} must be {CHECKSUM_ALGORITHMS[algo]} bytes"
        )
    return Checksum(algo, digest)


def format_expires(unix_seconds: float) -> str:
    """``Upload-Expires``: an RFC 9110 HTTP date."""
    return email.utils.formatdate(unix_seconds, usegmt=True)
