"""Lexical retrieval: BM25 (bm25s) over stemmed, stop-worded words."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

# Numbers keep their separators ("88,700", "4.5") so they match as one term.
_TERM = re.compile(r"\d[\d,.]*\d|\w+", re.UNICODE)
_APOSTROPHE = re.compile(r"['’]s\b|['’]")
_US = re.compile(r"\bU\.S\.(?:A\.)?|\bUSA?\b")


_QUESTION_WORDS = frozenset(
    "how many much what which who whom whose when where why does did do doing according".split()
)


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    # Question words carry the form of a question, not its topic.
    return frozenset(STOPWORDS_EN) | _QUESTION_WORDS


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    import Stemmer  # PyStemmer

    return Stemmer.Stemmer("english")


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    return str(_stemmer().stemWord(word))


def terms(text: str) -> list[str]:
    """Index terms of ``text``: lower-cased, stop words dropped, stemmed."""
    # "U.S." and "US" name a country; lower-cased they would vanish as "u s"/"us".
    text = _US.sub("usa", text)
    text = _APOSTROPHE.sub("", text.lower())
    stop = _stopwords()
    out = []
    for raw in _TERM.findall(text):
        word = raw.replace(",", "") if raw[0].isdigit() else raw
        if word in stop or (len(word) < 2 and not word.isdigit()):
            continue
        out.append(word if word[0].isdigit() else _stem(word))
    return out


class LexicalIndex:
    """BM25 over a fixed list of texts (one per chunk, same order)."""

    def __init__(self, retriever: object, n_docs: int) -> None:
        self._retriever = retriever
        self.n_docs = n_docs
        self._vocab: dict[str, int] = getattr(retriever, "vocab_dict", {}) or {}

    @classmethod
    def build(cls, texts: Sequence[str]) -> LexicalIndex:
        import bm25s

        retriever = bm25s.BM25()
        # An empty text would still need a row; the placeholder term matches no query.
        corpus = [terms(t) or ["\x00empty"] for t in texts]
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        retriever.index(corpus, show_progress=False)
        return cls(retriever, len(texts))

    def save(self, folder: Path) -> None:
        self._retriever.save(str(folder), allow_pickle=False, show_progress=False)  # type: ignore[attr-defined]

    @classmethod
    def load(cls, folder: Path, n_docs: int) -> LexicalIndex:
        import bm25s

        retriever = bm25s.BM25.load(str(folder), allow_pickle=False, mmap=False)
        return cls(retriever, n_docs)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every text for ``query`` (zeros when no term is known)."""
        ids = [self._vocab[t] for t in terms(query) if t in self._vocab]
        if not ids or self.n_docs == 0:
            return np.zeros(self.n_docs, dtype=np.float32)
        return np.asarray(
            self._retriever.get_scores_from_ids(ids),  # type: ignore[attr-defined]
            dtype=np.float32,
        )

    def idf(self) -> dict[str, float]:
        """Inverse document frequency of every indexed term (BM25's formula)."""
        indptr = np.asarray(self._retriever.scores["indptr"])  # type: ignore[attr-defined]
        df = np.diff(indptr)
        n = max(self.n_docs, 1)
        return {
            term: float(np.log(1 + (n - df[i] + 0.5) / (df[i] + 0.5)))
            for term, i in self._vocab.items()
            if i < len(df)
        }
