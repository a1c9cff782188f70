"""The hub with real third parties: curl upload/download/resume, and the hub as a process
(killed and restarted on the same data folder, resumed with Range + If-Range)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from .conftest import Hub, make_tokens, sha256_file, write_pattern_file

MIB = 1 << 20

pytestmark = pytest.mark.interop


def curl() -> str:
    path = shutil.which("curl")
    if path is None:
        pytest.fail("curl is not on PATH: run scripts/install.sh (it installs Debian's curl)")
    return path


async def run_curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return await asyncio.to_thread(
        subprocess.run,
        [curl(), "--silent", "--show-error", "--fail", *args],
        capture_output=True,
        timeout=60,
        check=False,
    )


async def stats(session: aiohttp.ClientSession, hub: Hub) -> dict:
    async with session.get(f"{hub.url}/stats", headers=hub.auth("read")) as r:
        return await r.json()


async def test_curl_upload_download_resume(
    hub: Hub, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    src = tmp_path / "c.src"
    digest = write_pattern_file(src, 3 * MIB + 17)
    auth = f"Authorization: Bearer {hub.tokens['write']}"
    up = await run_curl("-T", str(src), "-H", auth, f"{hub.url}/files/c.bin")
    assert up.returncode == 0, up.stderr
    assert digest.encode() in up.stdout
    assert sha256_file(hub.data_dir / "files" / "c.bin") == digest

    out = tmp_path / "c.out"
    down = await run_curl("-o", str(out), f"{hub.url}/files/c.bin?token={hub.tokens['read']}")
    assert down.returncode == 0, down.stderr
    assert sha256_file(out) == digest

    # Resume: we hold the first N bytes; curl -C - asks for the rest only.
    n = MIB + 5
    part = tmp_path / "c.part"
    with src.open("rb") as f:
        part.write_bytes(f.read(n))
    before = (await stats(session, hub))["bytes_sent"]
    resumed = await run_curl("-C", "-", "-o", str(part), "-H", auth, f"{hub.url}/files/c.bin")
    assert resumed.returncode == 0, resumed.stderr
    assert sha256_file(part) == digest
    after = (await stats(session, hub))["bytes_sent"]
    assert after - before == src.stat().st_size - n

    # curl's failure on a refused upload: 401 without a token, and nothing stored.
    refused = await run_curl("-T", str(src), f"{hub.url}/files/other.bin")
    assert refused.returncode == 22
    assert not (hub.data_dir / "files" / "other.bin").exists()
    assert hub.partials() == []


# --- the hub as a process ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def hub_process(
    data: Path, extra: list[str] | None = None, scheme: str = "http"
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """``python -m hubswarm hub serve --port 0``; yields (process, url); always stopped."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hubswarm",
        "hub",
        "serve",
        "--data",
        str(data),
        "--port",
        "0",
        *(extra or []),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            line = (await proc.stdout.readline()).decode()
        assert line.startswith(f"hubswarm hub: serving {data} on {scheme}://127.0.0.1:"), line
        yield proc, line.rsplit(" ", 1)[1].strip()
    finally:
        if proc.returncode is None:
            proc.kill()
        async with asyncio.timeout(20):
            await proc.communicate()


@pytest.mark.slow
async def test_resume_after_server_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    tokens, _ = make_tokens(data)
    headers = {"Authorization": f"Bearer {tokens['write']}"}
    src = tmp_path / "big.src"
    size = 24 * MIB
    digest = write_pattern_file(src, size)
    n = 5 * MIB + 123
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with hub_process(data) as (proc, url):
            with src.open("rb") as f:
                async with session.put(f"{url}/files/big.bin", data=f, headers=headers) as r:
                    assert r.status == 201
            resp = await session.get(f"{url}/files/big.bin", headers=headers)
            etag = resp.headers["ETag"]
            assert etag == f'"{digest}"'
            head = await resp.content.readexactly(n)
            # Crash: the server dies mid-download (by its PID).
            os.kill(proc.pid, signal.SIGKILL)
            async with asyncio.timeout(20):
                await proc.wait()
            resp.close()

        async with hub_process(data) as (proc, url):
            h = hashlib.sha256(head)
            received = 0
            async with session.get(
                f"{url}/files/big.bin",
                headers={**headers, "Range": f"bytes={n}-", "If-Range": etag},
            ) as r:
                assert r.status == 206
                assert r.headers["Content-Range"] == f"bytes {n}-{size - 1}/{size}"
                async for chunk in r.content.iter_chunked(MIB):
                    h.update(chunk)
                    received += len(chunk)
            # Only the missing tail crossed the wire, and the spliced file is intact.
            assert received == size - n
            assert h.hexdigest() == digest
            async with session.get(f"{url}/stats", headers=headers) as r:
                assert (await r.json())["bytes_sent"] == size - n
            # Graceful stop on SIGTERM: exit code 0, nothing left in .partial/.
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                rc = await proc.wait()
            assert rc == 0
    assert list((data / ".partial").iterdir()) == []


async def test_cli_tls_with_curl(tmp_path: Path) -> None:
    """``hub serve --tls-cert/--tls-key`` with a trustme CA; curl verifies the chain."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_pem, key_pem, ca_pem = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_pem))
    cert.private_key_pem.write_to_path(str(key_pem))
    ca.cert_pem.write_to_path(str(ca_pem))
    data = tmp_path / "data"
    data.mkdir()
    tokens, _ = make_tokens(data)
    (data / "files").mkdir()
    (data / "files" / "t.txt").write_bytes(b"over tls\n")
    extra = ["--tls-cert", str(cert_pem), "--tls-key", str(key_pem)]
    async with hub_process(data, extra, scheme="https") as (_, url):
        ok = await run_curl("--cacert", str(ca_pem), f"{url}/files/t.txt?token={tokens['read']}")
        assert ok.returncode == 0, ok.stderr
        assert ok.stdout == b"over tls\n"
        # Without the CA, curl must refuse the self-made certificate (exit 60).
        untrusted = await run_curl(f"{url}/files/t.txt?token={tokens['read']}")
        assert untrusted.returncode == 60
