"""``hubswarm torrent create|show``: make a .torrent from a file or folder, or inspect one."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from hubswarm.errors import ConfigError
from hubswarm.limits import BENCODE_MAX_SIZE
from hubswarm.proto.metainfo import (
    Magnet,
    Metainfo,
    build_magnet,
    parse_magnet,
    parse_metainfo,
)
from hubswarm.swarm.maketorrent import create_torrent


def _size(n: int) -> str:
    """Bytes in binary units, with the exact count."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit} ({n} bytes)" if unit != "B" else f"{n} B"
        value /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


def _kv_table() -> Table:
    """Two columns, key and value; long values (magnet links) wrap instead of being cut."""
    table = Table(show_header=False, box=None)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    return table


def _row(table: Table, *cells: str) -> None:
    """Add a row of plain text: names and URLs from a torrent are never rich markup."""
    table.add_row(*(Text(cell) for cell in cells))


def _read_torrent(path: Path) -> bytes:
    """Read a .torrent file, refusing anything larger than bencode accepts."""
    try:
        with open(path, "rb") as f:
            data = f.read(BENCODE_MAX_SIZE + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from exc
    if len(data) > BENCODE_MAX_SIZE:
        raise ConfigError(f"{path}: larger than {BENCODE_MAX_SIZE} bytes, not a .torrent")
    return data


def _show_metainfo(console: Console, meta: Metainfo) -> None:
    info = meta.info
    table = _kv_table()
    _row(table, "name", info.name)
    _row(table, "info-hash", info.info_hash.hex())
    _row(table, "size", _size(info.total_length))
    _row(table, "pieces", f"{info.num_pieces} x {_size(info.piece_length)}")
    _row(table, "private", "yes" if info.private else "no")
    for i, tier in enumerate(meta.announce_list):
        _row(table, f"tracker tier {i}", "\n".join(tier))
    for url in meta.url_list:
        _row(table, "web seed", url)
    if meta.comment:
        _row(table, "comment", meta.comment)
    if meta.created_by:
        _row(table, "created by", meta.created_by)
    _row(table, "magnet", build_magnet(meta.to_magnet()))
    console.print(table)
    files = Table("path", "size", title=f"{len(info.files)} file(s)")
    for entry in info.files:
        label = "/".join(entry.path) + (" (padding)" if entry.padding else "")
        _row(files, label, str(entry.length))
    console.print(files)


def _show_magnet(console: Console, magnet: Magnet) -> None:
    table = _kv_table()
    _row(table, "name", magnet.display_name or "(none)")
    _row(table, "info-hash", magnet.info_hash.hex())
    for url in magnet.trackers:
        _row(table, "tracker", url)
    for url in magnet.web_seeds:
        _row(table, "web seed", url)
    for host, port in magnet.peers:
        _row(table, "peer", f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    _row(table, "magnet", build_magnet(magnet))
    console.print(table)


@click.group("torrent")
def torrent() -> None:
    """Create or inspect .torrent files and magnet links."""


@torrent.command("create")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Where to write it.")
@click.option("--tracker", "trackers", multiple=True, help="Tracker URL (each its own tier).")
@click.option("--web-seed", "web_seeds", multiple=True, help="BEP 19 web seed URL.")
@click.option("--piece-length", type=int, default=None, help="Bytes, a multiple of 16 KiB.")
@click.option("--private", is_flag=True, help="BEP 27 private torrent (trackers only).")
@click.option("--comment", default=None)
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
def create(
    path: Path,
    output: Path | None,
    trackers: tuple[str, ...],
    web_seeds: tuple[str, ...],
    piece_length: int | None,
    private: bool,
    comment: str | None,
    force: bool,
) -> None:
    """Hash PATH (a file or a folder) into a .torrent; print its info-hash and magnet link."""
    info, data = create_torrent(
        path,
        piece_length=piece_length,
        trackers=trackers,
        web_seeds=web_seeds,
        private=private,
        comment=comment,
    )
    out = output if output is not None else Path(f"{info.name}.torrent")
    if out.exists() and not force:
        raise ConfigError(f"{out} exists (use --force to overwrite)")
    try:
        out.write_bytes(data)
    except OSError as exc:
        raise ConfigError(f"{out}: {exc.strerror}") from exc
    meta = parse_metainfo(data)
    console = Console(highlight=False)
    console.print(Text(f"wrote {out}"))
    console.print(Text(f"info-hash {info.info_hash.hex()}"))
    console.print(Text(build_magnet(meta.to_magnet())), soft_wrap=True)


@torrent.command("show")
@click.argument("source")
def show(source: str) -> None:
    """Print what a .torrent file or magnet link holds."""
    console = Console(highlight=False)
    if source.lower().startswith("magnet:"):
        _show_magnet(console, parse_magnet(source))
    else:
        _show_metainfo(console, parse_metainfo(_read_torrent(Path(source))))


def register(cli: click.Group) -> None:
    """Attach the ``torrent`` commands to the root group."""
    cli.add_command(torrent)
