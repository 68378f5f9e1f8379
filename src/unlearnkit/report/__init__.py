"""One rendering layer for the reports a person reads (benchmark, audit, deletion).

A report is built as a :class:`Document` of blocks (sections, paragraphs, notes, tables,
figures) and rendered to Markdown (:func:`to_markdown`) or to one self-contained HTML file
(:func:`to_html`: inline CSS and PNG figures, no network, no JavaScript).

The benchmark report is :func:`unlearnkit.report.bench.bench_document`; the per-replicate
export (CSV, JSON, Parquet) is :func:`unlearnkit.report.long.export`.
"""

from __future__ import annotations

from .document import (
    BulletList,
    Cell,
    Document,
    Figure,
    GroupRow,
    Note,
    Paragraph,
    Pre,
    Row,
    Section,
    Table,
    to_markdown,
)
from .html import to_html

__all__ = [
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
    "to_html",
    "to_markdown",
]
