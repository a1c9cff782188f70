"""Write a results folder: runs.json, report.md, report.html and PNG plots.

The centre is the reference comparison table (client-server vs peer-to-peer: Architecture,
Data Storage, Scalability, Reliability, Cost, Security, Performance), each cell replaced by
a measurement and a one-line verdict. Architectures not measured yet are shown as such.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from hubswarm.lab.hostload import CPU_BOUND
from hubswarm.lab.metrics import RunFailure, RunMetrics, RunResult, summarize

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["REFERENCE", "Report", "TableRow", "build_table", "load_runs", "write_report"]

# The reference text's table (/work/shared/000_2c81284a5f55602d.txt): (feature, CS, P2P).
REFERENCE = (
    ("Architecture", "Centralized with dedicated servers", "Decentralized with equal peers"),
    ("Data Storage", "Centralized on servers", "Distributed across all peers"),
    ("Scalability", "Limited by server capacity", "Scales with number of peers"),
    ("Reliability", "Single point of failure", "Fault-tolerant, no single failure point"),
    ("Cost", "High (dedicated server infrastructure)", "Low (distributed resources)"),
    ("Security", "Centralized control, easier to secure", "Harder to control, security challenges"),
    (
        "Performance",
        "Consistent, controlled by server specs",
        "Variable, depends on peer availability",
    ),
)
_P2P = ("p2p", "hybrid")
_NOT_YET = "not measured yet"


@dataclass(frozen=True, slots=True)
class TableRow:
    """One feature: the reference claims, the measured cells and a verdict."""

    feature: str
    reference_cs: str
    reference_p2p: str
    cs: str
    p2p: str
    hybrid: str
    verdict: str


@dataclass(frozen=True, slots=True)
class Report:
    """Where a report was written."""

    folder: Path
    table: tuple[TableRow, ...]
    plots: tuple[Path, ...]


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def _s(t: float | None) -> str:
    return "-" if t is None else f"{t:.2f} s"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def _by_arch(metrics: Sequence[RunMetrics], arch: str) -> list[RunMetrics]:
    return [m for m in metrics if m.architecture == arch]


def _sweep(ms: list[RunMetrics]) -> list[RunMetrics]:
    """The flash-crowd-like sweep: the scenario with the most distinct N values."""
    by_scenario: dict[str, list[RunMetrics]] = {}
    for m in ms:
        by_scenario.setdefault(m.scenario, []).append(m)
    if not by_scenario:
        return []
    best = max(by_scenario.values(), key=lambda v: len({m.n for m in v}))
    return sorted(best, key=lambda m: m.n)


# --- one cell per (feature, architecture) --------------------------------------------------------


def _cell(feature: str, ms: list[RunMetrics], runs: list[RunResult]) -> str:
    if not ms:
        return _NOT_YET
    if feature == "Architecture":
        shares = [m.server_share for m in ms if m.server_share is not None]
        if not shares:
            return "no bytes received"
        share = sum(shares) / len(shares)
        return f"{_pct(share)} of received bytes came from the server, {_pct(1 - share)} from peers"
    if feature == "Data Storage":
        # Fault runs end with the server gone: they belong to Reliability, not here.
        ends = [m.min_replicas_end for m in ms if m.min_replicas_end is not None]
        calm = [
            m.min_replicas_end
            for m in ms
            if m.min_replicas_end is not None and not m.fault_completion
        ]
        if not ends:
            return "no replica samples"
        return (
            f"live copies of the rarest piece at the end of fault-free runs: "
            f"{min(calm, default=0)}..{max(calm, default=0)} (0 after kill_hub: {min(ends) == 0})"
        )
    if feature == "Scalability":
        sweep = [m for m in _sweep(ms) if m.last_completion is not None]
        if len(sweep) < 2:
            return "no sweep over N"
        a, b = sweep[0], sweep[-1]
        assert a.last_completion is not None
        assert b.last_completion is not None
        bound = b.bound_cs if b.architecture == "client-server" else b.bound_p2p
        text = (
            f"N {a.n}→{b.n} (×{b.n / a.n:.0f}): T {_s(a.last_completion)}→{_s(b.last_completion)} "
            f"(×{b.last_completion / a.last_completion:.1f}); at N={b.n} T/bound = "
            f"{b.last_completion / bound:.2f}"
        )
        if b.architecture != "client-server":
            ratios = [m.last_completion / m.bound_p2p for m in sweep if m.last_completion]
            text += f"; T/D_p2p over the sweep {min(ratios):.2f}..{max(ratios):.2f}"
        return text
    if feature == "Reliability":
        fault = [
            (m, f) for m in ms for f in m.fault_completion if f[0] in ("kill_hub", "kill_peers")
        ]
        if not fault:
            return "no fault scenario run"
        return "; ".join(
            f"{kind} at {at:g} s: {_pct(frac)} of pending clients still completed (N={m.n})"
            for m, (kind, at, frac) in fault
        )
    if feature == "Cost":
        with_bytes = [m for m in ms if m.server_bytes_sent is not None]
        if not with_bytes:
            return "server bytes unknown"
        big = max(with_bytes, key=lambda m: m.n)
        run = next(r for r in runs if r.scenario == big.scenario and r.n == big.n)
        assert big.server_bytes_sent is not None
        copies = big.server_bytes_sent / run.file_size
        return (
            f"server sent {_mib(big.server_bytes_sent)} = {copies:.1f} copies of F for N={big.n}"
            f" ({big.scenario}); upload utilization {_pct(big.server_utilization)}"
        )
    if feature == "Security":
        probes = [p for r in runs for p in r.security if not p.authorized]
        controls = [p for r in runs for p in r.security if p.authorized]
        if not probes:
            return "no probe run"
        worst = max(probes, key=lambda p: p.bytes_obtained)
        kinds = ", ".join(dict.fromkeys(p.description.removeprefix("client with ") for p in probes))
        control = ""
        if controls:
            full = all(c.bytes_obtained == c.file_size for c in controls)
            control = "; control with a valid token got " + ("all of it" if full else "LESS")
        return (
            f"unauthorized clients ({kinds}) obtained at most {worst.bytes_obtained} of "
            f"{worst.file_size} bytes{control}"
        )
    if feature == "Performance":
        spread = [m for m in ms if m.p50 is not None and m.jain is not None]
        if not spread:
            return "no completed clients"
        least = min(spread, key=lambda m: m.jain or 1.0)
        sweep = [m for m in _sweep(ms) if m.completion_times]
        widest = ""
        if sweep:
            big = sweep[-1]
            gap = max(big.completion_times) - min(big.completion_times)
            widest = (
                f"spread (last - first completion) in {big.scenario} N={big.n}: {_s(gap)} "
                f"({_s(min(big.completion_times))}..{_s(max(big.completion_times))}); "
            )
        return widest + (
            f"worst fairness in {least.scenario} N={least.n}: p10/p50/p90 {_s(least.p10)} / "
            f"{_s(least.p50)} / {_s(least.p90)}, Jain {least.jain:.2f}, "
            f"max/min {least.max_over_min or math.nan:.1f}"
        )
    raise ValueError(feature)


def _verdict(feature: str, cs: list[RunMetrics], p2p: list[RunMetrics]) -> str:
    return _verdict_cs(feature, cs) + "; " + _verdict_p2p(feature, p2p)


def _verdict_cs(feature: str, cs: list[RunMetrics]) -> str:
    if not cs:
        return "client-server not measured"
    if feature == "Architecture":
        share = [m.server_share for m in cs if m.server_share is not None]
        ok = bool(share) and min(share) > 0.99
        base = (
            "confirmed for client-server: every byte from the server"
            if ok
            else "check: CS clients got bytes elsewhere"
        )
    elif feature == "Data Storage":
        ends = [
            m.min_replicas_end
            for m in cs
            if m.min_replicas_end is not None and not m.fault_completion
        ]
        base = (
            "confirmed: one serving copy (the server)"
            if ends and max(ends) <= 1
            else "check replicas"
        )
    elif feature == "Scalability":
        sweep = [m for m in _sweep(cs) if m.last_completion is not None]
        if len(sweep) >= 2 and sweep[0].last_completion and sweep[-1].last_completion:
            grow = sweep[-1].last_completion / sweep[0].last_completion
            ratio = sweep[-1].n / sweep[0].n
            base = (
                f"confirmed: CS time grows ~linearly with N (×{grow:.1f} for ×{ratio:.0f})"
                if grow > 0.5 * ratio
                else f"CS time grew only ×{grow:.1f} for ×{ratio:.0f} N: server not the bottleneck"
            )
        else:
            base = "no sweep"
    elif feature == "Reliability":
        fracs = [f[2] for m in cs for f in m.fault_completion if f[0] == "kill_hub"]
        if not fracs:
            base = "no kill_hub run"
        elif max(fracs) == 0:
            base = "confirmed: killing the hub stopped every pending client"
        else:
            base = f"partly: {_pct(max(fracs))} still completed after kill_hub"
    elif feature == "Cost":
        with_bytes = [m for m in cs if m.server_bytes_sent is not None]
        base = (
            "confirmed: CS server upload = N × F (cost grows with N)"
            if with_bytes
            else "server bytes unknown"
        )
    elif feature == "Security":
        probes = [m.unauthorized_bytes for m in cs if m.unauthorized_bytes is not None]
        if not probes:
            base = "no probe"
        elif max(probes) == 0:
            base = "confirmed: the hub gave 0 bytes without a valid token"
        else:
            base = f"REFUTED: an unauthorized client obtained {max(probes)} bytes"
    elif feature == "Performance":
        jains = [m.jain for m in cs if m.jain is not None]
        base = (
            f"CS Jain index ≥ {min(jains):.2f}: "
            + ("consistent" if min(jains) > 0.9 else "not consistent")
            if jains
            else "no data"
        )
    else:
        raise ValueError(feature)
    return base


def _verdict_p2p(feature: str, p2p: list[RunMetrics], who: str = "P2P") -> str:
    return _verdict_swarm(feature, p2p).replace("P2P", who)


def _verdict_swarm(feature: str, p2p: list[RunMetrics]) -> str:
    if not p2p:
        return "P2P not measured"
    if feature == "Architecture":
        share = [m.server_share for m in p2p if m.server_share is not None]
        mean = sum(share) / len(share) if share else 1.0
        return (
            f"P2P confirmed: peers supplied {_pct(1 - mean)} of the bytes"
            if mean < 0.5
            else f"P2P: the server still supplied {_pct(mean)}"
        )
    if feature == "Data Storage":
        ends = [
            m.min_replicas_end
            for m in p2p
            if m.min_replicas_end is not None and not m.fault_completion
        ]
        return (
            f"P2P confirmed: up to {max(ends)} live copies of every piece "
            f"(down to {min(ends)} when peers leave)"
            if ends and max(ends) > 1
            else "P2P: no spread of copies measured"
        )
    if feature == "Scalability":
        sweep = [m for m in _sweep(p2p) if m.last_completion]
        if len(sweep) < 2 or not sweep[0].last_completion or not sweep[-1].last_completion:
            return "P2P: no sweep"
        grow = sweep[-1].last_completion / sweep[0].last_completion
        ratio = sweep[-1].n / sweep[0].n
        peak = max(m.last_completion / m.bound_p2p for m in sweep if m.last_completion)
        if grow < 0.5 * ratio and peak <= 1.3:
            return f"P2P confirmed: time ×{grow:.1f} for ×{ratio:.0f} N, within 1.3× of D_p2p"
        if grow < 0.5 * ratio:
            return (
                f"P2P partly confirmed: time ×{grow:.1f} for ×{ratio:.0f} N (sublinear), "
                f"but up to {peak:.1f}× D_p2p (target 1.3×)"
            )
        return f"P2P NOT confirmed: time ×{grow:.1f} for ×{ratio:.0f} N, up to {peak:.1f}× D_p2p"
    if feature == "Reliability":
        fracs = [f[2] for m in p2p for f in m.fault_completion if f[0] == "kill_hub"]
        if not fracs:
            return "P2P: no kill_hub run"
        if min(fracs) >= 1.0:
            return "P2P confirmed: every pending client completed after kill_hub"
        word = "partly confirmed" if min(fracs) > 0 else "NOT confirmed"
        return f"P2P {word}: {_pct(min(fracs))} of pending clients completed after kill_hub"
    if feature == "Cost":
        with_bytes = [m for m in p2p if m.server_bytes_sent is not None and m.completed == m.n]
        if not with_bytes:
            return "P2P: server bytes unknown"
        big = max(with_bytes, key=lambda m: m.n)
        assert big.server_bytes_sent is not None
        copies = big.server_bytes_sent / big.file_size
        word = "confirmed" if copies < big.n / 2 else "NOT confirmed"
        return f"P2P {word}: the server sent {copies:.1f} copies of F for N={big.n}"
    if feature == "Security":
        got = [m for m in p2p if m.unauthorized_bytes is not None]
        if not got:
            return "P2P: probe pending"
        worst = max(got, key=lambda m: m.unauthorized_bytes or 0)
        everything = worst.unauthorized_bytes == worst.file_size
        return (
            "P2P confirmed: a peer with only the magnet link got the whole file"
            if everything
            else f"P2P: an outsider obtained {worst.unauthorized_bytes} bytes"
        )
    jains = [m.jain for m in p2p if m.jain is not None]
    if not jains:
        return "P2P: no data"
    if min(jains) > 0.9:
        return f"P2P Jain index ≥ {min(jains):.2f}: completion times even, 'variable' not seen"
    return f"P2P confirmed: variable (Jain index down to {min(jains):.2f})"


_CORRUPT = re.compile(
    r"(\d+) bad pieces detected, (\d+) bans by honest peers, (\d+)/(\d+) honest clients verified"
)


def _with_corrupt(value: str, verdict: str, runs: list[RunResult]) -> tuple[str, str]:
    """Add the corrupt_peer fault's outcome (detected, banned, still verified) to a cell."""
    found = [
        m
        for r in runs
        for f in r.faults
        if f.kind == "corrupt_peer"
        for m in [_CORRUPT.search(f.detail)]
    ]
    seen = [m for m in found if m is not None]
    if not seen:
        return value, verdict
    bad = sum(int(m.group(1)) for m in seen)
    bans = sum(int(m.group(2)) for m in seen)
    ok = sum(int(m.group(3)) for m in seen)
    honest = sum(int(m.group(4)) for m in seen)
    value += f"; corrupt peer: {bad} bad pieces detected, {bans} bans, "
    value += f"{ok}/{honest} honest clients verified"
    good = bad > 0 and bans > 0 and ok == honest
    verdict += (
        "; a corrupting peer was detected, banned and did not stop the others"
        if good
        else f"; corrupt peer: detection {'seen' if bad else 'NOT seen'}, {ok}/{honest} verified"
    )
    return value, verdict


