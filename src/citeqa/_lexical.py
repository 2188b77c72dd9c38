"""Lexical retrieval: BM25 over stemmed, stop-worded words, from plain term counts."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
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

#: Lucene's English stop words (bm25s.stopwords.STOPWORDS_EN), kept here: importing
#: anything from bm25s pulls in numba and scipy, and the terms of an index must not
#: change with a bm25s upgrade.
_LUCENE_STOPWORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their "
    "then there these they this to was will with".split()
)


# Question words carry the form of a question, not its topic.
_STOPWORDS = _LUCENE_STOPWORDS | _QUESTION_WORDS


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
    out = []
    for raw in _TERM.findall(text):
        word = raw.replace(",", "") if raw[0].isdigit() else raw
        if word in _STOPWORDS or (len(word) < 2 and not word.isdigit()):
            continue
        out.append(word if word[0].isdigit() else _stem(word))
    return out


#: BM25's parameters (Lucene's, bm25s's defaults)
BM25_K1 = 1.5
BM25_B = 0.75
_EMPTY = "\x00empty"  # an empty text still needs a row; this term matches no query


@dataclass(frozen=True)
class Postings:
    """How often each term occurs in each of a list of texts, and their lengths.

    Plain counts, no corpus statistic: a segment stores these, and BM25 weighs
    them with the document frequencies and average length of every live text of
    every segment (``LexicalIndex.from_postings``), so a corpus scores the same
    however it is split into segments. Layout CSC by term: the texts holding
    ``terms[i]`` are ``texts[indptr[i]:indptr[i+1]]`` (ascending), with ``counts``.
    """

    terms: tuple[str, ...]  # sorted
    indptr: np.ndarray  # int64, len(terms) + 1
    texts: np.ndarray  # int32
    counts: np.ndarray  # int32
    lengths: np.ndarray  # int32, index terms per text

    @classmethod
    def build(cls, texts: Sequence[str]) -> Postings:
        per_text = [Counter(terms(t) or [_EMPTY]) for t in texts]
        vocab = sorted(set().union(*per_text)) if per_text else []
        column = {term: i for i, term in enumerate(vocab)}
        cols = np.fromiter((column[t] for c in per_text for t in c), dtype=np.int64)
        rows = np.repeat(np.arange(len(texts), dtype=np.int32), [len(c) for c in per_text])
        counts = np.fromiter((n for c in per_text for n in c.values()), dtype=np.int32)
        order = np.lexsort((rows, cols))
        return cls(
            terms=tuple(vocab),
            indptr=np.concatenate([[0], np.cumsum(np.bincount(cols, minlength=len(vocab)))]),
            texts=rows[order],
            counts=counts[order],
            lengths=np.asarray([sum(c.values()) for c in per_text], dtype=np.int32),
        )

    @classmethod
    def merge(cls, parts: Sequence[tuple[Postings, np.ndarray]], n_texts: int) -> Postings:
        """The postings of ``n_texts`` texts gathered from ``parts``: each part's postings
        and, per text of the part, its row in the whole (-1: left out)."""
        vocab = sorted(set().union(*(p.terms for p, _ in parts))) if parts else []
        column = {term: i for i, term in enumerate(vocab)}
        cols, rows, counts = [], [], []
        lengths = np.zeros(n_texts, dtype=np.int32)
        for postings, row_of in parts:
            row_of = np.asarray(row_of, dtype=np.int64)
            live = row_of >= 0
            lengths[row_of[live]] = postings.lengths[live]
            local = np.fromiter((column[t] for t in postings.terms), dtype=np.int64,
                                count=len(postings.terms))
            part_rows = row_of[postings.texts]
            keep = part_rows >= 0
            cols.append(np.repeat(local, np.diff(postings.indptr))[keep])
            rows.append(part_rows[keep])
            counts.append(postings.counts[keep])
        col = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        count = np.concatenate(counts) if counts else np.zeros(0, np.int32)
        order = np.lexsort((row, col))
        indptr = np.concatenate([[0], np.cumsum(np.bincount(col, minlength=len(vocab)))])
        used = np.diff(indptr) > 0  # a term only deleted texts held
        if not used.all():
            vocab = [t for t, u in zip(vocab, used, strict=True) if u]
            indptr = np.concatenate([[0], np.cumsum(np.diff(indptr)[used])])
        return cls(tuple(vocab), indptr.astype(np.int64), row[order].astype(np.int32),
                   count[order].astype(np.int32), lengths)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "terms.json").write_text(json.dumps(list(self.terms), ensure_ascii=False),
                                           encoding="utf-8")
        for name in ("indptr", "texts", "counts", "lengths"):
            np.save(folder / f"{name}.npy", getattr(self, name), allow_pickle=False)

    @classmethod
    def load(cls, folder: Path, n_texts: int) -> Postings:
        """Read what ``save`` wrote; ValueError when it does not hold together."""
        vocab = json.loads((folder / "terms.json").read_text(encoding="utf-8"))
        arrays = {
            name: np.load(folder / f"{name}.npy", allow_pickle=False)
            for name in ("indptr", "texts", "counts", "lengths")
        }
        postings = cls(terms=tuple(vocab), **arrays)
        indptr, texts = postings.indptr, postings.texts
        if not isinstance(vocab, list) or len(indptr) != len(vocab) + 1 or indptr[-1] != len(
            texts
        ) or len(texts) != len(postings.counts) or len(postings.lengths) != n_texts:
            raise ValueError(f"{folder}: postings of inconsistent lengths")
        if len(texts) and (texts.min() < 0 or texts.max() >= n_texts):
            raise ValueError(f"{folder}: postings name a text beyond the {n_texts} chunks")
        return postings


class LexicalIndex:
    """BM25 over a fixed list of texts (one per chunk, same order).

    Scoring needs the BM25 weight of every term in every text, in CSC layout;
    ``from_postings`` computes them from term counts with corpus-wide statistics
    (Lucene's BM25, as bm25s computes it).
    """

    def __init__(
        self,
        data: np.ndarray,
        indices: np.ndarray,
        indptr: np.ndarray,
        vocab: dict[str, int],
        n_docs: int,
    ) -> None:
        self._data = data
        self._indices = indices
        self._indptr = indptr
        self._vocab = vocab
        self.n_docs = n_docs

    @classmethod
    def build(cls, texts: Sequence[str]) -> LexicalIndex:
        return cls.from_postings([(Postings.build(texts), np.arange(len(texts)))], len(texts))

    @classmethod
    def from_postings(
        cls, parts: Sequence[tuple[Postings, np.ndarray]], n_docs: int
    ) -> LexicalIndex:
        """BM25 over the ``n_docs`` texts of ``Postings.merge(parts, n_docs)``: document
        frequencies and the average length are those of every live text."""
        whole = Postings.merge(parts, n_docs)
        df = np.diff(whole.indptr).astype(np.float64)
        idf = np.log(1 + (n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
        lengths = whole.lengths.astype(np.float64)
        avg = float(lengths.mean()) if n_docs else 1.0
        norm = (BM25_K1 * ((1 - BM25_B) + BM25_B * lengths / avg)).astype(np.float32)
        tf = whole.counts.astype(np.float32)
        column = np.repeat(np.arange(len(whole.terms)), np.diff(whole.indptr))
        weight = idf[column] * (tf / (norm[whole.texts] + tf))
        vocab = {term: i for i, term in enumerate(whole.terms)}
        return cls(weight.astype(np.float32), whole.texts, whole.indptr, vocab, n_docs)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every text for ``query`` (zeros when no term is known).

        A query term that occurs twice counts twice, as in bm25s."""
        columns = len(self._indptr) - 1  # bm25s's vocabulary also holds "", with no column
        found = (self._vocab.get(t) for t in terms(query))
        ids = [i for i in found if i is not None and i < columns]
        if not ids or self.n_docs == 0:
            return np.zeros(self.n_docs, dtype=np.float32)
        spans = [slice(int(self._indptr[i]), int(self._indptr[i + 1])) for i in ids]
        docs = np.concatenate([self._indices[sp] for sp in spans])
        weights = np.concatenate([self._data[sp] for sp in spans])
        return np.bincount(docs, weights=weights, minlength=self.n_docs).astype(np.float32)

    def texts_with(self, all_terms: Sequence[str]) -> np.ndarray:
        """The texts (ascending) that hold every one of ``all_terms`` (index terms)."""
        columns = len(self._indptr) - 1
        postings = []
        for term in dict.fromkeys(all_terms):
            i = self._vocab.get(term)
            if i is None or i >= columns:
                return np.zeros(0, dtype=np.int64)
            postings.append(self._indices[int(self._indptr[i]) : int(self._indptr[i + 1])])
        if not postings:
            return np.zeros(0, dtype=np.int64)
        postings.sort(key=len)  # the rarest term's few texts, then look each up
        found = np.unique(postings[0])
        for texts in postings[1:]:
            if not len(found):
                break
            found = found[np.isin(found, texts, kind="table")]
        return found.astype(np.int64, copy=False)

    def idf(self) -> dict[str, float]:
        """Inverse document frequency of every indexed term (BM25's formula)."""
        df = np.diff(self._indptr)
        n = max(self.n_docs, 1)
        return {
            term: float(np.log(1 + (n - df[i] + 0.5) / (df[i] + 0.5)))
            for term, i in self._vocab.items()
            if i < len(df)
        }
