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
from hubswarm.lab.plots import PLOTS
from hubswarm.lab.render import (
    Block,
    Bullets,
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
from hubswarm.lab.table import REFERENCE, TableRow, as_table, build_table

__all__ = ["REFERENCE", "Report", "TableRow", "build_table", "load_runs", "write_report"]

TITLE = "hubswarm lab: client-server vs peer-to-peer, measured"
_RUNS_JSON = "runs.json"


@dataclass(frozen=True, slots=True)
class Report:
    """Where a report was written."""

    folder: Path
    table: tuple[TableRow, ...]
    plots: tuple[Path, ...]


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
    table: Sequence[TableRow],
    results: Sequence[RunResult],
    failures: Sequence[RunFailure],
    figures: Sequence[Figure],
    details: Sequence[str],
) -> Document:
    blocks: list[Block] = [
        Heading(1, TITLE),
        Paragraph([f"Generated {stamp}. Raw data: ", Link(_RUNS_JSON, _RUNS_JSON), "."]),
        Notes(tuple(notes)),
        Heading(2, "The comparison table"),
        as_table(table),
        Heading(2, "Runs"),
        _runs_table(results),
    ]
    if failures:
        rows = tuple((f.scenario, f.architecture, str(f.n), f.error) for f in failures)
        blocks += [
            Heading(2, "Not measured"),
            Table(("scenario", "architecture", "N", "why"), rows),
        ]
    blocks += [Heading(2, "Figures"), *figures]
    if details:
        blocks += [Heading(2, "Details"), Bullets(tuple(details))]
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
    (folder / _RUNS_JSON).write_text(
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
    figures: list[Figure] = []
    for scenario in dict.fromkeys(r.scenario for r in results):
        for kind, plot in PLOTS:
            made = plot(results, scenario, folder / f"{kind}-{scenario}.png")
            if made:
                caption = _caption(links.get(scenario))
                figures.append(Figure(made.name, made.stem, made.read_bytes(), caption))
    # The top keeps the emulation facts; per-run measurement lines go to "Details".
    top_notes = [n for n in all_notes if not _is_detail(n)]
    doc = _document(stamp, top_notes, table, results, failures, figures, details)
    (folder / "report.md").write_text(to_markdown(doc), encoding="utf-8")
    (folder / "report.html").write_text(to_html(doc), encoding="utf-8")
    return Report(folder, table, tuple(folder / f.name for f in figures))


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
