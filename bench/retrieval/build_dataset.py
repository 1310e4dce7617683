"""Build labelled retrieval sets from documentation shipped by Debian.

Every set comes from a package that nobody on this project wrote, and the package's own structure
gives the labels: every FAQ heading that is a question becomes a query, and the text under it (up
to the next heading) becomes the document that answers it. The question itself is held out of the
corpus. Other pages of the same package (tutorials, HOWTOs, manual chapters), split at their
sections and cut into pieces that fit the embedding model's window, are added as distractors, so
a query must find its answer among a lot of prose on the same subject.

    python_faq  python3.11-doc     Python FAQ (reST sources); tutorial and HOWTOs as distractors.
                                   The set the ranking was designed on.
    zsh_faq     zsh-doc            Zsh FAQ (HTML, chapters 1-6); the core chapters of the zsh
                                   manual as distractors. Held out.
    django_faq  python-django-doc  Django FAQ (HTML); the tutorial, HOWTOs and topic guides as
                                   distractors. Held out.

    python bench/retrieval/build_dataset.py [--dataset NAME|all] [--docs DIR] [--out FILE]

Without --docs, each package is fetched with `apt-get download` and unpacked with `dpkg -x` into
a temporary directory (nothing is installed on the system). The Debian FAQ is reserved for an
independent check and is never used here.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
import tempfile
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

PIECE_TOKENS = 200  # distractor pieces stay inside MiniLM's 256-token window
ADORNMENT = re.compile(r"^([=\-^~*+#\"'`])\1{2,}\s*$")


@dataclass
class Section:
    level: int  # 0 for the text before the first heading
    title: str
    text: str  # the body up to the next heading, as Markdown


def token_counter() -> Callable[[str], int]:
    from tokenizers import Tokenizer

    from ailb.embeddings.minilm import model_dir

    tok = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tok.no_truncation()  # the file truncates at 128: count everything
    return lambda text: len(tok.encode(text, add_special_tokens=False).ids)


def fetch_docs(package: str, root: str, workdir: Path) -> tuple[Path, str]:
    got = subprocess.run(["apt-get", "download", package], cwd=workdir, check=False)  # noqa: S603, S607
    if got.returncode != 0:
        raise SystemExit(f"{package}: `apt-get download` failed (run `apt-get update` first?)")
    deb = next(workdir.glob(f"{package}_*.deb"))
    out = workdir / package
    subprocess.run(["dpkg", "-x", str(deb), str(out)], check=True)  # noqa: S603, S607
    version = unquote(deb.name.split("_")[1])  # an epoch's colon is quoted in the file name
    if not (out / root).is_dir():
        raise SystemExit(f"{package} {version} has no {root}: its layout changed")
    return out / root, f"{package} {version}"


# --- reStructuredText (python3.11-doc ships its sources) -------------------------------------


def rst_sections(text: str) -> list[Section]:
    """Split a reST file at its headings; levels follow the order adornments first appear."""
    lines = text.splitlines()
    styles: list[tuple[str, bool]] = []
    out: list[tuple[int, str, list[str]]] = [(0, "", [])]
    i = 0
    while i < len(lines):
        line = lines[i]
        over = False
        title = None
        # Overlined title: ===\nTitle\n===
        if (
            ADORNMENT.match(line)
            and i + 2 < len(lines)
            and ADORNMENT.match(lines[i + 2])
            and lines[i + 1].strip()
        ):
            over, title, style, step = True, lines[i + 1].strip(), line.strip()[0], 3
        elif (
            line.strip()
            and not line.startswith(" ")
            and i + 1 < len(lines)
            and ADORNMENT.match(lines[i + 1])
            and len(lines[i + 1].strip()) >= len(line.strip()) - 2
        ):
            title, style, step = line.strip(), lines[i + 1].strip()[0], 2
        if title is None:
            out[-1][2].append(line)
            i += 1
            continue
        if (style, over) not in styles:
            styles.append((style, over))
        out.append((styles.index((style, over)) + 1, title, []))
        i += step
    return [Section(level, title, to_markdown(body)) for level, title, body in out]


_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`([^`<]*?)\s*(?:<([^`>]*)>)?`")
_LINK = re.compile(r"`([^`<]+?)\s*<[^`>]*>`__?")
_REF = re.compile(r"`([^`]+?)`_+")
_LITERAL = re.compile(r"``([^`]+)``")


def _inline(line: str) -> str:
    def role(m: re.Match[str]) -> str:
        text = (m.group(1) or m.group(2) or "").strip().lstrip("~!.")
        kind = m.group(0)[1:].split(":", 1)[0]
        if kind in ("pep", "rfc") and text.isdigit():
            return f"{kind.upper()} {text}"
        return text

    line = _ROLE.sub(role, line)
    line = _LINK.sub(r"\1", line)
    line = _LITERAL.sub(r"`\1`", line)
    line = _REF.sub(r"\1", line)
    return line


_DROP_DIRECTIVES = ("index", "only", "contents", "highlight", "testsetup", "testcleanup", "toctree")


def to_markdown(lines: list[str]) -> str:
    """reST body -> Markdown-like text: markup removed, code kept as fenced blocks."""
    out: list[str] = []
    skip_indent: int | None = None
    code_indent: int | None = None
    code: list[str] = []

    def close_code() -> None:
        body = textwrap.dedent("\n".join(code)).strip("\n")
        if body:
            out.extend(["```", body, "```", ""])
        code.clear()

    for raw in lines:
        stripped = raw.strip()
        indent = len(raw) - len(raw.lstrip())
        if skip_indent is not None:
            if not stripped or indent > skip_indent:
                continue
            skip_indent = None
        if code_indent is not None:
            if not stripped or indent > code_indent:
                code.append(raw.rstrip())
                continue
            close_code()
            code_indent = None
        if stripped.startswith(".. "):
            directive = stripped[3:].split("::", 1)[0].strip()
            if stripped.startswith(".. _") or directive in _DROP_DIRECTIVES or "::" not in stripped:
                skip_indent = indent
                continue
            if directive in ("code-block", "sourcecode", "code", "doctest"):
                code_indent = indent
            continue  # note, seealso, versionadded...: keep the indented body as text
        if stripped.endswith("::"):
            text = _inline(stripped[:-2].rstrip())
            out.append(text + ":" if text else "")
            code_indent = indent
            continue
        out.append(_inline(stripped))
    if code_indent is not None:
        close_code()
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


# --- HTML (Sphinx and texinfo output, zsh's YODL FAQ) ----------------------------------------

_SKIP_TAGS = {"head", "script", "style", "form", "font", "nav"}  # font: texinfo's page footer
_SKIP_CLASSES = {
    "headerlink", "copiable-anchor",  # the pilcrow after a heading
    "header", "menu",  # texinfo: navigation bar, list of subsections
    "sphinxsidebar", "related", "contents",  # Sphinx: sidebar, navigation, local table of contents
}  # fmt: skip
_SKIP_IDS = {"hd", "ft", "sidebar"}  # Django's theme: header, footer, sidebar
_SKIP_ROLES = {"navigation", "search"}
_PARAGRAPH = {
    "p", "div", "section", "blockquote", "ul", "ol", "dl", "table", "figure", "hr", "h1", "h2",
    "h3", "h4", "h5", "h6", "pre",
}  # fmt: skip
_LINE = {"li", "dt", "dd", "tr", "br"}
_INLINE_CODE = {"code", "tt", "kbd", "samp"}
_VOID = {"br", "hr", "img", "input", "meta", "link", "area", "base", "col", "wbr"}
_NAV_LIST = re.compile(r"<hr>\s*<ul>.*?</ul>\s*<hr>", re.S | re.I)  # zsh FAQ: chapter links


class _HtmlSections(HTMLParser):
    """Headings h1-h6 cut the page into sections; bodies become Markdown-like text (paragraphs,
    `- ` list items, ``` code blocks, `inline code`); navigation and page chrome are dropped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[tuple[int, str, list[str]]] = [(0, "", [])]
        self.buf: list[str] = []  # the paragraph being read
        self.skip: str | None = None  # the tag of an element being dropped
        self.skip_depth = 0  # its nesting (same tag) inside itself
        self.heading: tuple[int, list[str]] | None = None
        self.code: list[str] | None = None  # inside <pre>
        self.inline_code = 0

    def _flush(self) -> None:
        lines = (" ".join(line.split()) for line in "".join(self.buf).split("\n"))
        text = "\n".join(line for line in lines if line not in ("", "-"))
        if text:
            self.sections[-1][2].append(text)
        self.buf.clear()

    def _dropped(self, tag: str, attrs: list[tuple[str, str | None]]) -> bool:
        a = dict(attrs)
        return (
            tag in _SKIP_TAGS
            or bool(_SKIP_CLASSES.intersection((a.get("class") or "").split()))
            or a.get("id") in _SKIP_IDS
            or a.get("role") in _SKIP_ROLES
        )

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.skip is not None:
            self.skip_depth += tag == self.skip
            return
        if tag not in _VOID and self._dropped(tag, attrs):
            self.skip, self.skip_depth = tag, 1
            return
        if self.code is not None:
            return
        if tag in _PARAGRAPH:
            self._flush()
        if re.fullmatch(r"h[1-6]", tag):
            self.heading = (int(tag[1]), [])
        elif tag == "pre":
            self.code = []
        elif tag in _LINE:
            self.buf.append("\n- " if tag == "li" else "\n")
        elif tag in _INLINE_CODE and self.heading is None:
            self.inline_code += 1
            if self.inline_code == 1:
                self.buf.append("`")

    def handle_endtag(self, tag: str) -> None:
        if self.skip is not None:
            self.skip_depth -= tag == self.skip
            if self.skip_depth == 0:
                self.skip = None
            return
        if tag == "pre" and self.code is not None:
            body = textwrap.dedent("".join(self.code).replace("\t", "    ")).strip("\n")
            if body.strip():
                self.sections[-1][2].append(f"```\n{body}\n```")
            self.code = None
        elif self.code is not None:
            return
        elif re.fullmatch(r"h[1-6]", tag) and self.heading is not None:
            level, parts = self.heading
            self.sections.append((level, " ".join("".join(parts).split()), []))
            self.heading = None
        elif tag in _INLINE_CODE and self.inline_code:
            self.inline_code -= 1
            if self.inline_code == 0:
                self.buf.append("`")
        elif tag in _PARAGRAPH:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self.skip is not None:
            return
        if self.code is not None:
            self.code.append(data)
        elif self.heading is not None:
            self.heading[1].append(data)
        else:
            self.buf.append(re.sub(r"\s+", " ", data))  # line breaks come from the markup


def html_sections(html: str) -> list[Section]:
    p = _HtmlSections()
    p.feed(_NAV_LIST.sub("", html))
    p.close()
    p._flush()
    return [Section(level, title, "\n\n".join(body)) for level, title, body in p.sections]


# --- questions and answers, distractors ------------------------------------------------------


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80]


def page_title(secs: list[Section], fallback: str) -> tuple[str, int]:
    """The page's first top-level heading, and that level."""
    headed = [s for s in secs if s.level > 0]
    if not headed:
        return fallback, 1
    top = min(s.level for s in headed)
    return next(s.title for s in headed if s.level == top), top


def _pieces(text: str, limit: int, count: Callable[[str], int]) -> list[str]:
    """Paragraph groups of at most `limit` tokens (a longer paragraph stays whole)."""
    out: list[str] = []
    cur: list[str] = []
    for para in re.split(r"\n{2,}(?![^`]*```)", text):
        if cur and count("\n\n".join([*cur, para])) > limit:
            out.append("\n\n".join(cur))
            cur = []
        cur.append(para)
    if cur:
        out.append("\n\n".join(cur))
    return out


def _cut(base: str, text: str, title: str, count: Callable[[str], int]) -> list[dict[str, object]]:
    return [
        {"id": base if i == 0 else f"{base}-{i + 1}", "text": piece, "metadata": {"title": title}}
        for i, piece in enumerate(_pieces(text, PIECE_TOKENS, count))
    ]


def faq_pairs(
    secs: list[Section],
    page: str,
    question: Callable[[str], str | None],
    count: Callable[[str], int] | None = None,
) -> tuple[list[dict[str, object]], list[tuple[str, dict[str, object]]]]:
    """One document per question heading, holding the text under it, paired with the query
    (the documents' ids are made unique later; the pairs follow the documents). A heading
    that is not a question and either has no text of its own or has subsections is a category:
    it stays in the document title. With `count`, the FAQ's other entries are kept too, in
    pieces, as distractors on their page."""
    title, _ = page_title(secs, page.rsplit("/", 1)[-1])
    docs: list[dict[str, object]] = []
    questions: list[tuple[str, dict[str, object]]] = []
    category = ""
    for i, s in enumerate(secs):
        query = question(s.title)
        deeper = i + 1 < len(secs) and secs[i + 1].level > s.level
        if s.level == 2 and query is None and (deeper or len(s.text) < 40):
            category = s.title
        doc_title = f"{title} — {category}" if category else title
        if query is None:
            if count is not None and len(s.text) >= 40:
                docs += _cut(f"{page}#{slug(s.title or title)}", s.text, doc_title, count)
            continue
        if len(s.text) < 40:
            continue
        doc: dict[str, object] = {
            "id": f"{page}#{slug(s.title)}",
            "text": s.text,
            "metadata": {"title": doc_title},
        }
        docs.append(doc)
        questions.append((query, doc))
    return docs, questions


