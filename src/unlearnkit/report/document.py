"""A small document model for the reports a person reads, and its Markdown renderer.

A report is a :class:`Document`: a title and a list of blocks (sections, paragraphs, notes,
lists, tables, figures, preformatted text). The same document renders to Markdown
(:func:`to_markdown`, here) and to one self-contained HTML file
(:func:`unlearnkit.report.html.to_html`), so the benchmark, audit and deletion reports say the
same thing in both formats. Text may use three inline marks: ``**bold**``, ``*italic*`` and
```code```.

Some things only make sense in one format: a figure is drawn only in HTML (Markdown skips it),
a table's group rows and a cell's second line (``sub``) only show in HTML, and any block can be
limited to one format with ``only="md"`` or ``only="html"``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

__all__ = [
    "Block",
    "BulletList",
    "Cell",
    "Document",
    "Figure",
    "GroupRow",
    "Note",
    "Paragraph",
    "Pre",
    "Row",
    "Section",
    "Table",
    "to_markdown",
]


@dataclass
class Cell:
    """One table cell: ``text`` (both formats), an optional second line ``sub`` (HTML only,
    e.g. a 95 % interval), a CSS class (``diverged``, ``good``, ``bad``, ``muted``...) and a
    tooltip."""

    text: str
    sub: str = ""
    cls: str = ""
    title: str = ""


@dataclass
class Row:
    """A table row with a CSS class (``ref`` for Retrain, ``floor`` for the noise floor,
    ``orig`` for the original model, ``diverged``)."""

    cells: list[str | Cell]
    cls: str = ""


@dataclass
class GroupRow:
    """A heading row spanning the table (HTML only), e.g. an access level."""

    title: str


@dataclass
class Paragraph:
    text: str
    only: str = ""


@dataclass
class Note:
    """A call-out: ``kind`` is ``info``, ``warn``, ``pass`` or ``fail`` (HTML colours);
    Markdown writes it as a quote (``bold`` makes the whole note bold)."""

    text: str
    kind: str = "info"
    bold: bool = False
    only: str = ""


@dataclass
class BulletList:
    items: list[str]
    only: str = ""


@dataclass
class Pre:
    """Preformatted text (shown as is)."""

    text: str
    only: str = ""


@dataclass
class Table:
    """A table. ``footer`` is a paragraph written right under it; ``caption`` one above."""

    head: list[str]
    rows: list[Row | GroupRow | list[str | Cell]]
    caption: str = ""
    footer: str = ""
    only: str = ""


@dataclass
class Figure:
    """A plot drawn only in HTML: ``make()`` returns a matplotlib figure (or ``None`` when
    there is nothing to draw), embedded as an inline PNG."""

    make: Callable[[], Any]
    alt: str
    caption: str = ""
    only: str = "html"


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2
    only: str = ""

    def add(self, *blocks: Block | None) -> Section:
        self.blocks.extend(b for b in blocks if b is not None)
        return self


Block = Union[Section, Paragraph, Note, BulletList, Pre, Table, Figure]  # noqa: UP007


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)
    subtitle: str = ""

    def add(self, *blocks: Block | None) -> Document:
        self.blocks.extend(b for b in blocks if b is not None)
        return self


# --------------------------------------------------------------------------------------------
# Markdown


def cell_text(c: str | Cell) -> str:
    return c.text if isinstance(c, Cell) else str(c)


def row_cells(r: Row | GroupRow | Sequence[str | Cell]) -> list[str | Cell] | None:
    """The cells of a row (``None`` for a group row)."""
    if isinstance(r, GroupRow):
        return None
    return list(r.cells) if isinstance(r, Row) else list(r)


def md_table(head: Sequence[str], rows: Iterable[Row | GroupRow | Sequence[str | Cell]]) -> str:
    """A Markdown table (group rows are left out: the table's own columns carry the group)."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = row_cells(r)
        if cells is not None:
            lines.append("| " + " | ".join(cell_text(c) for c in cells) + " |")
    return "\n".join(lines)


def _md_blocks(blocks: Sequence[Block]) -> list[str]:
    out: list[str] = []
    for b in blocks:
        if getattr(b, "only", "") == "html" or isinstance(b, Figure):
            continue
        if isinstance(b, Section):
            inner = _md_blocks(b.blocks)
            if inner:
                out.append(f"{'#' * b.level} {b.title}")
                out.extend(inner)
        elif isinstance(b, Paragraph):
            out.append(b.text)
        elif isinstance(b, Note):
            out.append(f"**{b.text}**" if b.bold else f"> {b.text}")
        elif isinstance(b, BulletList):
            out.append("\n".join(f"- {item}" for item in b.items))
        elif isinstance(b, Pre):
            out.append(f"```\n{b.text}\n```")
        elif isinstance(b, Table):
            if b.caption:
                out.append(b.caption)
            out.append(md_table(b.head, b.rows))
            if b.footer:
                out.append(b.footer)
    return out


def to_markdown(doc: Document | Sequence[Block]) -> str:
    """Render a document (or a list of blocks, without a title) as Markdown."""
    if isinstance(doc, Document):
        parts = [f"# {doc.title}"]
        if doc.subtitle:
            parts.append(doc.subtitle)
        parts += _md_blocks(doc.blocks)
    else:
        parts = _md_blocks(doc)
    return "\n\n".join(p.rstrip("\n") for p in parts if p) + "\n"
