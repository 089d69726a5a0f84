"""A small report document: a list of blocks rendered to Markdown and to one self-contained HTML file.

Blocks are plain dataclasses (heading, paragraph, bullets, table, code, figure); inline text may use
Markdown's `code` and **bold**. ``to_markdown`` links figures by their path relative to the report;
``to_html`` inlines them as base64 PNG so the HTML file is the whole report::

    doc = [Heading(1, "Demo"), Para("TAGI **wins**."), Table(["a", "b"], [["1", "2"]]),
           Figure("figures/tagi.png", "TAGI vs baselines")]
    write_report(doc, Path("results/demo"), "Demo")
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path

from hyperadapt.io import atomic_write_text
from hyperadapt.report.tables import markdown_table


@dataclass(frozen=True)
class Heading:
    """A section heading, level 1 to 6."""

    level: int
    text: str


@dataclass(frozen=True)
class Para:
    """A paragraph of inline text."""

    text: str


@dataclass(frozen=True)
class Bullets:
    """A bulleted list of inline texts."""

    items: list[str]


@dataclass(frozen=True)
class Table:
    """A table of inline texts, one list per row."""

    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Code:
    """A code block (shown verbatim)."""

    text: str
    language: str = ""


@dataclass(frozen=True)
class Figure:
    """A PNG file, by its path relative to the report's folder."""

    path: str
    caption: str


Block = Heading | Para | Bullets | Table | Code | Figure


def to_markdown(blocks: list[Block]) -> str:
    """The document as GitHub-flavoured Markdown."""
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Para):
            out.append(b.text)
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {item}" for item in b.items))
        elif isinstance(b, Table):
            out.append(markdown_table(b.header, b.rows))
        elif isinstance(b, Code):
            out.append(f"```{b.language}\n{b.text.rstrip()}\n```")
        elif isinstance(b, Figure):
            out.append(f"![{b.caption}]({b.path})\n\n*{b.caption}*")
    return "\n\n".join(out) + "\n"


_INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*")


def _inline_html(text: str) -> str:
    """Escape ``text`` and turn `code` and **bold** into HTML."""
    parts, pos = [], 0
    for m in _INLINE.finditer(text):
        parts.append(html.escape(text[pos : m.start()]))
        parts.append(
            f"<code>{html.escape(m.group(1))}</code>"
            if m.group(1) is not None
            else f"<strong>{html.escape(m.group(2))}</strong>"
        )
        pos = m.end()
    parts.append(html.escape(text[pos:]))
    return "".join(parts)


def _image_src(root: Path, rel: str) -> str | None:
    path = root / rel
    if not path.exists():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


STYLE = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;line-height:1.45;color:#222}table{border-collapse:collapse;margin:1em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}th{background:#f3f3f3}
code{background:#f4f4f4;padding:0 .2em;border-radius:3px;font-size:.9em}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;border-radius:4px}pre code{background:none;padding:0}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:.9em}
h1{border-bottom:2px solid #ddd}h2{border-bottom:1px solid #eee;margin-top:2em}"""


def to_html(blocks: list[Block], root: Path, title: str) -> str:
    """The document as one HTML page; figures under ``root`` are inlined as base64 PNG."""
    body: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{_inline_html(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            body.append(f"<p>{_inline_html(b.text)}</p>")
        elif isinstance(b, Bullets):
            body.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{_inline_html(h)}</th>" for h in b.header)
            rows = "".join("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>" for row in b.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(b, Code):
            body.append(f"<pre><code>{html.escape(b.text.rstrip())}</code></pre>")
        elif isinstance(b, Figure):
            src = _image_src(root, b.path)
            img = (
                f'<img src="{src}" alt="{html.escape(b.caption)}">'
                if src
                else f"<p><em>figure missing: {html.escape(b.path)}</em></p>"
            )
            body.append(f"<figure>{img}<figcaption>{_inline_html(b.caption)}</figcaption></figure>")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_report(blocks: list[Block], root: Path, title: str) -> tuple[Path, Path]:
    """``root/report.md`` and the self-contained ``root/report.html``; returns both paths."""
    md = atomic_write_text(root / "report.md", to_markdown(blocks))
    page = atomic_write_text(root / "report.html", to_html(blocks, root, title))
    return md, page
