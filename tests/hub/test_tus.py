"""tus 1.0 resumable uploads at /uploads/: the protocol, its errors, resume, and tuspy."""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import io
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from hubswarm.hub import tus as tus_mod
from hubswarm.hub.server import running_hub
from hubswarm.hub.tus import TUS_KEY

from .conftest import Hub, HubFactory

MIB = 1 << 20
T = {"Tus-Resumable": "1.0.0"}
PATCH_CT = {"Content-Type": "application/offset+octet-stream"}


def meta(name: str, sha256: str | None = None) -> str:
    out = "filename " + base64.b64encode(name.encode()).decode()
    if sha256 is not None:
        out += ",sha256 " + base64.b64encode(sha256.encode()).decode()
    return out


def h(hub: Hub, role: str = "write", **extra: str) -> dict[str, str]:
    return {**hub.auth(role), **T, **extra}


async def create(s: aiohttp.ClientSession, hub: Hub, name: str, length: int, **kw: Any) -> str:
    headers = h(hub, **{"Upload-Length": str(length), "Upload-Metadata": meta(name, **kw)})
    async with s.post(f"{hub.url}/uploads/", headers=headers) as r:
        assert r.status == 201, await r.text()
        assert r.headers["Tus-Resumable"] == "1.0.0"
        assert "Upload-Expires" in r.headers
        return r.headers["Location"]


async def patch(
    s: aiohttp.ClientSession, hub: Hub, url: str, offset: int, data: bytes, **extra: str
) -> aiohttp.ClientResponse:
    headers = {**h(hub, **{"Upload-Offset": str(offset)}, **PATCH_CT), **extra}
    async with s.patch(url, data=io.BytesIO(data), headers=headers) as r:
        await r.read()
        return r


async def offset_of(s: aiohttp.ClientSession, hub: Hub, url: str) -> int:
    async with s.head(url, headers=h(hub)) as r:
        assert r.status == 200
        assert r.headers["Cache-Control"] == "no-store"
        return int(r.headers["Upload-Offset"])


async def stored(s: aiohttp.ClientSession, hub: Hub, name: str) -> bytes:
    async with s.get(f"{hub.url}/files/{name}", headers=hub.auth("read")) as r:
        assert r.status == 200
        return await r.read()


# --- the protocol -----------------------------------------------------------------------------


async def test_options(hub: Hub, session: aiohttp.ClientSession) -> None:
    async with session.options(f"{hub.url}/uploads/") as r:
        assert r.status == 204
        assert r.headers["Tus-Version"] == "1.0.0"
        assert set(r.headers["Tus-Extension"].split(",")) >= {
            "creation",
            "termination",
            "checksum",
            "expiration",
        }
        assert "sha256" in r.headers["Tus-Checksum-Algorithm"].split(",")
        assert int(r.headers["Tus-Max-Size"]) == hub.config.max_upload


async def test_upload_in_two_patches(hub: Hub, session: aiohttp.ClientSession) -> None:
    data = os.urandom(MIB + 123)
    url = await create(session, hub, "t.bin", len(data))
    assert url.startswith(f"{hub.url}/uploads/")
    assert await offset_of(session, hub, url) == 0
    r = await patch(session, hub, url, 0, data[:300_000])
    assert r.status == 204
    assert r.headers["Upload-Offset"] == "300000"
    assert await offset_of(session, hub, url) == 300_000
    r = await patch(session, hub, url, 300_000, data[300_000:])
    assert r.status == 204
    assert r.headers["X-Content-SHA256"] == hashlib.sha256(data).hexdigest()
    assert await stored(session, hub, "t.bin") == data
    # Landed: the upload is gone, its pieces were hashed on the way in.
    async with session.head(url, headers=h(hub)) as r:
        assert r.status == 404
    assert list((hub.data_dir / ".uploads").iterdir()) == []
    assert len(list((hub.data_dir / ".pieces").iterdir())) == 1


async def test_empty_upload_lands_at_creation(hub: Hub, session: aiohttp.ClientSession) -> None:
    await create(session, hub, "empty", 0)
    assert await stored(session, hub, "empty") == b""


