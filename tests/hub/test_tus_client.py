"""``hubswarm put`` over tus: an interrupted upload resumes from the hub's offset."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from hubswarm.hub import client
from hubswarm.hub.app import HubConfig
from hubswarm.hub.server import running_hub

from .conftest import Hub, HubFactory, make_tokens

MIB = 1 << 20


async def _received(hub: Hub) -> int:
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{hub.url}/stats", headers=hub.auth("read")) as r,
    ):
        return int((await r.json())["bytes_received"])


async def _stored(hub: Hub, name: str) -> bytes:
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{hub.url}/files/{name}", headers=hub.auth("read")) as r,
    ):
        assert r.status == 200
        return await r.read()


@pytest.fixture
async def slow_hub(make_hub: HubFactory) -> AsyncIterator[Hub]:
    """A hub that takes uploads at 4 MiB/s, so that one can be interrupted mid-way."""
    async with make_hub(rate_limit=4 * MIB) as hub:
        yield hub


async def test_upload_goes_over_tus(hub: Hub, tmp_path: Path) -> None:
    src = tmp_path / "a b.bin"
    src.write_bytes(os.urandom(MIB + 1))
    state = tmp_path / "state"
    remote = await client.upload(
        src, hub.url, token=hub.tokens["write"], progress=None, state_dir=state
    )
    assert remote.name == "a b.bin"
    assert remote.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert await _stored(hub, "a%20b.bin") == src.read_bytes()
    assert list(state.iterdir()) == []  # nothing left to resume
    assert (hub.data_dir / ".pieces").exists()


async def test_interrupted_upload_sends_only_the_rest(slow_hub: Hub, tmp_path: Path) -> None:
    size = 8 * MIB
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(size))
    state = tmp_path / "state"
    token = slow_hub.tokens["write"]
    reached = asyncio.Event()

    def progress(done: int, total: int | None) -> None:
        if done >= 3 * MIB:
            reached.set()

    first = asyncio.ensure_future(
        client.upload(src, slow_hub.url, token=token, progress=progress, state_dir=state)
    )
    await asyncio.wait_for(reached.wait(), 30)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert len(list(state.iterdir())) == 1  # the upload's URL, to resume
    before = await _received(slow_hub)
    assert 0 < before < size
    offsets: list[int] = []
    remote = await client.upload(
        src,
        slow_hub.url,
        token=token,
        progress=lambda done, total: offsets.append(done),
        state_dir=state,
    )
    total = await _received(slow_hub)
    assert remote.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert await _stored(slow_hub, "big.bin") == src.read_bytes()
    # Only the rest went over the wire the second time: the bytes the hub had kept (the
    # first run's, some still in socket buffers when it was cancelled) were not sent again.
    assert offsets[0] > 2 * MIB  # the second run started past what the first one sent
    assert total <= size + MIB
    assert list(state.iterdir()) == []


async def test_plain_put_when_asked(hub: Hub, tmp_path: Path) -> None:
    src = tmp_path / "p.bin"
    src.write_bytes(b"plain")
    remote = await client.upload(
        src,
        hub.url,
        token=hub.tokens["write"],
        progress=None,
        resumable=False,
        state_dir=tmp_path / "state",
    )
    assert remote.size == 5
    assert not (tmp_path / "state").exists()


async def test_changed_file_starts_a_new_upload(slow_hub: Hub, tmp_path: Path) -> None:
    """The resume key is the file's SHA-256: other bytes never continue an old upload."""
    src = tmp_path / "c.bin"
    src.write_bytes(os.urandom(4 * MIB))
    state = tmp_path / "state"
    token = slow_hub.tokens["write"]
    reached = asyncio.Event()
    first = asyncio.ensure_future(
        client.upload(
            src,
            slow_hub.url,
            token=token,
            state_dir=state,
            progress=lambda d, t: reached.set() if d >= MIB else None,
        )
    )
    await asyncio.wait_for(reached.wait(), 30)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    src.write_bytes(os.urandom(3 * MIB))
    remote = await client.upload(src, slow_hub.url, token=token, progress=None, state_dir=state)
    assert remote.size == 3 * MIB
    assert await _stored(slow_hub, "c.bin") == src.read_bytes()


@pytest.mark.slow
async def test_killed_cli_put_resumes(tmp_path: Path) -> None:
    """``hubswarm put`` killed mid-way (SIGKILL), run again: it completes, sending the rest."""
    data = tmp_path / "data"
    data.mkdir()
    tokens, _ = make_tokens(data)
    size = 12 * MIB
    src = tmp_path / "k.bin"
    src.write_bytes(os.urandom(size))
    config = HubConfig(data_dir=data, rate_limit=4 * MIB, shutdown_timeout=2.0)
    env = {**os.environ, "HUBSWARM_TOKEN": tokens["write"], "XDG_CACHE_HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "hubswarm", "put", str(src)]
    async with running_hub(config) as url:
        hub = Hub(url=url, data_dir=data, config=config, tokens=tokens)
        proc = await asyncio.create_subprocess_exec(
            *cmd, url, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            for _ in range(300):  # until a third has arrived (30 s at most)
                if await _received(hub) >= size // 3:
                    break
                await asyncio.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGKILL)
            await proc.communicate()
        assert await _received(hub) < size
        proc = await asyncio.create_subprocess_exec(
            *cmd, url, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        assert out.decode().startswith("uploaded k.bin (12582912 bytes")
        total = await _received(hub)
        assert await _stored(hub, "k.bin") == src.read_bytes()
    assert total <= size + MIB  # the kept bytes were not sent again


@pytest.mark.parametrize(
    ("url", "uploads", "name"),
    [
        ("http://h:1/files/a%20b", "http://h:1/uploads/", "a b"),
        ("http://h:1/files/x/files/y", "http://h:1/uploads/", "x/files/y"),
        ("https://h/pre/files/c?token=t", "https://h/pre/uploads/", "c"),
    ],
)
def test_uploads_url_and_name(url: str, uploads: str, name: str) -> None:
    from hubswarm.hub.tus_client import _split

    assert _split(url) == (uploads, name)