def build_table(results: Sequence[RunResult]) -> tuple[TableRow, ...]:
    """The reference table: in every measured cell a value and a one-line verdict."""
    metrics = [summarize(r) for r in results]
    rows = []
    for feature, ref_cs, ref_p2p in REFERENCE:
        cells = {}
        for arch in ("client-server", *_P2P):
            runs = [r for r in results if r.architecture == arch]
            ms = _by_arch(metrics, arch)
            value = _cell(feature, ms, runs)
            if arch == "client-server":
                verdict = _verdict_cs(feature, ms)
            else:
                verdict = _verdict_p2p(feature, ms, "P2P" if arch == "p2p" else "hybrid")
            if feature == "Security" and arch != "client-server":
                value, verdict = _with_corrupt(value, verdict, runs)
            cells[arch] = f"{value}. Verdict: {verdict}" if ms else value
        rows.append(
            TableRow(
                feature,
                ref_cs,
                ref_p2p,
                cells["client-server"],
                cells["p2p"],
                cells["hybrid"],
                _verdict(feature, _by_arch(metrics, "client-server"), _by_arch(metrics, "p2p")),
            )
        )
    return tuple(rows)


# --- plots -------------------------------------------------------------------------------------

_COLORS = {"client-server": "tab:blue", "hybrid": "tab:green", "p2p": "tab:orange"}


