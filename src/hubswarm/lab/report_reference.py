"""Our swarm beside the reference client (issue 22): T / D_p2p per N for hubswarm's swarms
and libtorrent's on the same links, as the report's headline line and its own section.

The default set runs the ``libtorrent`` architecture in the acceptance sweep where its
bindings are installed (and the run is in netns); where they are not, the campaign records
why (a :class:`~hubswarm.lab.metrics.RunFailure`) and this section says so instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hubswarm.lab.formats import pct, secs
from hubswarm.lab.metrics import RunFailure, RunMetrics, RunResult, summarize
from hubswarm.lab.render import Block, Heading, Paragraph, Table

__all__ = ["OURS", "REFERENCE_CLIENT", "Side", "reference_blocks", "reference_line", "sides"]

REFERENCE_CLIENT = "libtorrent"
# Our swarms, as the report names them beside the reference client.
OURS = ("p2p", "hybrid")


@dataclass(frozen=True, slots=True)
class Side:
    """One N of a scenario: each swarm's metrics there (ours and the reference's)."""

    scenario: str
    n: int
    by_arch: dict[str, RunMetrics]

    def ratio(self, architecture: str) -> float | None:
        """T / D_p2p of ``architecture`` at this N (None: not run, or not every client done)."""
        m = self.by_arch.get(architecture)
        if m is None or m.all_complete_time is None:
            return None
        return m.all_complete_time / m.bound_p2p


def _sweep(results: Sequence[RunResult]) -> str | None:
    """The scenario where the reference client ran at the most N (the acceptance sweep)."""
    ns: dict[str, set[int]] = {}
    for r in results:
        if r.architecture == REFERENCE_CLIENT and not (r.rtt or r.loss):
            ns.setdefault(r.scenario, set()).add(r.n)
    return max(ns, key=lambda s: len(ns[s])) if ns else None


def sides(results: Sequence[RunResult]) -> list[Side]:
    """Per N of the reference client's sweep, our swarms' and its metrics, by N."""
    scenario = _sweep(results)
    if scenario is None:
        return []
    runs = [r for r in results if r.scenario == scenario and not (r.rtt or r.loss)]
    ns = sorted({r.n for r in runs if r.architecture == REFERENCE_CLIENT})
    out = []
    for n in ns:
        by_arch = {
            r.architecture: summarize(r)
            for r in runs
            if r.n == n and r.architecture in (*OURS, REFERENCE_CLIENT)
        }
        out.append(Side(scenario, n, by_arch))
    return out


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _ahead(found: Sequence[Side]) -> tuple[list[Side], list[Side]]:
    """(the N where our p2p's T / D_p2p is at or below libtorrent's, the N where it is not);
    N without both numbers are in neither."""
    both = [s for s in found if None not in (s.ratio("p2p"), s.ratio(REFERENCE_CLIENT))]
    ahead = [s for s in both if (s.ratio("p2p") or 0) <= (s.ratio(REFERENCE_CLIENT) or 0)]
    return ahead, [s for s in both if s not in ahead]


def _missing(failures: Sequence[RunFailure]) -> str | None:
    """Why the reference client was not measured, if the campaign wanted it and could not."""
    reasons = [f.error for f in failures if f.architecture == REFERENCE_CLIENT]
    return reasons[0] if reasons else None


def reference_line(results: Sequence[RunResult], failures: Sequence[RunFailure]) -> str | None:
    """One line for the report's answer: our swarm's T / D_p2p against libtorrent's per N."""
    found = sides(results)
    if not found:
        why = _missing(failures)
        return None if why is None else f"The reference client was not measured: {why}."
    ns = ", ".join(str(s.n) for s in found)
    ours = ", ".join(_ratio(s.ratio("p2p")) for s in found)
    theirs = ", ".join(_ratio(s.ratio(REFERENCE_CLIENT)) for s in found)
    ahead, behind = _ahead(found)
    line = (
        f"Our swarm against libtorrent on the same links ({found[0].scenario}, N = {ns}): "
        f"T / D_p2p {ours} against {theirs}; ours at or below libtorrent's at "
        f"{len(ahead)} of {len(ahead) + len(behind)} N"
    )
    if behind:
        line += " (not at " + ", ".join(f"N={s.n}" for s in behind) + ")"
    return line + "."


def _head(ours: Sequence[str]) -> tuple[str, ...]:
    return (
        "N",
        "D_p2p",
        *(f"hubswarm {a}: T (T / D_p2p)" for a in ours),
        "libtorrent: T (T / D_p2p)",
        "p2p ÷ libtorrent",
        "host CPU p2p / libtorrent",
    )


def _cell(side: Side, architecture: str) -> str:
    m = side.by_arch.get(architecture)
    if m is None:
        return "not run"
    if m.all_complete_time is None:
        return f"{m.completed}/{m.n} complete"
    return f"{secs(m.all_complete_time)} ({_ratio(side.ratio(architecture))})"


def _cpu(side: Side, results: Sequence[RunResult]) -> str:
    busy = {
        r.architecture: r.host_cpu_busy
        for r in results
        if r.scenario == side.scenario and r.n == side.n and not (r.rtt or r.loss)
    }
    return f"{pct(busy.get('p2p'))} / {pct(busy.get(REFERENCE_CLIENT))}"


def _settings(results: Sequence[RunResult]) -> list[str]:
    """The reference client's version and settings, as its runs noted them."""
    notes = [n for r in results if r.architecture == REFERENCE_CLIENT for n in r.notes]
    return [n for n in dict.fromkeys(notes) if "settings" in n]


def reference_blocks(results: Sequence[RunResult], failures: Sequence[RunFailure]) -> list[Block]:
    """The report's section: the table of T / D_p2p per N, the count, libtorrent's settings;
    or why libtorrent was not measured; nothing when no scenario asked for it."""
    found = sides(results)
    heading = Heading(2, "Our swarm and the reference client")
    if not found:
        why = _missing(failures)
        if why is None:
            return []
        return [heading, Paragraph([f"libtorrent was not measured: {why}."])]
    ours = [a for a in OURS if any(a in s.by_arch for s in found)]
    rows = []
    for s in found:
        ratio = None
        p2p, reference = s.ratio("p2p"), s.ratio(REFERENCE_CLIENT)
        if p2p is not None and reference:
            ratio = p2p / reference
        rows.append(
            (
                str(s.n),
                secs(next(iter(s.by_arch.values())).bound_p2p),
                *(_cell(s, a) for a in ours),
                _cell(s, REFERENCE_CLIENT),
                "-" if ratio is None else f"{ratio:.2f}",
                _cpu(s, results),
            )
        )
    ahead, behind = _ahead(found)
    verdict = (
        f"hubswarm's swarm (p2p, DHT only) took at most libtorrent's T / D_p2p at {len(ahead)} "
        f"of {len(ahead) + len(behind)} N"
    )
    if behind:
        verdict += "; not at " + ", ".join(f"N={s.n}" for s in behind)
    intro = (
        f"{found[0].scenario}: the same plan, links, seed placement and tracker timing for "
        "each; libtorrent's peers find each other through the hub's tracker (as the hybrid's), "
        "ours through the DHT (p2p) or the tracker and web seed (hybrid). Runs at 90 % host "
        "CPU or more measure the machine as much as the client (Python peers cost more CPU)."
    )
    return [
        heading,
        Paragraph([intro]),
        Table(_head(ours), tuple(rows), "reference"),
        Paragraph([verdict + "."]),
        *(Paragraph([f"Settings: {note}"]) for note in _settings(results)),
    ]
