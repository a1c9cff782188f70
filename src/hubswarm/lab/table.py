"""The comparison table: the reference's rows, each cell a measurement and a verdict (pure).

The reference text compares client-server with peer-to-peer in seven rows (Architecture,
Data Storage, Scalability, Reliability, Cost, Security, Performance). Each is one
:class:`~hubswarm.lab.rowspec.RowSpec` in :data:`ROWS`: the feature, the two claims, a
function from one architecture's runs to the measured value, and the rule that judges each
claim. Adding a row is adding one entry; the renderers (Markdown, HTML, the terminal) never
name a feature.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hubswarm.lab.formats import mib, pct, secs
from hubswarm.lab.metrics import CorruptOutcome, RunMetrics, RunResult
from hubswarm.lab.render import Table
from hubswarm.lab.rowspec import (
    CLIENT_SERVER,
    NOT_MEASURED,
    Finding,
    Measured,
    RowSpec,
    Verdict,
)

__all__ = [
    "ARCHITECTURES",
    "COLUMNS",
    "NOT_MEASURED",
    "REFERENCE",
    "ROWS",
    "TERMINAL_COLUMNS",
    "Column",
    "Measured",
    "RowSpec",
    "TableRow",
    "Verdict",
    "architectures_of",
    "as_table",
    "build_table",
    "verdicts",
]

ARCHITECTURES = (CLIENT_SERVER, "p2p", "hybrid")
# Scalability: a swarm's time must stay within this factor of D_p2p to confirm the claim.
_SWARM_BOUND_FACTOR = 1.3
# Performance: "consistent, controlled by server specs" is a time that follows the
# architecture's own bound at every N of the sweep: T / bound within this factor from its
# lowest to its highest. A wider spread is "variable".
_CONSISTENT_SPREAD = 1.1
# Architecture, client-server: "every byte from the server" allows for rounding.
_ALL_FROM_SERVER = 0.99


# --- Architecture ----------------------------------------------------------------------------


def _architecture(m: Measured) -> str:
    shares = [x.server_share for x in m.metrics if x.server_share is not None]
    if not shares:
        return "no bytes received"
    share = sum(shares) / len(shares)
    return f"{pct(share)} of received bytes came from the server, {pct(1 - share)} from peers"


def _architecture_cs(m: Measured) -> str:
    shares = [x.server_share for x in m.metrics if x.server_share is not None]
    if shares and min(shares) > _ALL_FROM_SERVER:
        return "confirmed for client-server: every byte from the server"
    return "NOT confirmed: CS clients got bytes elsewhere"


def _architecture_swarm(m: Measured) -> str:
    shares = [x.server_share for x in m.metrics if x.server_share is not None]
    mean = sum(shares) / len(shares) if shares else 1.0
    if mean < 0.5:
        return f"{m.who} confirmed: peers supplied {pct(1 - mean)} of the bytes"
    return f"{m.who} NOT confirmed: the server still supplied {pct(mean)}"


# --- Data Storage ----------------------------------------------------------------------------


def _storage(m: Measured) -> str:
    ends = [x.min_replicas_end for x in m.metrics if x.min_replicas_end is not None]
    if not ends:
        return "no replica samples"
    calm = m.calm_replicas()
    return (
        f"live copies of the rarest piece at the end of fault-free runs: "
        f"{min(calm, default=0)}..{max(calm, default=0)} (0 after kill_hub: {min(ends) == 0})"
    )


def _storage_cs(m: Measured) -> str:
    calm = m.calm_replicas()
    if calm and max(calm) <= 1:
        return "confirmed: one serving copy (the server)"
    return "NOT confirmed: more than one live copy" if calm else "no fault-free run"


def _storage_swarm(m: Measured) -> str:
    calm = m.calm_replicas()
    if calm and max(calm) > 1:
        return (
            f"{m.who} confirmed: up to {max(calm)} live copies of every piece "
            f"(down to {min(calm)} when peers leave)"
        )
    if not calm:
        return f"{m.who}: no fault-free run"
    return f"{m.who} NOT confirmed: no spread of copies measured"


# --- Scalability -----------------------------------------------------------------------------


def _completed_sweep(m: Measured) -> list[RunMetrics]:
    """The sweep's runs with a (non-zero) last completion."""
    return [x for x in m.sweep() if x.last_completion]


