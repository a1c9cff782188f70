"""``hubswarm hub ...``: run the HTTP hub and manage its tokens."""

from __future__ import annotations

import asyncio
import datetime
import sys
from pathlib import Path

import click
from aiohttp import web

from hubswarm.cli.tracker import announces_per_address_option
from hubswarm.errors import ConfigError
from hubswarm.hub.app import HubConfig
from hubswarm.hub.auth import Role, TokenStore
from hubswarm.hub.server import make_ssl_context, serve
from hubswarm.hub.tracker import TrackerState, add_tracker_routes
from hubswarm.hub.udp_tracker import add_udp_tracker
from hubswarm.hybrid import HubSeeder, seed_config
from hubswarm.limits import (
    HUB_DEFAULT_MAX_UPLOAD,
    HUB_KEEPALIVE_TIMEOUT,
    HUB_MIN_UPLOAD_BYTES,
    HUB_PROGRESS_INTERVAL,
    HUB_READ_TIMEOUT,
    TRACKER_DEFAULT_INTERVAL,
)
from hubswarm.units import parse_quantity


def parse_size(text: str) -> int:
    """``"1048576"``, ``"10M"``, ``"64GiB"`` -> bytes (see ``hubswarm.units``)."""
    return int(parse_quantity(text))


_DATA = click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The hub's data folder.",
)


def register(cli: click.Group) -> None:
    """Attach the ``hub`` command group to the root CLI."""
    cli.add_command(hub)


@click.group()
def hub() -> None:
    """The client-server HTTP hub."""


@hub.command("serve")
@_DATA
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int, help="0 picks a free port.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--anonymous-read", is_flag=True, help="Allow reads without a token.")
@click.option(
    "--max-upload",
    default=str(HUB_DEFAULT_MAX_UPLOAD),
    show_default=True,
    help="Largest upload in bytes (suffixes K, M, G, T allowed).",
)
@click.option(
    "--rate-limit",
    default=None,
    help="Per-token limit in bytes/s for uploads and downloads together (suffixes allowed).",
)
@click.option("--read-timeout", default=HUB_READ_TIMEOUT, show_default=True, type=float)
@click.option("--keepalive-timeout", default=HUB_KEEPALIVE_TIMEOUT, show_default=True, type=float)
@click.option(
    "--min-upload-bytes",
    default=HUB_MIN_UPLOAD_BYTES,
    show_default=True,
    type=click.IntRange(0),
    help="Uploads moving fewer bytes per --progress-interval get 408 (0: no minimum).",
)
@click.option("--progress-interval", default=HUB_PROGRESS_INTERVAL, show_default=True, type=float)
@click.option(
    "--tracker/--no-tracker",
    default=True,
    show_default=True,
    help="Also serve a BitTorrent tracker at /announce and /scrape (the hybrid).",
)
@click.option("--tracker-interval", default=TRACKER_DEFAULT_INTERVAL, show_default=True, type=int)
@click.option("--trust-ip-param", is_flag=True, help="Tracker: take the announce ip parameter.")
@announces_per_address_option
@click.option(
    "--udp-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Also serve the tracker over UDP (BEP 15) on this port (0 picks a free one).",
)
@click.option(
    "--seed",
    is_flag=True,
    help="Also run a BitTorrent peer seeding every file (announced to this hub's tracker).",
)
@click.option(
    "--seed-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="TCP port of the --seed peer (0 picks a free one).",
)
def serve_cmd(
    data_dir: Path,
    host: str,
    port: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    anonymous_read: bool,
    max_upload: str,
    rate_limit: str | None,
    read_timeout: float,
    keepalive_timeout: float,
    min_upload_bytes: int,
    progress_interval: float,
    tracker: bool,
    tracker_interval: int,
    trust_ip_param: bool,
    announces_per_address: int,
    udp_port: int | None,
    seed: bool,
    seed_port: int,
) -> None:
    """Serve DATA over HTTP(S) until SIGINT/SIGTERM; prints the URL it listens on."""
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError("--tls-cert and --tls-key go together")
    if udp_port is not None and not tracker:
        raise ConfigError("--udp-port serves the tracker: it cannot go with --no-tracker")
    ssl_context = make_ssl_context(tls_cert, tls_key) if tls_cert and tls_key else None
    config = HubConfig(
        data_dir=data_dir,
        anonymous_read=anonymous_read,
        max_upload=parse_size(max_upload),
        rate_limit=parse_size(rate_limit) if rate_limit is not None else None,
        read_timeout=read_timeout,
        keepalive_timeout=keepalive_timeout,
        min_upload_bytes=min_upload_bytes,
        progress_interval=progress_interval,
    )

    def ready(url: str) -> None:
        # Tests and the lab parse this line to learn the real port.
        click.echo(f"hubswarm hub: serving {data_dir} on {url}")
        sys.stdout.flush()

    def configure(app: web.Application) -> None:
        # One hub process is file server, tracker and (through GET /files) web seed.
        state = TrackerState(
            interval=tracker_interval,
            trust_ip_param=trust_ip_param,
            announces_per_address=announces_per_address,
        )
        add_tracker_routes(app, state)
        if udp_port is not None:  # the same swarms over BEP 15

            def udp_ready(url: str) -> None:
                click.echo(f"hubswarm hub: UDP tracker on {url}")
                sys.stdout.flush()

            add_udp_tracker(app, state, host, udp_port, udp_ready)

    def seeding_ready(seed_port: int) -> None:
        click.echo(f"hubswarm hub: seeding every file from {host}:{seed_port}")
        sys.stdout.flush()

    async def seeding(url: str) -> None:
        announce = f"{url}/announce" if tracker else None
        config = seed_config(seed_port)
        await HubSeeder(data_dir, announce=announce, config=config, host=host).run(seeding_ready)

    asyncio.run(
        serve(
            config,
            host,
            port,
            ssl_context,
            ready,
            configure if tracker else None,
            alongside=seeding if seed else None,
        )
    )


@hub.group("token")
def token() -> None:
    """Create, list and revoke access tokens (roles: read < write < admin)."""


@token.command("create")
@_DATA
@click.option("--role", type=click.Choice(["read", "write", "admin"]), default="read")
def token_create(data_dir: Path, role: str) -> None:
    """Print a new token (shown only this once); its id goes to stderr."""
    record, secret = TokenStore(data_dir).create(Role.parse(role))
    click.echo(secret)
    click.echo(f"id={record.id} role={record.role.label}", err=True)


@token.command("list")
@_DATA
def token_list(data_dir: Path) -> None:
    """List token ids and roles (the tokens themselves are not stored)."""
    for rec in TokenStore(data_dir).list():
        when = datetime.datetime.fromtimestamp(rec.created_at, datetime.UTC).isoformat(
            timespec="seconds"
        )
        click.echo(f"{rec.id}\t{rec.role.label}\t{when}")


@token.command("revoke")
@_DATA
@click.argument("token_id")
def token_revoke(data_dir: Path, token_id: str) -> None:
    """Revoke token TOKEN_ID; effective on the server's next request."""
    if not TokenStore(data_dir).revoke(token_id):
        raise ConfigError(f"no such token id: {token_id}")
    click.echo(f"revoked {token_id}")
