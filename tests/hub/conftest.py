"""Fixtures for the hub: a real server on 127.0.0.1:0 with one token per role."""

from __future__ import annotations

import contextlib
import hashlib
import os
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme

from hubswarm.hub.app import HubConfig
from hubswarm.hub.auth import Role, TokenStore
from hubswarm.hub.server import running_hub


@dataclass
class Hub:
    """A running hub and what tests need to talk to it."""

    url: str
    data_dir: Path
    config: HubConfig
    tokens: dict[str, str] = field(default_factory=dict)
    token_ids: dict[str, str] = field(default_factory=dict)

    def auth(self, role: str = "admin") -> dict[str, str]:
        """Authorization header for the token of ``role``."""
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def partials(self) -> list[Path]:
        """Leftover temp uploads (must be empty after any failure)."""
        d = self.data_dir / ".partial"
        return sorted(d.iterdir()) if d.exists() else []


HubFactory = Callable[..., contextlib.AbstractAsyncContextManager[Hub]]


def make_tokens(data_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """One token per role in ``data_dir``: (role -> token, role -> id)."""
    store = TokenStore(data_dir)
    tokens, ids = {}, {}
    for role in Role:
        rec, tok = store.create(role)
        tokens[role.label] = tok
        ids[role.label] = rec.id
    return tokens, ids


@pytest.fixture
def make_hub(tmp_path: Path) -> HubFactory:
    """Factory: ``async with make_hub(anonymous_read=True, ...) as hub``."""

    @contextlib.asynccontextmanager
    async def factory(
        ssl_context: ssl.SSLContext | None = None, data_dir: Path | None = None, **overrides: Any
    ) -> AsyncIterator[Hub]:
        data = data_dir or tmp_path / "data"
        data.mkdir(parents=True, exist_ok=True)
        tokens, ids = make_tokens(data)
        config = replace(HubConfig(data_dir=data, shutdown_timeout=2.0), **overrides)
        async with running_hub(config, ssl_context=ssl_context) as url:
            yield Hub(url=url, data_dir=data, config=config, tokens=tokens, token_ids=ids)

    return factory


@pytest.fixture
async def hub(make_hub: HubFactory) -> AsyncIterator[Hub]:
    """A hub with default settings."""
    async with make_hub() as h:
        yield h


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session, closed after the test."""
    async with aiohttp.ClientSession() as s:
        yield s


def write_pattern_file(path: Path, size: int, seed: int = 0) -> str:
    """Write ``size`` pseudo-random bytes (1 MiB of urandom, varied per MiB); return sha256 hex."""
    block = os.urandom(1 << 20)
    h = hashlib.sha256()
    with path.open("wb") as f:
        left, i = size, seed
        while left > 0:
            chunk = (i.to_bytes(8, "big") + block)[: min(left, 1 << 20)]
            f.write(chunk)
            h.update(chunk)
            left -= len(chunk)
            i += 1
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    """SHA-256 hex of a file."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) TLS contexts for 127.0.0.1 from a throwaway trustme CA."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx
