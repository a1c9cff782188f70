"""Write a results folder: runs.json, report.md, report.html and PNG plots.

The centre is the reference comparison table (client-server vs peer-to-peer: Architecture,
Data Storage, Scalability, Reliability, Cost, Security, Performance; :mod:`.table`), each
cell replaced by a measurement and a one-line verdict; then one row per run, the runs that
could not be made, the figures (:mod:`.plots`) and the per-run details. The report is built
once as a :class:`~hubswarm.lab.render.Document` and rendered to Markdown and HTML.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from hubswarm.errors import LabError
from hubswarm.lab.formats import mib, pct, secs
from hubswarm.lab.hostload import CPU_BOUND
from hubswarm.lab.metrics import RunFailure, RunResult, summarize
from hubswarm.lab.plots import PLOTS, headline_figure, sweep_scenario
from hubswarm.lab.render import (
    Answer,
    Block,
    Bullets,
    Comparison,
    ComparisonRow,
    Document,
    Figure,
    Heading,
    Inline,
    Link,
    Notes,
    Paragraph,
    Table,
    to_html,
    to_markdown,
)
from hubswarm.lab.replay_page import write_keyframes, write_replay
from hubswarm.lab.report_reference import reference_blocks, reference_line
from hubswarm.lab.rowspec import CLIENT_SERVER, RowSpec, Verdict
from hubswarm.lab.table import REFERENCE, TableRow, architectures_of, build_table, verdicts

__all__ = [
    "REFERENCE",
    "Report",
    "TableRow",
    "build_table",
    "headline_lines",
    "load_runs",
    "verdict_records",
    "write_report",
]

_HEADLINE_PNG = "headline.png"
TITLE = "hubswarm lab: client-server vs peer-to-peer, measured"
_RUNS_JSON = "runs.json"
REPLAY_HTML = "replay.html"


@dataclass(frozen=True, slots=True)
class Report:
    """Where a report was written."""

    folder: Path
    table: tuple[TableRow, ...]
    plots: tuple[Path, ...]
    verdicts: tuple[tuple[RowSpec, tuple[Verdict, ...]], ...] = ()

    @property
    def html(self) -> Path:
        """The report's page."""
        return self.folder / "report.html"


# --- the runs, one row each ------------------------------------------------------------------


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
                _scenario_cell(r),
                r.architecture,
                str(r.n),
                f"{m.completed}/{r.n}",
                secs(m.all_complete_time) + flag,
                f"{m.bound_cs:.2f} s",
                f"{m.bound_p2p:.2f} s",
                ratio,
                first_copy,
                "-" if m.server_bytes_sent is None else mib(m.server_bytes_sent),
                pct(m.server_utilization),
                "-" if m.jain is None else f"{m.jain:.3f}",
                "-" if m.efficiency is None else f"{m.efficiency:.2f}",
                cpu,
                r.emulation,
            ]
        )
    return rows


def _scenario_cell(r: RunResult) -> str:
    """The scenario's name, with the run's RTT and loss where it has either (a sweep's point)."""
    if not (r.rtt or r.loss):
        return r.scenario
    return f"{r.scenario} (RTT {1000 * r.rtt:g} ms, loss {100 * r.loss:g}%)"


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


def _runs_table(results: Sequence[RunResult]) -> Table:
    return Table(tuple(_RUN_HEAD), tuple(tuple(row) for row in _run_rows(results)), "runs")


# --- notes and details -----------------------------------------------------------------------


def _is_detail(note: str) -> bool:
    # "measured: ..." lines are per-run numbers (older runs.json: "host 0 wire bytes ...").
    return note.startswith(("measured:", "host 0 wire bytes", "server bytes after kill_hub"))


def _notes(results: Sequence[RunResult], notes: Sequence[str]) -> tuple[list[str], list[str]]:
    """(every note, for runs.json; the per-run details) of a campaign."""
    all_notes = list(dict.fromkeys([*notes, *(n for r in results for n in r.notes)]))
    bound = [r for r in results if r.host_cpu_busy is not None and r.host_cpu_busy >= CPU_BOUND]
    if bound:
        runs = ", ".join(f"{r.scenario} N={r.n} {r.architecture}" for r in bound)
        all_notes.append(
            f"CPU-bound (host cores >= {100 * CPU_BOUND:.0f}% busy): {runs}. Their times "
            "measure this host's CPU, not the emulated links: read them as upper limits."
        )
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
    return all_notes, details


