"""Retrieval, extractive summarising and abstention over an ``IndexData``.

The query path encodes the question once; everything else it needs about the
corpus (sentence boundaries, sentence vectors, BM25) was made at index time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ._index import IndexData
from ._lexical import terms
from ._types import Answer, AnswerSentence, Citation, Mode

RRF_K = 60  # the usual reciprocal-rank-fusion constant (Cormack et al., 2009)
ABSTAIN_TEXT = "The documents do not answer this question."


@dataclass(frozen=True)
class SummaryParams:
    """How answers are chosen. Defaults were picked on tests/questions.jsonl (README)."""

    max_sentences: int = 3
    max_words: int = 40
    #: a further sentence must score at least this share of the best one
    keep_ratio: float = 0.9
    #: MMR trade-off between relevance and novelty
    mmr_lambda: float = 0.7
    lexical_weight: float = 0.35
    rank_weight: float = 0.1
    type_weight: float = 0.08
    #: evidence below this abstains; ``citeqa eval --calibrate`` measures a better one
    abstain_threshold: float = 0.42
    #: how much a salient question term absent from the whole corpus costs
    missing_term_penalty: float = 0.35


_NUMBER = re.compile(r"\d")
_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december"
    "|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
_DATE = re.compile(rf"\b(?:{_MONTHS})\b|\b(?:19|20)\d\d\b", re.IGNORECASE)
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]+(?:\s+[A-Z][a-zA-Z]+)+")
_CAPITALISED = re.compile(r"\b[A-Z][\w’'-]*")


def _expected_type(question: str) -> str | None:
    """The kind of answer a question asks for, when its form says so."""
    q = question.lower()
    if re.search(r"\bhow (many|much)\b|\bwhat (number|percentage|amount|share)\b|\bhow large\b", q):
        return "number"
    if re.search(r"\bwhen\b|\bwhat (date|day|month|year)\b|\bwhich (date|day|month|year)\b", q):
        return "date"
    if re.search(r"^\s*who\b|\bwho (is|was|are|were|led|leads|heads|said)\b", q):
        return "name"
    return None


def _has_type(text: str, kind: str) -> bool:
    if kind == "number":
        return bool(_NUMBER.search(text))
    if kind == "date":
        return bool(_DATE.search(text))
    return bool(_NAME.search(text))


def _proper_terms(question: str) -> set[str]:
    """Stemmed terms of capitalised words that do not open the question."""
    words = _CAPITALISED.findall(question)
    first = question.lstrip().split(" ", 1)[0] if question.strip() else ""
    out: set[str] = set()
    for word in words:
        if word == first:
            continue
        out.update(terms(word))
    return out


class Answerer:
    """Answers questions from one immutable index generation."""

    def __init__(self, index: IndexData, params: SummaryParams | None = None) -> None:
        self.index = index
        self.params = params or SummaryParams()
        self._sentence_terms: dict[int, frozenset[str]] = {}
        self._chunk_of_sentence: dict[int, int] = {}
        for ci, rows in enumerate(index.chunk_sentence_rows):
            for row in rows:
                self._chunk_of_sentence.setdefault(int(row), ci)

    @cached_property
    def _idf(self) -> dict[str, float]:
        return self.index.lexical.idf()

    def _terms_of_sentence(self, row: int) -> frozenset[str]:
        cached = self._sentence_terms.get(row)
        if cached is None:
            cached = frozenset(terms(self.sentence_text(row)))
            self._sentence_terms[row] = cached
        return cached

    def sentence_text(self, row: int) -> str:
        s = self.index.sentences
        return self.index.documents[s.doc_ids[row]].text[int(s.starts[row]) : int(s.ends[row])]

    # -- retrieval -------------------------------------------------------------------------

    def retrieve(
        self, question: str, query_vector: np.ndarray, top_k: int, mode: Mode
    ) -> list[tuple[int, float, dict[str, int]]]:
        """(chunk row, score, {retriever: rank}) best first, at most ``top_k``."""
        n = len(self.index.chunks)
        if n == 0:
            return []
        depth = min(n, max(50, top_k * 4))
        dense: list[tuple[int, float]] = []
        lexical: list[tuple[int, float]] = []
        if mode in ("hybrid", "dense"):
            scores, ids = self.index.dense.search(query_vector.reshape(1, -1), depth)
            dense = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        if mode in ("hybrid", "lexical"):
            bm25 = self.index.lexical.scores(question)
            order = np.argsort(-bm25, kind="stable")[:depth]
            lexical = [(int(i), float(bm25[i])) for i in order if bm25[i] > 0]
        ranks: dict[int, dict[str, int]] = {}
        for name, hits in (("dense", dense), ("lexical", lexical)):
            for rank, (row, _) in enumerate(hits, start=1):
                ranks.setdefault(row, {})[name] = rank
        if mode == "dense":
            scored = dense
        elif mode == "lexical":
            scored = lexical
        else:
            fused = {row: sum(1.0 / (RRF_K + r) for r in rr.values()) for row, rr in ranks.items()}
            scored = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
        return [(row, score, ranks[row]) for row, score in scored[:top_k]]

    # -- summarising -----------------------------------------------------------------------

    def _lexical_match(self, q_terms: list[str], row: int) -> float:
        """IDF-weighted share of the question's terms that the sentence contains."""
        if not q_terms:
            return 0.0
        have = self._terms_of_sentence(row)
        weights = [self._idf.get(t, max(self._idf.values(), default=1.0)) for t in q_terms]
        total = sum(weights)
        return sum(w for t, w in zip(q_terms, weights, strict=True) if t in have) / total

    def _missing_share(self, question: str, q_terms: list[str]) -> float:
        """How much of the question names things the corpus never mentions.

        Capitalised words (names of countries, programmes, people) count fully;
        ordinary words count a quarter, since a paraphrase may use words the
        text does not.
        """
        if not q_terms:
            return 0.0
        proper = _proper_terms(question)
        weight = missing = 0.0
        for term in set(q_terms):
            w = 1.0 if term in proper else 0.25
            weight += w
            if term not in self._idf:
                missing += w
        return missing / weight if weight else 0.0

    def answer(
        self, question: str, query_vector: np.ndarray, *, top_k: int = 5, mode: Mode = "hybrid"
    ) -> Answer:
        p = self.params
        index = self.index
        hits = self.retrieve(question, query_vector, top_k, mode)
        citations = []
        for cid, (row, score, ranks) in enumerate(hits, start=1):
            chunk = index.chunks[row]
            citations.append(
                Citation(
                    id=cid,
                    chunk_id=chunk.chunk_id,
                    doc_id=chunk.doc_id,
                    title=index.documents[chunk.doc_id].title,
                    section=chunk.section,
                    text=chunk.text,
                    start=chunk.start,
                    end=chunk.end,
                    score=round(score, 6),
                    retrievers=dict(ranks),
                )
            )

        # Candidate sentences, each credited to the best-ranked passage holding it.
        cite_of: dict[int, int] = {}
        for cid, (row, _, _) in enumerate(hits, start=1):
            for srow in index.chunk_sentence_rows[row]:
                cite_of.setdefault(int(srow), cid)
        rows = np.fromiter(cite_of.keys(), dtype=np.int64, count=len(cite_of))
        q_terms = terms(question)
        kind = _expected_type(question)
        scores = np.zeros(len(rows), dtype=np.float32)
        if len(rows):
            cosine = index.sentences.vectors[rows] @ query_vector
            for i, srow in enumerate(rows):
                text = self.sentence_text(int(srow))
                score = float(cosine[i])
                score += p.lexical_weight * self._lexical_match(q_terms, int(srow))
                score += p.rank_weight / cite_of[int(srow)]
                if kind is not None:
                    score += p.type_weight if _has_type(text, kind) else -p.type_weight
                if index.sentences.is_heading[srow] and not text[:1].isdigit():
                    score -= p.type_weight  # a bare heading rarely answers; a numbered one may
                scores[i] = score
        evidence = float(scores.max()) if len(scores) else 0.0
        evidence -= p.missing_term_penalty * self._missing_share(question, q_terms)

        if not len(rows) or evidence < p.abstain_threshold:
            return Answer(question, ABSTAIN_TEXT, True, index.version, [], citations)

        chosen = self._select(rows, scores)
        chosen.sort(key=lambda i: (index.sentences.doc_ids[rows[i]], index.sentences.starts[rows[i]]))
        sentences = []
        for i in chosen:
            srow = int(rows[i])
            sentences.append(
                AnswerSentence(
                    text=self.sentence_text(srow),
                    citation=cite_of[srow],
                    doc_id=index.sentences.doc_ids[srow],
                    start=int(index.sentences.starts[srow]),
                    end=int(index.sentences.ends[srow]),
                    score=round(float(scores[i]), 6),
                )
            )
        text = " ".join(f"{s.text} [{s.citation}]" for s in sentences)
        return Answer(question, text, False, index.version, sentences, citations)

    def _select(self, rows: np.ndarray, scores: np.ndarray) -> list[int]:
        """Best sentence first, then MMR picks while they stay relevant and short."""
        p = self.params
        vectors = self.index.sentences.vectors[rows]
        order = list(np.argsort(-scores, kind="stable"))
        best = int(order[0])
        chosen = [best]
        words = len(self.sentence_text(int(rows[best])).split())
        floor = scores[best] * p.keep_ratio
        while len(chosen) < p.max_sentences:
            candidates = [int(i) for i in order if int(i) not in chosen and scores[i] >= floor]
            if not candidates:
                break
            similarity = vectors[candidates] @ vectors[chosen].T
            mmr = p.mmr_lambda * scores[candidates] - (1 - p.mmr_lambda) * similarity.max(axis=1)
            pick = candidates[int(np.argmax(mmr))]
            n_words = len(self.sentence_text(int(rows[pick])).split())
            if words + n_words > p.max_words or similarity.max(axis=1)[candidates.index(pick)] > 0.95:
                break
            chosen.append(pick)
            words += n_words
        return chosen
