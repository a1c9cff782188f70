"""The hub against real HTTP on 127.0.0.1:0: transfers, Range/If-Range, bad input, faults."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import errno
import hashlib
import io
import os
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

import aiohttp
import pytest
from yarl import URL

from hubswarm.hub import store as store_mod
from hubswarm.hub.app import if_range_matches

from .conftest import Hub, HubFactory, sha256_file, tls_contexts, write_pattern_file

MIB = 1 << 20


async def put(session: aiohttp.ClientSession, hub: Hub, name: str, data: bytes) -> dict:
    body = io.BytesIO(data)  # large raw bytes make aiohttp warn (and filterwarnings=error)
    async with session.put(f"{hub.url}/files/{name}", data=body, headers=hub.auth("write")) as r:
        assert r.status in (200, 201), await r.text()
        return await r.json()


# --- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 300_000])
async def test_round_trip(hub: Hub, session: aiohttp.ClientSession, size: int) -> None:
    data = os.urandom(size)
    digest = hashlib.sha256(data).hexdigest()
    async with session.put(f"{hub.url}/files/f.bin", data=data, headers=hub.auth("write")) as r:
        assert r.status == 201
        body = await r.json()
    assert body["name"] == "f.bin"
    assert body["size"] == size
    assert body["sha256"] == digest
    async with session.get(f"{hub.url}/files/f.bin", headers=hub.auth("read")) as r:
        assert r.status == 200
        assert await r.read() == data
        assert r.headers["ETag"] == f'"{digest}"'
        assert r.headers["X-Content-SHA256"] == digest
        assert r.headers["Accept-Ranges"] == "bytes"
        assert "Last-Modified" in r.headers
        assert r.headers["Content-Type"] == "application/octet-stream"
    async with session.head(f"{hub.url}/files/f.bin", headers=hub.auth("read")) as r:
        assert r.status == 200
        assert int(r.headers["Content-Length"]) == size
        assert r.headers["ETag"] == f'"{digest}"'
    async with session.put(f"{hub.url}/files/f.bin", data=b"v2", headers=hub.auth("write")) as r:
        assert r.status == 200  # replaced
    async with session.get(f"{hub.url}/files", headers=hub.auth("read")) as r:
        listing = await r.json()
    assert [(f["name"], f["size"]) for f in listing["files"]] == [("f.bin", 2)]
    assert hub.partials() == []


@pytest.mark.slow
async def test_round_trip_100_mib(hub: Hub, tmp_path: Path) -> None:
    src = tmp_path / "big.src"
    digest = write_pattern_file(src, 100 * MIB)
    # Own session with no total timeout: 100 MiB both ways on a loaded 2-core machine.
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        with src.open("rb") as f:
            async with session.put(
                f"{hub.url}/files/big.bin",
                data=f,
                headers={**hub.auth("write"), "X-Content-SHA256": digest},
            ) as r:
                assert r.status == 201, await r.text()
                assert (await r.json())["sha256"] == digest
        h = hashlib.sha256()
        n = 0
        async with session.get(f"{hub.url}/files/big.bin", headers=hub.auth("read")) as r:
            assert r.status == 200
            async for chunk in r.content.iter_chunked(MIB):
                h.update(chunk)
                n += len(chunk)
        async with session.get(f"{hub.url}/stats", headers=hub.auth("read")) as r:
            stats = await r.json()
    assert n == 100 * MIB
    assert h.hexdigest() == digest
    assert stats["bytes_received"] == 100 * MIB
    assert stats["bytes_sent"] == 100 * MIB
    assert stats["downloads"] == {"big.bin": 1}
    assert hub.partials() == []


# --- ranges ----------------------------------------------------------------------------------


async def test_ranges(hub: Hub, session: aiohttp.ClientSession) -> None:
    data = os.urandom(10_000)
    info = await put(session, hub, "r.bin", data)
    etag = f'"{info["sha256"]}"'
    url = f"{hub.url}/files/r.bin"
    auth = hub.auth("read")
    async with session.get(url, headers={**auth, "Range": "bytes=100-199"}) as r:
        assert r.status == 206
        assert await r.read() == data[100:200]
        assert r.headers["Content-Range"] == "bytes 100-199/10000"
    async with session.get(url, headers={**auth, "Range": "bytes=-10"}) as r:
        assert r.status == 206
        assert await r.read() == data[-10:]
    async with session.get(url, headers={**auth, "Range": "bytes=10000-"}) as r:
        assert r.status == 416
        assert r.headers["Content-Range"] == "bytes */10000"
    # Multi-range: no multipart/byteranges here; RFC 9110 §14.2 lets us send the whole file.
    async with session.get(url, headers={**auth, "Range": "bytes=0-1,5-6"}) as r:
        assert r.status == 200
        assert await r.read() == data
    async with session.get(url, headers={**auth, "Range": "bytes=5000-", "If-Range": etag}) as r:
        assert r.status == 206
        assert await r.read() == data[5000:]
    # A stale ETag: the client's partial copy is of another version -> full 200, no splice.
    stale = '"' + "0" * 64 + '"'
    async with session.get(url, headers={**auth, "Range": "bytes=5000-", "If-Range": stale}) as r:
        assert r.status == 200
        assert await r.read() == data
    async with session.get(url, headers={**auth, "If-None-Match": etag}) as r:
        assert r.status == 304
    async with session.get(url, headers={**auth, "If-Match": stale}) as r:
        assert r.status == 412


async def test_if_range_date(hub: Hub, session: aiohttp.ClientSession) -> None:
    data = os.urandom(5000)
    await put(session, hub, "d.bin", data)
    past = time.time() - 3600
    os.utime(hub.data_dir / "files" / "d.bin", (past, past))
    url = f"{hub.url}/files/d.bin"
    async with session.head(url, headers=hub.auth("read")) as r:
        last_modified = r.headers["Last-Modified"]
    hdrs = {**hub.auth("read"), "Range": "bytes=4000-"}
    async with session.get(url, headers={**hdrs, "If-Range": last_modified}) as r:
        assert r.status == 206
        assert await r.read() == data[4000:]
    older = email.utils.formatdate(past - 100, usegmt=True)
    async with session.get(url, headers={**hdrs, "If-Range": older}) as r:
        assert r.status == 200
        assert await r.read() == data


def test_if_range_rules() -> None:
    etag = '"' + "a" * 64 + '"'
    assert if_range_matches(etag, etag, 1000.0, 5000.0)
    assert not if_range_matches("W/" + etag, etag, 1000.0, 5000.0)  # weak never matches
    date = email.utils.formatdate(1000, usegmt=True)
    assert if_range_matches(date, etag, 1000.0, 5000.0)
    assert not if_range_matches(date, etag, 1000.0, 1000.5)  # modified within the second
    assert not if_range_matches("garbage", etag, 1000.0, 5000.0)


# --- concurrency and faults --------------------------------------------------------------------


async def test_fifty_concurrent_clients(hub: Hub, session: aiohttp.ClientSession) -> None:
    data = os.urandom(2 * MIB)
    await put(session, hub, "c.bin", data)
    digest = hashlib.sha256(data).hexdigest()

    async def one(i: int) -> str:
        # Own session per client: 50 separate connections.
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"{hub.url}/files/c.bin", headers=hub.auth("read")) as r,
        ):
            assert r.status == 200
            return hashlib.sha256(await r.read()).hexdigest()

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(one(i)) for i in range(50)]
    assert all(t.result() == digest for t in tasks)
    async with session.get(f"{hub.url}/stats", headers=hub.auth("read")) as r:
        stats = await r.json()
    assert stats["downloads"]["c.bin"] == 50
    assert stats["bytes_sent"] == 50 * len(data)


async def test_disconnect_mid_download_does_not_disturb_others(
    hub: Hub, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    src = tmp_path / "m.src"
    digest = write_pattern_file(src, 24 * MIB)
    with src.open("rb") as f:
        async with session.put(f"{hub.url}/files/m.bin", data=f, headers=hub.auth("write")) as r:
            assert r.status == 201
    # Client A reads 64 KiB and hangs up.
    async with aiohttp.ClientSession() as a:
        resp = await a.get(f"{hub.url}/files/m.bin", headers=hub.auth("read"))
        await resp.content.readexactly(64 * 1024)
        # Client B downloads the whole file meanwhile.
        async with session.get(f"{hub.url}/files/m.bin", headers=hub.auth("read")) as r:
            h = hashlib.sha256()
            async for chunk in r.content.iter_chunked(MIB):
                h.update(chunk)
        resp.close()
    assert h.hexdigest() == digest
    async with session.get(f"{hub.url}/stats", headers=hub.auth("read")) as r:
        stats = await r.json()
    # A's aborted transfer counts what left, not its Content-Length.
    assert 24 * MIB <= stats["bytes_sent"] < 2 * 24 * MIB


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw_name",
    [
        "..%2fescape",
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e",
        "%2e",
        "..",
        ".hidden",
        "a%00b",
        "a%5cb",
        "a%0ab",
        "%ff%fe",
        "a" * 256,
        "%C3%A9" * 128,
    ],
)
async def test_bad_names_400(hub: Hub, session: aiohttp.ClientSession, raw_name: str) -> None:
    url = URL(f"{hub.url}/files/{raw_name}", encoded=True)
    async with session.put(url, data=b"x", headers=hub.auth("write")) as r:
        assert r.status == 400
        body = await r.json()
        assert body["status"] == 400
        assert body["error"]
    async with session.get(url, headers=hub.auth("read")) as r:
        assert r.status == 400
    assert list((hub.data_dir / "files").iterdir()) == []
    assert not (hub.data_dir / "escape").exists()
    assert hub.partials() == []


async def test_max_upload_413(make_hub: HubFactory) -> None:
    async with make_hub(max_upload=1000) as hub, aiohttp.ClientSession() as session:
        url = f"{hub.url}/files/big"
        async with session.put(url, data=b"x" * 1001, headers=hub.auth("write")) as r:
            assert r.status == 413
            assert (await r.json())["status"] == 413

        async def lying() -> AsyncIterator[bytes]:
            # Chunked: no Content-Length to check up front, the byte count must catch it.
            for _ in range(20):
                yield b"y" * 100

        async with session.put(url, data=lying(), headers=hub.auth("write")) as r:
            assert r.status == 413
        assert not (hub.data_dir / "files" / "big").exists()
        assert hub.partials() == []
        async with session.put(url, data=b"z" * 1000, headers=hub.auth("write")) as r:
            assert r.status == 201


async def test_disk_full_507(
    hub: Hub, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(f: BinaryIO, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_mod, "write_all", full)
    async with session.put(
        f"{hub.url}/files/f", data=io.BytesIO(b"x" * 600_000), headers=hub.auth("write")
    ) as r:
        assert r.status == 507
        assert (await r.json())["status"] == 507
    assert hub.partials() == []
    assert not (hub.data_dir / "files" / "f").exists()


async def test_digest_checks(hub: Hub, session: aiohttp.ClientSession) -> None:
    data = b"digest me"
    good = hashlib.sha256(data).digest()
    url = f"{hub.url}/files/d"
    w = hub.auth("write")
    async with session.put(url, data=data, headers={**w, "X-Content-SHA256": "ab" * 32}) as r:
        assert r.status == 400
        assert "sha256" in (await r.json())["error"]
    async with session.put(url, data=data, headers={**w, "X-Content-SHA256": "xyz"}) as r:
        assert r.status == 400
    bad_digest = "sha-256=" + base64.b64encode(b"\0" * 32).decode()
    async with session.put(url, data=data, headers={**w, "Digest": bad_digest}) as r:
        assert r.status == 400
    assert not (hub.data_dir / "files" / "d").exists()
    assert hub.partials() == []
    good_digest = "md5=abc, sha-256=" + base64.b64encode(good).decode()
    async with session.put(url, data=data, headers={**w, "Digest": good_digest}) as r:
        assert r.status == 201
    async with session.put(
        url, data=data, headers={**w, "Digest": good_digest, "X-Content-SHA256": "cd" * 32}
    ) as r:
        assert r.status == 400  # the two headers disagree


def _raw_connect(url: str) -> socket.socket:
    u = URL(url)
    assert u.host is not None
    assert u.port is not None
    return socket.create_connection((u.host, u.port), timeout=10)


async def test_slow_loris_body_and_headers(make_hub: HubFactory) -> None:
    async with make_hub(read_timeout=1.0, keepalive_timeout=1.0) as hub:
        token = hub.tokens["write"]

        def stalled_body() -> bytes:
            with _raw_connect(hub.url) as s:
                s.sendall(
                    b"PUT /files/slow HTTP/1.1\r\nHost: x\r\n"
                    + f"Authorization: Bearer {token}\r\n".encode()
                    + b"Content-Length: 100000\r\n\r\n0123456789"
                )
                got = b""
                while chunk := s.recv(65536):  # returns b"" when the server closes
                    got += chunk
                return got

        def stalled_headers() -> bytes:
            with _raw_connect(hub.url) as s:
                s.sendall(b"GET /files HTTP/1.1\r\nHost: x\r\n")  # never finished
                got = b""
                while chunk := s.recv(65536):
                    got += chunk
                return got

        t0 = time.monotonic()
        body_reply = await asyncio.to_thread(stalled_body)
        header_reply = await asyncio.to_thread(stalled_headers)
        elapsed = time.monotonic() - t0
        assert body_reply.startswith(b"HTTP/1.1 408")
        assert header_reply == b""
        # Both closed by the server, not by the 10 s socket timeout.
        assert elapsed < 9
        assert hub.partials() == []
        assert not (hub.data_dir / "files" / "slow").exists()


async def test_shutdown_mid_upload_leaves_no_partial(make_hub: HubFactory) -> None:
    started = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        yield b"x" * 300_000
        started.set()
        await asyncio.sleep(3600)
        yield b""

    async with aiohttp.ClientSession() as session:
        async with make_hub(shutdown_timeout=0.5) as hub:
            upload = asyncio.create_task(
                session.put(f"{hub.url}/files/u", data=endless(), headers=hub.auth("write"))
            )
            async with asyncio.timeout(10):
                await started.wait()
                while not hub.partials():
                    await asyncio.sleep(0.02)
        # The hub is down: its cleanup cancelled the handler and swept .partial/.
        assert hub.partials() == []
        assert not (hub.data_dir / "files" / "u").exists()
        upload.cancel()
        with pytest.raises((asyncio.CancelledError, aiohttp.ClientError)):
            await upload


async def test_leftover_partials_removed_on_start(make_hub: HubFactory, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / ".partial").mkdir(parents=True)
    (data / ".partial" / "up-crash.part").write_bytes(b"from a crash")
    async with make_hub(data_dir=data) as hub:
        assert hub.partials() == []


# --- other routes ------------------------------------------------------------------------------


async def test_delete_list_html_stats_and_errors(hub: Hub, session: aiohttp.ClientSession) -> None:
    evil = '<img src=x onerror=alert(1)>&"q.txt'
    evil_url = URL(f"{hub.url}/files/{quote(evil, safe='')}", encoded=True)
    await put(session, hub, quote(evil, safe=""), b"x")
    async with session.get(
        f"{hub.url}/files", headers={**hub.auth("read"), "Accept": "text/html"}
    ) as r:
        assert r.content_type == "text/html"
        page = await r.text()
    assert "<img" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;&amp;&#34;q.txt" in page  # Jinja2 autoescape
    async with session.get(f"{hub.url}/", headers=hub.auth("read"), allow_redirects=False) as r:
        assert r.status == 302
        assert r.headers["Location"].endswith("/files")
    async with session.get(f"{hub.url}/nope", headers=hub.auth("read")) as r:
        assert r.status == 404
        assert await r.json() == {"error": "Not Found", "status": 404}
    async with session.get(f"{hub.url}/files/missing", headers=hub.auth("read")) as r:
        assert r.status == 404
    async with session.post(f"{hub.url}/files", headers=hub.auth("read")) as r:
        assert r.status == 405
        assert (await r.json())["status"] == 405
    async with session.delete(evil_url, headers=hub.auth("read")) as r:
        assert r.status == 403
    async with session.get(f"{hub.url}/files", headers=hub.auth("read")) as r:
        names = [f["name"] for f in (await r.json())["files"]]
    assert names == [evil]
    async with session.delete(evil_url, headers=hub.auth("write")) as r:
        assert r.status == 204
    async with session.get(evil_url, headers=hub.auth("read")) as r:
        assert r.status == 404
    async with session.get(f"{hub.url}/stats", headers=hub.auth("read")) as r:
        stats = await r.json()
    assert stats["uploads"] == {evil: 1}
    assert stats["active_connections"] >= 1
    assert stats["requests"] >= 8
    assert stats["uptime"] >= 0


# --- TLS ---------------------------------------------------------------------------------------


async def test_tls_round_trip(make_hub: HubFactory, tmp_path: Path) -> None:
    server_ctx, client_ctx = tls_contexts()
    data = os.urandom(200_000)
    async with (
        make_hub(ssl_context=server_ctx) as hub,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ctx)) as session,
    ):
        assert hub.url.startswith("https://127.0.0.1:")
        await put(session, hub, "t.bin", data)
        async with session.get(
            f"{hub.url}/files/t.bin", headers={**hub.auth("read"), "Range": "bytes=1000-"}
        ) as r:
            assert r.status == 206
            assert await r.read() == data[1000:]
        # Plain HTTP to the TLS port must not work.
        async with aiohttp.ClientSession() as plain:
            with pytest.raises(aiohttp.ClientError):
                await plain.get(hub.url.replace("https", "http") + "/files")
    assert sha256_file(hub.data_dir / "files" / "t.bin") == hashlib.sha256(data).hexdigest()


async def test_expect_100_continue(make_hub: HubFactory) -> None:
    async with make_hub(max_upload=1000) as hub:
        token = hub.tokens["write"]

        def exchange(length: int, auth: bool, send_body: bool) -> bytes:
            with _raw_connect(hub.url) as s:
                head = b"PUT /files/e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                if auth:
                    head += f"Authorization: Bearer {token}\r\n".encode()
                s.sendall(head + f"Content-Length: {length}\r\n\r\n".encode())
                first = s.recv(65536)
                if send_body and first.startswith(b"HTTP/1.1 100"):
                    s.sendall(b"e" * length)
                    first += s.recv(65536)
                return first

        # Refused before the body is sent: no "100 Continue", the final status at once.
        too_big = await asyncio.to_thread(exchange, 10**12, True, False)
        assert too_big.startswith(b"HTTP/1.1 413")
        no_token = await asyncio.to_thread(exchange, 10, False, False)
        assert no_token.startswith(b"HTTP/1.1 401")
        ok = await asyncio.to_thread(exchange, 10, True, True)
        assert ok.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        assert b"HTTP/1.1 201" in ok
        assert (hub.data_dir / "files" / "e").read_bytes() == b"e" * 10
        assert hub.partials() == []


@pytest.mark.parametrize("name", ["ünï cödé 名前.txt", "a b+c%d&e=f?g#h", "x" * 255, "-rf", "a..b"])
async def test_unusual_but_valid_names(hub: Hub, session: aiohttp.ClientSession, name: str) -> None:
    url = URL(f"{hub.url}/files/{quote(name, safe='')}", encoded=True)
    async with session.put(url, data=name.encode(), headers=hub.auth("write")) as r:
        assert r.status == 201
        assert (await r.json())["name"] == name
    async with session.get(url, headers=hub.auth("read")) as r:
        assert await r.read() == name.encode()
    assert (hub.data_dir / "files" / name).read_bytes() == name.encode()
