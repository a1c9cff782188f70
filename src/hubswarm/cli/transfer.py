"""``hubswarm put``, ``get`` and ``ls``: talk to a hub from the command line.

Thin: parse, call one function of ``hubswarm.hub.client``, show a progress bar on stderr (only
on a terminal) and print one result line on stdout. Errors are ``HubswarmError``s that the root
group prints as one line.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_lib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

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

from hubswarm.clock import Clock
from hubswarm.errors import ConfigError
from hubswarm.hub import client
from hubswarm.limits import HUB_CLIENT_CONNECT_TIMEOUT, HUB_READ_TIMEOUT

_token = click.option(
    "--token",
    envvar="HUBSWARM_TOKEN",
    default=None,
    help="Bearer token (default: $HUBSWARM_TOKEN).",
)
_cacert = click.option(
    "--cacert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="PEM file of CA certificates to trust for https.",
)
_connect_timeout = click.option(
    "--connect-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=HUB_CLIENT_CONNECT_TIMEOUT,
    show_default=True,
    help="Seconds to wait for the connection.",
)
_read_timeout = click.option(
    "--read-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=HUB_READ_TIMEOUT,
    show_default=True,
    help="Seconds to wait for each read before giving up.",
)


@contextmanager
def _progress(description: str) -> Iterator[client.ProgressCallback]:
    """A rich progress bar on stderr (bytes, rate, ETA), shown only if stderr is a terminal."""
    console = Console(stderr=True)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    task = bar.add_task(description, total=None)

    def update(done: int, total: int | None) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        yield update


def _mb_per_s(nbytes: int, seconds: float) -> str:
    return f"{nbytes / seconds / 1e6:.1f} MB/s" if seconds > 0 else "- MB/s"


@click.command()
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@click.argument("url")
@_token
@_cacert
@_connect_timeout
@_read_timeout
def put(
    file: Path,
    url: str,
    token: str | None,
    cacert: Path | None,
    connect_timeout: float,
    read_timeout: float,
) -> None:
    """Upload FILE to URL (a hub base URL, or .../files/NAME to choose the name).

    A folder FILE is uploaded file by file as FOLDER/sub/name (URL: the hub's base URL).
    """
    ssl = client.make_ssl_context(cacert)
    timeouts = client.Timeouts(connect=connect_timeout, sock_read=read_timeout)
    if file.is_dir():
        _put_folder(file, url, token or None, ssl, timeouts)
        return
    target = client.file_url(url, file.name)
    clock = Clock()
    started = clock.now()
    with _progress(f"put {file.name}") as progress:
        remote = asyncio.run(
            client.upload(
                file, target, token=token or None, progress=progress, ssl=ssl, timeouts=timeouts
            )
        )
    rate = _mb_per_s(remote.size, clock.now() - started)
    click.echo(f"uploaded {remote.name} ({remote.size} bytes, sha256 {remote.sha256}, {rate})")


def _put_folder(
    folder: Path,
    url: str,
    token: str | None,
    ssl: ssl_lib.SSLContext | None,
    timeouts: client.Timeouts,
) -> None:
    """Upload every regular file below ``folder`` (symlinks and hidden files are skipped)."""
    if not client.file_url(url, "x").endswith("/files/x"):
        raise ConfigError(f"{url}: a folder goes to the hub's base URL, not to a file URL")
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and not p.is_symlink()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    total = 0
    for path in files:
        name = f"{folder.name}/{path.relative_to(folder).as_posix()}"
        with _progress(f"put {name}") as progress:
            remote = asyncio.run(
                client.upload(
                    path,
                    client.file_url(url, name),
                    token=token,
                    progress=progress,
                    ssl=ssl,
                    timeouts=timeouts,
                )
            )
        total += remote.size
        click.echo(f"uploaded {remote.name} ({remote.size} bytes, sha256 {remote.sha256})")
    click.echo(f"uploaded folder {folder.name}: {len(files)} files, {total} bytes")


@click.command()
@click.argument("url")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to save (a file, or an existing folder); default: the URL's file name here.",
)
@click.option("--no-resume", is_flag=True, help="Ignore any partial download and start over.")
@_token
@_cacert
@_connect_timeout
@_read_timeout
def get(
    url: str,
    output: Path | None,
    no_resume: bool,
    token: str | None,
    cacert: Path | None,
    connect_timeout: float,
    read_timeout: float,
) -> None:
    """Download URL (http(s)://host:port/files/NAME), resuming a partial download."""
    target = client.file_url(url)
    name = client.name_from_url(target)
    dest = Path(name) if output is None else output / name if output.is_dir() else output
    ssl = client.make_ssl_context(cacert)
    timeouts = client.Timeouts(connect=connect_timeout, sock_read=read_timeout)
    with _progress(f"get {name}") as progress:
        result = asyncio.run(
            client.download(
                target,
                dest,
                token=token or None,
                progress=progress,
                resume=not no_resume,
                ssl=ssl,
                timeouts=timeouts,
            )
        )
    resumed = f", resumed at byte {result.resumed_from}" if result.resumed_from else ""
    unverified = "" if result.verified else ", NOT verified: server sent no sha256"
    click.echo(
        f"saved {result.path} ({result.size} bytes, sha256 {result.sha256}{resumed}{unverified}, "
        f"{_mb_per_s(result.bytes_received, result.elapsed)})"
    )


@click.command(name="ls")
@click.argument("url")
@_token
@_cacert
@_connect_timeout
@_read_timeout
def ls(
    url: str,
    token: str | None,
    cacert: Path | None,
    connect_timeout: float,
    read_timeout: float,
) -> None:
    """List the files of the hub at URL: size, modified time (UTC), sha256, name."""
    ssl = client.make_ssl_context(cacert)
    timeouts = client.Timeouts(connect=connect_timeout, sock_read=read_timeout)
    files = asyncio.run(client.list_files(url, token or None, ssl=ssl, timeouts=timeouts))
    for f in sorted(files, key=lambda f: f.name):
        when = datetime.fromtimestamp(f.mtime, UTC).strftime("%Y-%m-%d %H:%M:%S")
        click.echo(f"{f.size:>14}  {when}  {f.sha256}  {f.name}")


def register(cli: click.Group) -> None:
    """Add ``put``, ``get`` and ``ls`` to the root group."""
    cli.add_command(put)
    cli.add_command(get)
    cli.add_command(ls)
