"""Two campaigns side by side (``hubswarm lab report A/runs.json B/runs.json``): before and
after a change, netns against sim. The verdicts row by row, then every run both measured,
with the differences marked: a verdict that changed, a time or server upload that moved by
more than :data:`CHANGE` either way."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hubswarm.lab.formats import secs
from hubswarm.lab.metrics import RunResult, summarize
from hubswarm.lab.render import Document, Heading, Paragraph, Table, to_html, to_markdown
from hubswarm.lab.table import verdicts

__all__ = ["CHANGE", "Pair", "compare_campaigns", "pair_document"]

# A number that moved by more than this fraction is marked.
CHANGE = 0.10
CHANGED = "⚠ changed"


@dataclass(frozen=True, slots=True)
class Pair:
    """The two campaigns' tables, ready to render."""

    verdicts: Table
    runs: Table
    changes: int  # marked cells


def _ratio_mark(a: float | None, b: float | None) -> str:
    if a is None or b is None or a <= 0:
        return "" if a == b else CHANGED
    ratio = b / a
    if abs(ratio - 1) <= CHANGE:
        return f"×{ratio:.2f}"
    return f"×{ratio:.2f} " + ("▲ more" if ratio > 1 else "▼ less")


def _key(r: RunResult) -> tuple[str, int, str, float, float, str]:
    return (r.scenario, r.n, r.architecture, r.rtt, r.loss, r.emulation)


def compare_campaigns(a: Sequence[RunResult], b: Sequence[RunResult]) -> Pair:
    """The verdicts and the runs of ``a`` and ``b``, differences marked."""
    changes = 0
    rows = []
    va = {(v.feature, v.architecture): v for _, row in verdicts(a) for v in row}
    vb = {(v.feature, v.architecture): v for _, row in verdicts(b) for v in row}
    for feature_arch in dict.fromkeys([*va, *vb]):
        x, y = va.get(feature_arch), vb.get(feature_arch)
        left = f"{x.headline} ({x.level})" if x else "-"
        right = f"{y.headline} ({y.level})" if y else "-"
        same = x is not None and y is not None and x.level == y.level
        changes += not same
        rows.append((*feature_arch, left, right, "" if same else CHANGED))
    verdict_table = Table(("feature", "architecture", "A", "B", ""), tuple(rows), "pair")
    # Runs match on scenario, N, architecture and network point; the emulation may differ
    # (netns against sim), so it is part of the label, not of the match.
    by_a = {_key(r)[:5]: r for r in a}
    by_b = {_key(r)[:5]: r for r in b}
    run_rows = []
    for key in dict.fromkeys([*by_a, *by_b]):
        ra, rb = by_a.get(key), by_b.get(key)
        ma = summarize(ra) if ra else None
        mb = summarize(rb) if rb else None
        ta = ma.last_completion if ma else None
        tb = mb.last_completion if mb else None
        sa = ma.server_bytes_sent if ma else None
        sb = mb.server_bytes_sent if mb else None
        t_mark, s_mark = _ratio_mark(ta, tb), _ratio_mark(sa, sb)
        changes += ("▲" in t_mark or "▼" in t_mark or t_mark == CHANGED) + (
            "▲" in s_mark or "▼" in s_mark or s_mark == CHANGED
        )
        emulation = "/".join(dict.fromkeys(r.emulation for r in (ra, rb) if r))
        run_rows.append(
            (
                key[0],
                str(key[1]),
                key[2],
                emulation,
                secs(ta),
                secs(tb),
                t_mark,
                "-" if sa is None else f"{sa / 2**20:.1f} MiB",
                "-" if sb is None else f"{sb / 2**20:.1f} MiB",
                s_mark,
            )
        )
    head: tuple[str, ...] = ("scenario", "N", "architecture", "emulation", "T A", "T B")
    head += ("B/A", "server A", "server B", "B/A")
    return Pair(verdict_table, Table(head, tuple(run_rows), "pair"), changes)


def pair_document(a_path: Path, b_path: Path, pair: Pair) -> Document:
    """The comparison page: which campaign is which, the verdicts, the runs."""
    return Document(
        "hubswarm lab: two campaigns",
        (
            Heading(1, "hubswarm lab: two campaigns side by side"),
            Paragraph([f"A: {a_path}"]),
            Paragraph([f"B: {b_path}"]),
            Paragraph(
                [
                    f"{pair.changes} differences marked: a verdict that changed ({CHANGED}), "
                    f"a time or server upload that moved by more than {100 * CHANGE:.0f}% "
                    "(▲ more, ▼ less)."
                ]
            ),
            Heading(2, "Verdicts"),
            pair.verdicts,
            Heading(2, "Runs"),
            pair.runs,
        ),
    )


def write_pair(a_path: Path, b_path: Path, pair: Pair, folder: Path) -> Path:
    """compare.md and compare.html in ``folder``; the HTML's path."""
    doc = pair_document(a_path, b_path, pair)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "compare.md").write_text(to_markdown(doc), encoding="utf-8")
    page = folder / "compare.html"
    page.write_text(to_html(doc), encoding="utf-8")
    return page
