"""The file a run distributes, and what a client ended up with (blocking: run in a thread)."""

from __future__ import annotations

import contextlib
import hashlib
import random
from pathlib import Path

__all__ = ["PAYLOAD_NAME", "check_file", "largest_partial", "make_payload"]

PAYLOAD_NAME = "payload.bin"
_CHUNK = 1 << 20


def make_payload(path: Path, size: int, seed: int) -> str:
    """Write ``size`` seeded random bytes to path; return their SHA-256 hex (for any runner)."""
    rng = random.Random(seed)
    digest = hashlib.sha256()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        left = size
        while left > 0:
            chunk = rng.randbytes(min(left, _CHUNK))
            digest.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def check_file(path: Path, sha256: str) -> tuple[int, bool]:
    """(size, whether its SHA-256 is ``sha256``); (0, False) if it cannot be read."""
    try:
        size = path.stat().st_size
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while block := f.read(_CHUNK):
                digest.update(block)
    except OSError:
        return 0, False
    return size, digest.hexdigest() == sha256


def largest_partial(folder: Path) -> int:
    """The size of the largest file in ``folder`` (event and JSON logs aside).

    A failed client may leave its partial download under another name in its folder.
    """
    total = 0
    with contextlib.suppress(OSError):
        for p in folder.rglob("*"):
            if p.is_file() and not p.name.endswith(".json"):
                total = max(total, p.stat().st_size)
    return total
