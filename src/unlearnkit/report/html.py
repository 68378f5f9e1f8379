"""Render a :class:`~unlearnkit.report.document.Document` as one self-contained HTML file.

Figures are drawn with matplotlib (the object API, no pyplot state, so no display is needed)
and inlined as base64 PNG; the page loads nothing from the network and runs no JavaScript.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Sequence
from typing import Any

from .document import (
    Block,
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
)

__all__ = ["figure_png", "inline", "to_html"]

_CSS = """
:root { --ink: #1d2733; --muted: #5f6b7a; --line: #d5dbe3; --ref: #e7f4ea; --floor: #eef1f5;
  --warn: #fff3cd; --bad: #fdecea; --good: #e8f6ec; --accent: #2c5d8f; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
  max-width: 78rem; margin: 2rem auto; padding: 0 1.2rem; line-height: 1.45; }
h1 { font-size: 1.7rem; margin-bottom: .2rem; }
h2 { font-size: 1.35rem; margin-top: 2.2rem; border-bottom: 2px solid var(--line);
  padding-bottom: .2rem; }
h3 { font-size: 1.1rem; margin-top: 1.6rem; }
h4 { font-size: 1rem; margin-top: 1.2rem; color: var(--muted); }
p.subtitle { color: var(--muted); margin-top: 0; }
nav.toc { background: #f7f9fb; border: 1px solid var(--line); border-radius: .4rem;
  padding: .5rem 1rem; font-size: .92rem; }