def _figure() -> Figure:
    # Imported here: matplotlib costs seconds to import, and every `hubswarm` command
    # loads this module through the CLI. The Agg canvas needs no display and no pyplot state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as _Figure

    fig = _Figure(figsize=(6.4, 4.2))
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
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
    for arch in ("client-server", *_P2P):
        pts = [(r.n, summarize(r).last_completion) for r in runs if r.architecture == arch]
        pts = [(n, t) for n, t in pts if t is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), "o-", color=_COLORS[arch], label=f"{arch} (measured)")
    first = {r.n: summarize(r) for r in runs}
    ax.plot(ns, [first[n].bound_cs for n in ns], "--", color="tab:blue", label="D_cs bound")
    ax.plot(ns, [first[n].bound_p2p for n in ns], ":", color="tab:orange", label="D_p2p bound")
    ax.set_xlabel("clients N")
    ax.set_ylabel("time until all complete (s)")
    ax.set_title(f"{scenario}: distribution time vs N")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


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
    ax.set_xlabel("completion time (s)")
    ax.set_ylabel("fraction of clients complete")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{scenario}: completion-time CDF")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return _save(fig, path)


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
    ax.set_xlabel("time (s)")
    ax.set_ylabel("fraction of clients complete")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{scenario}: completion around faults")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _plot_server_bytes(results: Sequence[RunResult], scenario: str, path: Path) -> Path | None:
    runs = sorted(
        (r for r in results if r.scenario == scenario and r.server_bytes_sent is not None),
        key=lambda r: r.n,
    )
    if len({r.n for r in runs}) < 2:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    for arch in ("client-server", *_P2P):
        pts = [(r.n, (r.server_bytes_sent or 0) / 2**20) for r in runs if r.architecture == arch]
        if pts:
            ax.plot(*zip(*pts, strict=True), "o-", color=_COLORS[arch], label=arch)
    ns = sorted({r.n for r in runs})
    f = runs[0].file_size / 2**20
    ax.plot(ns, [n * f for n in ns], "--", color="gray", label="N × F")
    ax.plot(ns, [f for _ in ns], ":", color="gray", label="F (one copy)")
    ax.set_xlabel("clients N")
    ax.set_ylabel("server bytes sent (MiB)")
    ax.set_title(f"{scenario}: server upload (cost)")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


