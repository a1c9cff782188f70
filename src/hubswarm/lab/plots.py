"""The report's figures: PNG plots of the runs, drawn with matplotlib's Agg canvas.

Each plot function takes every run and one scenario's name, and returns the path it wrote,
or None when the scenario has nothing to draw (one N only, no faults, no server bytes, no
sweep over RTT or loss). In a scenario that sweeps RTT or loss, the figures over N and the
CDF show the sweep's first point (the smallest RTT and loss); T / bound against RTT and
against loss shows every point.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hubswarm.lab.metrics import RunResult, summarize

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["PLOTS", "Plot", "headline_figure", "sweep_scenario"]

_SWARMS = ("p2p", "hybrid", "libtorrent")
# libtorrent: the reference client (issue 22), beside our swarm on the same links.
_COLORS = {
    "client-server": "tab:blue",
    "hybrid": "tab:green",
    "p2p": "tab:orange",
    "libtorrent": "tab:purple",
}


# Time against N goes on log axes once N spans this factor (the sim's sweeps).
LOG_AXES_SPAN = 10


def _figure(width: float = 6.4) -> Figure:
    # Imported here: matplotlib costs seconds to import, and every `hubswarm` command
    # loads this module through the CLI. The Agg canvas needs no display and no pyplot state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as _Figure

    fig = _Figure(figsize=(width, 4.2))
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
    legend_outside: bool = False,
) -> Path:
    """Label the figure's one plot (axes from 0 to ``top``, if given), save it as a PNG."""
    (ax,) = fig.axes
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if top is not None:
        ax.set_ylim(0, top)
    ax.set_title(title)
    if legend_outside:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    else:
        ax.legend(fontsize="small" if small_legend else None)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _first_point(runs: Sequence[RunResult]) -> list[RunResult]:
    """The runs at a sweep's smallest (RTT, loss): all of them when there is no sweep."""
    if not runs:
        return []
    first = min((r.rtt, r.loss) for r in runs)
    return [r for r in runs if (r.rtt, r.loss) == first]


def _plot_time_vs_n(results: Sequence[RunResult], scenario: str, path: Path) -> Path | None:
    runs = sorted(_first_point([r for r in results if r.scenario == scenario]), key=lambda r: r.n)
    ns = sorted({r.n for r in runs})
    if len(ns) < 2:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    how = "sim, virtual time" if any(r.emulation == "sim" for r in runs) else "measured"
    _time_lines(ax, runs, f" ({how})")
    return _save(
        fig,
        path,
        x="clients N",
        y="time until all complete (s)",
        title=f"{scenario}: distribution time vs N",
    )


def _plot_cdf(results: Sequence[RunResult], scenario: str, path: Path) -> Path | None:
    runs = _first_point([r for r in results if r.scenario == scenario])
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
        _first_point(
            [r for r in results if r.scenario == scenario and r.server_bytes_sent is not None]
        ),
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


# Ticks of a log axis of T / bound.
_RATIO_TICKS = (1, 1.5, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100)


def _own_ratio(run: RunResult) -> float | None:
    """T / the run's own bound (D_cs for client-server, D_p2p for swarms); None unless every
    client completed."""
    m = summarize(run)
    if m.all_complete_time is None:
        return None
    bound = m.bound_cs if run.architecture == "client-server" else m.bound_p2p
    return m.all_complete_time / bound