# --- the headline and the comparison -------------------------------------------------------


def headline_lines(results: Sequence[RunResult]) -> list[str]:
    """The seed's question answered in a few numbers: time and server bytes at the sweep's
    largest N, and what killing the hub did, for each architecture."""
    lines = []
    scenario = sweep_scenario(results)
    if scenario is not None:
        runs = [r for r in results if r.scenario == scenario and not (r.rtt or r.loss)]
        n = max(r.n for r in runs)
        at_n = {r.architecture: summarize(r) for r in runs if r.n == n}
        times = {a: m.last_completion for a, m in at_n.items() if m.last_completion}
        parts = [f"{a} {secs(t)}" for a, t in times.items()]
        line = f"Time until all {n} clients of {scenario} had the file: " + ", ".join(parts)
        cs = times.get(CLIENT_SERVER)
        fastest = min(times, key=lambda a: times[a]) if times else None
        if cs and fastest and fastest != CLIENT_SERVER:
            line += f" ({fastest} {cs / times[fastest]:.1f}× faster than client-server)"
        lines.append(line + ".")
        sent = [
            f"{a} {m.server_bytes_sent / m.file_size:.1f} × F"
            for a, m in at_n.items()
            if m.server_bytes_sent is not None
        ]
        if sent:
            lines.append(f"The server uploaded, at N={n}: " + ", ".join(sent) + ".")
    killed = [
        (r.architecture, f.completed)
        for r in results
        for f in summarize(r).fault_completion
        if f.kind == "kill_hub"
    ]
    if killed:
        parts = [f"{a} {pct(x)}" for a, x in dict(killed).items()]
        lines.append(
            "Kill the hub mid-run: clients still pending that finished: " + ", ".join(parts) + "."
        )
    return lines


def verdict_records(
    answered: Sequence[tuple[RowSpec, Sequence[Verdict]]],
) -> list[dict[str, str]]:
    """The badges as runs.json keeps them (what the report shows, row by architecture)."""
    return [
        {
            "feature": v.feature,
            "architecture": v.architecture,
            "verdict": v.level,
            "reason": v.reason,
            "headline": v.headline,
        }
        for _, row in answered
        for v in row
    ]


def _comparison(
    answered: Sequence[tuple[RowSpec, Sequence[Verdict]]], architectures: Sequence[str]
) -> Comparison:
    rows = []
    for spec, row in answered:
        evidence = [f"{v.architecture}: {v.evidence or 'not measured'}" for v in row]
        evidence += [f"{v.architecture} runs: {', '.join(v.runs)}" for v in row if v.runs]
        if spec.formula:
            evidence.append(spec.formula)
        answers = tuple(Answer(v.architecture, v.headline, v.level, v.reason) for v in row)
        rows.append(
            ComparisonRow(
                spec.feature, (spec.reference_cs, spec.reference_p2p), answers, tuple(evidence)
            )
        )
    return Comparison(tuple(architectures), tuple(rows))


# --- the folder ------------------------------------------------------------------------------


def _new_folder(out_root: Path, stamp: str) -> Path:
    """``out_root/<stamp>``, or ``<stamp>-1``, ``-2``...: never overwrite an earlier report."""
    folder = out_root / stamp
    suffix = 1
    while folder.exists():
        folder = out_root / f"{stamp}-{suffix}"
        suffix += 1
    (folder / "scenarios").mkdir(parents=True)
    return folder


def _copy_scenarios(
    folder: Path, results: Sequence[RunResult], failures: Sequence[RunFailure]
) -> dict[str, str]:
    """Copy each scenario's TOML beside the report; scenario name -> its relative path."""
    links: dict[str, str] = {}
    sources = [(r.scenario, r.scenario_path) for r in results]
    sources += [(f.scenario, f.scenario_path) for f in failures]
    for scenario, scenario_path in sources:
        if scenario_path and scenario not in links:
            src = Path(scenario_path)
            if src.is_file():
                shutil.copyfile(src, folder / "scenarios" / src.name)
                links[scenario] = f"scenarios/{src.name}"
    return links