def _scalability(m: Measured) -> str:
    sweep = [x for x in m.sweep() if x.last_completion is not None]
    if len(sweep) < 2:
        return "no sweep over N"
    a, b = sweep[0], sweep[-1]
    assert a.last_completion is not None
    assert b.last_completion is not None
    bound = b.bound_cs if b.architecture == CLIENT_SERVER else b.bound_p2p
    text = (
        f"N {a.n}→{b.n} (×{b.n / a.n:.0f}): T {secs(a.last_completion)}→{secs(b.last_completion)} "
        f"(×{b.last_completion / a.last_completion:.1f}); at N={b.n} T/bound = "
        f"{b.last_completion / bound:.2f}"
    )
    if b.architecture != CLIENT_SERVER:
        ratios = [(x.last_completion or 0) / x.bound_p2p for x in _completed_sweep(m)]
        text += f"; T/D_p2p over the sweep {min(ratios):.2f}..{max(ratios):.2f}"
    return text


def _growth(sweep: Sequence[RunMetrics]) -> tuple[float, float] | None:
    """(how much T grew, how much N grew) from the sweep's first run to its last."""
    if len(sweep) < 2 or not sweep[0].last_completion or not sweep[-1].last_completion:
        return None
    return sweep[-1].last_completion / sweep[0].last_completion, sweep[-1].n / sweep[0].n


def _scalability_cs(m: Measured) -> str:
    growth = _growth([x for x in m.sweep() if x.last_completion is not None])
    if growth is None:
        return "no sweep"
    grow, ratio = growth
    if grow > 0.5 * ratio:
        return f"confirmed: CS time grows ~linearly with N (×{grow:.1f} for ×{ratio:.0f})"
    return (
        f"NOT confirmed: CS time grew only ×{grow:.1f} for ×{ratio:.0f} N "
        "(the server was not the bottleneck)"
    )


def _scalability_swarm(m: Measured) -> str:
    sweep = _completed_sweep(m)
    growth = _growth(sweep)
    if growth is None:
        return f"{m.who}: no sweep"
    grow, ratio = growth
    peak = max((x.last_completion or 0) / x.bound_p2p for x in sweep)
    if grow < 0.5 * ratio and peak <= _SWARM_BOUND_FACTOR:
        return (
            f"{m.who} confirmed: time ×{grow:.1f} for ×{ratio:.0f} N, "
            f"within {_SWARM_BOUND_FACTOR}× of D_p2p"
        )
    if grow < 0.5 * ratio:
        return (
            f"{m.who} partly confirmed: time ×{grow:.1f} for ×{ratio:.0f} N (sublinear), "
            f"but up to {peak:.1f}× D_p2p (target {_SWARM_BOUND_FACTOR}×)"
        )
    return f"{m.who} NOT confirmed: time ×{grow:.1f} for ×{ratio:.0f} N, up to {peak:.1f}× D_p2p"


# --- Reliability -----------------------------------------------------------------------------


def _reliability(m: Measured) -> str:
    fault = [
        (x, f)
        for x in m.metrics
        for f in x.fault_completion
        if f.kind in ("kill_hub", "kill_peers")
    ]
    if not fault:
        return "no fault scenario run"
    return "; ".join(
        f"{f.kind} at {f.at:g} s: {pct(f.completed)} of pending clients still completed (N={x.n})"
        for x, f in fault
    )


def _reliability_cs(m: Measured) -> str:
    fracs = m.after_fault("kill_hub")
    if not fracs:
        return "no kill_hub run"
    if max(fracs) == 0:
        return "confirmed: killing the hub stopped every pending client"
    return f"partly: {pct(max(fracs))} still completed after kill_hub"


def _reliability_swarm(m: Measured) -> str:
    fracs = m.after_fault("kill_hub")
    if not fracs:
        return f"{m.who}: no kill_hub run"
    if min(fracs) >= 1.0:
        return f"{m.who} confirmed: every pending client completed after kill_hub"
    word = "partly confirmed" if min(fracs) > 0 else "NOT confirmed"
    return f"{m.who} {word}: {pct(min(fracs))} of pending clients completed after kill_hub"


# --- Cost ------------------------------------------------------------------------------------


def _cost(m: Measured) -> str:
    with_bytes = [x for x in m.metrics if x.server_bytes_sent is not None]
    if not with_bytes:
        return "server bytes unknown"
    big = max(with_bytes, key=lambda x: x.n)
    assert big.server_bytes_sent is not None
    copies = big.server_bytes_sent / big.file_size
    return (
        f"server sent {mib(big.server_bytes_sent)} = {copies:.1f} copies of F for N={big.n}"
        f" ({big.scenario}); upload utilization {pct(big.server_utilization)}"
    )


