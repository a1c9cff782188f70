"""``hubswarm lab compare | run | cleanup``: measure client-server against peer-to-peer.

Thin: load scenarios, call :func:`hubswarm.lab.campaign.measure` (runs and report) under a
progress bar, print a line per row of the comparison and the report's path (``--open``: open
it in a browser where there is one).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from hubswarm.lab import netem
from hubswarm.lab.scenario import Scenario, default_scenario_dir, load_scenario, load_scenarios

if TYPE_CHECKING:
    from hubswarm.lab.campaign import Campaign
    from hubswarm.lab.report import Report
    from hubswarm.lab.terminal import PlannedRun


def _show(console: Console, campaign: Campaign, report: Report) -> None:
    """The compact summary: one line per row of the reference table, then the report's path."""
    from hubswarm.lab.terminal import summary_lines

    console.print("[bold]Client-server vs peer-to-peer, measured[/]")
    for line in summary_lines(report.verdicts):
        click.echo(line)
    # One line per scenario, architecture and reason, with the N it applies to: a skipped
    # architecture (libtorrent not installed) is one line, not one per N.
    grouped: dict[tuple[str, str, str], list[int]] = {}
    for failure in campaign.failures:
        key = (failure.scenario, failure.architecture, str(failure.error))
        grouped.setdefault(key, []).append(failure.n)
    for (scenario, architecture, error), ns in grouped.items():
        where = "N=" + ",".join(str(n) for n in ns)
        console.print(f"[yellow]not measured[/]: {scenario} {where} {architecture}: {error}")
    click.echo(f"report: {report.html}")


def open_in_browser(page: Path, env: Mapping[str, str] | None = None) -> str:
    """Open ``page`` in the user's browser where there is one; never fails: says what it did."""
    import sys
    import webbrowser

    env = os.environ if env is None else env
    has_display = bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))
    if not (has_display or sys.platform in ("darwin", "win32")):
        return f"no display here: open {page} in a browser"
    try:
        opened = webbrowser.open(page.resolve().as_uri())
    except (webbrowser.Error, OSError) as exc:
        return f"could not open a browser ({exc}): open {page}"
    return f"opened {page}" if opened else f"no browser found: open {page}"


class _Bar:
    """The campaign's progress bar: runs done / total, the current run, time left from the
    runs' bounds (:func:`hubswarm.lab.terminal.run_weight`)."""

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.fields[runs]}"),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[left]}"),
            TextColumn("{task.description}"),
            console=console,
        )
        self.task = self.progress.add_task("starting", total=None, runs="", left="")
        self.weights: dict[int, float] = {}
        self.labels: dict[int, str] = {}
        self.done = 0
        self.failed = 0
        self.done_weight = 0.0
        self.started_at = time.monotonic()

    def _runs(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        return f"{self.done}/{len(self.weights)} runs{failed}"

    def planned(self, runs: Sequence[PlannedRun]) -> None:
        self.started_at = time.monotonic()
        self.weights = {r.index: r.weight for r in runs}
        self.labels = {r.index: r.label for r in runs}
        self.progress.update(self.task, total=sum(self.weights.values()), runs=self._runs())

    def started(self, index: int) -> None:
        self.progress.update(self.task, description=self.labels.get(index, ""))

    def finished(self, index: int, failed: bool) -> None:
        self.done += 1
        self.failed += failed
        weight = self.weights.get(index, 0.0)
        self.done_weight += weight
        # Time left: the time so far, scaled by the bound-weighted work still to go.
        to_go = sum(self.weights.values()) - self.done_weight
        elapsed = time.monotonic() - self.started_at
        left = elapsed * to_go / self.done_weight if self.done_weight > 0 else None
        self.progress.update(
            self.task,
            advance=weight,
            runs=self._runs(),
            left="" if left is None else f"~{int(left) // 60}:{int(left) % 60:02d} left",
            description=f"done: {self.labels.get(index, '')}",
        )


def _campaign(scenarios: tuple[Scenario, ...], out: Path, open_report: bool, **how: Any) -> None:
    """Run the campaign, ``how`` being :func:`~hubswarm.lab.campaign.measure`'s options."""
    # Imported here: the runners pull in the hub, the report matplotlib; other commands of the
    # CLI (every client process the lab starts) should not pay for them.
    from hubswarm.lab.campaign import measure

    console = Console(stderr=True)
    netem.install_signal_cleanup()
    bar = _Bar(console)
    with bar.progress:

        def progress(message: str) -> None:
            # Failures stay on screen; the rest is the bar's description.
            if "failed" in message:
                console.log(message)

        campaign, report = measure(scenarios, out, on_progress=progress, tracker=bar, **how)
    _show(Console(), campaign, report)
    if open_report:
        click.echo(open_in_browser(report.html))


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


_open = click.option(
    "--open",
    "open_report",
    is_flag=True,
    help="Open the HTML report in your browser at the end (where there is a display).",
)


def _campaign_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options ``compare`` and ``run`` share."""
    for option in (_open, _dask, _jobs, _sim, _quick, _no_netns, _out):
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
def compare(folder: Path | None, out: Path, open_report: bool, **how: Any) -> None:
    """Run every scenario on every architecture and write the comparison report."""
    _campaign(load_scenarios(folder or default_scenario_dir()), out, open_report, **how)


@lab.command()
@click.argument("scenario", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_campaign_options
def run(scenario: Path, out: Path, open_report: bool, **how: Any) -> None:
    """Run one SCENARIO.toml and write its report."""
    _campaign((load_scenario(scenario),), out, open_report, **how)


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
@click.argument(
    "runs_json",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@_out
@_open
def report(runs_json: tuple[Path, ...], out: Path, open_report: bool) -> None:
    """Redraw the report from a RUNS_JSON of an earlier run; given two (A B), set the two
    campaigns side by side with the differences marked."""
    from datetime import UTC, datetime

    from hubswarm.lab.report import load_runs, write_report
    from hubswarm.lab.terminal import summary_lines

    if len(runs_json) > 2:
        raise click.BadParameter("one runs.json, or two to compare", param_hint="RUNS_JSON")
    if len(runs_json) == 2:
        from hubswarm.lab.report_pair import compare_campaigns, write_pair

        a, b = (load_runs(path)[0] for path in runs_json)
        pair = compare_campaigns(a, b)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        page = write_pair(runs_json[0], runs_json[1], pair, out / f"compare-{stamp}")
        click.echo(f"{pair.changes} differences marked")
    else:
        runs, failures, notes = load_runs(runs_json[0])
        written = write_report(runs, out, failures=failures, notes=notes)
        page = written.html
        for line in summary_lines(written.verdicts):
            click.echo(line)
    click.echo(f"report: {page}")
    if open_report:
        click.echo(open_in_browser(page))


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
