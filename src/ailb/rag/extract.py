"""Text out of files for ingestion: plain text, Markdown, HTML (to Markdown, keeping headings,
lists, code and tables so the chunker can follow the structure) and PDF (text per page)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from ailb.rag.chunking import Format

SUFFIXES = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}

_SKIP = {"script", "style", "noscript", "template", "svg", "nav", "head", "iframe", "button"}
_BLOCK = {
    "p", "div", "section", "article", "main", "header", "footer", "aside", "blockquote",
    "figure", "figcaption", "dl", "dt", "dd", "form", "fieldset", "address", "details", "summary",
}  # fmt: skip
_VOID = {"br", "hr", "img", "input", "meta", "link", "area", "base", "col", "embed", "source"}


class _Markdown(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.pre = 0
        self.lists: list[str] = []
        self.title = ""
        self._in_title = False
        self._heading: int | None = None
        self._cells: list[str] | None = None
        self._row: list[str] | None = None
        self._rows_done = 0

    def _emit(self, text: str) -> None:
        if self._row is not None and self._cells is not None:
            self._cells.append(text)
        else:
            self.out.append(text)

    def _break(self, n: int = 2) -> None:
        self.out.append("\n" * n)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if tag in _SKIP:
            self.skip += 1
            return
        if self.skip:
            return
        if re.fullmatch(r"h[1-6]", tag):
            self._break()
            self._heading = int(tag[1])
            self.out.append("#" * self._heading + " ")
        elif tag == "pre":
            self._break()
            self.out.append("```\n")
            self.pre += 1
        elif tag in ("ul", "ol"):
            self.lists.append(tag)
            self._break(1)
        elif tag == "li":
            self._break(1)
            depth = max(len(self.lists) - 1, 0)
            marker = "1." if self.lists and self.lists[-1] == "ol" else "-"
            self.out.append("  " * depth + marker + " ")
        elif tag == "br":
            self._emit("\n")
        elif tag == "tr":
            self._row, self._cells = [], []
        elif tag in ("td", "th"):
            self._cells = []
        elif tag == "table":
            self._break()
            self._rows_done = 0
        elif tag == "code" and not self.pre:
            self._emit("`")
        elif tag in _BLOCK:
            self._break()

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
            return
        if self.skip:
            return
        if re.fullmatch(r"h[1-6]", tag):
            self._heading = None
            self._break()
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)
            self.out.append("\n```")
            self._break()
        elif tag in ("ul", "ol"):
            if self.lists:
                self.lists.pop()
            self._break(1)
        elif tag in ("td", "th") and self._row is not None and self._cells is not None:
            self._row.append(" ".join("".join(self._cells).split()).replace("|", "\\|"))
            self._cells = []
        elif tag == "tr" and self._row is not None:
            self.out.append("| " + " | ".join(self._row) + " |\n")
            if self._rows_done == 0:
                self.out.append("|" + "---|" * len(self._row) + "\n")
            self._rows_done += 1
            self._row, self._cells = None, None
        elif tag == "table":
            self._break()
        elif tag == "code" and not self.pre:
            self._emit("`")
        elif tag in _BLOCK:
            self._break()

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self.skip:
            return
        if self.pre:
            self.out.append(data)
        elif self._heading is not None:
            self.out.append(" ".join(data.split()))
        else:
            text = re.sub(r"\s+", " ", data)
            if text.strip() or (self.out and not self.out[-1].endswith((" ", "\n"))):
                self._emit(text)


@dataclass(frozen=True, slots=True)
class Extracted:
    text: str
    format: Format
    title: str


def html_to_markdown(html: str) -> str:
    return _html(html).text


def _html(html: str) -> Extracted:
    p = _Markdown()
    p.feed(html)
    p.close()
    text = "".join(p.out)
    # Tidy: trailing spaces, runs of blank lines, blank lines inside list runs.
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return Extracted(text, "markdown", " ".join(p.title.split()))


def _pdf(path: Path) -> Extracted:
    from pypdf import PdfReader

    reader = PdfReader(str(path))
    pages = [(page.extract_text() or "").strip() for page in reader.pages]
    meta = reader.metadata
    title = str(meta.title) if meta is not None and meta.title else ""
    return Extracted("\n\n".join(p for p in pages if p), "text", title)


def read_file(path: Path) -> Extracted:
    """The text of a file of a supported type (SUFFIXES); ValueError for any other."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: unsupported file type (supported: {', '.join(SUFFIXES)})")
    if kind == "pdf":
        return _pdf(path)
    raw = path.read_bytes().decode("utf-8", errors="replace")
    if kind == "html":
        return _html(raw)
    title = ""
    if kind == "markdown":
        m = re.search(r"^#\s+(.+)$", raw, re.M)
        title = m.group(1).strip() if m else ""
    return Extracted(raw, "markdown" if kind == "markdown" else "text", title)