def _cost_cs(m: Measured) -> str:
    if any(x.server_bytes_sent is not None for x in m.metrics):
        return "confirmed: CS server upload = N × F (cost grows with N)"
    return "server bytes unknown"


def _cost_swarm(m: Measured) -> str:
    complete = [x for x in m.metrics if x.server_bytes_sent is not None and x.completed == x.n]
    if not complete:
        return f"{m.who}: server bytes unknown"
    big = max(complete, key=lambda x: x.n)
    assert big.server_bytes_sent is not None
    copies = big.server_bytes_sent / big.file_size
    word = "confirmed" if copies < big.n / 2 else "NOT confirmed"
    return f"{m.who} {word}: the server sent {copies:.1f} copies of F for N={big.n}"


# --- Security --------------------------------------------------------------------------------


def _security(m: Measured) -> str:
    probes = [p for r in m.runs for p in r.security if not p.authorized]
    controls = [p for r in m.runs for p in r.security if p.authorized]
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


def _security_cs(m: Measured) -> str:
    probes = [x.unauthorized_bytes for x in m.metrics if x.unauthorized_bytes is not None]
    if not probes:
        return "no probe"
    if max(probes) == 0:
        return "confirmed: the hub gave 0 bytes without a valid token"
    return f"REFUTED: an unauthorized client obtained {max(probes)} bytes"


def _security_swarm(m: Measured) -> str:
    got = [x for x in m.metrics if x.unauthorized_bytes is not None]
    if not got:
        return f"{m.who}: probe pending"
    worst = max(got, key=lambda x: x.unauthorized_bytes or 0)
    if worst.unauthorized_bytes == worst.file_size:
        return f"{m.who} confirmed: a peer with only the magnet link got the whole file"
    return f"{m.who} partly confirmed: an outsider obtained {worst.unauthorized_bytes} bytes"


def _corrupt_peers(m: Measured) -> Finding | None:
    """The corrupt_peer faults' outcome: detected, banned, the others still verified."""
    seen = [f.corrupt for r in m.runs for f in r.faults if f.corrupt is not None]
    if not seen:
        return None
    total = CorruptOutcome(
        peers=(),
        bad_pieces=sum(o.bad_pieces for o in seen),
        bans=sum(o.bans for o in seen),
        honest_verified=sum(o.honest_verified for o in seen),
        honest=sum(o.honest for o in seen),
    )
    value = (
        f"; corrupt peer: {total.bad_pieces} bad pieces detected, {total.bans} bans, "
        f"{total.honest_verified}/{total.honest} honest clients verified"
    )
    if total.contained:
        return value, "; a corrupting peer was detected, banned and did not stop the others"
    detection = "seen" if total.bad_pieces else "NOT seen"
    verified = f"{total.honest_verified}/{total.honest} verified"
    return value, f"; corrupt peer: detection {detection}, {verified}"


# --- Performance -----------------------------------------------------------------------------


def _own_ratios(m: Measured) -> list[tuple[int, float]]:
    """(N, T / the architecture's own bound) of the sweep's runs where every client finished:
    D_cs for client-server, D_p2p for the others."""
    return [
        (
            x.n,
            x.all_complete_time / (x.bound_cs if m.architecture == CLIENT_SERVER else x.bound_p2p),
        )
        for x in m.sweep()
        if x.all_complete_time is not None
    ]


def _ratio_range(ratios: list[tuple[int, float]]) -> str:
    low, high = min(r for _, r in ratios), max(r for _, r in ratios)
    ns = ", ".join(str(n) for n, _ in ratios)
    return f"{low:.2f}-{high:.2f} over N = {ns}"


def _performance(m: Measured) -> str:
    spread = [x for x in m.metrics if x.p50 is not None and x.jain is not None]
    if not spread:
        return "no completed clients"
    ratios = _own_ratios(m)
    bound = "D_cs" if m.architecture == CLIENT_SERVER else "D_p2p"
    own = f"T / {bound} {_ratio_range(ratios)}; " if ratios else ""
    least = min(spread, key=lambda x: x.jain or 1.0)
    sweep = [x for x in m.sweep() if x.completion_times]
    widest = ""
    if sweep:
        big = sweep[-1]
        first, last = min(big.completion_times), max(big.completion_times)
        widest = (
            f"spread (last - first completion) in {big.scenario} N={big.n}: {secs(last - first)} "
            f"({secs(first)}..{secs(last)}); "
        )
    return (
        own
        + widest
        + (
            f"worst fairness in {least.scenario} N={least.n}: p10/p50/p90 {secs(least.p10)} / "
            f"{secs(least.p50)} / {secs(least.p90)}, Jain {least.jain:.2f}, "
            f"max/min {least.max_over_min or math.nan:.1f}"
        )
    )