def _log_if_wide(ax: Any, which: str, values: Sequence[float], ticks: Sequence[float]) -> None:
    """A log axis when the positive values span LOG_AXES_SPAN or more (symlog, linear up to
    the smallest positive value, when 0 is among them, as a lossless run is), its ticks
    ``ticks`` written as plain numbers."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    positive = [v for v in values if v > 0]
    if len(positive) < 2 or max(positive) < LOG_AXES_SPAN * min(positive):
        return
    set_scale, axis = (ax.set_xscale, ax.xaxis) if which == "x" else (ax.set_yscale, ax.yaxis)
    if len(positive) < len(values):
        set_scale("symlog", linthresh=min(positive))
    else:
        set_scale("log")
    axis.set_ticks(list(ticks))
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


@dataclass(frozen=True, slots=True)
class _Swept:
    """A swept parameter of the network, as the sweep figures show it."""

    what: str  # in the title: "T / bound against RTT"
    of: Callable[[RunResult], float]  # a run's value, in the axis' unit
    label: str  # the axis
    legend: str  # a line at one value: "loss {:g}%"


_RTT = _Swept(
    "RTT", lambda r: 1000 * r.rtt, "round-trip time between two hosts (ms)", "RTT {:g} ms"
)
_LOSS = _Swept("loss", lambda r: 100 * r.loss, "loss rate of a path (%)", "loss {:g}%")


def _plot_sweep(
    results: Sequence[RunResult], scenario: str, path: Path, *, x: _Swept, other: _Swept
) -> Path | None:
    """T / own bound against ``x`` (ms of RTT, % of loss): a line per architecture, N and
    value of ``other``, shades of the architecture's colour."""
    from matplotlib import colormaps

    runs = [r for r in results if r.scenario == scenario]
    xs = sorted({x.of(r) for r in runs})
    if len(xs) < 2:
        return None
    several_n = len({r.n for r in runs}) > 1
    several_other = len({other.of(r) for r in runs}) > 1
    fig = _figure(width=8.4)
    ax = fig.add_subplot()
    ratios: list[float] = []
    for arch, cmap in (("client-server", "Blues"), ("hybrid", "Greens"), ("p2p", "Oranges")):
        mine = sorted((r for r in runs if r.architecture == arch), key=lambda r: (r.n, other.of(r)))
        lines = [list(g) for _, g in groupby(mine, key=lambda r: (r.n, other.of(r)))]
        for i, line in enumerate(lines):
            pts = [(x.of(r), q) for r in line if (q := _own_ratio(r)) is not None]
            if not pts:
                continue
            ratios += [q for _, q in pts]
            label = arch + (f" N={line[0].n}" if several_n else "")
            if several_other:
                label += ", " + other.legend.format(other.of(line[0]))
            shade = colormaps[cmap](0.95 - 0.5 * i / max(len(lines) - 1, 1))
            ax.plot(*zip(*sorted(pts), strict=True), "o-", color=shade, label=label)
    if not ratios:
        return None
    ax.axhline(1.0, color="gray", linestyle="--", label="the bound")
    _log_if_wide(ax, "x", xs, xs)
    top = max(ratios)
    _log_if_wide(ax, "y", [1.0, *ratios], [t for t in _RATIO_TICKS if t <= top * 1.1])
    return _save(
        fig,
        path,
        x=x.label,
        y="T / own bound (D_cs, D_p2p)",
        title=f"{scenario}: T / bound against {x.what} (sim)",
        legend_outside=True,
    )


Plot = Callable[[Sequence[RunResult], str, Path], Path | None]
# File-name prefix -> plot: each scenario gets one file of each that has something to show.
PLOTS: tuple[tuple[str, Plot], ...] = (
    ("time-vs-n", _plot_time_vs_n),
    ("cdf", _plot_cdf),
    ("faults", _plot_faults),
    ("server-bytes", _plot_server_bytes),
    ("t-vs-rtt", partial(_plot_sweep, x=_RTT, other=_LOSS)),
    ("t-vs-loss", partial(_plot_sweep, x=_LOSS, other=_RTT)),
)


# --- the headline: the seed's question in one picture ----------------------------------------


def sweep_scenario(results: Sequence[RunResult]) -> str | None:
    """The scenario that answers "how does it scale": client-server measured at the most N."""
    ns: dict[str, set[int]] = {}
    for r in _first_point(results):
        ns.setdefault(r.scenario, set()).add(r.n)
    cs = {r.scenario for r in results if r.architecture == "client-server"}
    ranked = sorted(ns, key=lambda s: (s in cs, len(ns[s]), max(ns[s])), reverse=True)
    return ranked[0] if ranked and len(ns[ranked[0]]) >= 2 else None


def _arches(runs: Sequence[RunResult]) -> list[str]:
    known = ["client-server", *_SWARMS]
    return [
        a
        for a in dict.fromkeys([*known, *(r.architecture for r in runs)])
        if any(r.architecture == a for r in runs)
    ]


