"""Interop: a libtorrent 2.x session whose DHT is bootstrapped from our node.

libtorrent allows one DHT node per IP by default (dht_restrict_routing_ips /
dht_restrict_search_ips); our nodes sit on distinct 127.6.0.x addresses and the restrictions
are switched off anyway, as PITFALLS.md recommends for a single-host lab.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

from hubswarm.swarm.dht.node import DHTNode
from tests.swarm.dht.netutil import loopback_ip, start_network, stop_all

try:
    import libtorrent as lt
except ImportError:  # pragma: no cover - the test must fail, never skip
    lt = None

pytestmark = pytest.mark.interop


def _session(bootstrap: tuple[str, int]) -> Any:
    if lt is None:
        pytest.fail("libtorrent Python bindings are missing: pip install libtorrent (2.x)")
    settings = {
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": True,
        "dht_bootstrap_nodes": f"{bootstrap[0]}:{bootstrap[1]}",
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_ip_notifier": False,
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        # 127.0.0.0/8 counts as "dark internet" for libtorrent's DHT; this is a lab.
        "dht_ignore_dark_internet": False,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": lt.alert_category.dht
        | lt.alert_category.dht_operation
        | lt.alert_category.status,
    }
    return lt.session(settings)


async def _wait_alert(ses: Any, want: Any, deadline: float, retry: Any = None) -> Any:
    """Pop alerts until ``want(alert)`` is true; call ``retry()`` every 2 s; bounded by deadline."""
    next_retry = time.monotonic()
    while time.monotonic() < deadline:
        if retry is not None and time.monotonic() >= next_retry:
            retry()
            next_retry = time.monotonic() + 2.0
        for alert in ses.pop_alerts():
            if want(alert):
                return alert
        await asyncio.sleep(0.1)  # our DHT nodes run on this event loop
    return None


async def test_libtorrent_finds_peers_our_nodes_store_and_we_find_its_announce() -> None:
    nodes = await start_network(12, seed=21, net=6)
    ses = None
    try:
        boot = nodes[0]
        info_hash = random.Random(3).randbytes(20)
        accepted = await nodes[5].announce_peer(info_hash, 6881)
        assert accepted >= 6
        ses = _session(boot.address)
        deadline = time.monotonic() + 30
        target = lt.sha1_hash(info_hash)
        alert = await _wait_alert(
            ses,
            lambda a: (
                isinstance(a, lt.dht_get_peers_reply_alert)
                and (loopback_ip(5, 6), 6881) in [tuple(p) for p in a.peers()]
            ),
            deadline,
            retry=lambda: ses.dht_get_peers(target),
        )
        assert alert is not None, "libtorrent never got our stored peer through its DHT"
        assert any(n.stats.queries_in for n in nodes[1:]), "libtorrent only asked the boot node"

        # The other direction: libtorrent announces, our node finds it.
        other = random.Random(4).randbytes(20)
        lt_port = ses.listen_port()
        found: list[tuple[str, int]] = []
        next_announce = 0.0
        while time.monotonic() < deadline and ("127.0.0.1", lt_port) not in found:
            if time.monotonic() >= next_announce:
                ses.dht_announce(lt.sha1_hash(other), lt_port, 0)
                next_announce = time.monotonic() + 3.0
            ses.pop_alerts()
            await asyncio.sleep(0.5)
            found = await nodes[-1].get_peers(other)
        assert ("127.0.0.1", lt_port) in found
    finally:
        if ses is not None:
            ses.pause()
            del ses
        await stop_all(nodes)


async def test_libtorrent_pings_standalone_node() -> None:
    async with DHTNode(host="127.6.1.1", rng=random.Random(9)) as node:
        ses = _session(node.address)
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not node.stats.queries_in:
                ses.pop_alerts()
                await asyncio.sleep(0.1)
            assert node.stats.queries_in > 0
            assert node.stats.malformed == 0
            # We pinged it back and now route through it.
            while time.monotonic() < deadline and not len(node.table):
                await asyncio.sleep(0.1)
            assert len(node.table) >= 1
        finally:
            ses.pause()
            del ses
