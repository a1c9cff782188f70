"""hub.client against the real hub app on 127.0.0.1: round trips, resume, errors, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import os
import ssl
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import trustme
from hypothesis import given
from hypothesis import strategies as st

from hubswarm.errors import (
    AuthError,
    ChecksumMismatchError,
    ConfigError,
    DiskFullError,
    NotFoundError,
    ServerUnreachableError,
    StorageError,
)
from hubswarm.hub import client
from hubswarm.hub.app import HubConfig
from hubswarm.hub.auth import Role, TokenStore
from hubswarm.hub.server import running_hub

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Hub:
    url: str
    data: Path
    read: str
    write: str


@contextlib.asynccontextmanager
async def _serve(data: Path, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    async with running_hub(
        HubConfig(data_dir=data, shutdown_timeout=2.0), ssl_context=ssl_context
    ) as url:
        yield url


def _tokens(data: Path) -> tuple[str, str]:
    store = TokenStore(data)
    return store.create(Role.READ)[1], store.create(Role.WRITE)[1]


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[Hub]:
    data = tmp_path / "data"
    data.mkdir()
    read, write = _tokens(data)
    async with _serve(data) as url:
        yield Hub(url, data, read, write)


async def _put(hub: Hub, tmp_path: Path, name: str, content: bytes) -> client.RemoteFile:
    src = tmp_path / "src" / name
    src.parent.mkdir(exist_ok=True)
    src.write_bytes(content)
    return await client.upload(src, hub.url, token=hub.write, progress=None)


async def _bytes_sent(hub: Hub) -> int:
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{hub.url}/stats", headers={"Authorization": f"Bearer {hub.read}"}) as r,
    ):
        return int((await r.json())["bytes_sent"])


def _leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir() if p.name.startswith(dest.name))


@pytest.mark.parametrize("size", [0, 1, 5 * MIB])
async def test_round_trip(hub: Hub, tmp_path: Path, size: int) -> None:
    content = os.urandom(size)
    seen: list[tuple[int, int | None]] = []
    src = tmp_path / "f.bin"
    src.write_bytes(content)
    remote = await client.upload(
        src, hub.url, token=hub.write, progress=lambda d, t: seen.append((d, t))
    )
    sha = hashlib.sha256(content).hexdigest()
    assert (remote.name, remote.size, remote.sha256) == ("f.bin", size, sha)
    if size:
        assert seen[-1] == (size, size)

    dest = tmp_path / "out" / "f.bin"
    dest.parent.mkdir()
    got: list[tuple[int, int | None]] = []
    result = await client.download(
        f"{hub.url}/files/f.bin", dest, token=hub.read, progress=lambda d, t: got.append((d, t))
    )
    assert dest.read_bytes() == content
    assert (result.size, result.sha256, result.verified, result.resumed_from) == (
        size,
        sha,
        True,
        0,
    )
    assert result.bytes_received == size
    assert _leftovers(dest) == ["f.bin"]  # no .part, no sidecar
    if size:
        assert got[-1] == (size, size)
    listed = await client.list_files(hub.url, hub.read)
    assert [(f.name, f.size, f.sha256) for f in listed] == [("f.bin", size, sha)]


async def test_upload_to_explicit_name_and_replace(hub: Hub, tmp_path: Path) -> None:
    src = tmp_path / "local.bin"
    src.write_bytes(b"one")
    await client.upload(src, f"{hub.url}/files/other.bin", token=hub.write, progress=None)
    src.write_bytes(b"two!")
    remote = await client.upload(src, f"{hub.url}/files/other.bin", token=hub.write, progress=None)
    assert (remote.name, remote.size) == ("other.bin", 4)
    assert (hub.data / "files" / "other.bin").read_bytes() == b"two!"


def _make_partial(dest: Path, url: str, prefix: bytes, etag: str) -> None:
    dest.with_name(dest.name + ".part").write_bytes(prefix)
    dest.with_name(dest.name + ".part.json").write_text(json.dumps({"url": url, "etag": etag}))


async def test_resume_fetches_only_the_rest(hub: Hub, tmp_path: Path) -> None:
    content = os.urandom(5 * MIB + 123)
    remote = await _put(hub, tmp_path, "r.bin", content)
    url = f"{hub.url}/files/r.bin"
    dest = tmp_path / "r.bin"
    n = 2 * MIB + 7
    _make_partial(dest, url, content[:n], f'"{remote.sha256}"')
    before = await _bytes_sent(hub)
    result = await client.download(url, dest, token=hub.read, progress=None)
    sent = await _bytes_sent(hub) - before
    assert dest.read_bytes() == content
    assert result.resumed_from == n
    assert result.bytes_received == len(content) - n
    assert sent == len(content) - n
    assert result.verified
    assert _leftovers(dest) == ["r.bin"]


async def test_resume_of_changed_file_restarts(hub: Hub, tmp_path: Path) -> None:
    old = os.urandom(3 * MIB)
    remote = await _put(hub, tmp_path, "c.bin", old)
    url = f"{hub.url}/files/c.bin"
    dest = tmp_path / "c.bin"
    _make_partial(dest, url, old[: MIB + 1], f'"{remote.sha256}"')
    new = os.urandom(3 * MIB)
    await _put(hub, tmp_path, "c.bin", new)  # replaced: If-Range no longer matches
    result = await client.download(url, dest, token=hub.read, progress=None)
    assert dest.read_bytes() == new
    assert (result.resumed_from, result.bytes_received) == (0, len(new))


async def test_partial_without_matching_sidecar_is_not_trusted(hub: Hub, tmp_path: Path) -> None:
    content = os.urandom(MIB)
    remote = await _put(hub, tmp_path, "s.bin", content)
    dest = tmp_path / "s.bin"
    # A sidecar for another URL: the partial is someone else's bytes.
    _make_partial(dest, f"{hub.url}/files/other", b"x" * 1000, f'"{remote.sha256}"')
    result = await client.download(f"{hub.url}/files/s.bin", dest, token=hub.read, progress=None)
    assert dest.read_bytes() == content
    assert result.resumed_from == 0


async def test_no_resume_ignores_partial(hub: Hub, tmp_path: Path) -> None:
    content = os.urandom(MIB)
    remote = await _put(hub, tmp_path, "n.bin", content)
    url = f"{hub.url}/files/n.bin"
    dest = tmp_path / "n.bin"
    _make_partial(dest, url, content[:1000], f'"{remote.sha256}"')
    result = await client.download(url, dest, token=hub.read, progress=None, resume=False)
    assert dest.read_bytes() == content
    assert result.resumed_from == 0


async def test_complete_partial_is_refetched(hub: Hub, tmp_path: Path) -> None:
    """A partial as long as the file gets 416; the client starts over instead of failing."""
    content = os.urandom(1000)
    remote = await _put(hub, tmp_path, "full.bin", content)
    url = f"{hub.url}/files/full.bin"
    dest = tmp_path / "full.bin"
    _make_partial(dest, url, content, f'"{remote.sha256}"')
    result = await client.download(url, dest, token=hub.read, progress=None)
    assert dest.read_bytes() == content
    assert result.bytes_received == len(content)


async def test_corrupt_partial_raises_checksum_mismatch(hub: Hub, tmp_path: Path) -> None:
    content = os.urandom(2 * MIB)
    remote = await _put(hub, tmp_path, "x.bin", content)
    url = f"{hub.url}/files/x.bin"
    dest = tmp_path / "x.bin"
    bad = bytearray(content[:MIB])
    bad[100] ^= 0xFF
    _make_partial(dest, url, bytes(bad), f'"{remote.sha256}"')
    with pytest.raises(ChecksumMismatchError, match="sha256"):
        await client.download(url, dest, token=hub.read, progress=None)
    assert _leftovers(dest) == []  # no dest, no partial, no sidecar


async def test_auth_and_not_found_errors(hub: Hub, tmp_path: Path) -> None:
    url = f"{hub.url}/files/a.bin"
    await _put(hub, tmp_path, "a.bin", b"abc")
    dest = tmp_path / "a.bin"
    with pytest.raises(AuthError, match="a token is required") as e401:
        await client.download(url, dest, token=None, progress=None)
    assert e401.value.status == 401
    with pytest.raises(AuthError, match="unknown or revoked") as bad:
        await client.download(url, dest, token="not-a-token", progress=None)
    assert bad.value.status == 401
    src = tmp_path / "up.bin"
    src.write_bytes(b"data")
    with pytest.raises(AuthError, match="role read") as e403:
        await client.upload(src, hub.url, token=hub.read, progress=None)
    assert e403.value.status == 403
    with pytest.raises(NotFoundError, match="no such file") as e404:
        await client.download(f"{hub.url}/files/missing", dest, token=hub.read, progress=None)
    assert e404.value.status == 404
    with pytest.raises(AuthError):
        await client.list_files(hub.url, None)
    assert _leftovers(dest) == []  # no empty .part left by a failed request


async def test_unreachable_server(tmp_path: Path) -> None:
    # Bind then close to get a port nobody listens on.
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(ServerUnreachableError, match="cannot connect"):
        await client.download(
            f"http://127.0.0.1:{port}/files/x", tmp_path / "x", token=None, progress=None
        )
    src = tmp_path / "u.bin"
    src.write_bytes(b"u")
    with pytest.raises(ServerUnreachableError):
        await client.upload(src, f"http://127.0.0.1:{port}", token=None, progress=None)


async def test_read_timeout_is_unreachable(tmp_path: Path) -> None:
    handled = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read(65536)
            async with asyncio.timeout(5):
                await reader.read(1)  # never answer; return once the client gives up
        finally:
            writer.close()
            handled.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ServerUnreachableError, match="timed out"):
            await client.download(
                f"http://127.0.0.1:{port}/files/x",
                tmp_path / "x",
                token=None,
                progress=None,
                timeouts=client.Timeouts(connect=2, sock_read=0.2),
            )
        async with asyncio.timeout(5):
            await handled.wait()
    finally:
        server.close()
        await server.wait_closed()


async def _stored(hub: Hub, tmp_path: Path, name: str, size: int) -> tuple[bytes, str, Path]:
    """A random file of ``size`` bytes put on the hub: its content, URL and download path."""
    content = os.urandom(size)
    await _put(hub, tmp_path, name, content)
    return content, f"{hub.url}/files/{name}", tmp_path / name


async def test_disk_full_keeps_partial_for_resume(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content, url, dest = await _stored(hub, tmp_path, "d.bin", 9 * MIB)
    real = client._write_block
    calls = 0

    def full_after_first(fd: int, blocks: list[bytes]) -> None:
        nonlocal calls
        calls += 1
        if calls > 1:
            os.write(fd, blocks[0][:10])  # a torn write before the failure
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, blocks)

    monkeypatch.setattr(client, "_write_block", full_after_first)
    with pytest.raises(DiskFullError, match="run again to resume"):
        await client.download(url, dest, token=hub.read, progress=None)
    assert not dest.exists()
    part = dest.with_name("d.bin.part")
    kept = part.read_bytes()
    assert 0 < len(kept) < len(content)
    assert kept == content[: len(kept)]  # the torn write was cut off
    monkeypatch.setattr(client, "_write_block", real)
    result = await client.download(url, dest, token=hub.read, progress=None)
    assert dest.read_bytes() == content
    assert result.resumed_from == len(kept)


async def test_a_cancelled_write_ends_before_its_descriptor_is_closed(
    hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first write of a download is cancelled while its thread still runs. Were the
    # partial's descriptor closed at once, the thread would write to a closed number, or to
    # whatever reused it (a resumed download's partial: a longer, corrupt file whose
    # streamed hash still matched). The cancelled download now waits for its thread.
    content, url, dest = await _stored(hub, tmp_path, "race.bin", 3 * MIB)
    real = client._write_block
    in_thread = threading.Event()
    wrote: list[bool] = []

    def slow_write(fd: int, blocks: list[bytes]) -> None:
        in_thread.set()
        time.sleep(0.3)  # the download is cancelled meanwhile
        target = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else None
        real(fd, blocks)
        wrote.append(target is None or target.endswith("race.bin.part"))

    monkeypatch.setattr(client, "_write_block", slow_write)
    task = asyncio.create_task(client.download(url, dest, token=hub.read, progress=None))
    async with asyncio.timeout(10):
        while not in_thread.is_set():
            await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert wrote == [True]  # the write ended, into the partial, before the cancel did
    monkeypatch.setattr(client, "_write_block", real)
    await client.download(url, dest, token=hub.read, progress=None)
    assert dest.read_bytes() == content


async def test_cancel_mid_download_keeps_partial_then_resumes(hub: Hub, tmp_path: Path) -> None:
    content = os.urandom(6 * MIB)
    await _put(hub, tmp_path, "cx.bin", content)
    url = f"{hub.url}/files/cx.bin"
    dest = tmp_path / "cx.bin"
    task: asyncio.Task[client.DownloadResult] | None = None

    def cancel_after_first_block(done: int, total: int | None) -> None:
        assert task is not None
        task.cancel()

    task = asyncio.create_task(
        client.download(url, dest, token=hub.read, progress=cancel_after_first_block)
    )
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _leftovers(dest) == ["cx.bin.part", "cx.bin.part.json"]
    kept = dest.with_name("cx.bin.part").stat().st_size
    assert 0 < kept < len(content)
    result = await client.download(url, dest, token=hub.read, progress=None)
    assert dest.read_bytes() == content
    assert result.resumed_from == kept


@contextlib.asynccontextmanager
async def _raw_server(content: bytes, cut: int, *, stall: bool) -> AsyncIterator[str]:
    """A bare HTTP/1.1 server of one file: a full GET gets ``cut`` bytes of it, then the
    connection is closed (or, with ``stall``, left silent); a ``Range: bytes=N-`` GET gets
    the rest as a 206. Yields the file's URL."""
    sha = hashlib.sha256(content).hexdigest()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            ranged = [ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"range:")]
            start = int(ranged[0].split(b"=")[1].rstrip(b"-")) if ranged else 0
            status = "206 Partial Content" if start else "200 OK"
            body = content[start:]
            extra = f"Content-Range: bytes {start}-{len(content) - 1}/{len(content)}\r\n"
            writer.write(
                f'HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nETag: "{sha}"\r\n'
                f"X-Content-SHA256: {sha}\r\n{extra if start else ''}\r\n".encode()
            )
            writer.write(body if start else body[:cut])
            await writer.drain()
            if stall and not start:
                async with asyncio.timeout(5):
                    await reader.read(1)  # until the client gives up
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/files/r.bin"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("stall", [False, True])
async def test_a_body_cut_short_keeps_its_bytes_and_resumes(tmp_path: Path, stall: bool) -> None:
    # A big body is read straight from the socket: a peer that hangs up (or goes silent)
    # mid-body leaves every byte received in the partial, and the resume asks for the rest.
    content = os.urandom(11 * MIB)
    cut = 7 * MIB + 12345
    dest = tmp_path / "r.bin"
    async with _raw_server(content, cut, stall=stall) as url:
        message = "timed out" if stall else "closed after"
        with pytest.raises(ServerUnreachableError, match=message):
            await client.download(
                url,
                dest,
                token=None,
                progress=None,
                timeouts=client.Timeouts(connect=2, sock_read=0.3),
            )
        assert dest.with_name("r.bin.part").read_bytes() == content[:cut]
        result = await client.download(url, dest, token=None, progress=None)
    assert dest.read_bytes() == content
    assert (result.resumed_from, result.bytes_received, result.verified) == (
        cut,
        len(content) - cut,
        True,
    )


