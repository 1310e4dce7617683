"""Build the labelled retrieval set from the Python documentation shipped by Debian.

Source: the package python3.11-doc (reStructuredText sources under
/usr/share/doc/python3.11/html/_sources). Nobody on this project wrote it, and its own structure
gives the labels: every FAQ heading that is a question becomes a query, and the text under it
(up to the next heading) becomes the document that answers it. The question itself is held out
of the corpus. The tutorial and HOWTO pages, split at their sections, are added as distractors,
so a query must find its answer among ~1 MB of Python prose.

    python bench/retrieval/build_dataset.py [--docs DIR] [--out bench/retrieval/python_faq.json.gz]

Without --docs, the package is fetched with `apt-get download` and unpacked with `dpkg -x` into
a temporary directory (nothing is installed on the system).
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
from pathlib import Path

PACKAGE = "python3.11-doc"
SOURCES = "usr/share/doc/python3.11/html/_sources"
PIECE_TOKENS = 200  # distractor pieces stay inside MiniLM's 256-token window
ADORNMENT = re.compile(r"^([=\-^~*+#\"'`])\1{2,}\s*$")


@dataclass
class Section:
    level: int
    title: str
    lines: list[str]


def token_counter() -> Callable[[str], int]:
    from tokenizers import Tokenizer

    from ailb.embeddings.minilm import model_dir

    tok = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tok.no_truncation()  # the file truncates at 128: count everything
    return lambda text: len(tok.encode(text, add_special_tokens=False).ids)


def fetch_docs(workdir: Path) -> tuple[Path, str]:
    subprocess.run(["apt-get", "download", PACKAGE], cwd=workdir, check=True)  # noqa: S603, S607
    deb = next(workdir.glob(f"{PACKAGE}_*.deb"))
    subprocess.run(["dpkg", "-x", str(deb), str(workdir / "x")], check=True)  # noqa: S603, S607
    version = deb.name.split("_")[1]
    return workdir / "x" / SOURCES, f"{PACKAGE} {version}"


def sections(text: str) -> list[Section]:
    """Split a reST file at its headings; levels follow the order adornments first appear."""
    lines = text.splitlines()
    styles: list[tuple[str, bool]] = []
    out = [Section(0, "", [])]
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
            out[-1].lines.append(line)
            i += 1
            continue
        if (style, over) not in styles:
            styles.append((style, over))
        out.append(Section(styles.index((style, over)) + 1, title, []))
        i += step
    return out


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


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80]


def faq_pairs(path: Path, page: str) -> tuple[list[dict[str, object]], list[dict[str, str]]]:
    secs = sections(path.read_text(encoding="utf-8"))
    title = next((s.title for s in secs if s.level == 1), page)
    docs: list[dict[str, object]] = []
    questions: list[dict[str, str]] = []
    category = ""
    for s in secs:
        if s.level == 2 and not s.title.endswith("?"):
            category = s.title
        if not s.title.endswith("?"):
            continue
        body = to_markdown(s.lines)
        if len(body) < 40:
            continue
        doc_id = f"faq/{page}#{slug(s.title)}"
        docs.append(
            {
                "id": doc_id,
                "text": body,
                "metadata": {"title": f"{title} — {category}" if category else title},
            }
        )
        questions.append({"question": s.title, "answer_id": doc_id})
    return docs, questions


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


def distractors(path: Path, group: str, count: Callable[[str], int]) -> list[dict[str, object]]:
    """Every section of a page, cut into pieces that fit the embedding model's window, so a
    plain one-vector-per-document store sees all of their text, as AILB does."""
    secs = sections(path.read_text(encoding="utf-8"))
    page_title = next((s.title for s in secs if s.level == 1), path.stem)
    docs: list[dict[str, object]] = []
    for s in secs:
        text = to_markdown(s.lines)
        if len(text) < 80:
            continue
        name = s.title or page_title
        base = f"{group}/{path.name.removesuffix('.rst.txt')}#{slug(name)}"
        for i, piece in enumerate(_pieces(text, PIECE_TOKENS, count)):
            docs.append(
                {
                    "id": base if i == 0 else f"{base}-{i + 1}",
                    "text": piece,
                    "metadata": {"title": page_title if s.level <= 1 else f"{page_title} — {name}"},
                }
            )
    return docs


def build(src: Path, provenance: str) -> dict[str, object]:
    documents: list[dict[str, object]] = []
    questions: list[dict[str, str]] = []
    for path in sorted((src / "faq").glob("*.rst.txt")):
        if path.name == "index.rst.txt":
            continue
        d, q = faq_pairs(path, path.name.removesuffix(".rst.txt"))
        documents += d
        questions += q
    count = token_counter()
    for group in ("tutorial", "howto"):
        for path in sorted((src / group).glob("*.rst.txt")):
            if path.name != "index.rst.txt":
                documents += distractors(path, group, count)
    ids = [d["id"] for d in documents]
    seen: set[object] = set()
    for d in documents:  # headings repeated within a page: keep ids unique
        while d["id"] in seen:
            d["id"] = f"{d['id']}-2"
        seen.add(d["id"])
    assert len(seen) == len(ids)
    return {
        "source": provenance,
        "description": "Python FAQ questions (held out) -> the FAQ answer under them; "
        f"tutorial and HOWTO sections, in pieces of at most {PIECE_TOKENS} tokens, as "
        "distractors.",
        "documents": documents,
        "questions": questions,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--docs", type=Path, help="an unpacked _sources directory")
    p.add_argument("--provenance", default="")
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("python_faq.json.gz"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.docs is None:
            src, provenance = fetch_docs(Path(tmp))
        else:
            src, provenance = args.docs, args.provenance or str(args.docs)
        data = build(src, provenance)
    args.out.write_bytes(gzip.compress(json.dumps(data, ensure_ascii=False, indent=0).encode()))
    print(
        f"{args.out}: {len(data['documents'])} documents, {len(data['questions'])} questions "
        f"({provenance})"
    )


if __name__ == "__main__":
    main()
