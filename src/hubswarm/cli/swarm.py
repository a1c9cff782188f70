"""``hubswarm share`` and ``hubswarm fetch``: the peer-to-peer commands."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from hubswarm.errors import ConfigError
from hubswarm.lab.timing import lab_timing
from hubswarm.proto.compact import parse_host_port
from hubswarm.swarm import api
from hubswarm.swarm.config import DEFAULT_MAX_PEERS, DEFAULT_MAX_PER_ADDRESS, SessionConfig
from hubswarm.swarm.session import TorrentSession
from hubswarm.units import parse_quantity


def parse_rate(text: str | None) -> float | None:
    """Bytes/s from ``2.5MB/s``, ``20mbit``, ``512KiB``, ``1000`` (None or 0 = unlimited).

    Raises:
        ConfigError: not a rate (see ``hubswarm.units`` for the units).
    """
    if text is None:
        return None
    return parse_quantity(text, rate=True) or None


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too).

    Raises:
        ConfigError: not an address.
    """
    try:
        return parse_host_port(text)
    except ValueError as exc:
        raise ConfigError(f"not a HOST:PORT address: {exc}") from exc


def _config(opts: dict[str, Any]) -> SessionConfig:
    cfg = SessionConfig(
        listen_port=opts["port"],
        upload_rate=parse_rate(opts.get("upload_rate")),
        download_rate=parse_rate(opts.get("download_rate")),
        peer_upload_rate=parse_rate(opts.get("peer_upload_rate")),
        max_peers=opts["max_peers"],
        corrupt_uploads=opts.get("corrupt", False),
        announce_ip=opts.get("announce_ip"),
        webseed_mode=opts.get("webseed_mode", "assist"),
        use_pex=not opts.get("no_pex", False),
        use_utp=not opts.get("no_utp", False),
        use_tcp=not opts.get("no_tcp", False),
        encryption=opts.get("encryption", "enabled"),
        max_per_address=opts.get("max_per_address", DEFAULT_MAX_PER_ADDRESS) or None,
    )
    if opts.get("fast_intervals"):
        cfg = lab_timing(cfg)
    return cfg


def _dht_state(opts: dict[str, Any]) -> dict[str, Any]:
    # Passed only when given, so a library without the keyword still runs the default.
    return {"dht_state": opts["dht_state"]} if opts.get("dht_state") is not None else {}


def _peer_options(f: Any) -> Any:
    for option in reversed(
        [
            click.option("--host", default="0.0.0.0", show_default=True, help="Listen address."),
            click.option("--port", default=0, type=int, help="Listen port (0: any free port)."),
            click.option("--upload-rate", help="Upload cap, all peers (e.g. 2MB/s, 20mbit)."),
            click.option("--download-rate", help="Download cap (e.g. 2MB/s, 20mbit)."),
            click.option("--peer-upload-rate", help="Upload cap per peer."),
            click.option("--max-peers", default=DEFAULT_MAX_PEERS, show_default=True, type=int),
            click.option(
                "--max-per-address",
                default=DEFAULT_MAX_PER_ADDRESS,
                show_default=True,
                type=click.IntRange(0),
                envvar="HUBSWARM_MAX_PER_ADDRESS",
                help="Links per torrent to one IP address (0: no limit; tests and labs that "
                "run many peers on one address raise it).",
            ),
            click.option("--dht-bootstrap", multiple=True, help="DHT bootstrap node HOST:PORT."),
            click.option(
                "--no-pex",
                is_flag=True,
                help="No peer exchange (BEP 11): peers come from the "
                "tracker, the DHT and --peer only.",
            ),
            click.option(
                "--no-utp",
                is_flag=True,
                help="TCP only: do not listen on uTP (BEP 29), which most clients dial first.",
            ),
            click.option(
                "--no-tcp",
                is_flag=True,
                help="uTP only: neither listen nor dial on TCP (with --no-utp: refused).",
            ),
            click.option(
                "--encryption",
                type=click.Choice(["disabled", "enabled", "required"]),
                default="enabled",
                show_default=True,
                help="Protocol encryption (MSE/PE): enabled accepts both and dials plaintext "
                "first; required speaks only MSE with RC4.",
            ),
            click.option(
                "--dht-state",
                type=click.Path(dir_okay=False, path_type=Path),
                help="DHT routing table file: loaded at start, saved on exit.",
            ),
            click.option("--events", type=click.Path(path_type=Path), help="JSON-lines log."),
            click.option("--announce-ip", help="The ip parameter sent to trackers."),
            click.option("--fast-intervals", is_flag=True, help="Lab timing (seconds)."),
            click.option("--corrupt", is_flag=True, hidden=True, help="Lab fault: bad data."),
            click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
        ]
    ):
        f = option(f)
    return f


class _Display:
    """A rich progress bar on stderr fed from the session's counters."""

    def __init__(self, quiet: bool) -> None:
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("up {task.fields[up]}/s  peers {task.fields[peers]}"),
            TimeRemainingColumn(),
            console=self.console,
            disable=quiet or not self.console.is_terminal,
        )
        self.task: Any = None

    def __call__(self, session: TorrentSession) -> None:
        info = session.info
        total = info.total_length if info is not None else None
        done = (total - session.left) if info is not None and total is not None else 0
        up = f"{session.upload_meter.rate / 1e6:.1f} MB"
        name = info.name if info is not None else "fetching metadata"
        if self.task is None:
            self.task = self.progress.add_task(name, total=total, up=up, peers=0)
        self.progress.update(
            self.task,
            description=name,
            total=total,
            completed=done,
            up=up,
            peers=len(session.links),
        )


