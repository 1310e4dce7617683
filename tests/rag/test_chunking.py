"""Chunking: structure-aware, contiguous spans, sizes bounded, overlap at sentence boundaries.

A word counter stands in for the model's tokenizer so every expectation is exact."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

import pytest

from ailb.rag.chunking import Chunk, ChunkSettings, chunk_document


def count(texts: Sequence[str]) -> list[int]:
    return [len(t.split()) for t in texts]


def word_ends(text: str) -> list[int]:
    return [m.end() for m in re.finditer(r"\S+", text)]


def chunks(text: str, fmt: str = "markdown", **kw: int) -> list[Chunk]:
    s = ChunkSettings(**{"max_tokens": 20, "overlap_tokens": 5, "min_tokens": 4, **kw})
    out = chunk_document(text, fmt, s, count, word_ends)  # type: ignore[arg-type]
    for c in out:  # every chunk is exactly a span of the source
        assert c.text == text[c.start : c.end]
        assert c.text == c.text.strip()
    assert [c.index for c in out] == list(range(len(out)))
    return out


def covered(text: str, out: list[Chunk]) -> bool:
    """Every non-space character of the source is inside some chunk."""
    mask = [False] * len(text)
    for c in out:
        mask[c.start : c.end] = [True] * (c.end - c.start)
    return all(m or ch.isspace() for m, ch in zip(mask, text, strict=True))


def sentence(i: int) -> str:
    return f"Sentence number {i} has exactly seven words."


def test_empty_and_blank_documents_have_no_chunks() -> None:
    assert chunks("") == []
    assert chunks("  \n\n \t\n") == []


def test_a_document_that_fits_stays_whole() -> None:
    text = "# Title\n\nOne short paragraph.\n\nAnother one."
    (only,) = chunks(text)
    assert only.text == text
    assert only.headings == ("Title",)


def test_each_section_starts_its_own_chunk_with_its_heading_path() -> None:
    text = (
        "# Guide\n\nIntro words here for the guide overall.\n\n"
        "## Install\n\nRun the installer and wait until it completes.\n\n"
        "### Linux\n\nUse the package manager of your distribution please.\n\n"
        "## Use\n\nStart it with the command line tool provided."
    )
    out = chunks(text)
    assert [c.text.split("\n")[0] for c in out] == ["# Guide", "## Install", "### Linux", "## Use"]
    assert [c.headings for c in out] == [
        ("Guide",),
        ("Guide", "Install"),
        ("Guide", "Install", "Linux"),
        ("Guide", "Use"),
    ]
    assert covered(text, out)


def test_a_document_that_fits_stays_whole_whatever_its_sections() -> None:
    text = "# T\n\nIntro.\n\n## A\n\nAlpha text.\n\n## B\n\nBeta text."
    assert [c.text for c in chunks(text, max_tokens=40)] == [text]


def test_a_section_that_fits_keeps_its_subsections() -> None:
    body = " ".join(sentence(i) for i in range(2))
    big = f"## Big\n\n{body}\n\n### Sub\n\nShort words here."
    small = "## Small\n\nAlso short text here but enough words."
    out = chunks(f"{big}\n\n{small}", max_tokens=30, min_tokens=2)
    assert [c.text for c in out] == [big, small]
    assert [c.headings for c in out] == [("Big",), ("Small",)]


def test_a_tiny_section_shares_a_chunk_with_the_next() -> None:
    text = "## Tiny\n\nShort.\n\n## Next\n\nThis section has enough words to stand alone here."
    out = chunks(text, min_tokens=6)
    assert len(out) == 1
    assert out[0].headings == ("Tiny",)


def test_a_long_paragraph_is_cut_at_sentences_with_overlap() -> None:
    text = " ".join(sentence(i) for i in range(12))
    out = chunks(text, max_tokens=22, overlap_tokens=8)
    assert len(out) > 3
    for c in out:
        assert c.tokens <= 22
        assert c.text.endswith(".")  # never mid-sentence
        assert c.text.startswith("Sentence")
    # Consecutive chunks share one whole sentence (7 words fit the 8-word overlap).
    for a, b in itertools.pairwise(out):
        assert b.start < a.end
        assert text[b.start : a.end].count("Sentence") == 1
    assert covered(text, out)


def test_no_overlap_across_a_heading() -> None:
    text = f"## A\n\n{sentence(1)} {sentence(2)}\n\n## B\n\n{sentence(3)}"
    out = chunks(text, max_tokens=20, overlap_tokens=10)
    assert len(out) == 2
    assert out[0].end <= out[1].start


def test_a_heading_never_ends_a_chunk() -> None:
    body = " ".join(sentence(i) for i in range(2))
    text = f"## A\n\n{body}\n\n## B\n\n{body}"
    for c in chunks(text, max_tokens=18, overlap_tokens=0, min_tokens=100):
        assert not c.text.rstrip().split("\n")[-1].startswith("#")


def test_code_blocks_are_cut_at_lines() -> None:
    lines = [f"x{i} = compute(a, b, c)" for i in range(30)]
    text = "## Code\n\n```python\n" + "\n".join(lines) + "\n```"
    out = chunks(text, max_tokens=25, overlap_tokens=0)
    assert len(out) > 1
    for c in out:
        for line in c.text.splitlines():
            assert line in lines or line.startswith(("```", "## ")) or not line
    assert covered(text, out)


def test_lists_are_cut_at_items() -> None:
    text = "\n".join(f"- item {i} with a few more words" for i in range(20))
    for c in chunks(text, max_tokens=21, overlap_tokens=0):
        assert all(line.startswith("- item") for line in c.text.splitlines())


def test_a_sentence_longer_than_a_chunk_is_cut_at_token_boundaries() -> None:
    text = " ".join(f"w{i}" for i in range(95))
    out = chunks(text, max_tokens=20, overlap_tokens=0)
    assert [c.tokens for c in out] == [20, 20, 20, 20, 15]
    assert " ".join(c.text for c in out) == text


def test_a_blob_without_spaces_is_cut_by_characters() -> None:
    text = "A" * 5000  # one "word" to any tokenizer, far too long to embed meaningfully
    out = chunks(text, max_tokens=20, overlap_tokens=0)
    assert len(out) > 1
    assert "".join(c.text for c in out) == text
    assert max(len(c.text) for c in out) <= 20 * 12


def test_plain_text_splits_at_blank_lines_and_ignores_markup() -> None:
    text = "# not a heading in plain text\n\nfirst paragraph words\n\n\nsecond paragraph words"
    out = chunks(text, "text", max_tokens=7, overlap_tokens=0, min_tokens=1)
    assert [c.text for c in out] == [
        "# not a heading in plain text",
        "first paragraph words\n\n\nsecond paragraph words",
    ]
    assert all(c.headings == () for c in out)


@pytest.mark.parametrize(
    ("headings", "text", "embedded"),
    [
        ((), "body", "body"),
        (("Guide", "Install"), "body text", "Guide > Install\n\nbody text"),
        (("Guide", "Install"), "## Install\n\nbody", "Guide\n\n## Install\n\nbody"),
    ],
)
def test_embedding_text_carries_the_section_path_once(
    headings: tuple[str, ...], text: str, embedded: str
) -> None:
    c = Chunk(0, 0, len(text), text, headings, 3)
    assert c.embedding_text() == embedded
