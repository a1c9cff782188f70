"""Command-line interface: thin wrappers that parse, call one library function, print.

Each room of the system has its own module of commands (``cli/hub.py``, ``cli/swarm.py``,
``cli/dht.py``, ``cli/lab.py``, ...), each with a ``register(group)`` function; this module
loads them on demand and turns every ``HubswarmError`` into one line on stderr and exit 1.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import click

from hubswarm import __version__
from hubswarm.errors import HubswarmError

# Command name -> the module of ``hubswarm.cli`` that defines it. Modules are imported only
# when their command runs: a peer process of the lab should not pay for matplotlib or the hub.
_COMMANDS = {
    "hub": "hub",
    "put": "transfer",
    "get": "transfer",
    "ls": "transfer",
    "torrent": "torrent",
    "tracker": "tracker",
    "share": "swarm",
    "fetch": "swarm",
    "dht": "dht",
    "lab": "lab",
}


class _Root(click.Group):
    """The root group: lazy subcommands; expected errors become one line on stderr."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Commands built so far: a module's register() builds every option of its commands
        # (the swarm's: ~3 ms of CPU), so a process pays for it once (the lab's agents before
        # their start signal, see hubswarm.lab.agent).
        self._built: dict[str, click.Command | None] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._built:
            return self._built[cmd_name]
        module_name = _COMMANDS.get(cmd_name)
        if module_name is None:
            return None
        module = importlib.import_module(f"hubswarm.cli.{module_name}")
        holder = click.Group()
        module.register(holder)
        for name, command in holder.commands.items():
            self._built.setdefault(name, command)
        return holder.commands.get(cmd_name)

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


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="hubswarm")
