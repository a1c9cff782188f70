"""A row of the comparison table as data: what it reads (:class:`Measured`), how it answers
(:class:`RowSpec`). Pure: no clock, no I/O; :mod:`hubswarm.lab.table` holds the rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hubswarm.lab.metrics import RunMetrics, RunResult, summarize

__all__ = [
    "CLIENT_SERVER",
    "LEVELS",
    "NOT_MEASURED",
    "Finding",
    "Measured",
    "RowSpec",
    "Verdict",
    "verdict_level",
    "verdict_reason",
]

CLIENT_SERVER = "client-server"
NOT_MEASURED = "not measured yet"
# A verdict's badge: the reference's claim confirmed, partly, not seen in the runs, or no
# run measured it.
CONFIRMED, PARTLY, NOT_SEEN, UNMEASURED = "confirmed", "partly", "not seen", "not measured"
LEVELS = (CONFIRMED, PARTLY, NOT_SEEN, UNMEASURED)


def verdict_reason(text: str) -> str:
    """A judge's text without its leading "P2P confirmed: " (what the badge already says)."""
    head, sep, rest = text.partition(": ")
    words = head.lower()
    if sep and any(w in words for w in ("confirmed", "partly", "refuted", *_WHO)):
        return rest
    return text


_WHO = ("p2p", "hybrid", "client-server", "libtorrent")


def verdict_level(text: str) -> str:
    """The badge of a judge's text (every judge names its level: confirmed, partly
    confirmed, NOT confirmed or REFUTED; "no ...", "pending", "unknown": not measured)."""
    lower = text.lower()
    reason = verdict_reason(text).lower()
    if reason.startswith("no ") or lower.endswith(("pending", "unknown", "not measured")):
        return UNMEASURED
    if "not confirmed" in lower or "refuted" in lower:
        return NOT_SEEN
    if "partly" in lower:
        return PARTLY
    return CONFIRMED if "confirmed" in lower else NOT_SEEN


@dataclass(frozen=True, slots=True)
class Measured:
    """The runs of one architecture and their metrics: what a row's functions read."""

    architecture: str
    runs: tuple[RunResult, ...]
    metrics: tuple[RunMetrics, ...]

    @classmethod
    def of(cls, architecture: str, runs: Sequence[RunResult]) -> Measured:
        """The runs of ``architecture`` among ``runs``."""
        mine = tuple(r for r in runs if r.architecture == architecture)
        return cls(architecture, mine, tuple(summarize(r) for r in mine))

    @property
    def who(self) -> str:
        """How a verdict names the architecture."""
        return "P2P" if self.architecture == "p2p" else self.architecture

    def sweep(self) -> list[RunMetrics]:
        """The flash-crowd-like sweep: the scenario with the most distinct N values."""
        by_scenario: dict[str, list[RunMetrics]] = {}
        for m in self.metrics:
            by_scenario.setdefault(m.scenario, []).append(m)
        if not by_scenario:
            return []
        best = max(by_scenario.values(), key=lambda v: len({m.n for m in v}))
        return sorted(best, key=lambda m: m.n)

    def calm_replicas(self) -> list[int]:
        """Live copies of the rarest piece at the end of the runs without faults."""
        # Fault runs end with the server gone: they belong to Reliability, not here.
        return [
            m.min_replicas_end
            for m in self.metrics
            if m.min_replicas_end is not None and not m.fault_completion
        ]

    def after_fault(self, kind: str) -> list[float]:
        """The fraction of pending clients that completed after each fault of ``kind``."""
        return [f.completed for m in self.metrics for f in m.fault_completion if f.kind == kind]


# A finding: a measured value and a verdict, added to a row's own (the corrupt peers).
Finding = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Verdict:
    """One architecture's answer on one row: badge, reason, headline number, evidence."""

    feature: str
    architecture: str
    level: str  # one of LEVELS
    reason: str
    headline: str  # a number with its unit, or "-"
    evidence: str  # the measured cell in full
    runs: tuple[str, ...]  # the runs behind it: "scenario N=n (emulation)"


@dataclass(frozen=True, slots=True)
class RowSpec:
    """One feature of the reference table and how the runs answer it."""

    feature: str
    reference_cs: str
    reference_p2p: str
    measure: Callable[[Measured], str]  # the measured value, for any architecture
    judge_cs: Callable[[Measured], str]  # the verdict on the client-server claim
    judge_swarm: Callable[[Measured], str]  # the verdict on the peer-to-peer claim
    # More that a cell shows beside its value and verdict (not the summary verdict).
    finding: Callable[[Measured], Finding | None] | None = None
    # One number with its unit for the headline column; the formula behind the row.
    headline: Callable[[Measured], str] | None = None
    formula: str = ""

    def judge(self, m: Measured) -> str:
        """The verdict for ``m``'s architecture on its own claim."""
        return self.judge_cs(m) if m.architecture == CLIENT_SERVER else self.judge_swarm(m)

    def cell(self, m: Measured) -> str:
        """The measured cell of ``m``'s architecture: value, then its verdict."""
        if not m.metrics:
            return NOT_MEASURED
        value, verdict = self.measure(m), self.judge(m)
        found = self.finding(m) if self.finding else None
        if found:
            value, verdict = value + found[0], verdict + found[1]
        return f"{value}. Verdict: {verdict}"

    def answer(self, m: Measured) -> Verdict:
        """``m``'s verdict on this row, as the report's badge and the terminal show it."""
        runs = tuple(dict.fromkeys(f"{r.scenario} N={r.n} ({r.emulation})" for r in m.runs))
        if not m.metrics:
            return Verdict(self.feature, m.architecture, UNMEASURED, "no run", "-", "", runs)
        text = self.judge(m)
        found = self.finding(m) if self.finding else None
        value = self.measure(m) + (found[0] if found else "")
        reason = verdict_reason(text) + (found[1] if found else "")
        headline = self.headline(m) if self.headline else "-"
        return Verdict(
            self.feature, m.architecture, verdict_level(text), reason, headline, value, runs
        )

    def verdict(self, cs: Measured, p2p: Measured) -> str:
        """The table's verdict column: the client-server claim, then the peer-to-peer one."""
        left = self.judge_cs(cs) if cs.metrics else "client-server not measured"
        right = self.judge_swarm(p2p) if p2p.metrics else f"{p2p.who} not measured"
        return f"{left}; {right}"
