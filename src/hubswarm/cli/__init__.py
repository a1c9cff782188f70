"""Command-line interface: thin wrappers that parse, call one library function, print.

Each room of the system has its own module of commands (``cli/hub.py``, ``cli/swarm.py``,
``cli/dht.py``, ``cli/lab.py``); this module assembles them and turns every
``HubswarmError`` into one line on stderr and exit code 1.
"""

from __future__ import annotations

import logging
import sys

import click

from hubswarm import __version__
from hubswarm.errors import HubswarmError


class _Root(click.Group):
    """The root group: expected errors become one line on stderr, never a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except HubswarmError as exc:
            click.echo(f"hubswarm: error: {exc}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("hubswarm: interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hubswarm")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """hubswarm: client-server or peer-to-peer, measured."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def _register() -> None:
    """Attach the command modules that exist (each room adds its own)."""
    import importlib

    for name in ("hub", "transfer", "torrent", "tracker", "swarm", "dht", "lab"):
        try:
            module = importlib.import_module(f"hubswarm.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"hubswarm.cli.{name}":
                continue
            raise
        module.register(cli)


_register()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="hubswarm")