async def test_unreadable_source_is_storage_error(hub: Hub, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot read"):
        await client.upload(tmp_path / "nope", hub.url, token=hub.write, progress=None)


async def test_https_with_cacert(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    data = tmp_path / "data"
    data.mkdir()
    read, write = _tokens(data)
    async with _serve(data, server_ctx) as url:
        ctx = client.make_ssl_context(cafile)
        src = tmp_path / "t.bin"
        content = os.urandom(100_000)
        src.write_bytes(content)
        await client.upload(src, url, token=write, progress=None, ssl=ctx)
        dest = tmp_path / "t.out"
        await client.download(f"{url}/files/t.bin", dest, token=read, progress=None, ssl=ctx)
        assert dest.read_bytes() == content
        with pytest.raises(ServerUnreachableError, match="TLS"):
            await client.download(f"{url}/files/t.bin", dest, token=read, progress=None)


@pytest.mark.parametrize("size", [4, 5 * MIB + 7])
async def test_caller_session_is_used_and_left_open(hub: Hub, tmp_path: Path, size: int) -> None:
    # A big body (read from the socket, its connection closed after) leaves the session
    # as usable as a small one (whose connection goes back to the pool).
    content = os.urandom(size)
    await _put(hub, tmp_path, "k.bin", content)
    async with aiohttp.ClientSession() as session:
        for i in range(2):
            dest = tmp_path / f"k{i}"
            await client.download(
                f"{hub.url}/files/k.bin", dest, token=hub.read, progress=None, session=session
            )
            assert dest.read_bytes() == content
        listed = await client.list_files(hub.url, hub.read, session=session)
        assert [f.size for f in listed] == [len(content)]
        assert not session.closed


def test_file_url_forms() -> None:
    assert client.file_url("http://h:1", "a b") == "http://h:1/files/a%20b"
    assert client.file_url("http://h:1/", "x") == "http://h:1/files/x"
    assert client.file_url("http://h:1/files", "x") == "http://h:1/files/x"
    assert client.file_url("http://h:1/files/y", "x") == "http://h:1/files/y"
    assert client.list_url("http://h:1") == "http://h:1/files"
    assert client.list_url("https://h/files/") == "https://h/files"
    with pytest.raises(ConfigError):
        client.file_url("http://h:1")
    with pytest.raises(ConfigError):
        client.file_url("ftp://h/files/x")
    with pytest.raises(ConfigError):
        client.name_from_url("http://h:1/files/")
    with pytest.raises(ConfigError):
        client.make_ssl_context(Path("/nonexistent/ca.pem"))
    with pytest.raises(ConfigError):
        client.Timeouts(connect=0)


async def test_token_with_newline_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="printable"):
        await client.list_files("http://127.0.0.1:9", "abc\r\nX-Evil: 1")


_names = st.text(min_size=1, max_size=40).filter(
    lambda s: s not in {".", ".."} and not any(c in s for c in "/\\\x00")
)


@given(_names)
def test_file_url_name_round_trip(name: str) -> None:
    url = client.file_url("http://127.0.0.1:8080", name)
    assert url.startswith("http://127.0.0.1:8080/files/")
    assert client.name_from_url(url) == name
    assert client.file_url(url) == url
