"""``hubswarm lab compare | run | cleanup``: measure client-server against peer-to-peer.

Thin: load scenarios, call :func:`hubswarm.lab.campaign.measure` (runs and report), print the
comparison table and the path of the results folder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from hubswarm.lab import netem
from hubswarm.lab.scenario import Scenario, default_scenario_dir, load_scenario, load_scenarios

if TYPE_CHECKING:
    from hubswarm.lab.campaign import Campaign
    from hubswarm.lab.report import Report


def _show(console: Console, campaign: Campaign, report: Report) -> None:
    from hubswarm.lab.render import to_rich
    from hubswarm.lab.table import TERMINAL_COLUMNS, as_table

    table = as_table(report.table, TERMINAL_COLUMNS)
    console.print(to_rich(table, "Client-server vs peer-to-peer, measured"))
    for failure in campaign.failures:
        console.print(
            f"[yellow]not measured[/]: {failure.scenario} N={failure.n} "
            f"{failure.architecture}: {failure.error}"
        )
    for note in campaign.notes:
        console.print(f"[dim]note: {note}[/]")
    click.echo(f"results: {report.folder}")


def _campaign(scenarios: tuple[Scenario, ...], out: Path, **how: Any) -> None:
    """Run the campaign, ``how`` being :func:`~hubswarm.lab.campaign.measure`'s options."""
    # Imported here: the runners pull in the hub, the report matplotlib; other commands of the
    # CLI (every client process the lab starts) should not pay for them.
    from hubswarm.lab.campaign import measure

    console = Console(stderr=True)
    netem.install_signal_cleanup()
    with console.status("starting") as status:

        def progress(message: str) -> None:
            status.update(message)
            console.log(message)

        campaign, report = measure(scenarios, out, on_progress=progress, **how)
    _show(Console(), campaign, report)


_out = click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("results"),
    show_default=True,
    help="Folder that receives results/<timestamp>/.",
)
_no_netns = click.option(
    "--no-netns", is_flag=True, help="Loopback only, shaped by the lab's proxy (no root needed)."
)
_quick = click.option("--quick", is_flag=True, help="At most three client counts, none above 8.")
_sim = click.option(
    "--sim",
    is_flag=True,
    help="Every run in virtual time on the modelled network (no root; scales to thousands).",
)

_jobs = click.option(
    "--jobs",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Sim runs at once: 1 runs them one by one in this process, more each in a process "
    "of its own, 0 one per CPU. Netns and app runs measure wall time on this host: they run "
    "one at a time, after the sim runs.",
)
_dask = click.option(
    "--dask",
    metavar="ADDRESS",
    default=None,
    help="Send the sim runs to the Dask scheduler at ADDRESS (e.g. tcp://10.0.0.5:8786) "
    "instead of local processes; its workers need hubswarm installed. Netns and app runs "
    "stay on this host, one at a time.",
)


def _campaign_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options ``compare`` and ``run`` share."""
    for option in (_dask, _jobs, _sim, _quick, _no_netns, _out):
        command = option(command)
    return command


@click.group()
def lab() -> None:
    """Measure client-server against peer-to-peer on an emulated network."""


@lab.command()
@click.option(
    "--scenarios",
    "folder",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Folder of *.toml scenarios (default: the shipped set).",
)
@_campaign_options
def compare(folder: Path | None, out: Path, **how: Any) -> None:
    """Run every scenario on every architecture and write the comparison report."""
    _campaign(load_scenarios(folder or default_scenario_dir()), out, **how)


@lab.command()
@click.argument("scenario", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_campaign_options
def run(scenario: Path, out: Path, **how: Any) -> None:
    """Run one SCENARIO.toml and write its report."""
    _campaign((load_scenario(scenario),), out, **how)


@lab.command()
@click.argument("scenario", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--runs", type=click.IntRange(1, 50), default=5, show_default=True)
def validate(scenario: Path, runs: int) -> None:
    """Run SCENARIO.toml in netns and in sim; print T_sim / T_netns per architecture and N."""
    import asyncio

    from rich.table import Table

    from hubswarm.lab.validate import format_rows
    from hubswarm.lab.validate import validate as run_validation

    console = Console(stderr=True)
    netem.install_signal_cleanup()
    with console.status("starting") as status:

        def progress(label: str) -> None:
            status.update(label)
            console.log(label)

        rows = asyncio.run(run_validation(load_scenario(scenario), runs=runs, on_progress=progress))
    table = Table(title="The model against the kernel: median distribution time (runs)")
    for column in ("architecture", "N", "T netns", "T sim", "T_sim / T_netns"):
        table.add_column(column, justify="left" if column == "architecture" else "right")
    for cells in format_rows(rows):
        table.add_row(*cells)
    Console().print(table)


@lab.command()
@click.argument("runs_json", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_out
def report(runs_json: Path, out: Path) -> None:
    """Redraw the report (table, plots, HTML) from a RUNS_JSON of an earlier run."""
    from hubswarm.lab.report import load_runs, write_report

    runs, failures, notes = load_runs(runs_json)
    written = write_report(runs, out, failures=failures, notes=notes)
    click.echo(f"results: {written.folder}")


@lab.command()
@click.option(
    "--prefix",
    default=netem.PREFIX,
    show_default=True,
    help="Only names starting with this (it must start with hsw-), e.g. hsw-1a2b for one run.",
)
def cleanup(prefix: str) -> None:
    """Remove namespaces and links left by a killed run (only names starting with hsw-)."""
    if not prefix.startswith(netem.PREFIX):
        raise click.BadParameter(f"must start with {netem.PREFIX}", param_hint="--prefix")
    removed = netem.cleanup_leftovers(prefix)
    click.echo(f"removed {len(removed)}: {' '.join(removed)}" if removed else "nothing to remove")


def register(cli: click.Group) -> None:
    """Add the ``lab`` group to the root command."""
    cli.add_command(lab)
