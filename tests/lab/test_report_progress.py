"""The client-server replay's data: a real ``hubswarm get`` download on loopback, sampled as
the lab's agent samples it (lab.progress), whether the hub client reads the body through
aiohttp (small files) or straight from the socket (2 MiB and more, issue 18)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from hubswarm.clock import Clock
from hubswarm.hub import client as hub_client
from hubswarm.lab.progress import MAX_SAMPLES, ReceivedSampler

CHUNK = 16 * 1024


async def _serve(size: int) -> tuple[web.AppRunner, str]:
    """A server that sends ``size`` bytes in 16 KiB writes, 5 ms apart (a slow link)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(size)})
        await resp.prepare(request)
        sent = 0
        while sent < size:
            n = min(CHUNK, size - sent)
            await resp.write(b"x" * n)
            sent += n
            await asyncio.sleep(0.005)
        return resp

    app = web.Application()
    app.router.add_get("/files/f", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/files/f"


@pytest.mark.parametrize("size", [1536 * 1024, 3 * 2**20])
async def test_a_real_download_is_sampled_as_its_bytes_arrive(tmp_path: Path, size: int) -> None:
    runner, url = await _serve(size)
    sampler = ReceivedSampler(Clock())
    try:
        async with sampler.watching(), sampler.session() as session:
            await hub_client.download(
                url,
                tmp_path / "f",
                token=None,
                progress=lambda d, _: sampler.note(d),
                resume=False,
                session=session,
            )
    finally:
        await runner.cleanup()
    samples = sampler.samples()
    assert len(samples) <= MAX_SAMPLES
    times = [t for t, _ in samples]
    got = [b for _, b in samples]
    assert times == sorted(times)
    assert got == sorted(got)
    assert got[-1] == size
    # Bytes seen between the client's write batches (1 MiB through aiohttp, 4 MiB straight
    # from the socket): the curve has more steps than the batches.
    inside = {b for b in got if 0 < b < size}
    assert len(inside) >= 4, samples
