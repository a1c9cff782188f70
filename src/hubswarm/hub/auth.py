"""Bearer tokens and roles of the hub, kept in ``DATA/tokens.json``.

The file stores only the SHA-256 of each token (a stolen file grants nothing) plus a short random
id used to list and revoke. Writers (the CLI and ``POST /tokens``) do read-modify-write under an
``flock`` and replace the file atomically; the server re-reads it whenever its (mtime, size, inode)
changes, so ``hubswarm hub token revoke`` takes effect on the very next request.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

from hubswarm.clock import Clock
from hubswarm.errors import ConfigError
from hubswarm.limits import HUB_MAX_TOKENS, HUB_TOKENS_FILE_MAX
from hubswarm.ratelimit import TokenBucket

log = logging.getLogger(__name__)

TOKENS_FILE = "tokens.json"
_LOCK_FILE = ".tokens.lock"
# Random bytes of a token (256 bits: no salt or slow hash needed, see hash_token) and of its
# public id (collisions are retried; 4 bytes are plenty for HUB_MAX_TOKENS).
_TOKEN_BYTES = 32
_TOKEN_ID_BYTES = 4


class Role(IntEnum):
    """Roles are ordered: read < write < admin (a higher role may do all a lower one may)."""

    READ = 1
    WRITE = 2
    ADMIN = 3

    @classmethod
    def parse(cls, text: str) -> Role:
        """``"read"`` -> Role.READ; raises ConfigError on anything else."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ConfigError(f"unknown role {text!r} (read, write or admin)") from None

    @property
    def label(self) -> str:
        """Lower-case name, as written in tokens.json and the API."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """One token as stored: never the token itself, only its SHA-256."""

    id: str
    role: Role
    sha256: str
    created_at: float

    def to_json(self) -> dict[str, object]:
        """Public view (no hash) for ``GET /tokens`` and the CLI."""
        return {"id": self.id, "role": self.role.label, "created_at": self.created_at}


def hash_token(token: str) -> str:
    """SHA-256 hex of a presented token (tokens are 256-bit random, so no salt or KDF needed)."""
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def _parse(data: bytes) -> dict[str, TokenRecord]:
    doc = json.loads(data)
    if not isinstance(doc, dict) or not isinstance(doc.get("tokens"), list):
        raise ValueError("tokens.json must be an object with a 'tokens' list")
    out: dict[str, TokenRecord] = {}
    for item in doc["tokens"][:HUB_MAX_TOKENS]:
        rec = TokenRecord(
            id=str(item["id"]),
            role=Role.parse(str(item["role"])),
            sha256=str(item["sha256"]),
            created_at=float(item.get("created_at", 0.0)),
        )
        out[rec.id] = rec
    return out


class TokenStore:
    """Tokens of one data directory; safe to share between the server and the CLI."""

    def __init__(self, data_dir: Path, *, clock: Clock | None = None) -> None:
        """``clock.wall()`` stamps new tokens' ``created_at`` (default: Unix time)."""
        self.path = Path(data_dir) / TOKENS_FILE
        self._lock_path = Path(data_dir) / _LOCK_FILE
        self._clock = clock if clock is not None else Clock()
        self._signature: tuple[int, int, int] | None = None
        self._error: str | None = None  # why the file at _signature could not be used
        self._by_id: dict[str, TokenRecord] = {}
        self._by_hash: dict[str, TokenRecord] = {}
        self._mutex = threading.Lock()  # lookups run in worker threads

    # --- reading ---------------------------------------------------------------------------

    def _reload_if_changed(self, *, strict: bool) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._set({}, None)
            return
        sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        if sig == self._signature:
            if strict and self._error is not None:
                raise ConfigError(f"{self.path}: {self._error}")
            return
        try:
            if st.st_size > HUB_TOKENS_FILE_MAX:
                raise ValueError(f"tokens.json larger than {HUB_TOKENS_FILE_MAX} bytes")
            records = _parse(self.path.read_bytes())
        except (OSError, ValueError, KeyError, TypeError, ConfigError) as exc:
            if strict:
                raise ConfigError(f"{self.path}: {exc}") from exc
            # Fail closed: a corrupt file grants nothing until it is fixed.
            log.error("ignoring unreadable %s: %s", self.path, exc)
            self._set({}, sig)
            self._error = str(exc)
            return
        self._set(records, sig)

    def _set(self, records: dict[str, TokenRecord], sig: tuple[int, int, int] | None) -> None:
        self._by_id = records
        self._by_hash = {r.sha256: r for r in records.values()}
        self._signature = sig
        self._error = None

    def lookup(self, token: str) -> TokenRecord | None:
        """The record of ``token``, or None; re-reads tokens.json if it changed (blocking)."""
        return self.lookup_hash(hash_token(token))

    def lookup_hash(self, digest: str) -> TokenRecord | None:
        """The record of the token whose SHA-256 is ``digest`` (a browser session keeps only
        that), or None; blocking like :meth:`lookup`."""
        with self._mutex:
            self._reload_if_changed(strict=False)
            rec = self._by_hash.get(digest)
        # The dict lookup is keyed by a hash of a secret; compare again in constant time anyway.
        if rec is not None and hmac.compare_digest(rec.sha256, digest):
            return rec
        return None

    def list(self) -> list[TokenRecord]:
        """All tokens, oldest first (blocking)."""
        with self._mutex:
            self._reload_if_changed(strict=True)
            return sorted(self._by_id.values(), key=lambda r: (r.created_at, r.id))

    # --- writing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, TokenRecord]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            with self._mutex:
                self._signature = None
                self._reload_if_changed(strict=True)
                records = dict(self._by_id)
                yield records
                self._save(records)
                self._signature = None
        finally:
            os.close(fd)  # closing releases the flock

    def _save(self, records: dict[str, TokenRecord]) -> None:
        doc = {
            "tokens": [
                {"id": r.id, "role": r.role.label, "sha256": r.sha256, "created_at": r.created_at}
                for r in sorted(records.values(), key=lambda r: (r.created_at, r.id))
            ]
        }
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tokens-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def create(self, role: Role) -> tuple[TokenRecord, str]:
        """Make a new token; return (record, token). The token is shown once and never stored."""
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        with self._locked() as records:
            if len(records) >= HUB_MAX_TOKENS:
                raise ConfigError(f"too many tokens (limit {HUB_MAX_TOKENS})")
            token_id = secrets.token_hex(_TOKEN_ID_BYTES)
            while token_id in records:
                token_id = secrets.token_hex(_TOKEN_ID_BYTES)
            rec = TokenRecord(token_id, role, hash_token(token), self._clock.wall())
            records[token_id] = rec
        return rec, token

    def revoke(self, token_id: str) -> bool:
        """Remove a token by id; return False if there was none."""
        with self._locked() as records:
            return records.pop(token_id, None) is not None


# --- rate limit ------------------------------------------------------------------------------


class PerTokenLimiter:
    """One :class:`~hubswarm.ratelimit.TokenBucket` per token id (anonymous readers share one),
    bounded by the token count. Buckets may go into debt, so the concurrent requests of one
    token share its rate fairly without a queue: each waits for its own share of the debt."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        if rate <= 0 or burst <= 0:
            raise ConfigError("rate and burst must be > 0")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def reserve(self, key: str, n: int) -> float:
        """Seconds the holder of ``key`` must wait before moving ``n`` more bytes."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= HUB_MAX_TOKENS + 1:
                self._buckets.clear()  # revoked ids pile up only slowly; start afresh
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        return bucket.consume(n, now)