def distractors(
    secs: list[Section], page: str, count: Callable[[str], int]
) -> list[dict[str, object]]:
    """Every section of a page, cut into pieces that fit the embedding model's window, so a
    plain one-vector-per-document store sees all of their text, as AILB does."""
    title, top = page_title(secs, page.rsplit("/", 1)[-1])
    docs: list[dict[str, object]] = []
    for s in secs:
        if len(s.text) < 80:
            continue
        name = s.title or title
        docs += _cut(
            f"{page}#{slug(name)}", s.text, title if s.level <= top else f"{title} — {name}", count
        )
    return docs


# --- the sets --------------------------------------------------------------------------------


def _ends_with_question_mark(title: str) -> str | None:
    return title if title.endswith("?") else None


def _has_question_mark(title: str) -> str | None:
    return title if "?" in title else None


def _zsh_question(title: str) -> str | None:
    """`3.13: How do I get a newline in my prompt?` -> the question without its number."""
    m = re.fullmatch(r"\d+\.\d+:\s*(.+)", title)
    return m.group(1) if m and "?" in title else None


@dataclass(frozen=True)
class Source:
    package: str
    root: str  # the documentation directory inside the package
    suffix: str
    sections: Callable[[str], list[Section]]
    faq: tuple[str, ...]  # globs under root; index pages are always left out
    distractors: tuple[str, ...]
    question: Callable[[str], str | None]  # heading -> query, None for a heading that is not one
    faq_others: bool  # keep the FAQ's non-question entries as distractors on their page
    description: str


