"""A campaign: every plan of every scenario, on each of its architectures, one after another.

``hubswarm lab compare`` and ``lab run`` are one call to :func:`run_scenarios`. A run that
fails (a service that would not start, an agent that crashed) becomes a
:class:`~hubswarm.lab.metrics.RunFailure` in the report, and the campaign goes on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hubswarm.errors import LabError
from hubswarm.lab import netem
from hubswarm.lab.emulation import open_network, resolve_emulation
from hubswarm.lab.metrics import RunFailure, RunResult
from hubswarm.lab.runners import ArchitectureRunner, make_runner
from hubswarm.lab.scenario import RunPlan, Scenario
from hubswarm.lab.sim import run_sim

if TYPE_CHECKING:
    from hubswarm.lab.report import Report

__all__ = [
    "QUICK_MAX_CLIENTS",
    "Campaign",
    "measure",
    "quick_plan",
    "run_plan",
    "run_scenarios",
]

# --quick: at most this many client counts, none above QUICK_MAX_CLIENTS.
QUICK_MAX_CLIENTS = 8
_QUICK_COUNTS = 3
_NO_NETEM_NOTE = "netem absent: no delay/loss emulation (bandwidth shaped with htb only)"


@dataclass(frozen=True, slots=True)
class Campaign:
    """Everything a ``lab compare`` produced: runs, runs that could not be made, notes."""

    results: tuple[RunResult, ...]
    failures: tuple[RunFailure, ...]
    notes: tuple[str, ...]


def quick_plan(scenario: Scenario) -> Scenario:
    """``--quick``: keep at most three client counts, none above 8."""
    small = tuple(n for n in scenario.clients if n <= QUICK_MAX_CLIENTS)[:_QUICK_COUNTS]
    return dataclasses.replace(scenario, clients=small or (min(scenario.clients),))


async def run_plan(
    plan: RunPlan, runner: ArchitectureRunner, *, mode: str, workdir: Path
) -> RunResult:
    """Open the network, run one architecture on it, close the network (always)."""
    workdir.mkdir(parents=True, exist_ok=True)
    async with open_network(plan, mode, extra_hosts=runner.extra_hosts) as network:
        return await runner.run(plan, network, workdir)


async def run_scenarios(
    scenarios: Sequence[Scenario],
    *,
    workdir: Path,
    no_netns: bool = False,
    quick: bool = False,
    sim: bool = False,
    runners: Mapping[str, ArchitectureRunner] | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> Campaign:
    """Run every plan of every scenario on each of its architectures; never stop at a failure
    of one run (it becomes a RunFailure), but let cancellation through. ``sim``: every run
    in virtual time on the modelled network (:mod:`hubswarm.lab.sim`)."""
    results: list[RunResult] = []
    failures: list[RunFailure] = []
    notes: list[str] = []
    chosen = dict(runners or {})
    modes = set()
    for scenario in scenarios:
        if quick:
            scenario = quick_plan(scenario)
        mode = resolve_emulation(
            scenario.emulation, no_netns=no_netns, sim=sim, needs_sim=scenario.needs_sim
        )
        modes.add(mode)
        for plan in scenario.plans():
            for arch in scenario.architectures:
                if on_progress:
                    on_progress(f"{scenario.name} N={plan.n} {arch} ({mode})")
                folder = workdir / f"{scenario.name}-n{plan.n}-{arch}"
                try:
                    if mode == "sim":
                        # Its own virtual-time loop: on a worker thread, off this loop.
                        folder.mkdir(parents=True, exist_ok=True)
                        results.append(await asyncio.to_thread(run_sim, plan, arch, folder))
                        continue
                    runner = chosen.setdefault(arch, make_runner(arch))
                    results.append(await run_plan(plan, runner, mode=mode, workdir=folder))
                except LabError as exc:
                    failures.append(
                        RunFailure(arch, scenario.name, plan.n, str(exc), scenario.path)
                    )
                finally:
                    await asyncio.to_thread(shutil.rmtree, folder, True)
    if "netns" in modes:
        notes.append(netem.RATE_NOTE)
        if not await asyncio.to_thread(netem.probe_netem):
            notes.append(_NO_NETEM_NOTE)
    return Campaign(tuple(results), tuple(failures), tuple(notes))


def measure(
    scenarios: Sequence[Scenario],
    out: Path,
    *,
    no_netns: bool = False,
    quick: bool = False,
    sim: bool = False,
    on_progress: Callable[[str], None] | None = None,
) -> tuple[Campaign, Report]:
    """``lab compare`` / ``lab run``: run the campaign in a scratch folder, then write its
    report under ``out`` (``out/<timestamp>/``). Blocking: it runs its own event loop."""
    # Imported here: the report pulls in matplotlib (seconds), needed only at the end.
    from hubswarm.lab.report import write_report

    with tempfile.TemporaryDirectory(prefix="hsw-lab-") as tmp:
        campaign = asyncio.run(
            run_scenarios(
                scenarios,
                workdir=Path(tmp),
                no_netns=no_netns,
                quick=quick,
                sim=sim,
                on_progress=on_progress,
            )
        )
    report = write_report(campaign.results, out, failures=campaign.failures, notes=campaign.notes)
    return campaign, report
