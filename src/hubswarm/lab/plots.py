"""The report's figures: PNG plots of the runs, drawn with matplotlib's Agg canvas.

Each plot function takes every run and one scenario's name, and returns the path it wrote,
or None when the scenario has nothing to draw (one N only, no faults, no server bytes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hubswarm.lab.metrics import RunResult, summarize

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["PLOTS", "Plot"]

_SWARMS = ("p2p", "hybrid")
_COLORS = {"client-server": "tab:blue", "hybrid": "tab:green", "p2p": "tab:orange"}


# Time against N goes on log axes once N spans this factor (the sim's sweeps).
LOG_AXES_SPAN = 10


def _figure() -> Figure:
    # Imported here: matplotlib costs seconds to import, and every `hubswarm` command
    # loads this module through the CLI. The Agg canvas needs no display and no pyplot state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as _Figure

    fig = _Figure(figsize=(6.4, 4.2))
    FigureCanvasAgg(fig)
    return fig


def _save(
    fig: Figure,
    path: Path,
    *,
    x: str,
    y: str,
    title: str,
    top: float | None = None,
    small_legend: bool = False,
) -> Path:
    """Label the figure's one plot (axes from 0 to ``top``, if given), save it as a PNG."""
    (ax,) = fig.axes
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if top is not None:
        ax.set_ylim(0, top)
    ax.set_title(title)
    ax.legend(fontsize="small" if small_legend else None)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _plot_time_vs_n(results: Sequence[RunResult], scenario: str, path: Path) -> Path | None:
    runs = sorted((r for r in results if r.scenario == scenario), key=lambda r: r.n)
    ns = sorted({r.n for r in runs})
    if len(ns) < 2:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    how = "sim, virtual time" if any(r.emulation == "sim" for r in runs) else "measured"
    for arch in ("client-server", *_SWARMS):
        pts = [(r.n, summarize(r).last_completion) for r in runs if r.architecture == arch]
        pts = [(n, t) for n, t in pts if t is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), "o-", color=_COLORS[arch], label=f"{arch} ({how})")
    first = {r.n: summarize(r) for r in runs}
    ax.plot(ns, [first[n].bound_cs for n in ns], "--", color="tab:blue", label="D_cs bound")
    ax.plot(ns, [first[n].bound_p2p for n in ns], ":", color="tab:orange", label="D_p2p bound")
    if ns[-1] >= LOG_AXES_SPAN * ns[0]:
        # N over decades: N F / u_s is a straight line of slope 1, D_p2p flat.
        ax.set_xscale("log")
        ax.set_yscale("log")
    return _save(
        fig,
        path,
        x="clients N",
        y="time until all complete (s)",
        title=f"{scenario}: distribution time vs N",
    )


def _plot_cdf(results: Sequence[RunResult], scenario: str, path: Path) -> Path | None:
    runs = [r for r in results if r.scenario == scenario]
    fig = _figure()
    ax = fig.add_subplot()
    drawn = False
    for r in sorted(runs, key=lambda r: (r.architecture, r.n)):
        times = sorted(summarize(r).completion_times)
        if not times:
            continue
        ys = [(i + 1) / r.n for i in range(len(times))]
        ax.step(times, ys, where="post", label=f"{r.architecture} N={r.n}")
        drawn = True
    if not drawn:
        return None
    return _save(
        fig,
        path,
        x="completion time (s)",
        y="fraction of clients complete",
        title=f"{scenario}: completion-time CDF",
        top=1.02,
        small_legend=True,
    )


def _plot_faults(results: Sequence[RunResult], scenario: str, path: Path) -> Path | None:
    runs = [r for r in results if r.scenario == scenario and r.faults]
    if not runs:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    for r in runs:
        ends = sorted(c.end for c in r.clients if c.complete and c.end is not None)
        xs = [0.0, *ends, max([*ends, *(f.at for f in r.faults)]) + 1]
        ys = [0.0, *((i + 1) / r.n for i in range(len(ends))), len(ends) / r.n]
        ax.step(
            xs,
            ys,
            where="post",
            color=_COLORS.get(r.architecture),
            label=f"{r.architecture} N={r.n}",
        )
        for f in r.faults:
            ax.axvline(f.at, color="red", linestyle="--", alpha=0.6)
            ax.annotate(f.kind, (f.at, 0.95), color="red", fontsize="small")
    return _save(
        fig,
        path,
        x="time (s)",
        y="fraction of clients complete",
        title=f"{scenario}: completion around faults",
        top=1.05,
        small_legend=True,
    )


def _plot_server_bytes(results: Sequence[RunResult], scenario: str, path: Path) -> Path | None:
    runs = sorted(
        (r for r in results if r.scenario == scenario and r.server_bytes_sent is not None),
        key=lambda r: r.n,
    )
    if len({r.n for r in runs}) < 2:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    for arch in ("client-server", *_SWARMS):
        pts = [(r.n, (r.server_bytes_sent or 0) / 2**20) for r in runs if r.architecture == arch]
        if pts:
            ax.plot(*zip(*pts, strict=True), "o-", color=_COLORS[arch], label=arch)
    ns = sorted({r.n for r in runs})
    f = runs[0].file_size / 2**20
    ax.plot(ns, [n * f for n in ns], "--", color="gray", label="N × F")
    ax.plot(ns, [f for _ in ns], ":", color="gray", label="F (one copy)")
    return _save(
        fig,
        path,
        x="clients N",
        y="server bytes sent (MiB)",
        title=f"{scenario}: server upload (cost)",
    )


Plot = Callable[[Sequence[RunResult], str, Path], Path | None]
# File-name prefix -> plot: each scenario gets one file of each that has something to show.
PLOTS: tuple[tuple[str, Plot], ...] = (
    ("time-vs-n", _plot_time_vs_n),
    ("cdf", _plot_cdf),
    ("faults", _plot_faults),
    ("server-bytes", _plot_server_bytes),
)