def _spread(ratios: list[tuple[int, float]]) -> float:
    return max(r for _, r in ratios) / min(r for _, r in ratios)


def _performance_cs(m: Measured) -> str:
    ratios = _own_ratios(m)
    if len(ratios) < 2:
        return "no sweep with every client complete"
    if _spread(ratios) <= _CONSISTENT_SPREAD:
        return (
            f"confirmed: consistent, T / D_cs {_ratio_range(ratios)}: the time is set by the "
            "server's upload"
        )
    return f"NOT confirmed: T / D_cs {_ratio_range(ratios)}, not set by the server alone"


def _performance_swarm(m: Measured) -> str:
    ratios = _own_ratios(m)
    if len(ratios) < 2:
        return f"{m.who}: no sweep with every client complete"
    if _spread(ratios) > _CONSISTENT_SPREAD:
        return (
            f"{m.who} confirmed: variable, T / D_p2p {_ratio_range(ratios)}: it depends on "
            "the peers"
        )
    return f"{m.who} NOT confirmed: T / D_p2p {_ratio_range(ratios)}, as steady as its bound"


# --- headlines: one number with its unit per architecture and row ---------------------------


def _head_architecture(m: Measured) -> str:
    shares = [x.server_share for x in m.metrics if x.server_share is not None]
    return f"{pct(sum(shares) / len(shares))} from the server" if shares else "-"


def _head_storage(m: Measured) -> str:
    calm = m.calm_replicas()
    return f"{max(calm)} live cop{'y' if max(calm) == 1 else 'ies'}" if calm else "-"


def _head_scalability(m: Measured) -> str:
    sweep = [x for x in m.sweep() if x.last_completion is not None]
    if not sweep:
        return "-"
    last = sweep[-1]
    text = f"{secs(last.last_completion)} at N={last.n}"
    growth = _growth(sweep)
    return text + (f" (×{growth[0]:.1f} for ×{growth[1]:.0f} N)" if growth else "")


def _head_reliability(m: Measured) -> str:
    fracs = m.after_fault("kill_hub")
    return f"{pct(min(fracs))} finish after kill_hub" if fracs else "-"


def _head_cost(m: Measured) -> str:
    with_bytes = [x for x in m.metrics if x.server_bytes_sent is not None]
    if not with_bytes:
        return "-"
    big = max(with_bytes, key=lambda x: x.n)
    return f"{(big.server_bytes_sent or 0) / big.file_size:.1f} × F from the server at N={big.n}"


def _head_security(m: Measured) -> str:
    got = [x for x in m.metrics if x.unauthorized_bytes is not None]
    if not got:
        return "-"
    worst = max(got, key=lambda x: x.unauthorized_bytes or 0)
    return f"{pct((worst.unauthorized_bytes or 0) / worst.file_size)} of F to an outsider"


def _head_performance(m: Measured) -> str:
    ratios = _own_ratios(m)
    if not ratios:
        return "-"
    bound = "D_cs" if m.architecture == CLIENT_SERVER else "D_p2p"
    low, high = min(r for _, r in ratios), max(r for _, r in ratios)
    return f"T / {bound} {low:.2f}-{high:.2f} over N"


_BOUNDS = (
    "bounds: D_cs = max(N F / u_s, F / d_min), D_p2p = max(F / u_s, F / d_min, "
    "N F / (u_s + Σ u_i)); T = the time until every client completed"
)


# --- the table -------------------------------------------------------------------------------

