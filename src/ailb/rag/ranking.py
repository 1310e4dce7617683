"""Hybrid ranking: the dense candidates from the vector store, re-ranked with BM25.

BM25's statistics (document frequencies, average length) are taken from the candidates
themselves. Measured on the retrieval set (bench/retrieval): re-ranking the top 30-50 dense
candidates this way gains as much as fusing with a full-corpus lexical index, so there is no
second index to build, store or keep in sync between instances sharing one Chroma server.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

LEXICAL_WEIGHT = 0.15  # BM25, scaled to [0, 1] over the candidates, added to the cosine
K1 = 1.2
B = 0.75
_WORD = re.compile(r"[^\W_]+(?:['_][^\W_]+)*")
_CACHE_LIMIT = 50_000  # words; about 5 MB (a language's working vocabulary fits)
_DOC_CACHE_LIMIT = 50_000

# English function words: they carry no topic, and a question is full of them.
_STOPWORDS_TEXT = """
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from
further had has have having he her here hers herself him himself his how i if in into is
it its itself just me more most my myself no nor not now of off on once only or other our
ours ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were
what when where which while who whom why will with would you your yours yourself
yourselves
"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


class Lexicon:
    """Words to stemmed terms (Snowball English), with a bounded cache: the vocabulary a
    gateway sees is small, so stemming costs a dictionary lookup per word."""

    def __init__(self) -> None:
        import snowballstemmer

        self._stemmer = snowballstemmer.stemmer("english")
        # A Snowball stemmer keeps the word it is working on in the instance: two threads
        # stemming at once (searches rerank in worker threads) raised IndexError or, more
        # often, silently cached wrong stems. Only cache misses take the lock.
        self._stemming = threading.Lock()
        self._stems: dict[str, str] = {}
        # Terms of stored chunks by key (a chunk comes back in many searches); the text's hash
        # is checked too, so a chunk replaced under the same id is tokenized again.
        self._docs: dict[str, tuple[int, list[str]]] = {}

    def stem(self, word: str) -> str:
        if word.isdigit():  # its own stem; numbers would fill the cache with one-offs
            return word
        s = self._stems.get(word)
        if s is None:
            if len(self._stems) >= _CACHE_LIMIT:
                self._stems.clear()
            with self._stemming:
                s = self._stemmer.stemWord(word)
            self._stems[word] = s
        return s

    def terms(self, text: str) -> list[str]:
        # Typeset apostrophes (U+2019 in HTML docs) would split "Django\u2019s" into "django" + "s",
        # and the stray letter then matches every possessive among the candidates.
        text = text.lower().replace("\u2019", "'")
        return [self.stem(w) for w in _WORD.findall(text) if w not in STOPWORDS]

    def doc_terms(self, key: str | None, text: str) -> list[str]:
        if key is None:
            return self.terms(text)
        hit = self._docs.get(key)
        if hit is not None and hit[0] == hash(text):
            return hit[1]
        if len(self._docs) >= _DOC_CACHE_LIMIT:
            self._docs.clear()
        terms = self.terms(text)
        self._docs[key] = (hash(text), terms)
        return terms

    def query_terms(self, text: str) -> list[str]:
        """Distinct terms of a query; all function words: the words themselves."""
        terms = self.terms(text)
        if not terms:
            terms = [self.stem(w) for w in _WORD.findall(text.lower().replace("\u2019", "'"))]
        return list(dict.fromkeys(terms))


@dataclass(frozen=True, slots=True)
class Ranked(Generic[T]):
    item: T
    score: float  # what the order follows: dense + weight * lexical
    dense: float  # cosine similarity to the query
    lexical: float  # BM25 over the candidates, 1 = the best candidate


def rerank(
    lexicon: Lexicon,
    query: str,
    candidates: Sequence[tuple[T, str, float]],
    weight: float = LEXICAL_WEIGHT,
    keys: Sequence[str] | None = None,
) -> list[Ranked[T]]:
    """`candidates` are (item, text, cosine); `keys`, when given, name each text for the term
    cache (a stored chunk's id). The result is best first."""
    if not candidates:
        return []
    q = lexicon.query_terms(query) if weight > 0 else []
    bm25 = None
    if q:
        names: Sequence[str | None] = keys if keys is not None else [None] * len(candidates)
        docs = [
            lexicon.doc_terms(k, text) for k, (_, text, _) in zip(names, candidates, strict=True)
        ]
        bm25 = _bm25(q, docs)
    top = max(bm25) if bm25 else 0.0
    out = []
    for i, (item, _, dense) in enumerate(candidates):
        lexical = bm25[i] / top if bm25 is not None and top > 0 else 0.0
        out.append(Ranked(item, dense + weight * lexical, dense, lexical))
    out.sort(key=lambda r: -r.score)
    return out


def _bm25(query: list[str], docs: list[list[str]]) -> list[float]:
    n = len(docs)
    df: Counter[str] = Counter()
    for d in docs:
        df.update(set(d))
    avg = sum(len(d) for d in docs) / n or 1.0
    idf = {t: math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in query}
    scores = []
    for d in docs:
        tf = Counter(d)
        norm = K1 * (1 - B + B * len(d) / avg)
        scores.append(sum(idf[t] * tf[t] * (K1 + 1) / (tf[t] + norm) for t in query if tf[t]))
    return scores
