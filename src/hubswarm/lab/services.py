"""The services a run starts on its hosts before t = 0: the hub, a DHT node, a seed peer.

Each is a real ``python3 -m hubswarm ...`` process on its emulated host, started with
:func:`~hubswarm.lab.processes.start_service` and read back from the line it prints when it
is ready (its URL, its port, its magnet link). Any architecture may start any of them: the
client-server runner and the hybrid both run the hub.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hubswarm.errors import LabError
from hubswarm.lab.netem import Network
from hubswarm.lab.processes import Processes, Service, start_service

__all__ = ["DhtNode", "Hub", "Seed", "hub_bytes_sent", "start_dht_node", "start_hub", "start_seed"]

_SERVING = re.compile(rb"serving .* on (https?://\S+)")
_URL_PORT = re.compile(rb":(\d+)/?$")
_DHT_NODE = re.compile(rb"dht node \S+ listening on udp \S+:(\d+)")
# ``hubswarm share --json`` prints its result (with the magnet link) once it seeds.
_SHARE_JSON = re.compile(rb'^\{.*"magnet"')
# curl's own limit on a /stats request, and ours on the curl process around it.
_STATS_CURL_TIMEOUT = 2
_STATS_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Hub:
    """A running ``hubswarm hub serve`` and the port it listens on (inside its host)."""

    service: Service
    port: int


@dataclass(frozen=True, slots=True)
class DhtNode:
    """A running ``hubswarm dht node``: the bootstrap node of a swarm (``HOST:PORT``)."""

    service: Service
    bootstrap: str


@dataclass(frozen=True, slots=True)
class Seed:
    """A running ``hubswarm share`` (the first seed) and the magnet link it printed."""

    service: Service
    magnet: str


async def start_hub(
    procs: Processes,
    tg: asyncio.TaskGroup,
    network: Network,
    data: Path,
    *,
    python: str,
    anonymous: bool,
    extra: Sequence[str] = (),
) -> Hub:
    """``hubswarm hub serve`` of ``data`` on host 0 (any free port). Raises LabError."""
    argv = [python, "-m", "hubswarm", "hub", "serve", "--data", str(data), "--port", "0"]
    argv += ["--host", network.bind_address(0), *extra]
    if anonymous:
        argv.append("--anonymous-read")
    service = await start_service(procs, tg, network.wrap(0, argv), _SERVING, "the hub")
    serving = _SERVING.search(service.ready_line)
    port = _URL_PORT.search(serving.group(1)) if serving else None
    if port is None:
        raise LabError(f"cannot read the hub's port from {service.ready_line!r}")
    return Hub(service, int(port.group(1)))


async def hub_bytes_sent(procs: Processes, network: Network, port: int) -> int | None:
    """The hub's ``bytes_sent`` counter (``/stats``), or None if it did not answer."""
    # curl inside the hub's own host: loopback there, no route from the lab needed.
    url = f"http://127.0.0.1:{port}/stats"
    argv = ["curl", "-s", "-m", str(_STATS_CURL_TIMEOUT), url]
    proc = await procs.spawn(network.wrap(0, argv))
    try:
        async with asyncio.timeout(_STATS_TIMEOUT):
            out, _ = await proc.communicate()
    except TimeoutError:
        return None
    try:
        value = json.loads(out)["bytes_sent"]
    except (ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, int) else None


async def start_dht_node(
    procs: Processes, tg: asyncio.TaskGroup, network: Network, host: int, *, python: str
) -> DhtNode:
    """``hubswarm dht node`` on ``host`` (any free UDP port). Raises LabError."""
    address = network.hosts[host].address
    argv = [python, "-m", "hubswarm", "dht", "node", "--host", address, "--port", "0"]
    what = "the DHT bootstrap node"
    service = await start_service(procs, tg, network.wrap(host, argv), _DHT_NODE, what)
    port = _DHT_NODE.search(service.ready_line)
    assert port is not None  # the line matched it
    return DhtNode(service, f"{address}:{int(port.group(1))}")


async def start_seed(
    procs: Processes, tg: asyncio.TaskGroup, network: Network, argv: Sequence[str]
) -> Seed:
    """A ``hubswarm share ... --json`` (``argv``) on host 0. Raises LabError."""
    service = await start_service(procs, tg, network.wrap(0, argv), _SHARE_JSON, "the seed")
    try:
        magnet = str(json.loads(service.ready_line)["magnet"])
    except (ValueError, KeyError, TypeError) as exc:
        raise LabError(f"the seed printed no magnet link: {service.ready_line!r}") from exc
    return Seed(service, magnet)