ZSH_MANUAL = (
    # The manual's core chapters (texinfo cuts them into one file per node), the ones the FAQ
    # keeps pointing at; the module, contributed-function and index pages are left out.
    "Invocation", "Files", "Shell-Grammar", "Redirection", "Command-Execution", "Functions",
    "Jobs-_0026-Signals", "Arithmetic-Evaluation", "Conditional-Expressions", "Prompt-Expansion",
    "Expansion", "Parameters", "Options", "Shell-Builtin-Commands", "Zsh-Line-Editor",
)  # fmt: skip

SOURCES = {
    "python_faq": Source(
        package="python3.11-doc",
        root="usr/share/doc/python3.11/html/_sources",
        suffix=".rst.txt",
        sections=rst_sections,
        faq=("faq/*.rst.txt",),
        distractors=("tutorial/*.rst.txt", "howto/*.rst.txt"),
        question=_ends_with_question_mark,
        faq_others=False,
        description="Python FAQ questions (held out) -> the FAQ answer under them; tutorial and "
        f"HOWTO sections, in pieces of at most {PIECE_TOKENS} tokens, as distractors.",
    ),
    "zsh_faq": Source(
        package="zsh-doc",
        root="usr/share/doc/zsh-common/html",
        suffix=".html",
        sections=html_sections,
        faq=("FAQ0*.html",),
        distractors=tuple(f"{name}.html" for name in ZSH_MANUAL),
        question=_zsh_question,
        faq_others=True,
        description="Zsh FAQ question headings (numbered entries with a question mark, number "
        "dropped, held out) -> the entry's text; the FAQ's other entries and the core chapters "
        f"of the zsh manual, in pieces of at most {PIECE_TOKENS} tokens, as distractors.",
    ),
    "django_faq": Source(
        package="python-django-doc",
        root="usr/share/doc/python-django-doc/html",
        suffix=".html",
        sections=html_sections,
        faq=("faq/*.html",),
        distractors=("intro/*.html", "howto/**/*.html", "topics/**/*.html"),
        question=_has_question_mark,
        faq_others=True,
        description="Django FAQ question headings (held out) -> the text under them; the FAQ's "
        "other entries, the tutorial, the HOWTOs and the topic guides, in pieces of at most "
        f"{PIECE_TOKENS} tokens, as distractors.",
    ),
}


