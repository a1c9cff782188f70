"""The comparison table as row specs: one structure, the same cells in Markdown, HTML and the
terminal; a new row is one more spec, with no renderer naming a feature."""

from __future__ import annotations

import dataclasses
import re
from html.parser import HTMLParser

from hubswarm.lab.metrics import CorruptOutcome, FaultEvent, RunResult
from hubswarm.lab.render import Document, Table, to_html, to_markdown, to_rich
from hubswarm.lab.rowspec import CONFIRMED, NOT_SEEN, UNMEASURED
from hubswarm.lab.table import (
    COLUMNS,
    NOT_MEASURED,
    REFERENCE,
    ROWS,
    TERMINAL_COLUMNS,
    Measured,
    RowSpec,
    Verdict,
    as_table,
    build_table,
    verdicts,
)
from tests.lab.synthetic import cs_run, faulty_run, p2p_run


def runs() -> list[RunResult]:
    corrupt = FaultEvent(0.0, "corrupt_peer", "x", corrupt=CorruptOutcome((4,), 3, 1, 3, 3))
    return [
        cs_run(2),
        cs_run(4),
        faulty_run(),
        p2p_run(2),
        dataclasses.replace(p2p_run(4), faults=(corrupt,)),
        dataclasses.replace(p2p_run(4), architecture="hybrid"),
    ]


class _Cells(HTMLParser):
    """The text of every <td> and <th>, row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def markdown_cells(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("| "):
            cells = re.split(r"(?<!\\)\|", line)[1:-1]
            rows.append([c.strip().replace("\\|", "|") for c in cells])
    return rows


def test_one_table_of_rows() -> None:
    assert [spec.feature for spec in ROWS] == [
        "Architecture",
        "Data Storage",
        "Scalability",
        "Reliability",
        "Cost",
        "Security",
        "Performance",
    ]
    assert tuple((s.feature, s.reference_cs, s.reference_p2p) for s in ROWS) == REFERENCE
    assert len({spec.feature for spec in ROWS}) == len(ROWS)


def test_every_row_renders_the_same_cells_in_markdown_html_and_terminal() -> None:
    table = build_table(runs())
    expected = [[column.cell(row) for column in COLUMNS] for row in table]
    full = as_table(table)
    md = markdown_cells(to_markdown(Document("t", (full,))))
    assert md[0] == [c.head for c in COLUMNS]
    assert md[1:] == expected
    parser = _Cells()
    parser.feed(to_html(Document("t", (full,))))
    assert parser.rows[0] == [c.head for c in COLUMNS]
    assert parser.rows[1:] == expected
    terminal = to_rich(as_table(table, TERMINAL_COLUMNS))
    assert [c.header for c in terminal.columns] == [c.head for c in TERMINAL_COLUMNS]
    columns = [list(c.cells) for c in terminal.columns]
    for i, row in enumerate(table):
        assert [cells[i] for cells in columns] == [c.cell(row) for c in TERMINAL_COLUMNS]
    # The corrupt peer's finding is in the p2p cell, in every rendering.
    security = next(r for r in table if r.feature == "Security")
    assert "3 bad pieces detected, 1 bans, 3/3 honest clients verified" in security.p2p


def test_cells_with_pipes_and_markup_survive_both_renderers() -> None:
    table = Table(("a|b", "<c>"), (("x | y", "<b>&</b>"),))
    cells = [["a|b", "<c>"], ["x | y", "<b>&</b>"]]
    assert markdown_cells(to_markdown(Document("t", (table,)))) == cells
    parser = _Cells()
    parser.feed(to_html(Document("t", (table,))))
    assert parser.rows == cells


def test_a_new_row_is_one_spec() -> None:
    def count(m: Measured) -> str:
        return f"{len(m.runs)} runs"

    spec = RowSpec(
        "Examples",
        "Web servers, email systems, databases",
        "BitTorrent, blockchain, file sharing",
        count,
        lambda m: "the hub is one",
        lambda m: f"{m.who}: the swarm is one",
    )
    (row,) = build_table(runs(), [spec])
    assert row.cs == "3 runs. Verdict: the hub is one"
    assert row.p2p == "2 runs. Verdict: P2P: the swarm is one"
    assert row.hybrid == "1 runs. Verdict: hybrid: the swarm is one"
    assert row.verdict == "the hub is one; P2P: the swarm is one"
    (empty,) = build_table([], [spec])
    assert (empty.cs, empty.p2p, empty.hybrid) == (NOT_MEASURED,) * 3
    assert empty.verdict == "client-server not measured; P2P not measured"


def _performance(results: list[RunResult]) -> dict[str, Verdict]:
    ((_, answers),) = [(s, v) for s, v in verdicts(results) if s.feature == "Performance"]
    return {v.architecture: v for v in answers}


def _stretched(run: RunResult, factor: float) -> RunResult:
    """``run`` with every client's end time multiplied by ``factor``."""
    clients = tuple(
        dataclasses.replace(c, end=None if c.end is None else c.end * factor) for c in run.clients
    )
    return dataclasses.replace(run, clients=clients)


def test_performance_reads_the_time_against_its_own_bound_across_the_sweep() -> None:
    # Client-server at 1.05 x D_cs at N = 2 and 4: set by the server; the swarm at 3.3 and
    # 2.4 x D_p2p (synthetic.p2p_run): variable.
    answers = _performance([cs_run(2), cs_run(4), p2p_run(2), p2p_run(4)])
    assert answers["client-server"].level == CONFIRMED
    assert "T / D_cs 1.05-1.05 over N = 2, 4" in answers["client-server"].reason
    assert answers["p2p"].level == CONFIRMED
    assert answers["p2p"].headline == "T / D_p2p 2.40-3.30 over N"
    # A client-server time that leaves its bound, and a swarm as steady as its bound: not seen.
    steady = _stretched(p2p_run(4), 3.3 / 2.4)
    answers = _performance([cs_run(2), _stretched(cs_run(4), 1.5), p2p_run(2), steady])
    assert answers["client-server"].level == NOT_SEEN
    assert answers["p2p"].level == NOT_SEEN
    # One N is no sweep: nothing to compare.
    assert _performance([cs_run(2)])["client-server"].level == UNMEASURED