def register(cli: click.Group) -> None:
    """Add ``share`` and ``fetch`` to the root group."""

    @cli.command()
    @click.argument("path", type=click.Path(exists=True, path_type=Path))
    @click.option("--tracker", "trackers", multiple=True, help="Announce URL (repeatable).")
    @click.option("--web-seed", "web_seeds", multiple=True, help="BEP 19 web seed URL.")
    @click.option("-o", "--output", type=click.Path(path_type=Path), help="Torrent file to write.")
    @click.option("--piece-length", type=int, help="Bytes per piece (default: by size).")
    @click.option("--private", is_flag=True, help="BEP 27 private torrent (no DHT).")
    @click.option("--duration", type=float, help="Seed for this many seconds, then exit.")
    @click.option(
        "--super-seed",
        is_flag=True,
        help="BEP 16 initial seeding: offer each peer a few pieces at a time.",
    )
    @_peer_options
    def share(
        path: Path,
        trackers: tuple[str, ...],
        web_seeds: tuple[str, ...],
        output: Path | None,
        piece_length: int | None,
        private: bool,
        duration: float | None,
        super_seed: bool,
        **opts: Any,
    ) -> None:
        """Make a torrent of PATH, print its magnet link and seed it until interrupted."""
        cfg = _config(opts)
        if super_seed and cfg.seed_unchoke_slots is not None:
            # Each peer may only fetch the pieces offered to it: unchoke every interested
            # peer (the choker's slots), not a few in turn, or offers wait while choked.
            cfg.seed_unchoke_slots = None

        def ready(info: api.ShareInfo) -> None:
            if opts["as_json"]:
                record = {
                    "torrent": str(info.torrent_path),
                    "info_hash": info.info_hash,
                    "magnet": info.magnet,
                    "port": info.port,
                }
                click.echo(json.dumps(record))
            else:
                click.echo(f"torrent: {info.torrent_path}")
                click.echo(f"info-hash: {info.info_hash}")
                click.echo(f"magnet: {info.magnet}")
                click.echo(f"seeding {info.name} ({info.total_length} bytes) on port {info.port}")
            sys.stdout.flush()

        events = opts["events"]
        asyncio.run(
            api.share(
                path,
                config=cfg,
                host=opts["host"],
                torrent_out=output,
                trackers=trackers,
                web_seeds=web_seeds,
                piece_length=piece_length,
                private=private,
                ready=ready,
                events_path=events,
                duration=duration,
                super_seed=super_seed,
                dht_bootstrap=[parse_address(a) for a in opts["dht_bootstrap"]],
                **_dht_state(opts),
            )
        )

    @cli.command()
    @click.argument("source")
    @click.option(
        "-o",
        "--output",
        "out_dir",
        default=".",
        type=click.Path(path_type=Path),
        help="Folder to download into.",
    )
    @click.option("--peer", "peers", multiple=True, help="Peer HOST:PORT to dial (repeatable).")
    @click.option("--tracker", "trackers", multiple=True, help="Extra announce URL.")
    @click.option("--seed", is_flag=True, help="Keep seeding after the download completes.")
    @click.option("--timeout", type=float, help="Give up after this many seconds.")
    @click.option(
        "--stall-timeout",
        default=60.0,
        show_default=True,
        help="Give up when nothing arrives for this many seconds.",
    )
    @click.option(
        "--webseed-mode",
        type=click.Choice(["assist", "fallback", "always", "off"]),
        default="assist",
        show_default=True,
        help="When to fetch from web seeds: assist (when no peer feeds us), fallback "
        "(pieces no peer has), always, off.",
    )
    @click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
    @_peer_options
    def fetch(
        source: str,
        out_dir: Path,
        peers: tuple[str, ...],
        trackers: tuple[str, ...],
        seed: bool,
        timeout: float | None,
        stall_timeout: float,
        webseed_mode: str,
        quiet: bool,
        **opts: Any,
    ) -> None:
        """Download a .torrent or magnet link, verify every piece, exit 0 when complete."""
        opts["webseed_mode"] = webseed_mode
        cfg = _config(opts)
        display = _Display(quiet or opts["as_json"])

        def done(result: api.FetchResult) -> None:
            display.progress.stop()
            if opts["as_json"]:
                record = {
                    "info_hash": result.info_hash,
                    "path": str(result.path),
                    "bytes": result.total_length,
                    "seconds": result.seconds,
                    "stats": result.stats,
                    "verified": True,
                }
                click.echo(json.dumps(record))
            else:
                rate = result.total_length / max(result.seconds, 1e-9) / 1e6
                click.echo(
                    f"saved {result.path} ({result.total_length} bytes, every piece "
                    f"verified, {result.seconds:.1f} s, {rate:.1f} MB/s)"
                )
            sys.stdout.flush()

        with display.progress:
            asyncio.run(
                api.fetch(
                    source,
                    out_dir,
                    config=cfg,
                    host=opts["host"],
                    peers=[parse_address(p) for p in peers],
                    extra_trackers=trackers,
                    seed_after=seed,
                    stall_timeout=stall_timeout,
                    timeout=timeout,
                    progress=display,
                    events_path=opts["events"],
                    on_complete=done,
                    dht_bootstrap=[parse_address(a) for a in opts["dht_bootstrap"]],
                    **_dht_state(opts),
                )
            )
