"""The real hub (aiohttp server) and its client on the modelled network, in virtual time."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from hubswarm import vtime
from hubswarm.errors import ServerUnreachableError
from hubswarm.httpnet import NetworkConnector, NetworkSite
from hubswarm.hub import client
from hubswarm.hub.app import HubConfig, create_app
from hubswarm.hub.auth import Role, TokenStore
from hubswarm.lab.simnet import LinkSpec, SimNetwork

MIB = 1024 * 1024
HUB, USER = "10.2.0.1", "10.2.0.2"


async def _up_and_down(data_dir: Path, payload: bytes) -> tuple[float, float, str, int]:
    """Upload ``payload`` over a 1 MiB/s client uplink, download it over a 2 MiB/s hub
    uplink: (upload seconds, download seconds, sha256 downloaded, hub's tx bytes)."""
    token = TokenStore(data_dir).create(Role.WRITE)[1]
    network = SimNetwork(rng=random.Random(3))
    network.add_host(HUB, LinkSpec(upload=2 * MIB, latency=0.01))
    network.add_host(USER, LinkSpec(upload=1 * MIB, latency=0.01))
    runner = web.AppRunner(create_app(HubConfig(data_dir=data_dir)), handle_signals=False)
    await runner.setup()
    site = NetworkSite(runner, network.host(HUB), "0.0.0.0", 8080)
    await site.start()
    loop = asyncio.get_running_loop()
    try:
        async with aiohttp.ClientSession(
            connector=NetworkConnector(network.host(USER)), auto_decompress=False
        ) as session:
            source = data_dir.parent / "p.bin"
            source.write_bytes(payload)
            t0 = loop.time()
            await client.upload(source, site.name, token=token, progress=None, session=session)
            t1 = loop.time()
            dest = data_dir.parent / "copy.bin"
            result = await client.download(
                f"{site.name}/files/p.bin", dest, token=token, progress=None, session=session
            )
            t2 = loop.time()
            assert result.sha256 == hashlib.sha256(dest.read_bytes()).hexdigest()
            return t1 - t0, t2 - t1, result.sha256, network.tx_bytes(HUB)
    finally:
        await runner.cleanup()


def test_the_hub_serves_on_the_modelled_network_at_the_links_rates(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    payload = os.urandom(4 * MIB)
    up, down, sha, hub_tx = vtime.run(_up_and_down(data, payload))
    assert sha == hashlib.sha256(payload).hexdigest()
    # Each way takes F over the sender's uplink plus a fixed few round trips (40 ms each):
    # the connect, the request, slow start up to the path's 80 KiB bandwidth-delay product.
    assert 4.0 < up < 4.0 + 0.3
    assert 2.0 < down < 2.0 + 0.3
    assert hub_tx >= 4 * MIB


def test_a_dead_address_is_a_clean_hub_error() -> None:
    async def main() -> None:
        network = SimNetwork()
        async with aiohttp.ClientSession(connector=NetworkConnector(network.host(USER))) as s:
            await client.list_files(f"http://{HUB}:8080", token=None, session=s)

    with pytest.raises(ServerUnreachableError, match="cannot connect"):
        vtime.run(main())