def _pages(src: Path, globs: tuple[str, ...], suffix: str) -> list[tuple[Path, str]]:
    """(file, page id: its path under src without the suffix), in a stable order."""
    out = []
    for pattern in globs:
        for path in sorted(src.glob(pattern)):
            if path.name != f"index{suffix}":
                out.append((path, path.relative_to(src).as_posix().removesuffix(suffix)))
    return out


def build(source: Source, src: Path, provenance: str) -> dict[str, object]:
    documents: list[dict[str, object]] = []
    questions: list[tuple[str, dict[str, object]]] = []
    count = token_counter()
    for path, page in _pages(src, source.faq, source.suffix):
        secs = source.sections(path.read_text(encoding="utf-8"))
        d, q = faq_pairs(secs, page, source.question, count if source.faq_others else None)
        documents += d
        questions += q
    for path, page in _pages(src, source.distractors, source.suffix):
        documents += distractors(source.sections(path.read_text(encoding="utf-8")), page, count)
    ids = [d["id"] for d in documents]
    seen: set[object] = set()
    for d in documents:  # headings repeated within a page (or equal once slugged): unique ids
        while d["id"] in seen:
            d["id"] = f"{d['id']}-2"
        seen.add(d["id"])
    assert len(seen) == len(ids)
    return {
        "source": provenance,
        "description": source.description,
        "documents": documents,
        "questions": [{"question": q, "answer_id": d["id"]} for q, d in questions],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--dataset", choices=[*SOURCES, "all"], default="all")
    p.add_argument("--docs", type=Path, help="the package's unpacked documentation directory")
    p.add_argument("--provenance", default="")
    p.add_argument("--out", type=Path, help="default: bench/retrieval/NAME.json.gz")
    args = p.parse_args()
    names = list(SOURCES) if args.dataset == "all" else [args.dataset]
    if (args.docs or args.out) and len(names) > 1:
        p.error("--docs and --out need a single --dataset")
    for name in names:
        source = SOURCES[name]
        out = args.out or Path(__file__).with_name(f"{name}.json.gz")
        with tempfile.TemporaryDirectory() as tmp:
            if args.docs is None:
                src, provenance = fetch_docs(source.package, source.root, Path(tmp))
            else:
                src, provenance = args.docs, args.provenance or str(args.docs)
            data = build(source, src, provenance)
        text = json.dumps(data, ensure_ascii=False, indent=0).encode()
        out.write_bytes(gzip.compress(text, mtime=0))  # the same bytes when rebuilt
        print(
            f"{out}: {len(data['documents'])} documents, {len(data['questions'])} questions "
            f"({provenance})"
        )


if __name__ == "__main__":
    main()
