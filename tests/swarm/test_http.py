"""The swarm's lazily opened HTTP client: a DHT-only peer never loads aiohttp."""

from __future__ import annotations

import subprocess
import sys

import aiohttp

from hubswarm.swarm.http import LazyHttp


async def test_opened_on_first_use_and_shared() -> None:
    http = LazyHttp()
    assert not http.opened
    first = http.get()
    assert isinstance(first, aiohttp.ClientSession)
    assert http.get() is first
    assert http.opened
    await http.close()
    assert first.closed
    assert not http.opened
    await http.close()  # idempotent
    second = http.get()
    assert second is not first
    await http.close()


def test_peer_modules_do_not_import_aiohttp() -> None:
    # A fresh interpreter: this test process has aiohttp loaded by other tests already.
    code = (
        "import sys\n"
        "import hubswarm.swarm.api, hubswarm.swarm.listener, hubswarm.swarm.session\n"
        "import hubswarm.swarm.dht.node, hubswarm.cli.swarm\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'aiohttp'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_tracker_client_does_import_it() -> None:
    code = "import sys, hubswarm.swarm.tracker_client\nprint('aiohttp' in sys.modules)\n"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "True"


def test_a_peer_on_an_in_memory_network_speaks_http_over_it() -> None:
    # The lab's sim: trackers and web seeds live on the same in-memory network as the peers.
    from aiohttp import web

    from hubswarm import vtime
    from hubswarm.httpnet import NetworkSite
    from hubswarm.memnet import MemoryNetwork
    from hubswarm.swarm.listener import SwarmPeer

    from .swarmkit import fast_config

    async def main() -> tuple[int, bytes]:
        network = MemoryNetwork(latency=0.01)
        app = web.Application()

        async def hello(_: web.Request) -> web.Response:
            return web.Response(body=b"over memory")

        app.router.add_get("/x", hello)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        site = NetworkSite(runner, network.host("10.0.0.1"), "0.0.0.0", 80)
        await site.start()
        try:
            async with (
                SwarmPeer(fast_config(), host="10.0.0.2", network=network.host("10.0.0.2")) as peer,
                peer.http.get().get("http://10.0.0.1/x") as response,
            ):
                return response.status, await response.read()
        finally:
            await runner.cleanup()

    assert vtime.run(main()) == (200, b"over memory")
