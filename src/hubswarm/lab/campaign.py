"""A campaign: every plan of every scenario, on each of its architectures.

``hubswarm lab compare`` and ``lab run`` are one call to :func:`run_scenarios`. The sim runs
go first, through an executor (:mod:`.executors`: this process, ``jobs`` local processes, or
a Dask cluster); then the netns and app runs, one after another, since they measure wall
time on this host. The results keep the order of the plans, whoever ran them. A run that
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
from typing import TYPE_CHECKING, Protocol

from hubswarm.errors import LabError
from hubswarm.lab import netem
from hubswarm.lab.emulation import open_network, resolve_emulation
from hubswarm.lab.executors import Outcome, SimJob, execute, resolve_jobs
from hubswarm.lab.metrics import RunFailure, RunResult
from hubswarm.lab.runners import ArchitectureRunner, make_runner, unavailable
from hubswarm.lab.scenario import RunPlan, Scenario
from hubswarm.lab.terminal import PlannedRun, run_weight

if TYPE_CHECKING:
    from hubswarm.lab.report import Report

__all__ = [
    "QUICK_MAX_CLIENTS",
    "Campaign",
    "Tracker",
    "measure",
    "quick_plan",
    "run_plan",
    "run_scenarios",
]

# --quick: at most this many client counts, none above QUICK_MAX_CLIENTS.
QUICK_MAX_CLIENTS = 8
_QUICK_COUNTS = 3
_NO_NETEM_NOTE = "netem absent: no delay/loss emulation (bandwidth shaped with htb only)"


class Tracker(Protocol):
    """Follows a campaign's runs (the terminal's progress bar)."""

    def planned(self, runs: Sequence[PlannedRun]) -> None:
        """Every run the campaign will make, before the first."""

    def started(self, index: int) -> None:
        """Run ``index`` begins (netns and app runs; sim runs are seen when done)."""

    def finished(self, index: int, failed: bool) -> None:
        """Run ``index`` ended (in any order when sim runs go in parallel)."""


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


@dataclass(frozen=True, slots=True)
class _Run:
    """A run the campaign makes itself (netns or app), in order."""

    index: int
    plan: RunPlan
    architecture: str
    mode: str


async def run_scenarios(
    scenarios: Sequence[Scenario],
    *,
    workdir: Path,
    no_netns: bool = False,
    quick: bool = False,
    sim: bool = False,
    jobs: int = 1,
    dask: str | None = None,
    runners: Mapping[str, ArchitectureRunner] | None = None,
    on_progress: Callable[[str], None] | None = None,
    tracker: Tracker | None = None,
) -> Campaign:
    """Run every plan of every scenario on each of its architectures; never stop at a failure
    of one run (it becomes a RunFailure), but let cancellation through. ``sim``: every run
    in virtual time on the modelled network (:mod:`hubswarm.lab.sim`). Sim runs take ``jobs``
    local workers (0: one per CPU), or the Dask scheduler at ``dask``."""
    workers = resolve_jobs(jobs)
    outcomes: dict[int, Outcome] = {}
    sim_jobs: list[SimJob] = []
    own: list[_Run] = []
    skipped: dict[int, RunFailure] = {}
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
                index = len(sim_jobs) + len(own) + len(skipped)
                reason = unavailable(arch, mode)
                if reason is not None:
                    # Not run at all (the default set's libtorrent without its bindings, or
                    # outside netns): a "not measured" row saying why, and a note.
                    skipped[index] = RunFailure(arch, scenario.name, plan.n, reason, scenario.path)
                    continue
                if mode == "sim":
                    sim_jobs.append(SimJob(index, plan, arch))
                else:
                    own.append(_Run(index, plan, arch, mode))
    outcomes.update(skipped)
    for arch, reason in _reasons(skipped):
        _say(on_progress, f"{arch} skipped (not measured): {reason}")
    if tracker:
        planned = [
            PlannedRun(
                j.index,
                f"{_label(j.plan, j.architecture)} (sim)",
                run_weight(j.plan, j.architecture, "sim"),
            )
            for j in sim_jobs
        ]
        planned += [
            PlannedRun(
                r.index,
                f"{_label(r.plan, r.architecture)} ({r.mode})",
                run_weight(r.plan, r.architecture, r.mode),
            )
            for r in own
        ]
        tracker.planned(sorted(planned, key=lambda p: p.index))
    if sim_jobs:
        where = f"Dask at {dask}" if dask else f"{min(workers, len(sim_jobs))} worker(s)"
        _say(on_progress, f"{len(sim_jobs)} sim runs on {where}")

        def done(job: SimJob, outcome: Outcome) -> None:
            outcomes[job.index] = outcome
            what = f"{_label(job.plan, job.architecture)} (sim)"
            if isinstance(outcome, RunFailure):
                what += " failed"
            _say(on_progress, f"{len(outcomes)}/{len(sim_jobs)} sim runs done: {what}")
            if tracker:
                tracker.finished(job.index, isinstance(outcome, RunFailure))

        await execute(sim_jobs, done, workers=workers, dask=dask)
    chosen = dict(runners or {})
    for run in own:
        plan, arch = run.plan, run.architecture
        _say(on_progress, f"running {_label(plan, arch)} ({run.mode})")
        if tracker:
            tracker.started(run.index)
        folder = workdir / f"{plan.scenario.name}-{run.index}-n{plan.n}-{arch}"
        try:
            runner = chosen.setdefault(arch, make_runner(arch))
            outcomes[run.index] = await run_plan(plan, runner, mode=run.mode, workdir=folder)
        except LabError as exc:
            scenario = plan.scenario
            outcomes[run.index] = RunFailure(arch, scenario.name, plan.n, str(exc), scenario.path)
        finally:
            await asyncio.to_thread(shutil.rmtree, folder, True)
            if tracker:
                tracker.finished(run.index, isinstance(outcomes.get(run.index), RunFailure))
    notes = [f"{arch} not measured: {reason}" for arch, reason in _reasons(skipped)]
    if "netns" in modes:
        notes.append(netem.RATE_NOTE)
        if not await asyncio.to_thread(netem.probe_netem):
            notes.append(_NO_NETEM_NOTE)
    ordered = [outcomes[i] for i in sorted(outcomes)]
    results = tuple(o for o in ordered if isinstance(o, RunResult))
    failures = tuple(o for o in ordered if isinstance(o, RunFailure))
    return Campaign(results, failures, tuple(notes))


def _reasons(skipped: Mapping[int, RunFailure]) -> list[tuple[str, str]]:
    """Each (architecture, why) of the runs the campaign could not make, once."""
    return list(dict.fromkeys((f.architecture, f.error) for f in skipped.values()))


def _label(plan: RunPlan, architecture: str) -> str:
    return f"{plan.scenario.name} {plan.label} {architecture}"


def _say(on_progress: Callable[[str], None] | None, message: str) -> None:
    if on_progress:
        on_progress(message)


def measure(
    scenarios: Sequence[Scenario],
    out: Path,
    *,
    no_netns: bool = False,
    quick: bool = False,
    sim: bool = False,
    jobs: int = 1,
    dask: str | None = None,
    on_progress: Callable[[str], None] | None = None,
    tracker: Tracker | None = None,
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
                jobs=jobs,
                dask=dask,
                on_progress=on_progress,
                tracker=tracker,
            )
        )
    report = write_report(campaign.results, out, failures=campaign.failures, notes=campaign.notes)
    return campaign, report