# The reference text's table (/work/shared/000_2c81284a5f55602d.txt), row by row.
ROWS: tuple[RowSpec, ...] = (
    RowSpec(
        "Architecture",
        "Centralized with dedicated servers",
        "Decentralized with equal peers",
        _architecture,
        _architecture_cs,
        _architecture_swarm,
        headline=_head_architecture,
        formula="share = bytes from the server / bytes received by every client",
    ),
    RowSpec(
        "Data Storage",
        "Centralized on servers",
        "Distributed across all peers",
        _storage,
        _storage_cs,
        _storage_swarm,
        headline=_head_storage,
        formula="live copies of the rarest piece at the end of a fault-free run",
    ),
    RowSpec(
        "Scalability",
        "Limited by server capacity",
        "Scales with number of peers",
        _scalability,
        _scalability_cs,
        _scalability_swarm,
        headline=_head_scalability,
        formula=_BOUNDS,
    ),
    RowSpec(
        "Reliability",
        "Single point of failure",
        "Fault-tolerant, no single failure point",
        _reliability,
        _reliability_cs,
        _reliability_swarm,
        headline=_head_reliability,
        formula="the fraction of the clients pending at the fault that still completed",
    ),
    RowSpec(
        "Cost",
        "High (dedicated server infrastructure)",
        "Low (distributed resources)",
        _cost,
        _cost_cs,
        _cost_swarm,
        headline=_head_cost,
        formula="copies = server bytes sent / F; client-server needs N × F",
    ),
    RowSpec(
        "Security",
        "Centralized control, easier to secure",
        "Harder to control, security challenges",
        _security,
        _security_cs,
        _security_swarm,
        finding=_corrupt_peers,
        headline=_head_security,
        formula="bytes an unauthorized client obtained / F",
    ),
    RowSpec(
        "Performance",
        "Consistent, controlled by server specs",
        "Variable, depends on peer availability",
        _performance,
        _performance_cs,
        _performance_swarm,
        headline=_head_performance,
        formula=(
            "T / own bound (D_cs or D_p2p) across the sweep's N, consistent if within "
            f"{_CONSISTENT_SPREAD:g}× from lowest to highest; Jain index (Σ x)² / (n Σ x²) of "
            "the clients' throughputs F / T_i"
        ),
    ),
)
# (feature, client-server claim, peer-to-peer claim), as the reference states them.
REFERENCE = tuple((r.feature, r.reference_cs, r.reference_p2p) for r in ROWS)


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


def build_table(
    results: Sequence[RunResult], rows: Sequence[RowSpec] = ROWS
) -> tuple[TableRow, ...]:
    """The reference table: in every measured cell a value and a one-line verdict."""
    cs, p2p, hybrid = (Measured.of(arch, results) for arch in ARCHITECTURES)
    return tuple(
        TableRow(
            spec.feature,
            spec.reference_cs,
            spec.reference_p2p,
            spec.cell(cs),
            spec.cell(p2p),
            spec.cell(hybrid),
            spec.verdict(cs, p2p),
        )
        for spec in rows
    )


def architectures_of(results: Sequence[RunResult]) -> tuple[str, ...]:
    """The architectures the runs measured: client-server, p2p, hybrid, then any other."""
    seen = dict.fromkeys(r.architecture for r in results)
    known = tuple(a for a in ARCHITECTURES if a in seen)
    return known + tuple(sorted(a for a in seen if a not in ARCHITECTURES))


def verdicts(
    results: Sequence[RunResult], rows: Sequence[RowSpec] = ROWS
) -> tuple[tuple[RowSpec, tuple[Verdict, ...]], ...]:
    """Each row with one verdict per architecture the runs measured."""
    measured = [Measured.of(arch, results) for arch in architectures_of(results)]
    return tuple((spec, tuple(spec.answer(m) for m in measured)) for spec in rows)


@dataclass(frozen=True, slots=True)
class Column:
    """A column of the rendered table: its header and the field of a row it shows."""

    head: str
    cell: Callable[[TableRow], str]


# The report's table (Markdown and HTML) and the terminal's narrower one.
COLUMNS = (
    Column("Feature", lambda t: t.feature),
    Column("Reference: client-server", lambda t: t.reference_cs),
    Column("Client-Server (measured)", lambda t: t.cs),
    Column("Reference: peer-to-peer", lambda t: t.reference_p2p),
    Column("Peer-to-Peer (measured)", lambda t: t.p2p),
    Column("Hybrid (measured)", lambda t: t.hybrid),
    Column("Verdict", lambda t: t.verdict),
)
TERMINAL_COLUMNS = tuple(COLUMNS[i] for i in (0, 2, 4, 6))


def as_table(
    table: Sequence[TableRow], columns: Sequence[Column] = COLUMNS, *, css: str = "compare"
) -> Table:
    """The rows in ``columns``, ready for any renderer (Markdown, HTML, the terminal)."""
    return Table(
        tuple(c.head for c in columns),
        tuple(tuple(c.cell(t) for c in columns) for t in table),
        css,
    )