# --- writers -----------------------------------------------------------------------------------


def _run_rows(results: Sequence[RunResult]) -> list[list[str]]:
    rows = []
    for r in results:
        m = summarize(r)
        bound = m.bound_cs if r.architecture == "client-server" else m.bound_p2p
        # The bound is for everyone completing: a run where some clients left or failed has
        # no distribution time to compare with it.
        t_all = m.all_complete_time
        # And T - bound: the swarm's excess is mostly a fixed time (start-up, last pieces),
        # the same whatever F (examples/lab/n8-file-*.toml), which a ratio hides.
        ratio = "-" if t_all is None else f"{t_all / bound:.2f} ({t_all - bound:+.2f} s)"
        flag = " ⚠ below bound" if m.below_bound else ""
        busy = r.host_cpu_busy
        cpu = "-" if busy is None else f"{100 * busy:.0f}%"
        if busy is not None and busy >= CPU_BOUND:
            cpu += " ⚠ CPU-bound"
        first = r.first_copy_at
        # One copy through the server's link, F / u_s: what the seed alone needs to send.
        one_copy = r.file_size / r.server_upload
        first_copy = "-" if first is None else f"{first:.2f} s ({first / one_copy:.2f}× F/u_s)"
        rows.append(
            [
                r.scenario,
                r.architecture,
                str(r.n),
                f"{m.completed}/{r.n}",
                _s(m.all_complete_time) + flag,
                f"{m.bound_cs:.2f} s",
                f"{m.bound_p2p:.2f} s",
                ratio,
                first_copy,
                "-" if m.server_bytes_sent is None else _mib(m.server_bytes_sent),
                _pct(m.server_utilization),
                "-" if m.jain is None else f"{m.jain:.3f}",
                "-" if m.efficiency is None else f"{m.efficiency:.2f}",
                cpu,
                r.emulation,
            ]
        )
    return rows


