"""``hubswarm dht ...``: a standalone DHT node (bootstrap node for a lab or LAN) and lookups."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import click

from hubswarm.clock import Clock
from hubswarm.errors import ConfigError, DHTError
from hubswarm.proto.krpc import ID_LEN
from hubswarm.swarm.dht.node import DHTNode, parse_address


def _addresses(values: tuple[str, ...]) -> list[tuple[str, int]]:
    try:
        return [parse_address(v) for v in values]
    except DHTError as exc:
        raise ConfigError(str(exc)) from exc


def _info_hash(text: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != ID_LEN:  # an info-hash lives in the DHT's 160-bit id space
        raise ConfigError(f"info-hash must be 40 hex digits, got {text!r}")
    return value


async def _run_node(
    host: str,
    port: int,
    bootstrap: list[tuple[str, int]],
    state: str | None,
    duration: float | None,
    status_every: float,
) -> None:
    stop = asyncio.Event()
    clock = Clock()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        async with DHTNode(
            host=host, port=port, bootstrap=bootstrap, state_path=state, clock=clock
        ) as node:
            h, p = node.address
            click.echo(f"dht node {node.node_id.hex()} listening on udp {h}:{p}", err=False)
            click.echo(f"routing table: {len(node.table)} nodes after bootstrap")
            deadline = None if duration is None else clock.now() + duration
            while not stop.is_set():
                wait = status_every
                if deadline is not None:
                    wait = min(wait, max(0.0, deadline - clock.now()))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await stop.wait()
                s = node.stats
                click.echo(
                    f"nodes={len(node.table)} peers={len(node.peers)} "
                    f"torrents={node.peers.info_hashes} queries_in={s.queries_in} "
                    f"malformed={s.malformed} rate_limited={s.rate_limited}"
                )
                if deadline is not None and clock.now() >= deadline:
                    break
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    if state:
        click.echo(f"routing table saved to {state}")


async def _get_peers(
    host: str, bootstrap: list[tuple[str, int]], info_hash: bytes, announce: int | None
) -> None:
    async with DHTNode(host=host, bootstrap=bootstrap) as node:
        if announce is not None:
            accepted = await node.announce_peer(info_hash, announce)
            click.echo(f"announced port {announce} to {accepted} nodes")
        result = await node.lookup(info_hash, get_peers=True)
        click.echo(
            f"lookup: {result.rounds} rounds, {result.queries} queries, "
            f"{len(result.closest)} closest nodes answered"
        )
        for ip, port in result.peers:
            click.echo(f"{ip}:{port}")


def register(cli: click.Group) -> None:
    """Add the ``dht`` command group to the root CLI."""

    @cli.group()
    def dht() -> None:
        """Mainline DHT (BEP 5): run a node, look up peers."""

    @dht.command("node")
    @click.option("--port", type=click.IntRange(0, 65535), required=True, help="UDP port.")
    @click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
    @click.option("--bootstrap", multiple=True, metavar="HOST:PORT", help="Node to join through.")
    @click.option("--state", type=click.Path(dir_okay=False), help="Routing table file.")
    @click.option("--duration", type=float, help="Exit after this many seconds.")
    @click.option("--status-every", type=float, default=30.0, show_default=True)
    def node_cmd(
        port: int,
        host: str,
        bootstrap: tuple[str, ...],
        state: str | None,
        duration: float | None,
        status_every: float,
    ) -> None:
        """Run a standalone DHT node until interrupted (saves its table to --state on exit)."""
        asyncio.run(_run_node(host, port, _addresses(bootstrap), state, duration, status_every))

    @dht.command("get-peers")
    @click.argument("info_hash")
    @click.option("--bootstrap", multiple=True, required=True, metavar="HOST:PORT")
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--announce", type=click.IntRange(1, 65535), help="Announce this TCP port first.")
    def get_peers_cmd(
        info_hash: str, bootstrap: tuple[str, ...], host: str, announce: int | None
    ) -> None:
        """Look up the peers of INFO_HASH (40 hex digits) through the DHT."""
        asyncio.run(_get_peers(host, _addresses(bootstrap), _info_hash(info_hash), announce))