def _document(
    stamp: str,
    notes: Sequence[str],
    comparison: Comparison,
    headline: Sequence[str],
    results: Sequence[RunResult],
    failures: Sequence[RunFailure],
    figures: Sequence[Figure],
    details: Sequence[str],
    reference: Sequence[Block] = (),
) -> Document:
    top = figures[:1] if figures and figures[0].name == _HEADLINE_PNG else []
    rest = figures[len(top) :]
    replay = [f for f in rest if f.name.startswith("replay-")]
    plots = [f for f in rest if f not in replay]
    blocks: list[Block] = [
        Heading(1, TITLE),
        Paragraph([f"Generated {stamp}. Raw data: ", Link(_RUNS_JSON, _RUNS_JSON), "."]),
        Heading(2, "The answer"),
        *(Paragraph([line]) for line in headline),
        *top,
        Heading(2, "The comparison table"),
        comparison,
        *reference,
    ]
    if replay:
        blocks += [
            Heading(2, "Watch a swarm"),
            Paragraph(
                [
                    "Who held which piece when, and where it came from: ",
                    Link("open the replay", REPLAY_HTML),
                    " (every run, a time slider and a play button).",
                ]
            ),
            *replay,
        ]
    blocks += [Heading(2, "Runs"), _runs_table(results)]
    if failures:
        rows = tuple((f.scenario, f.architecture, str(f.n), f.error) for f in failures)
        blocks += [
            Heading(2, "Not measured"),
            Table(("scenario", "architecture", "N", "why"), rows),
        ]
    blocks += [Heading(2, "Figures"), *plots]
    if details:
        blocks += [Heading(2, "Details"), Bullets(tuple(details))]
    if notes:
        blocks += [Heading(2, "How this was measured"), Notes(tuple(notes))]
    return Document("hubswarm lab report", tuple(blocks))


def _caption(link: str | None) -> Inline:
    out: list[str | Link] = ["data: ", Link(_RUNS_JSON, _RUNS_JSON)]
    if link:
        out += [", scenario: ", Link(link, link)]
    return out


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
    folder = _new_folder(out_root, stamp)
    links = _copy_scenarios(folder, results, failures)
    all_notes, details = _notes(results, notes)
    answered = verdicts(results)
    (folder / _RUNS_JSON).write_text(
        json.dumps(
            {
                "generated_at": stamp,
                "notes": all_notes,
                "runs": [r.to_json() for r in results],
                "failures": [asdict(f) for f in failures],
                "metrics": [asdict(summarize(r)) for r in results],
                "verdicts": verdict_records(answered),
            },
            indent=1,
            default=str,
        ),
        encoding="utf-8",
    )
    table = build_table(results)
    figures: list[Figure] = []
    first = headline_figure(results, folder / _HEADLINE_PNG)
    if first:
        figures.append(
            Figure(first.name, "the answer at a glance", first.read_bytes(), _caption(None))
        )
    for scenario in dict.fromkeys(r.scenario for r in results):
        for kind, plot in PLOTS:
            made = plot(results, scenario, folder / f"{kind}-{scenario}.png")
            if made:
                caption = _caption(links.get(scenario))
                figures.append(Figure(made.name, made.stem, made.read_bytes(), caption))
    if write_replay(results, folder / REPLAY_HTML, "hubswarm lab: how the file spread"):
        frames = write_keyframes(results, folder / "replay-frames.png")
        if frames:
            play: Inline = ["the replay's key frames; ", Link("play it", REPLAY_HTML)]
            figures.append(Figure(frames.name, "how the file spread", frames.read_bytes(), play))
    top_notes = [n for n in all_notes if not _is_detail(n)]
    comparison = _comparison(answered, architectures_of(results))
    headline = headline_lines(results)
    against = reference_line(results, failures)
    if against:
        headline.append(against)
    doc = _document(
        stamp,
        top_notes,
        comparison,
        headline,
        results,
        failures,
        figures,
        details,
        reference_blocks(results, failures),
    )
    (folder / "report.md").write_text(to_markdown(doc), encoding="utf-8")
    (folder / "report.html").write_text(to_html(doc), encoding="utf-8")
    return Report(folder, table, tuple(folder / f.name for f in figures), answered)


def load_runs(path: Path) -> tuple[list[RunResult], list[RunFailure], list[str]]:
    """Read a runs.json written by :func:`write_report` (to redraw a report). Raises LabError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        runs = [RunResult.from_json(r) for r in data["runs"]]
        failures = [RunFailure(**f) for f in data.get("failures", [])]
        notes = [str(n) for n in data.get("notes", [])]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LabError(f"{path}: not a lab runs.json ({exc})") from exc
    return runs, failures, notes