async def test_terminate(hub: Hub, session: aiohttp.ClientSession) -> None:
    url = await create(session, hub, "gone", 10)
    assert (await patch(session, hub, url, 0, b"12345")).status == 204
    async with session.delete(url, headers=h(hub)) as r:
        assert r.status == 204
    async with session.head(url, headers=h(hub)) as r:
        assert r.status == 404
    assert list((hub.data_dir / ".uploads").iterdir()) == []


# --- bad input -------------------------------------------------------------------------------


async def test_wrong_offset_is_409(hub: Hub, session: aiohttp.ClientSession) -> None:
    url = await create(session, hub, "x", 10)
    assert (await patch(session, hub, url, 3, b"abc")).status == 409
    assert (await patch(session, hub, url, 0, b"abc")).status == 204
    assert (await patch(session, hub, url, 0, b"abc")).status == 409
    assert await offset_of(session, hub, url) == 3


async def test_past_the_length_is_413(hub: Hub, session: aiohttp.ClientSession) -> None:
    url = await create(session, hub, "x", 4)
    assert (await patch(session, hub, url, 0, b"abcdef")).status == 413
    assert await offset_of(session, hub, url) == 0


async def test_over_the_hubs_limit_is_413(make_hub: HubFactory) -> None:
    async with make_hub(max_upload=1000) as hub, aiohttp.ClientSession() as s:
        headers = h(hub, **{"Upload-Length": "1001", "Upload-Metadata": meta("big")})
        async with s.post(f"{hub.url}/uploads/", headers=headers) as r:
            assert r.status == 413


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Upload-Metadata": "filename !!notbase64"}, 400),
        ({"Upload-Metadata": meta("../etc/passwd")}, 400),
        ({"Upload-Metadata": meta(".hidden")}, 400),
        ({"Upload-Metadata": meta("a\x00b")}, 400),
        ({"Upload-Metadata": "other " + base64.b64encode(b"x").decode()}, 400),
        ({"Upload-Metadata": meta("x", sha256="nothex")}, 400),
        ({"Upload-Metadata": meta("x"), "Upload-Length": "-1"}, 400),
        ({"Upload-Metadata": meta("x"), "Upload-Length": "ten"}, 400),
        ({"Upload-Metadata": meta("x"), "Upload-Defer-Length": "1"}, 400),
        ({"Upload-Metadata": meta("x"), "Tus-Resumable": "0.2.2"}, 412),
    ],
)
async def test_bad_creation(
    hub: Hub, session: aiohttp.ClientSession, headers: dict[str, str], status: int
) -> None:
    all_headers = {**h(hub), "Upload-Length": "10", **headers}
    async with session.post(f"{hub.url}/uploads/", headers=all_headers) as r:
        assert r.status == status
        assert r.headers["Tus-Resumable"] == "1.0.0"
        assert (await r.json())["status"] == status
    assert list((hub.data_dir / ".uploads").glob("*.part")) == []


async def test_roles(hub: Hub, session: aiohttp.ClientSession) -> None:
    headers = {**T, "Upload-Length": "1", "Upload-Metadata": meta("x")}
    async with session.post(f"{hub.url}/uploads/", headers=headers) as r:
        assert r.status == 401
    async with session.post(f"{hub.url}/uploads/", headers={**headers, **hub.auth("read")}) as r:
        assert r.status == 403
    url = await create(session, hub, "x", 3)
    async with session.head(url, headers={**T, **hub.auth("read")}) as r:
        assert r.status == 403


async def test_bad_patches(hub: Hub, session: aiohttp.ClientSession) -> None:
    url = await create(session, hub, "x", 10)
    headers = h(hub, **{"Upload-Offset": "0", "Content-Type": "application/octet-stream"})
    async with session.patch(url, data=b"abc", headers=headers) as r:
        assert r.status == 415
    assert (await patch(session, hub, url, 0, b"a", **{"Upload-Offset": "x"})).status == 400
    assert (await patch(session, hub, f"{hub.url}/uploads/nope", 0, b"a")).status == 404
    assert await offset_of(session, hub, url) == 0