def _time_lines(ax: Any, runs: Sequence[RunResult], suffix: str = "") -> None:
    """T against N for each architecture, D_cs and D_p2p; log axes over decades of N."""
    ns = sorted({r.n for r in runs})
    for arch in _arches(runs):
        pts = [(r.n, summarize(r).last_completion) for r in runs if r.architecture == arch]
        pts = sorted((n, t) for n, t in pts if t is not None)
        if pts:
            ax.plot(*zip(*pts, strict=True), "o-", color=_COLORS.get(arch), label=arch + suffix)
    first = {r.n: summarize(r) for r in runs}
    ax.plot(ns, [first[n].bound_cs for n in ns], "--", color="tab:blue", label="D_cs bound")
    ax.plot(ns, [first[n].bound_p2p for n in ns], ":", color="tab:orange", label="D_p2p bound")
    if ns[-1] >= LOG_AXES_SPAN * ns[0]:
        # N over decades: N F / u_s is a straight line of slope 1, D_p2p flat.
        from matplotlib.ticker import NullFormatter, ScalarFormatter

        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_formatter(ScalarFormatter())
            axis.set_minor_formatter(NullFormatter())


def _headline_time(ax: Any, runs: Sequence[RunResult]) -> None:
    _time_lines(ax, runs)
    ax.set(xlabel="clients N", ylabel="time until all complete (s)", title="distribution time")
    ax.legend(fontsize="small")


def _headline_bytes(ax: Any, runs: Sequence[RunResult]) -> None:
    # A run where no client received anything (it could not start) has no cost to show.
    runs = [r for r in runs if r.server_bytes_sent is not None and summarize(r).completed]
    for arch in _arches(runs):
        pts = sorted(
            (r.n, (r.server_bytes_sent or 0) / r.file_size) for r in runs if r.architecture == arch
        )
        ax.plot(*zip(*pts, strict=True), "o-", color=_COLORS.get(arch), label=arch)
    ns = sorted({r.n for r in runs})
    ax.plot(ns, ns, "--", color="gray", label="N copies")
    ax.set(xlabel="clients N", ylabel="server upload (copies of F)", title="the server's bytes")
    ax.legend(fontsize="small")


def _headline_kill(ax: Any, results: Sequence[RunResult]) -> None:
    runs = [r for r in results if any(f.kind == "kill_hub" for f in r.faults)]
    if not runs:
        ax.text(0.5, 0.5, "no kill_hub run", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    at = min(f.at for r in runs for f in r.faults if f.kind == "kill_hub")
    for r in sorted(runs, key=lambda r: _arches(runs).index(r.architecture)):
        ends = sorted(c.end for c in r.clients if c.complete and c.end is not None)
        last = max([*ends, at]) * 1.1
        xs = [0.0, *ends, last]
        ys = [0.0, *((i + 1) / r.n for i in range(len(ends))), len(ends) / r.n]
        ax.step(xs, ys, where="post", color=_COLORS.get(r.architecture), label=r.architecture)
    ax.axvline(at, color="red", linestyle="--", alpha=0.7)
    ax.annotate("hub killed", (at, 1.0), color="red", fontsize="small")
    ax.set(xlabel="time (s)", ylabel="fraction of clients complete", title="kill the hub")
    ax.set_ylim(0, 1.08)
    ax.legend(fontsize="small")


def headline_figure(results: Sequence[RunResult], path: Path) -> Path | None:
    """Distribution time against N with both bounds, the server's bytes against N, and the
    kill-the-hub run: the report's first picture. None without a sweep over N."""
    scenario = sweep_scenario(results)
    if scenario is None:
        return None
    runs = _first_point([r for r in results if r.scenario == scenario])
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as _Figure

    fig = _Figure(figsize=(13.5, 3.9))
    FigureCanvasAgg(fig)
    left, middle, right = fig.subplots(1, 3)
    _headline_time(left, runs)
    _headline_bytes(middle, runs)
    _headline_kill(right, results)
    for ax in (left, middle, right):
        ax.grid(alpha=0.3)
    fig.suptitle(f"client-server vs swarm ({scenario}; {runs[0].emulation})", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path
