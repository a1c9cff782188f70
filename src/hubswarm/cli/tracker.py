"""``hubswarm tracker``: run the standalone BitTorrent tracker (BEP 3 / BEP 23 / BEP 48)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import click

from hubswarm.errors import ConfigError
from hubswarm.hub.tracker import TrackerConfig, load_allowed, run_tracker
from hubswarm.limits import TRACKER_ANNOUNCES_PER_ADDRESS, TRACKER_DEFAULT_INTERVAL

__all__ = ["announces_per_address_option", "register", "tracker"]

# The per-address announce budget (hub.tracker.TrackerState), for `tracker` and `hub serve`.
announces_per_address_option = click.option(
    "--announces-per-address",
    default=TRACKER_ANNOUNCES_PER_ADDRESS,
    show_default=True,
    type=click.IntRange(0),
    envvar="HUBSWARM_ANNOUNCES_PER_ADDRESS",
    help="Tracker: announces one address may make per interval (0: no limit).",
)


async def _serve(config: TrackerConfig) -> None:
    """Run until SIGINT or SIGTERM, then close the listener and return."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:

        def ready(url: str) -> None:
            click.echo(f"hubswarm tracker: listening on {url}")
            click.get_text_stream("stdout").flush()

        await run_tracker(config, stop, ready=ready)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


@click.command("tracker")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=6969, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--interval",
    default=TRACKER_DEFAULT_INTERVAL,
    show_default=True,
    type=click.IntRange(1, 86400),
    help="Re-announce interval in seconds (the lab uses 5-10).",
)
@click.option("--min-interval", type=click.IntRange(1, 86400), default=None)
@click.option(
    "--trust-ip-param",
    is_flag=True,
    help="Take the peer address from the `ip` parameter (labs behind NAT only).",
)
@click.option(
    "--allowed",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Serve only the info-hashes listed in FILE (40 hex digits per line).",
)
@announces_per_address_option
@click.option(
    "--udp-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Also serve UDP (BEP 15) on this port, same swarms (0 picks a free one).",
)
def tracker(
    host: str,
    port: int,
    interval: int,
    min_interval: int | None,
    trust_ip_param: bool,
    allowed: Path | None,
    announces_per_address: int,
    udp_port: int | None,
) -> None:
    """Run a standalone HTTP tracker (GET /announce, GET /scrape), and UDP (BEP 15) with
    --udp-port."""
    if min_interval is not None and min_interval > interval:
        raise ConfigError("--min-interval cannot exceed --interval")
    config = TrackerConfig(
        host=host,
        port=port,
        interval=interval,
        min_interval=min_interval,
        trust_ip_param=trust_ip_param,
        allowed=load_allowed(allowed) if allowed is not None else None,
        udp_port=udp_port,
        announces_per_address=announces_per_address,
    )
    asyncio.run(_serve(config))
    click.echo("hubswarm tracker: stopped")


def register(cli: click.Group) -> None:
    """Add the ``tracker`` command to the root group."""
    cli.add_command(tracker)