async def test_checksum(hub: Hub, session: aiohttp.ClientSession) -> None:
    url = await create(session, hub, "c", 6)
    good = base64.b64encode(hashlib.sha256(b"abc").digest()).decode()
    bad = base64.b64encode(hashlib.sha256(b"abd").digest()).decode()
    r = await patch(session, hub, url, 0, b"abc", **{"Upload-Checksum": f"sha256 {bad}"})
    assert r.status == 460
    assert await offset_of(session, hub, url) == 0  # rolled back
    r = await patch(session, hub, url, 0, b"abc", **{"Upload-Checksum": f"sha256 {good}"})
    assert r.status == 204
    sha1 = base64.b64encode(hashlib.sha1(b"def").digest()).decode()
    r = await patch(session, hub, url, 3, b"def", **{"Upload-Checksum": f"sha1 {sha1}"})
    assert r.status == 204
    assert await stored(session, hub, "c") == b"abcdef"
    url = await create(session, hub, "d", 3)
    r = await patch(session, hub, url, 0, b"abc", **{"Upload-Checksum": "md5 AAAA"})
    assert r.status == 400


async def test_whole_file_sha256_mismatch(hub: Hub, session: aiohttp.ClientSession) -> None:
    url = await create(session, hub, "s", 3, sha256=hashlib.sha256(b"xyz").hexdigest())
    assert (await patch(session, hub, url, 0, b"abc")).status == 460
    async with session.get(f"{hub.url}/files/s", headers=hub.auth("read")) as r:
        assert r.status == 404
    assert list((hub.data_dir / ".uploads").iterdir()) == []


async def test_concurrent_patch_is_423(hub: Hub, session: aiohttp.ClientSession) -> None:
    url = await create(session, hub, "slow", 10)
    release = asyncio.Event()

    async def body() -> Any:
        yield b"12345"
        await release.wait()
        yield b"67890"

    headers = h(hub, **{"Upload-Offset": "0"}, **PATCH_CT)
    first = asyncio.ensure_future(session.patch(url, data=body(), headers=headers))
    for _ in range(200):  # until the first PATCH holds the upload
        if (await offset_of(session, hub, url)) == 5:
            break
        await asyncio.sleep(0.01)
    async with aiohttp.ClientSession() as other:
        r = await patch(other, hub, url, 5, b"x")
        assert r.status == 423
        async with other.delete(url, headers=h(hub)) as d:
            assert d.status == 423
    release.set()
    async with await first as r:
        assert r.status == 204
    assert await stored(session, hub, "slow") == b"1234567890"


async def test_disconnect_keeps_what_arrived_and_resumes(
    hub: Hub, session: aiohttp.ClientSession
) -> None:
    data = os.urandom(2 * MIB)
    url = await create(session, hub, "r.bin", len(data))
    host, port = hub.url.removeprefix("http://").split(":")
    path = url.removeprefix(hub.url)
    _reader, writer = await asyncio.open_connection(host, int(port))
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {hub.tokens['write']}\r\n"
        f"Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
        f"Content-Type: application/offset+octet-stream\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    writer.write(head.encode() + data[:MIB])
    await writer.drain()
    for _ in range(200):  # until the server has read it all
        if await offset_of(session, hub, url) == MIB:
            break
        await asyncio.sleep(0.02)
    writer.close()
    await writer.wait_closed()
    for _ in range(200):  # until the server has seen the disconnect
        r = await patch(session, hub, url, MIB, data[MIB:])
        if r.status != 423:
            break
        await asyncio.sleep(0.02)
    assert r.status == 204
    assert await stored(session, hub, "r.bin") == data


async def test_uploads_survive_a_restart(make_hub: HubFactory, tmp_path: Path) -> None:
    data = os.urandom(MIB)
    async with make_hub(data_dir=tmp_path / "d") as hub, aiohttp.ClientSession() as s:
        url = await create(s, hub, "keep.bin", len(data))
        assert (await patch(s, hub, url, 0, data[:400_000])).status == 204
        path = url.removeprefix(hub.url)
    async with make_hub(data_dir=tmp_path / "d") as hub, aiohttp.ClientSession() as s:
        url = hub.url + path
        assert await offset_of(s, hub, url) == 400_000
        r = await patch(s, hub, url, 400_000, data[400_000:])
        assert r.status == 204
        assert r.headers["X-Content-SHA256"] == hashlib.sha256(data).hexdigest()
        assert await stored(s, hub, "keep.bin") == data


