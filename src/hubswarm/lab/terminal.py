"""What the terminal shows of a campaign (pure): the runs to make with their expected cost,
for the progress bar's time left, and the compact summary printed at the end."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hubswarm.lab import bounds
from hubswarm.lab.render import BADGE_MARKS
from hubswarm.lab.rowspec import CLIENT_SERVER, RowSpec, Verdict
from hubswarm.lab.scenario import RunPlan

__all__ = ["START_COST", "PlannedRun", "run_weight", "summary_lines"]

# Seconds of set-up a netns or app run costs beyond its transfer (namespaces, processes,
# probes); a sim run's cost is its CPU work instead, ~ its virtual time × its hosts.
START_COST = 3.0


@dataclass(frozen=True, slots=True)
class PlannedRun:
    """A run the campaign will make, and how much of the campaign's time it should take."""

    index: int
    label: str
    weight: float


def run_weight(plan: RunPlan, architecture: str, mode: str) -> float:
    """The run's expected cost, from its bound: the bar's time left is the time so far
    scaled by the weight still to go. D_cs for client-server, D_p2p for the swarms."""
    s = plan.scenario
    d_min = min(plan.downloads) if plan.downloads else float("inf")
    if architecture == CLIENT_SERVER:
        bound = bounds.d_cs(plan.n, s.file_size, s.server_upload, d_min)
    else:
        bound = bounds.d_p2p(plan.n, s.file_size, s.server_upload, plan.uploads, d_min)
    if mode == "sim":
        return bound * (plan.n + 1)
    return bound + START_COST


def summary_lines(
    answered: Sequence[tuple[RowSpec, Sequence[Verdict]]], width: int = 14
) -> list[str]:
    """One line per row of the reference table: each architecture's headline and badge."""
    lines = []
    for spec, row in answered:
        cells = [
            f"{v.architecture} {v.headline} {BADGE_MARKS.get(v.level, '')} {v.level}"
            for v in row
            if v.level != "not measured" or v.headline != "-"
        ]
        lines.append(f"{spec.feature:<{width}}" + (" | ".join(cells) or "not measured"))
    return lines