_RUN_HEAD = [
    "scenario",
    "architecture",
    "N",
    "complete",
    "T all complete",
    "D_cs",
    "D_p2p",
    "T/own bound (T − bound)",
    "every piece out",
    "server bytes",
    "server util.",
    "Jain",
    "eta",
    "host CPU busy",
    "emulation",
]


def _md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def esc(s: str) -> str:
        return s.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(esc(h) for h in head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(head: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f'<table class="{cls}"><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>'


_CSS = """
body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.3rem .5rem;vertical-align:top;text-align:left}
th{background:#f0f0f0} .ref{color:#666;font-style:italic}
figure{margin:1.5rem 0} figcaption{font-size:.85rem;color:#555}
.note{background:#fff8e0;border-left:4px solid #e0b000;padding:.4rem .8rem}
"""


def write_report(
    results: Sequence[RunResult],
    out_root: Path,
    *,
    failures: Sequence[RunFailure] = (),
    notes: Sequence[str] = (),
    now: datetime | None = None,
) -> Report:
    """Write ``out_root/<UTC timestamp>/`` with runs.json, report.md, report.html and plots."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    folder = out_root / stamp
    suffix = 1
    while folder.exists():
        folder = out_root / f"{stamp}-{suffix}"
        suffix += 1
    (folder / "scenarios").mkdir(parents=True)
    scenario_links: dict[str, str] = {}
    sources = [(r.scenario, r.scenario_path) for r in results]
    sources += [(f.scenario, f.scenario_path) for f in failures]
    for scenario, scenario_path in sources:
        if scenario_path and scenario not in scenario_links:
            src = Path(scenario_path)
            if src.is_file():
                shutil.copyfile(src, folder / "scenarios" / src.name)
                scenario_links[scenario] = f"scenarios/{src.name}"
    all_notes = list(dict.fromkeys([*notes, *(n for r in results for n in r.notes)]))
    bound = [r for r in results if r.host_cpu_busy is not None and r.host_cpu_busy >= CPU_BOUND]
    if bound:
        runs = ", ".join(f"{r.scenario} N={r.n} {r.architecture}" for r in bound)
        all_notes.append(
            f"CPU-bound (host cores >= {100 * CPU_BOUND:.0f}% busy): {runs}. Their times "
            "measure this host's CPU, not the emulated links: read them as upper limits."
        )
    # The top keeps the emulation facts; per-run measurement lines go to "Details".
    top_notes = [n for n in all_notes if not _is_detail(n)]
    details = [
        f"{r.scenario} N={r.n} {r.architecture}: {n.removeprefix('measured: ')}"
        for r in results
        for n in r.notes
        if _is_detail(n)
    ]
    details += [
        f"{r.scenario} N={r.n} {r.architecture}: fault {f.kind} at {f.at:g} s: {f.detail}"
        for r in results
        for f in r.faults
    ]
    (folder / "runs.json").write_text(
        json.dumps(
            {
                "generated_at": stamp,
                "notes": all_notes,
                "runs": [r.to_json() for r in results],
                "failures": [asdict(f) for f in failures],
                "metrics": [asdict(summarize(r)) for r in results],
            },
            indent=1,
            default=str,
        ),
        encoding="utf-8",
    )
    table = build_table(results)
    plots: list[tuple[Path, str]] = []
    for scenario in dict.fromkeys(r.scenario for r in results):
        for kind, fn in (
            ("time-vs-n", _plot_time_vs_n),
            ("cdf", _plot_cdf),
            ("faults", _plot_faults),
            ("server-bytes", _plot_server_bytes),
        ):
            made = fn(results, scenario, folder / f"{kind}-{scenario}.png")
            if made:
                plots.append((made, scenario))
    head = ["Feature", "Reference: client-server", "Client-Server (measured)"]
    head += ["Reference: peer-to-peer", "Peer-to-Peer (measured)", "Hybrid (measured)", "Verdict"]
    rows = [
        [t.feature, t.reference_cs, t.cs, t.reference_p2p, t.p2p, t.hybrid, t.verdict]
        for t in table
    ]
    fail_rows = [[f.scenario, f.architecture, str(f.n), f.error] for f in failures]

    def caption(scenario: str) -> tuple[str, str]:
        link = scenario_links.get(scenario)
        md = "data: [runs.json](runs.json)" + (f", scenario: [{link}]({link})" if link else "")
        ht = '<a href="runs.json">runs.json</a>' + (
            f', scenario: <a href="{html.escape(link)}">{html.escape(link)}</a>' if link else ""
        )
        return md, ht

    md = ["# hubswarm lab: client-server vs peer-to-peer, measured", ""]
    md += [f"Generated {stamp}. Raw data: [runs.json](runs.json).", ""]
    md += [f"> {n}" for n in top_notes] + [""]
    md += ["## The comparison table", "", _md_table(head, rows), ""]
    md += ["## Runs", "", _md_table(_RUN_HEAD, _run_rows(results)), ""]
    if fail_rows:
        md += [
            "## Not measured",
            "",
            _md_table(["scenario", "architecture", "N", "why"], fail_rows),
            "",
        ]
    md += ["## Figures", ""]
    for path, scenario in plots:
        cap, _ = caption(scenario)
        md += [f"![{path.stem}]({path.name})", "", f"*{path.stem}* — {cap}", ""]
    if details:
        md += ["## Details", "", *(f"- {d}" for d in details), ""]
    (folder / "report.md").write_text("\n".join(md), encoding="utf-8")

    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        "<title>hubswarm lab report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>hubswarm lab: client-server vs peer-to-peer, measured</h1>",
        f'<p>Generated {stamp}. Raw data: <a href="runs.json">runs.json</a>.</p>',
        *(f'<p class="note">{html.escape(n)}</p>' for n in top_notes),
        "<h2>The comparison table</h2>",
        _html_table(head, rows, "compare"),
        "<h2>Runs</h2>",
        _html_table(_RUN_HEAD, _run_rows(results), "runs"),
    ]
    if fail_rows:
        parts += [
            "<h2>Not measured</h2>",
            _html_table(["scenario", "architecture", "N", "why"], fail_rows),
        ]
    parts.append("<h2>Figures</h2>")
    for path, scenario in plots:
        _, cap = caption(scenario)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(
            f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'
            f'<figcaption>{html.escape(path.stem)} (<a href="{path.name}">png</a>) — {cap}'
            "</figcaption></figure>"
        )
    if details:
        parts.append("<h2>Details</h2><ul>")
        parts += [f"<li>{html.escape(d)}</li>" for d in details]
        parts.append("</ul>")
    parts.append("</body></html>")
    (folder / "report.html").write_text("\n".join(parts), encoding="utf-8")
    return Report(folder, table, tuple(p for p, _ in plots))


def _is_detail(note: str) -> bool:
    # "measured: ..." lines are per-run numbers (older runs.json: "host 0 wire bytes ...").
    return note.startswith(("measured:", "host 0 wire bytes", "server bytes after kill_hub"))


def load_runs(path: Path) -> tuple[list[RunResult], list[RunFailure], list[str]]:
    """Read a runs.json written by :func:`write_report` (to redraw a report). Raises LabError."""
    from hubswarm.errors import LabError

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        runs = [RunResult.from_json(r) for r in data["runs"]]
        failures = [RunFailure(**f) for f in data.get("failures", [])]
        notes = [str(n) for n in data.get("notes", [])]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LabError(f"{path}: not a lab runs.json ({exc})") from exc
    return runs, failures, notes
