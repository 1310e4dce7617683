"""Splitting documents into chunks for retrieval: pure functions, no I/O.

A chunk is always one contiguous span of the source text (`text[start:end]`), so a retrieved
chunk can be cited and shown exactly as it was written. Chunks follow the document's
structure: Markdown is parsed (markdown-it) into headings, paragraphs, lists, code blocks and
tables, and the largest structural unit that fits one chunk is kept whole (the document, else
each section, else each subsection), because a text that fits the model's window is best
embedded as one vector (bench/retrieval/README.md). Tiny sibling sections join the next one.
Text with no heading left is cut at sentences (prose), items (lists), lines (code, tables) and,
as a last resort, at token boundaries; chunks cut for size overlap by whole sentences.

Sizes are in the embedding model's tokens: MiniLM reads at most 256 (everything after is
ignored), so a chunk plus its heading path must stay inside that window.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

Format = Literal["markdown", "text"]
CountTokens = Callable[[Sequence[str]], list[int]]
# (text) -> character offsets where each token ends, for cutting a sentence longer than a
# chunk; None when the tokenizer cannot tell (then words are the unit)
TokenEnds = Callable[[str], list[int] | None]

CHARS_PER_TOKEN_LIMIT = 12  # more characters a token than this: a blob, not prose; cut it
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=\S)|\n\s*\n")
_HEADING_TAGS = {f"h{i}": i for i in range(1, 7)}


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int
    start: int
    end: int
    text: str  # source[start:end]
    headings: tuple[str, ...]  # the section path the chunk belongs to, outermost first
    tokens: int

    def embedding_text(self) -> str:
        """What is embedded: the section path gives a chunk from deep inside a document the
        context its own words lack; a path the chunk already starts with is not repeated."""
        path = self.headings
        if path and self.text.lstrip("# ").startswith(path[-1]):
            path = path[:-1]
        return f"{' > '.join(path)}\n\n{self.text}" if path else self.text


@dataclass(frozen=True, slots=True)
class _Unit:
    start: int
    end: int
    heading: int = 0  # level of a heading unit, 0 for content
    title: str = ""
    section: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ChunkSettings:
    max_tokens: int = 256
    overlap_tokens: int = 32
    min_tokens: int = 32  # a section smaller than this shares a chunk with the next one


def chunk_document(
    text: str,
    fmt: Format,
    settings: ChunkSettings,
    count: CountTokens,
    token_ends: TokenEnds | None = None,
) -> list[Chunk]:
    """The chunks of one document, in order."""
    if not text.strip():
        return []
    blocks = _markdown_blocks(text) if fmt == "markdown" else _text_blocks(text)
    units = _with_sections(blocks)
    # Budget for the text itself: the section path is embedded in front of it.
    units = _split_large(text, units, settings.max_tokens, count, token_ends)
    return _pack(text, units, settings, count)


# --- structure --------------------------------------------------------------------------------


def _line_starts(text: str) -> list[int]:
    starts = [0]
    for m in re.finditer("\n", text):
        starts.append(m.end())
    return starts


def _markdown_blocks(text: str) -> list[_Unit]:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark").enable("table")
    tokens = md.parse(text)
    starts = _line_starts(text)
    n_lines = len(starts)

    def offset(line: int) -> int:
        return starts[line] if line < n_lines else len(text)

    out: list[_Unit] = []
    for i, tok in enumerate(tokens):
        if tok.level != 0 or tok.map is None or tok.nesting == -1:
            continue
        start, end = offset(tok.map[0]), offset(tok.map[1])
        if tok.type == "heading_open":
            title = tokens[i + 1].content.strip() if i + 1 < len(tokens) else ""
            out.append(_Unit(start, end, _HEADING_TAGS.get(tok.tag, 1), title))
        else:
            out.append(_Unit(start, end))
    return [_trimmed(text, u) for u in out if text[u.start : u.end].strip()]


def _text_blocks(text: str) -> list[_Unit]:
    out = []
    pos = 0
    for m in re.finditer(r"\n[ \t]*\n", text):
        out.append(_Unit(pos, m.start()))
        pos = m.end()
    out.append(_Unit(pos, len(text)))
    return [_trimmed(text, u) for u in out if text[u.start : u.end].strip()]


def _trimmed(text: str, u: _Unit) -> _Unit:
    start, end = u.start, u.end
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return _Unit(start, end, u.heading, u.title, u.section)


def _with_sections(blocks: list[_Unit]) -> list[_Unit]:
    path: list[tuple[int, str]] = []
    out = []
    for b in blocks:
        if b.heading:
            while path and path[-1][0] >= b.heading:
                path.pop()
            path.append((b.heading, b.title))
        out.append(_Unit(b.start, b.end, b.heading, b.title, tuple(t for _, t in path)))
    return out


# --- cutting what is too large ---------------------------------------------------------------


def _split_large(
    text: str,
    units: list[_Unit],
    max_tokens: int,
    count: CountTokens,
    token_ends: TokenEnds | None,
) -> list[_Unit]:
    sizes = count([text[u.start : u.end] for u in units])
    out: list[_Unit] = []
    for u, n in zip(units, sizes, strict=True):
        if u.heading or not _too_large(n, u.end - u.start, max_tokens):
            out.append(u)
            continue
        out += _cut(text, u, max_tokens, count, token_ends)
    return out


def _pieces(text: str, u: _Unit) -> list[tuple[int, int]]:
    """Natural cut points inside one block: sentences for prose, lines for everything else."""
    body = text[u.start : u.end]
    if body.startswith(("```", "~~~", "    ", "|", "- ", "* ", "+ ")) or re.match(
        r"\d+[.)] ", body
    ):
        cuts = [m.end() for m in re.finditer("\n", body)]
    else:
        cuts = [m.start() + len(m.group(0)) for m in _SENTENCE_END.finditer(body)]
    bounds = [0, *cuts, len(body)]
    return [(u.start + a, u.start + b) for a, b in itertools.pairwise(bounds) if b > a]


def _cut(
    text: str, u: _Unit, max_tokens: int, count: CountTokens, token_ends: TokenEnds | None
) -> list[_Unit]:
    spans = _pieces(text, u)
    sizes = count([text[a:b] for a, b in spans])
    out: list[_Unit] = []
    for (a, b), n in zip(spans, sizes, strict=True):
        if not _too_large(n, b - a, max_tokens):
            out.append(_Unit(a, b, section=u.section))
            continue
        # One sentence or line longer than a chunk: cut at token boundaries.
        piece = text[a:b]
        blob = len(piece) > max_tokens * CHARS_PER_TOKEN_LIMIT
        ends = (token_ends(piece) if token_ends is not None and not blob else None) or _word_ends(
            piece
        )
        step = max(1, max_tokens)
        prev = 0
        for i in range(step - 1, len(ends) + step - 1, step):
            end = ends[min(i, len(ends) - 1)]
            if end > prev:
                out.append(_Unit(a + prev, a + end, section=u.section))
            prev = end
        if prev < len(piece):
            out.append(_Unit(a + prev, b, section=u.section))
    return [_trimmed(text, x) for x in out if text[x.start : x.end].strip()]


def _too_large(tokens: int, chars: int, max_tokens: int) -> bool:
    return tokens > max_tokens or chars > max_tokens * CHARS_PER_TOKEN_LIMIT


def _word_ends(piece: str) -> list[int]:
    # Without a tokenizer, about four characters a token.
    return [m.end() for m in re.finditer(r"\S{1,4}", piece)]


# --- packing ----------------------------------------------------------------------------------


def _pack(text: str, units: list[_Unit], s: ChunkSettings, count: CountTokens) -> list[Chunk]:
    """Keep the largest structural unit that fits: the whole document, else each top-level
    section, else its subsections...; tiny sibling sections join the next one; text with no
    heading left is packed sentence by sentence with overlap."""
    if not units:
        return []
    counted = count([text[u.start : u.end] for u in units])
    # A blob's few tokens say nothing of its length: pack it by characters too.
    sizes = [
        max(n, -(-(u.end - u.start) // CHARS_PER_TOKEN_LIMIT))
        for u, n in zip(units, counted, strict=True)
    ]
    prefix_sizes = _path_sizes(units, count)
    chunks: list[Chunk] = []

    def budget(first: int) -> int:
        return max(s.max_tokens - prefix_sizes[units[first].section], s.max_tokens // 2)

    def emit(idx: list[int]) -> None:
        first, last = units[idx[0]], units[idx[-1]]
        chunks.append(
            Chunk(
                index=len(chunks),
                start=first.start,
                end=last.end,
                text=text[first.start : last.end],
                headings=first.section,
                tokens=sum(sizes[j] for j in idx),
            )
        )

    def section(i: int, j: int) -> None:
        if sum(sizes[i:j]) <= budget(i):
            emit(list(range(i, j)))
            return
        levels = [units[k].heading for k in range(i + 1, j) if units[k].heading]
        if not levels:
            sequential(i, j)
            return
        top = min(levels)
        cuts = [i, *(k for k in range(i + 1, j) if units[k].heading == top), j]
        groups: list[tuple[int, int]] = []
        for a, b in itertools.pairwise(cuts):
            if a == b:
                continue
            if groups:
                ga, gb = groups[-1]
                small = sum(sizes[ga:gb]) < s.min_tokens
                if small and sum(sizes[ga:b]) <= budget(ga):
                    groups[-1] = (ga, b)
                    continue
            groups.append((a, b))
        for a, b in groups:
            section(a, b)

    def sequential(i: int, j: int) -> None:
        cur: list[int] = []
        cur_tokens = 0
        for k in range(i, j):
            need = sizes[k]
            if cur and cur_tokens + need > budget(cur[0]):
                # A heading never ends a chunk: it moves on with the text it introduces.
                carried = [cur.pop()] if units[cur[-1]].heading else []
                if cur:
                    emit(cur)
                keep: list[int] = []
                if not carried and s.overlap_tokens > 0:
                    kept = 0
                    for m in reversed(cur[1:]):
                        if units[m].heading or kept + sizes[m] > s.overlap_tokens:
                            break
                        keep.insert(0, m)
                        kept += sizes[m]
                cur = carried or keep
                cur_tokens = sum(sizes[m] for m in cur)
                while cur and cur_tokens + need > budget(cur[0]):  # the overlap must fit too
                    cur_tokens -= sizes[cur.pop(0)]
            cur.append(k)
            cur_tokens += need
        if cur:
            emit(cur)

    section(0, len(units))
    return chunks


def _path_sizes(units: list[_Unit], count: CountTokens) -> dict[tuple[str, ...], int]:
    paths = sorted({u.section for u in units})
    sizes = count([" > ".join(p) for p in paths]) if paths else []
    return {p: (n + 2 if p else 0) for p, n in zip(paths, sizes, strict=True)}
