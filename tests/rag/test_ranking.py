"""Hybrid re-ranking: BM25 over the dense candidates, added to the cosine."""

from __future__ import annotations

import pytest

from ailb.rag.ranking import Lexicon, rerank


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return Lexicon()


def order(lexicon: Lexicon, query: str, cands: list[tuple[str, str, float]], **kw: float) -> list:
    return [r.item for r in rerank(lexicon, query, cands, **kw)]


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("How do I make the script executable?", ["make", "script", "execut"]),
        ("Running runs RUN", ["run", "run", "run"]),
        ("what is the", []),
        ("sys.path_hooks and os.walk()", ["sys", "path_hook", "os", "walk"]),
        ("don't", ["don't"]),
        ("Django\u2019s cache can\u2019t", ["django", "cach", "can't"]),  # typeset apostrophe
    ],
)
def test_terms_are_stemmed_without_function_words(
    lexicon: Lexicon, text: str, terms: list[str]
) -> None:
    assert lexicon.terms(text) == terms


def test_a_query_of_function_words_still_has_terms(lexicon: Lexicon) -> None:
    assert lexicon.query_terms("what is it") == ["what", "is", "it"]
    assert lexicon.query_terms("run running runs") == ["run"]


def test_weight_zero_keeps_the_dense_order(lexicon: Lexicon) -> None:
    cands = [("a", "nothing here", 0.9), ("b", "executable script", 0.5), ("c", "x", 0.7)]
    assert order(lexicon, "executable script", cands, weight=0) == ["a", "c", "b"]


def test_lexical_match_breaks_a_near_tie(lexicon: Lexicon) -> None:
    cands = [
        ("generic", "Python programs can be run in many ways.", 0.61),
        ("exact", "Use chmod +x to make the script executable on Unix.", 0.60),
    ]
    ranked = rerank(lexicon, "How do I make a script executable?", cands)
    assert [r.item for r in ranked] == ["exact", "generic"]
    assert ranked[0].lexical == 1.0
    assert ranked[0].score == pytest.approx(0.60 + 0.15)
    assert ranked[1].dense == 0.61


def test_lexical_weight_cannot_overturn_a_large_dense_gap(lexicon: Lexicon) -> None:
    cands = [("dense", "an answer in other words", 0.80), ("words", "script executable", 0.50)]
    assert order(lexicon, "script executable", cands) == ["dense", "words"]


def test_a_term_in_every_candidate_counts_less_than_a_rare_one(lexicon: Lexicon) -> None:
    cands = [
        ("common", "python python python tips", 0.5),
        ("rare", "python walrus operator", 0.5),
        ("other", "python basics", 0.5),
    ]
    ranked = rerank(lexicon, "python walrus", cands)
    assert ranked[0].item == "rare"
    assert ranked[0].lexical == 1.0
    assert ranked[1].lexical < 0.5


def test_empty_candidates(lexicon: Lexicon) -> None:
    assert rerank(lexicon, "anything", []) == []


def test_no_term_matches_leaves_dense_scores(lexicon: Lexicon) -> None:
    ranked = rerank(lexicon, "quantum", [("a", "x y", 0.3), ("b", "z", 0.4)])
    assert [(r.item, r.score, r.lexical) for r in ranked] == [("b", 0.4, 0.0), ("a", 0.3, 0.0)]


def test_stemming_from_many_threads_at_once_is_right() -> None:
    """Searches rerank in worker threads, sharing one Lexicon. A Snowball stemmer holds the
    word it works on in the instance: unguarded, four threads here raised IndexError on about
    4 % of new words and cached a wrong stem for a quarter of them."""
    import sys
    import threading

    import snowballstemmer

    reference = snowballstemmer.stemmer("english")
    words = [f"{w}{i}ing" for i in range(3000) for w in ("running", "generalization")]
    expected = {w: reference.stemWord(w) for w in words}
    lexicon = Lexicon()
    problems: list[str] = []

    def stem_all(chunk: list[str]) -> None:
        for w in chunk:
            try:
                if lexicon.stem(w) != expected[w]:
                    problems.append(f"wrong stem for {w}")
            except Exception as e:
                problems.append(repr(e))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=stem_all, args=(words[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not problems, (len(problems), problems[:3])
    assert all(lexicon.stem(w) == expected[w] for w in words)  # nothing wrong was cached


def test_numbers_are_their_own_terms_and_stay_out_of_the_stem_cache() -> None:
    lexicon = Lexicon()
    assert lexicon.query_terms("order 123456 shipped in 2024") == [
        "order",
        "123456",
        "ship",
        "2024",
    ]
    assert lexicon.stem("42") == "42"
    assert set(lexicon._stems) == {"order", "shipped"}
