"""Lexical retrieval: BM25 (bm25s) over stemmed, stop-worded words."""

from __future__ import annotations

import json
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


#: the files bm25s writes (and ``LexicalIndex.load`` reads without importing it)
_ARRAYS = {
    "data": "data.csc.index.npy",
    "indices": "indices.csc.index.npy",
    "indptr": "indptr.csc.index.npy",
}
_VOCAB = "vocab.index.json"
_PARAMS = "params.index.json"


class LexicalIndex:
    """BM25 over a fixed list of texts (one per chunk, same order).

    bm25s builds and saves it; scoring needs only its three CSC arrays (the BM25
    weight of every term in every text), which ``load`` reads with numpy. Serving
    thus never imports bm25s, which pulls in numba and scipy: about 0.4 s of start-up
    and 40 MB or more of resident memory.
    """

    def __init__(
        self,
        data: np.ndarray,
        indices: np.ndarray,
        indptr: np.ndarray,
        vocab: dict[str, int],
        n_docs: int,
        retriever: object | None = None,
    ) -> None:
        self._data = data
        self._indices = indices
        self._indptr = indptr
        self._vocab = vocab
        self.n_docs = n_docs
        self._retriever = retriever  # only when built here: ``save`` writes through it

    @classmethod
    def build(cls, texts: Sequence[str]) -> LexicalIndex:
        import bm25s

        retriever = bm25s.BM25()  # method "lucene": no score for absent terms
        # An empty text would still need a row; the placeholder term matches no query.
        corpus = [terms(t) or ["\x00empty"] for t in texts]
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        retriever.index(corpus, show_progress=False)
        csc = retriever.scores
        vocab = dict(getattr(retriever, "vocab_dict", {}) or {})
        return cls(
            np.asarray(csc["data"]), np.asarray(csc["indices"]), np.asarray(csc["indptr"]),
            vocab, len(texts), retriever,
        )

    def save(self, folder: Path) -> None:
        if self._retriever is None:
            raise ValueError("only a LexicalIndex built in this process can be saved")
        self._retriever.save(str(folder), allow_pickle=False, show_progress=False)  # type: ignore[attr-defined]

    @classmethod
    def load(cls, folder: Path, n_docs: int) -> LexicalIndex:
        """Read what bm25s saved; ValueError if it is not what ``scores`` can use."""
        params = json.loads((folder / _PARAMS).read_text(encoding="utf-8"))
        if params.get("method", "lucene") not in ("lucene", "robertson", "atire"):
            # Other variants score absent terms too, which these arrays leave out.
            raise ValueError(f"BM25 method {params.get('method')!r} is not supported")
        arrays = {k: np.load(folder / name, allow_pickle=False) for k, name in _ARRAYS.items()}
        vocab = json.loads((folder / _VOCAB).read_text(encoding="utf-8"))
        indptr = arrays["indptr"]
        if not isinstance(vocab, dict) or not len(indptr):
            raise ValueError(f"{folder}: no BM25 vocabulary or arrays")
        if len(arrays["data"]) != len(arrays["indices"]) or int(indptr[-1]) != len(
            arrays["data"]
        ):
            raise ValueError(f"{folder}: BM25 arrays have inconsistent lengths")
        if len(arrays["indices"]) and int(arrays["indices"].max()) >= n_docs:
            raise ValueError(f"{folder}: BM25 arrays name a text beyond the {n_docs} chunks")
        return cls(arrays["data"], arrays["indices"], indptr, vocab, n_docs)

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
