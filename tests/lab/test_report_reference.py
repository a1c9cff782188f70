"""The report's side-by-side of our swarm and libtorrent (issue 22), built from the stored sim
runs.json with and without libtorrent rows (no run needed)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hubswarm.lab.ltpeer import settings_note
from hubswarm.lab.metrics import RunFailure, RunResult
from hubswarm.lab.report import load_runs, write_report
from hubswarm.lab.report_reference import reference_line, sides
from hubswarm.lab.runners.libtorrent import MISSING

FIXTURE = Path(__file__).parent / "data" / "sim-quick-runs.json"
SETTINGS = settings_note("2.1.1.0")


def _runs() -> list[RunResult]:
    return load_runs(FIXTURE)[0]


def _as_libtorrent(run: RunResult, slower: float) -> RunResult:
    """``run`` (a p2p run) as if libtorrent had made it, each client ``slower`` × as long."""
    data: dict[str, Any] = run.to_json()
    clients = []
    for c in data["clients"]:
        end = None if c["end"] is None else c["start"] + slower * (c["end"] - c["start"])
        clients.append({**c, "end": end})
    notes = ["libtorrent: host 0 runs the hub (tracker only) and a libtorrent seed", SETTINGS]
    return RunResult.from_json(
        {**data, "architecture": "libtorrent", "clients": clients, "tracks": [], "notes": notes}
    )


def _with_libtorrent(slower: dict[int, float]) -> list[RunResult]:
    runs = _runs()
    p2p = [r for r in runs if r.architecture == "p2p" and r.scenario == "acceptance"]
    return runs + [_as_libtorrent(r, slower.get(r.n, 1.5)) for r in p2p]


def test_report_with_libtorrent_rows(tmp_path: Path) -> None:
    runs = _with_libtorrent({})
    found = sides(runs)
    assert [s.n for s in found] == [2, 4, 8]
    for s in found:
        ours, theirs = s.ratio("p2p"), s.ratio("libtorrent")
        assert ours is not None
        assert theirs is not None
        assert ours < theirs
    report = write_report(runs, tmp_path)
    md = (report.folder / "report.md").read_text()
    page = (report.folder / "report.html").read_text()
    answer = md[md.index("## The answer") : md.index("## The comparison table")]
    assert "Our swarm against libtorrent on the same links (acceptance, N = 2, 4, 8)" in answer
    assert "ours at or below libtorrent's at 3 of 3 N." in answer
    section = md[md.index("## Our swarm and the reference client") : md.index("## Watch")]
    head = "| N | D_p2p | hubswarm p2p: T (T / D_p2p) | hubswarm hybrid: T (T / D_p2p) |"
    assert head in section
    rows = [line for line in section.splitlines() if re.match(r"\| \d+ \|", line)]
    assert [row.split(" | ")[0] for row in rows] == ["| 2", "| 4", "| 8"]
    assert "took at most libtorrent's T / D_p2p at 3 of 3 N." in section
    assert f"Settings: {SETTINGS}" in section
    assert "<h2>Our swarm and the reference client</h2>" in page
    assert 'class="reference"' in page
    # libtorrent is a fourth architecture of the comparison table, with its own badges.
    assert 'data-arch="libtorrent"' in page


def test_where_libtorrent_is_ahead_the_report_says_at_which_n(tmp_path: Path) -> None:
    runs = _with_libtorrent({8: 0.5})
    line = reference_line(runs, ())
    assert line is not None
    assert line.endswith("at 2 of 3 N (not at N=8).")
    md = (write_report(runs, tmp_path).folder / "report.md").read_text()
    assert "at 2 of 3 N; not at N=8." in md


def test_report_without_libtorrent_says_why(tmp_path: Path) -> None:
    runs = _runs()
    failures = [RunFailure("libtorrent", "acceptance", n, MISSING) for n in (2, 4, 8)]
    report = write_report(runs, tmp_path, failures=failures)
    md = (report.folder / "report.md").read_text()
    answer = md[md.index("## The answer") : md.index("## The comparison table")]
    assert f"The reference client was not measured: {MISSING}." in answer
    assert f"libtorrent was not measured: {MISSING}." in md
    assert "pip install 'hubswarm[reference]'" in answer
    assert md.count("| acceptance | libtorrent |") == 3  # the "Not measured" rows


def test_report_of_runs_that_never_asked_for_libtorrent_has_no_such_section(
    tmp_path: Path,
) -> None:
    runs = _runs()
    assert sides(runs) == []
    assert reference_line(runs, ()) is None
    md = (write_report(runs, tmp_path).folder / "report.md").read_text()
    assert "reference client" not in md