async def test_expiry(hub: Hub, tmp_path: Path) -> None:
    apps: list[web.Application] = []
    data_dir = tmp_path / "e"
    data_dir.mkdir()
    from dataclasses import replace

    config = replace(hub.config, data_dir=data_dir)
    from .conftest import make_tokens

    tokens, _ = make_tokens(data_dir)
    async with running_hub(config, configure=apps.append) as url, aiohttp.ClientSession() as s:
        (app,) = apps
        e = Hub(url=url, data_dir=data_dir, config=config, tokens=tokens)
        up_url = await create(s, e, "old", 5)
        assert (await patch(s, e, up_url, 0, b"ab")).status == 204
        uploads = app[TUS_KEY]
        (up,) = uploads.uploads.values()
        up.expires_at = 0.0  # as if it had been idle past the expiry
        async with s.head(up_url, headers=h(e)) as r:
            assert r.status == 410
        assert await uploads.sweep(now=1.0) == [up.id]
        async with s.head(up_url, headers=h(e)) as r:
            assert r.status == 404
        assert list((data_dir / ".uploads").iterdir()) == []


async def test_disk_full_is_507_and_keeps_the_upload(
    hub: Hub, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = await create(session, hub, "full", 6)
    assert (await patch(session, hub, url, 0, b"abc")).status == 204
    real = tus_mod._write

    def full(*args: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tus_mod, "_write", full)
    r = await patch(session, hub, url, 3, b"def")
    assert r.status == 507
    monkeypatch.setattr(tus_mod, "_write", real)
    assert await offset_of(session, hub, url) == 3
    assert (await patch(session, hub, url, 3, b"def")).status == 204
    assert await stored(session, hub, "full") == b"abcdef"


async def test_trickling_patch_gets_408(make_hub: HubFactory) -> None:
    async with (
        make_hub(min_upload_bytes=1000, progress_interval=0.3) as hub,
        aiohttp.ClientSession() as s,
    ):
        url = await create(s, hub, "trickle", 100)

        async def body() -> Any:
            for _ in range(50):
                yield b"x"
                await asyncio.sleep(0.1)

        headers = h(hub, **{"Upload-Offset": "0"}, **PATCH_CT)
        try:
            async with s.patch(url, data=body(), headers=headers) as r:
                assert r.status == 408
        except aiohttp.ClientError:
            pass  # the server closed while we were still sending: also a refusal
        for _ in range(100):
            async with s.head(url, headers=h(hub)) as r:
                if r.status == 200 and int(r.headers["Upload-Offset"]) < 100:
                    break
            await asyncio.sleep(0.02)
        assert int(r.headers["Upload-Offset"]) < 100


# --- a third-party client ----------------------------------------------------------------------


@pytest.mark.interop
@pytest.mark.parametrize("checksum", [False, True])
async def test_tuspy_uploads(hub: Hub, tmp_path: Path, checksum: bool) -> None:
    from tusclient import client as tus_client

    data = os.urandom(3 * MIB + 17)
    src = tmp_path / "src.bin"
    src.write_bytes(data)

    def run() -> str:
        c = tus_client.TusClient(f"{hub.url}/uploads/", headers=hub.auth("write"))
        # A stream we close ourselves: tuspy leaves a file it opened from a path open.
        with src.open("rb") as f:
            up = c.uploader(
                file_stream=f,
                chunk_size=MIB,
                metadata={"filename": "from tuspy.bin"},
                upload_checksum=checksum,
            )
            up.upload()
        return str(up.url)

    await asyncio.to_thread(run)
    async with aiohttp.ClientSession() as s:
        assert await stored(s, hub, "from%20tuspy.bin") == data


async def test_upload_into_a_folder(hub: Hub, session: aiohttp.ClientSession) -> None:
    url = await create(session, hub, "deep/er/f.txt", 5)
    assert (await patch(session, hub, url, 0, b"hello")).status == 204
    assert await stored(session, hub, "deep/er/f.txt") == b"hello"
    # A file where the path needs a folder: refused at creation, before any byte is sent.
    headers = h(hub, **{"Upload-Length": "1", "Upload-Metadata": meta("deep/er/f.txt/x")})
    async with session.post(f"{hub.url}/uploads/", headers=headers) as r:
        assert r.status == 409
    headers = h(hub, **{"Upload-Length": "1", "Upload-Metadata": meta("deep/er")})
    async with session.post(f"{hub.url}/uploads/", headers=headers) as r:
        assert r.status == 409