nav.toc ul { margin: .2rem 0; padding-left: 1.2rem; columns: 2; }
.note { padding: .6rem .9rem; border-radius: .4rem; margin: .8rem 0;
  border: 1px solid var(--line); background: #f7f9fb; }
.note.warn { background: var(--warn); border-color: #e0b84c; }
.note.pass { background: var(--good); border-color: #27ae60; font-weight: 600; }
.note.fail { background: var(--bad); border-color: #c0392b; font-weight: 600; }
.scroll { overflow-x: auto; margin: .5rem 0 1rem; }
table { border-collapse: collapse; font-size: .86rem; }
caption { caption-side: top; text-align: left; color: var(--muted); padding: .2rem 0; }
th, td { border: 1px solid var(--line); padding: .28rem .55rem; vertical-align: top; }
th { background: #f2f5f8; text-align: left; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td .sub { display: block; color: var(--muted); font-size: .78rem; }
tr.group td { background: #fafbfc; font-weight: 600; color: var(--accent);
  border-top: 2px solid var(--line); }
tr.ref td { background: var(--ref); font-weight: 600; }
tr.floor td { background: var(--floor); font-style: italic; }
tr.orig td { color: var(--muted); }
td.diverged, tr.diverged td { background: var(--warn); }
td.good { background: var(--good); }
td.bad { background: var(--bad); }
td.muted { color: var(--muted); }
p.footer { color: var(--muted); font-size: .85rem; margin-top: -.4rem; }
figure { margin: 1rem 0 1.4rem; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: .85rem; }
pre { white-space: pre-wrap; background: #f6f6f6; padding: .6rem; font-size: .85rem; }
code { background: #f2f4f7; padding: 0 .2rem; border-radius: .2rem; font-size: .9em; }
"""

_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_ITALIC = re.compile(r"(?<![\w*])\*(?![\s*])([^*]+?)(?<![\s*])\*(?![\w*])")
_NUMERIC = re.compile(r"^[\s]*[-+−–]?[\d.∞]")


def inline(text: str) -> str:
    """Escape ``text`` for HTML and turn its inline marks (code, bold, italic) into tags."""
    parts = _CODE.split(text)
    out = []
    for i, part in enumerate(parts):
        esc = html.escape(part, quote=False)
        if i % 2:
            out.append(f"<code>{esc}</code>")
        else:
            esc = _BOLD.sub(r"<strong>\1</strong>", esc)
            out.append(_ITALIC.sub(r"<em>\1</em>", esc))
    return "".join(out)


def figure_png(fig: Any, dpi: int = 96) -> str:
    """A matplotlib figure as base64 PNG text."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode()


def _slug(title: str, used: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"
    slug, i = base, 2
    while slug in used:
        slug, i = f"{base}-{i}", i + 1
    used.add(slug)
    return slug


def _cell(c: str | Cell) -> str:
    if isinstance(c, Cell):
        text, sub, cls, title = c.text, c.sub, c.cls, c.title
    else:
        text, sub, cls, title = str(c), "", "", ""
    classes = [cls] if cls else []
    if _NUMERIC.match(text):
        classes.append("num")
    attrs = f' class="{" ".join(classes)}"' if classes else ""
    if title:
        attrs += f' title="{html.escape(title)}"'
    body = inline(text) + (f'<span class="sub">{inline(sub)}</span>' if sub else "")
    return f"<td{attrs}>{body}</td>"


def _table(t: Table) -> str:
    head = "".join(f"<th>{inline(h)}</th>" for h in t.head)
    rows = []
    for r in t.rows:
        if isinstance(r, GroupRow):
            rows.append(
                f'<tr class="group"><td colspan="{len(t.head)}">{inline(r.title)}</td></tr>'
            )
            continue
        cells, cls = (r.cells, r.cls) if isinstance(r, Row) else (r, "")
        attr = f' class="{cls}"' if cls else ""
        rows.append(f"<tr{attr}>" + "".join(_cell(c) for c in cells) + "</tr>")
    cap = f"<caption>{inline(t.caption)}</caption>" if t.caption else ""
    out = (
        f'<div class="scroll"><table>{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )
    if t.footer:
        out += f'<p class="footer">{inline(t.footer)}</p>'
    return out


def _figure(f: Figure) -> str:
    fig = f.make()
    if fig is None:
        return ""
    png = figure_png(fig)
    cap = f"<figcaption>{inline(f.caption)}</figcaption>" if f.caption else ""
    return (
        f'<figure><img alt="{html.escape(f.alt)}" src="data:image/png;base64,{png}">{cap}</figure>'
    )


def _blocks(blocks: Sequence[Block], used: set[str], toc: list[tuple[str, str]]) -> str:
    out: list[str] = []
    for b in blocks:
        if getattr(b, "only", "") == "md":
            continue
        if isinstance(b, Section):
            inner = _blocks(b.blocks, used, toc if b.level > 2 else [])
            if not inner:
                continue
            slug = _slug(b.title, used)
            if b.level == 2:
                toc.append((slug, b.title))
            lvl = min(max(b.level, 2), 4)
            out.append(f'<section><h{lvl} id="{slug}">{inline(b.title)}</h{lvl}>{inner}</section>')
        elif isinstance(b, Paragraph):
            out.append(f"<p>{inline(b.text)}</p>")
        elif isinstance(b, Note):
            out.append(f'<div class="note {b.kind}">{inline(b.text)}</div>')
        elif isinstance(b, BulletList):
            out.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Pre):
            out.append(f"<pre>{html.escape(b.text)}</pre>")
        elif isinstance(b, Table):
            out.append(_table(b))
        elif isinstance(b, Figure):
            out.append(_figure(b))
    return "\n".join(x for x in out if x)


def to_html(doc: Document, toc: bool = True) -> str:
    """Render ``doc`` as one HTML page (inline CSS and images, no script)."""
    entries: list[tuple[str, str]] = []
    body = _blocks(doc.blocks, set(), entries)
    nav = ""
    if toc and len(entries) > 2:
        items = "".join(f'<li><a href="#{s}">{inline(t)}</a></li>' for s, t in entries)
        nav = f'<nav class="toc"><strong>Contents</strong><ul>{items}</ul></nav>'
    sub = f'<p class="subtitle">{inline(doc.subtitle)}</p>' if doc.subtitle else ""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(doc.title)}</title><style>{_CSS}</style></head><body>\n"
        f"<h1>{inline(doc.title)}</h1>{sub}{nav}\n{body}\n</body></html>\n"
    )
