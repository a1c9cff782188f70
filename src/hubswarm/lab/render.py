"""One document, three renderings: Markdown (report.md), HTML (report.html), the terminal.

The report is built once as a list of blocks (:class:`Heading`, :class:`Paragraph`,
:class:`Notes`, :class:`Table`, :class:`Figure`, :class:`Bullets`) whose inline text is a
sequence of plain strings and :class:`Link` spans. :func:`to_markdown` and :func:`to_html`
walk the same list, so the two files cannot drift apart; :func:`to_rich` draws a
:class:`Table` for the terminal.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.table import Table as RichTable

__all__ = [
    "BADGE_MARKS",
    "Answer",
    "Block",
    "Bullets",
    "Comparison",
    "ComparisonRow",
    "Document",
    "Figure",
    "Heading",
    "Inline",
    "Link",
    "Notes",
    "Paragraph",
    "Table",
    "to_html",
    "to_markdown",
    "to_rich",
]


@dataclass(frozen=True, slots=True)
class Link:
    """A link inside a line of text."""

    text: str
    href: str


Inline = Sequence[str | Link]


@dataclass(frozen=True, slots=True)
class Heading:
    """A section title (level 1 is the document's title)."""

    level: int
    text: str


@dataclass(frozen=True, slots=True)
class Paragraph:
    """A line of text with links."""

    text: Inline


@dataclass(frozen=True, slots=True)
class Notes:
    """Facts a reader must see first (emulation, CPU-bound runs): a quote block, or boxes."""

    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Table:
    """A table of text cells; ``css`` names its kind for the HTML style sheet."""

    head: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    css: str = ""


@dataclass(frozen=True, slots=True)
class Figure:
    """A PNG plot: linked from Markdown, embedded in the HTML (no network needed)."""

    name: str  # the file's name beside the report
    title: str
    png: bytes
    caption: Inline


@dataclass(frozen=True, slots=True)
class Bullets:
    """A list of lines."""

    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Answer:
    """One architecture's cell of the comparison: a headline number and a verdict badge."""

    architecture: str
    headline: str
    level: str  # confirmed, partly, not seen, not measured
    reason: str


@dataclass(frozen=True, slots=True)
class ComparisonRow:
    """A feature: the reference's claims, one answer per architecture, folded evidence."""

    feature: str
    claims: tuple[str, str]  # (client-server, peer-to-peer), as the reference states them
    answers: tuple[Answer, ...]
    evidence: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Comparison:
    """The comparison table: badges in the cells, the evidence of each row folded beneath."""

    architectures: tuple[str, ...]
    rows: tuple[ComparisonRow, ...]


Block = Heading | Paragraph | Notes | Table | Figure | Bullets | Comparison

# The badges' marks in Markdown (the HTML colours them).
BADGE_MARKS = {"confirmed": "✅", "partly": "◐", "not seen": "❌", "not measured": "…"}


@dataclass(frozen=True, slots=True)
class Document:
    """A titled list of blocks."""

    title: str
    blocks: tuple[Block, ...]


# --- Markdown --------------------------------------------------------------------------------


def _md_inline(text: Inline) -> str:
    return "".join(f"[{s.text}]({s.href})" if isinstance(s, Link) else s for s in text)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_block(block: Block) -> list[str]:
    """The block's lines; every block ends with a blank line."""
    match block:
        case Heading(level, text):
            return ["#" * level + " " + text, ""]
        case Paragraph(text):
            return [_md_inline(text), ""]
        case Notes(items):
            return [*(f"> {n}" for n in items), ""]
        case Table(head, rows):
            lines = ["| " + " | ".join(_md_cell(h) for h in head) + " |", "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            return [*lines, ""]
        case Figure(name, title, _, caption):
            return [f"![{title}]({name})", "", f"*{title}* — {_md_inline(caption)}", ""]
        case Bullets(items):
            return [*(f"- {item}" for item in items), ""]
        case Comparison(architectures, rows):
            return _md_comparison(architectures, rows)


def _md_comparison(architectures: Sequence[str], rows: Sequence[ComparisonRow]) -> list[str]:
    head = ("Feature", "The reference says (client-server / peer-to-peer)", *architectures)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.feature, " / ".join(row.claims)]
        cells += [
            f"**{a.headline}** {BADGE_MARKS.get(a.level, '')} {a.level}: {a.reason}"
            for a in row.answers
        ]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    lines.append("")
    for row in rows:
        lines += [f"<details><summary>Evidence: {row.feature}</summary>", ""]
        lines += [*(f"- {e}" for e in row.evidence), "", "</details>", ""]
    return lines


def to_markdown(doc: Document) -> str:
    """The document as Markdown (GitHub's tables)."""
    lines = [line for block in doc.blocks for line in _md_block(block)]
    return "\n".join(lines)


# --- HTML ------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.3rem .5rem;vertical-align:top;text-align:left}
th{background:#f0f0f0} .ref{color:#666;font-style:italic}
figure{margin:1.5rem 0} figcaption{font-size:.85rem;color:#555}
.note{background:#fff8e0;border-left:4px solid #e0b000;padding:.4rem .8rem}
.headline{font-size:1.15rem;line-height:1.5}
.num{font-weight:600;font-size:1.05rem} .why{font-size:.85rem;color:#444}
.badge{display:inline-block;border-radius:.7rem;padding:0 .5rem;font-size:.8rem;color:#fff}
.b-confirmed{background:#2e7d32} .b-partly{background:#b26a00} .b-not-seen{background:#c62828}
.b-not-measured{background:#777}
tr.evidence td{border-top:none;background:#fafafa;font-size:.85rem}
details summary{cursor:pointer;color:#555}
"""


def _html_inline(text: Inline) -> str:
    return "".join(
        f'<a href="{html.escape(s.href)}">{html.escape(s.text)}</a>'
        if isinstance(s, Link)
        else html.escape(s)
        for s in text
    )


def _html_block(block: Block) -> list[str]:
    esc = html.escape
    match block:
        case Heading(level, text):
            return [f"<h{level}>{esc(text)}</h{level}>"]
        case Paragraph(text):
            return [f"<p>{_html_inline(text)}</p>"]
        case Notes(items):
            return [f'<p class="note">{esc(n)}</p>' for n in items]
        case Table(head, rows, css):
            h = "".join(f"<th>{esc(c)}</th>" for c in head)
            body = "".join(
                "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows
            )
            return [
                f'<table class="{css}"><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>'
            ]
        case Figure(name, title, png, caption):
            data = base64.b64encode(png).decode("ascii")
            return [
                f'<figure><img alt="{esc(title)}" src="data:image/png;base64,{data}">'
                f'<figcaption>{esc(title)} (<a href="{esc(name)}">png</a>) — '
                f"{_html_inline(caption)}</figcaption></figure>"
            ]
        case Bullets(items):
            return ["<ul>", *(f"<li>{esc(item)}</li>" for item in items), "</ul>"]
        case Comparison(architectures, rows):
            return _html_comparison(architectures, rows)


def _html_answer(feature: str, a: Answer) -> str:
    esc = html.escape
    level = a.level.replace(" ", "-")
    return (
        f'<td><div class="num">{esc(a.headline)}</div>'
        f'<span class="badge b-{level}" data-feature="{esc(feature)}" '
        f'data-arch="{esc(a.architecture)}" data-verdict="{esc(a.level)}">{esc(a.level)}</span> '
        f'<span class="why">{esc(a.reason)}</span></td>'
    )


def _html_comparison(architectures: Sequence[str], rows: Sequence[ComparisonRow]) -> list[str]:
    esc = html.escape
    head = ("Feature", "The reference says", *architectures)
    out = ['<table class="compare"><thead><tr>']
    out += [f"<th>{esc(h)}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for row in rows:
        claims = (
            f'<td class="ref">client-server: {esc(row.claims[0])}<br>'
            f"peer-to-peer: {esc(row.claims[1])}</td>"
        )
        answers = "".join(_html_answer(row.feature, a) for a in row.answers)
        out.append(f"<tr><td><b>{esc(row.feature)}</b></td>{claims}{answers}</tr>")
        items = "".join(f"<li>{esc(e)}</li>" for e in row.evidence)
        out.append(
            f'<tr class="evidence"><td colspan="{len(head)}"><details>'
            f"<summary>evidence: {esc(row.feature)}</summary><ul>{items}</ul></details></td></tr>"
        )
    out.append("</tbody></table>")
    return ["".join(out)]


def to_html(doc: Document) -> str:
    """The document as one self-contained HTML page (styles inline, figures embedded)."""
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>{html.escape(doc.title)}</title>",
        f"<style>{_CSS}</style></head><body>",
    ]
    parts += [line for block in doc.blocks for line in _html_block(block)]
    parts.append("</body></html>")
    return "\n".join(parts)


# --- the terminal ----------------------------------------------------------------------------


def to_rich(table: Table, title: str = "") -> RichTable:
    """A rich table for the terminal: every column folds, a line between rows."""
    from rich.table import Table as RichTable

    out = RichTable(title=title or None, show_lines=True)
    for head in table.head:
        out.add_column(head, overflow="fold")
    for row in table.rows:
        out.add_row(*row)
    return out
