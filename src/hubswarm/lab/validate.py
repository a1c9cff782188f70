"""``hubswarm lab validate``: the model against the kernel, run for run.

The sim emulation is only as good as its network model (:mod:`hubswarm.lab.simnet`). This
checks it where the kernel's answer can be trusted, on slow links where the host is not
the bottleneck: each plan of a scenario runs ``runs`` times in netns (real TCP, wall time)
and ``runs`` times in sim (the model, virtual time), seeds ``seed .. seed + runs - 1`` in
both, and the table gives each side's median distribution time (the last client's end)
and their ratio T_sim / T_netns per architecture and N.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hubswarm.errors import LabError
from hubswarm.lab.campaign import run_plan
from hubswarm.lab.emulation import resolve_emulation
from hubswarm.lab.metrics import RunResult
from hubswarm.lab.runners import RUNNERS
from hubswarm.lab.scenario import RunPlan, Scenario
from hubswarm.lab.sim import run_sim

__all__ = ["ValidationRow", "validate"]


@dataclass(frozen=True, slots=True)
class ValidationRow:
    """One architecture at one N: the median times of each emulation and their ratio."""

    architecture: str
    n: int
    netns: tuple[float, ...]  # every run's distribution time (s); empty if none completed
    sim: tuple[float, ...]

    @property
    def ratio(self) -> float | None:
        """median(T_sim) / median(T_netns), or None without both."""
        if not self.netns or not self.sim:
            return None
        return statistics.median(self.sim) / statistics.median(self.netns)


def _makespan(result: RunResult) -> float | None:
    """The distribution time of a run: the last client's end, None unless all completed."""
    if not result.clients or not all(c.complete for c in result.clients):
        return None
    return max(c.end for c in result.clients if c.end is not None)


def _with_seed(scenario: Scenario, seed: int) -> list[RunPlan]:
    return list(dataclasses.replace(scenario, seed=seed).plans())


async def validate(
    scenario: Scenario,
    *,
    runs: int = 5,
    on_progress: Callable[[str], None] | None = None,
) -> list[ValidationRow]:
    """Run every plan of ``scenario`` ``runs`` times in netns and in sim. Raises LabError when
    netns is not available here (root and ip netns are needed)."""
    if resolve_emulation("netns") != "netns":
        raise LabError("lab validate needs the netns emulation (root and ip netns)")
    times: dict[tuple[str, int, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="hsw-validate-") as tmp:
        for k in range(runs):
            for plan in _with_seed(scenario, scenario.seed + k):
                for arch in scenario.architectures:
                    for mode in ("netns", "sim"):
                        if on_progress:
                            on_progress(f"run {k + 1}/{runs}: {arch} N={plan.n} ({mode})")
                        folder = Path(tmp) / f"{arch}-n{plan.n}-{mode}-{k}"
                        folder.mkdir(parents=True)
                        try:
                            result = await _run(plan, arch, mode, folder)
                        except LabError as exc:  # e.g. an architecture sim cannot run yet
                            if on_progress:
                                on_progress(f"  not measured: {exc}")
                            continue
                        finally:
                            await asyncio.to_thread(shutil.rmtree, folder, True)
                        makespan = _makespan(result)
                        if makespan is not None:
                            times.setdefault((arch, plan.n, mode), []).append(makespan)
    return [
        ValidationRow(
            arch,
            n,
            tuple(times.get((arch, n, "netns"), ())),
            tuple(times.get((arch, n, "sim"), ())),
        )
        for arch in scenario.architectures
        for n in scenario.clients
    ]


async def _run(plan: RunPlan, arch: str, mode: str, folder: Path) -> RunResult:
    if mode == "sim":
        return await asyncio.to_thread(run_sim, plan, arch, folder)
    try:
        runner = RUNNERS[arch](probe_security=False)  # the probes are not what is compared
    except KeyError:
        raise LabError(f"unknown architecture {arch!r}") from None
    return await run_plan(plan, runner, mode="netns", workdir=folder)


def format_rows(rows: Sequence[ValidationRow]) -> list[tuple[str, str, str, str, str]]:
    """The table's cells: architecture, N, median T netns, median T sim, ratio."""

    def median(values: tuple[float, ...]) -> str:
        return f"{statistics.median(values):.2f} s ({len(values)})" if values else "-"

    out = []
    for row in rows:
        ratio = row.ratio
        out.append(
            (
                row.architecture,
                str(row.n),
                median(row.netns),
                median(row.sim),
                "-" if ratio is None else f"{ratio:.3f}",
            )
        )
    return out
