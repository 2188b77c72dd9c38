"""Evaluation: retrieval, answer and abstention quality on a question set.

A question set is JSON lines, one question per line::

    {"id": "q1", "question": "...", "answers": ["any one counts"],
     "evidence": "an exact substring of a document", "kind": "fact", "doc_id": "optional"}

Empty ``answers`` (and no evidence) marks a question the documents do not
answer: the right behaviour is to abstain. Retrieval is judged by character
span overlap between the retrieved passages and the evidence, so indexes built
with different chunkings stay comparable. Each question has one relevant
pseudo-document, ``evidence``, which the first overlapping passage stands for;
ranx then turns recall@k into hit@k and MRR into 1 / first hit rank.

``evaluate`` runs the engine's modes and a naive baseline (dense retrieval over
fixed 256-token windows, answer = the first two sentences of the top window),
so a report shows what each part of the design buys.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from ._embedding import Embedder
from ._engine import CALIBRATION_FILE, Engine, validate_query, write_calibration
from ._engine_limits import MAX_QUESTION_CHARS, MAX_TOP_K
from ._exceptions import CiteqaError, InvalidInputError
from ._fsutil import file_in_the_way
from ._segment import segment
from ._tokens import get_encoding
from ._types import MODES, Answer, AnswerSentence, Citation, Document, Mode

NAIVE = "naive"
ALL_MODES: tuple[str, ...] = (*MODES, NAIVE)
RANKING_DEPTH = 10  # ranking metrics use top_k = max(RANKING_DEPTH, --top-k)
NAIVE_WINDOW_TOKENS = 256
_FIELDS = {"id", "question", "answers", "evidence", "kind", "doc_id"}
_RANX_METRICS = ("recall@1", "recall@3", "recall@5", "mrr@10", "ndcg@10")

DocSpan = tuple[str, int, int]  # (doc_id, start, end)


# -- question sets -------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: tuple[str, ...]
    evidence: str
    kind: str
    doc_id: str | None = None
    #: every occurrence of ``evidence`` in the indexed documents
    spans: tuple[DocSpan, ...] = ()

    @property
    def answerable(self) -> bool:
        return bool(self.answers)


def _documents(documents: Iterable[Document] | Mapping[str, Document]) -> dict[str, Document]:
    values = documents.values() if isinstance(documents, Mapping) else documents
    return {doc.doc_id: doc for doc in values}


def find_spans(evidence: str, docs: Iterable[Document]) -> tuple[DocSpan, ...]:
    """Every occurrence of ``evidence`` in ``docs`` (overlapping ones included)."""
    spans: list[DocSpan] = []
    for doc in docs:
        pos = doc.text.find(evidence)
        while pos >= 0:
            spans.append((doc.doc_id, pos, pos + len(evidence)))
            pos = doc.text.find(evidence, pos + 1)
    return tuple(spans)


def _parse_question(raw: Any, docs: dict[str, Document]) -> Question:
    """One question from a decoded JSON line; raises ValueError saying what is wrong."""
    if not isinstance(raw, dict):
        raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; allowed: {sorted(_FIELDS)}")
    qid, text = raw.get("id"), raw.get("question")
    if not isinstance(qid, str) or not qid.strip():
        raise ValueError(f"'id' must be a non-empty string, got {qid!r}")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"'question' must be a non-empty string, got {text!r}")
    if len(text) > MAX_QUESTION_CHARS:
        raise ValueError(f"'question' is {len(text)} characters; the limit is {MAX_QUESTION_CHARS}")
    answers = raw.get("answers")
    if not isinstance(answers, list) or not all(isinstance(a, str) and a.strip() for a in answers):
        raise ValueError(f"'answers' must be a list of non-empty strings, got {answers!r}")
    evidence = raw.get("evidence") or ""
    if not isinstance(evidence, str):
        raise ValueError(f"'evidence' must be a string, got {evidence!r}")
    kind = raw.get("kind", "answerable" if answers else "unanswerable")
    if not isinstance(kind, str) or not kind.strip():
        raise ValueError(f"'kind' must be a non-empty string, got {kind!r}")
    doc_id = raw.get("doc_id")
    if doc_id is not None and (not isinstance(doc_id, str) or doc_id not in docs):
        raise ValueError(f"'doc_id' {doc_id!r} is not an indexed document")
    if answers and not evidence.strip():
        raise ValueError("an answerable question needs 'evidence' (the text that supports it)")
    if not answers and evidence:
        raise ValueError("'evidence' given but 'answers' is empty; add answers or drop evidence")
    spans: tuple[DocSpan, ...] = ()
    if evidence:
        spans = find_spans(evidence, [docs[doc_id]] if doc_id else docs.values())
        if not spans:
            where = f"document {doc_id!r}" if doc_id else "any indexed document"
            shown = evidence if len(evidence) <= 80 else evidence[:77] + "..."
            raise ValueError(
                f"'evidence' is not an exact substring of {where} (check quotes, dashes and "
                f"spaces): {shown!r}"
            )
    return Question(qid, text, tuple(answers), evidence, kind.strip(), doc_id, spans)


def load_questions(
    path: str | Path, documents: Iterable[Document] | Mapping[str, Document]
) -> list[Question]:
    """Read and check a question set against the indexed ``documents``.

    Raises ``InvalidInputError("PATH:LINE: what is wrong")`` on the first bad line.
    """
    path = Path(path)
    docs = _documents(documents)
    try:
        # utf-8-sig: a byte order mark (Windows editors) is not part of line 1's JSON
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read question set {path}: {exc}") from None
    questions: list[Question] = []
    first_line: dict[str, int] = {}
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            question = _parse_question(json.loads(line), docs)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError too
            raise InvalidInputError(f"{path}:{lineno}: {exc}") from None
        if question.id in first_line:
            raise InvalidInputError(
                f"{path}:{lineno}: duplicate id {question.id!r} (first on line "
                f"{first_line[question.id]})"
            )
        first_line[question.id] = lineno
        questions.append(question)
    if not questions:
        raise InvalidInputError(f"{path} holds no questions")
    return questions


# -- the naive baseline --------------------------------------------------------------------


class NaiveBaseline:
    """Dense search over fixed, non-overlapping token windows; no sentence selection.

    The answer is the first two sentences of the top window, and it never abstains.
    """

    def __init__(
        self,
        documents: Iterable[Document],
        embedder: Embedder,
        encode_query: Callable[[str], np.ndarray],
        *,
        window_tokens: int = NAIVE_WINDOW_TOKENS,
    ) -> None:
        if window_tokens < 1:
            raise InvalidInputError(f"window_tokens must be positive, got {window_tokens}")
        self.encode_query = encode_query
        self.documents = {doc.doc_id: doc for doc in documents}
        self.windows: list[DocSpan] = []
        encoding = get_encoding()
        for doc in sorted(self.documents.values(), key=lambda d: d.doc_id):
            tokens = encoding.encode(doc.text, disallowed_special=())
            _, offsets = encoding.decode_with_offsets(tokens)
            cuts = [*offsets[::window_tokens], len(doc.text)]
            for start, end in zip(cuts, cuts[1:], strict=False):
                if doc.text[start:end].strip():
                    self.windows.append((doc.doc_id, start, end))
        texts = [self.documents[d].text[s:e] for d, s, e in self.windows]
        self.vectors = (
            embedder.embed(texts) if texts else np.zeros((0, embedder.dimension), np.float32)
        )

    def ask(self, question: str, top_k: int = 5) -> Answer:
        question = validate_query(question, top_k, "dense")
        scores = self.vectors @ self.encode_query(question)
        order = np.argsort(-scores, kind="stable")[:top_k]
        citations = []
        for cid, row in enumerate(order, start=1):
            doc_id, start, end = self.windows[int(row)]
            doc = self.documents[doc_id]
            citations.append(
                Citation(
                    id=cid,
                    chunk_id=f"{doc_id}#w{int(row)}",
                    doc_id=doc_id,
                    title=doc.title,
                    section=None,
                    text=doc.text[start:end],
                    start=start,
                    end=end,
                    score=round(float(scores[row]), 6),
                    retrievers={"dense": cid},
                )
            )
        if not citations:
            return Answer(question, "", False, NAIVE, [], [])
        top = citations[0]
        spans = [s for s in segment(top.text) if not s.is_heading][:2]
        bounds = [(top.start + s.start, top.start + s.end) for s in spans] or [(top.start, top.end)]
        text = self.documents[top.doc_id].text
        sentences = [AnswerSentence(text[s:e], 1, top.doc_id, s, e, top.score) for s, e in bounds]
        answer = " ".join(f"{s.text} [1]" for s in sentences)
        return Answer(question, answer, False, NAIVE, sentences, citations)


# -- per-question judging ------------------------------------------------------------------

_QUOTES = str.maketrans(
    {"‘": "'", "’": "'", "‚": "'", "‛": "'", "′": "'", "“": '"', "”": '"', "„": '"', "‟": '"'}
)


def normalise(text: str) -> str:
    """Case-folded, quotes straightened, all whitespace (incl. \\xa0) collapsed."""
    return " ".join(text.translate(_QUOTES).casefold().split())


def overlaps(doc_id: str, start: int, end: int, spans: Iterable[DocSpan]) -> bool:
    return any(d == doc_id and start < e and s < end for d, s, e in spans)


def verbatim_violations(answer: Answer, docs: Mapping[str, Document]) -> list[str]:
    """Cited spans whose text is not ``document.text[start:end]``."""
    bad = []
    items: list[AnswerSentence | Citation] = [*answer.sentences, *answer.citations]
    for item in items:
        doc = docs.get(item.doc_id)
        if doc is None or doc.text[item.start : item.end] != item.text:
            bad.append(f"{item.doc_id}:{item.start}-{item.end}")
    return bad


def first_hit_rank(answer: Answer, spans: Sequence[DocSpan]) -> int | None:
    for rank, c in enumerate(answer.citations, start=1):
        if overlaps(c.doc_id, c.start, c.end, spans):
            return rank
    return None


@dataclass
class QuestionResult:
    id: str
    kind: str
    answerable: bool
    question: str
    answers: list[str]
    evidence: str
    answer: str
    abstained: bool
    correct: bool | None  # None for unanswerable questions
    first_hit_rank: int | None  # in the ranking run (top max(10, top_k))
    sentences: int
    sentences_on_evidence: int
    answer_words: int
    latency_ms: float
    violations: list[str]
    top_citations: list[str]
    retrieval: dict[str, float] = field(default_factory=dict)  # per-question ranx values
    failure_reasons: list[str] = field(default_factory=list)


def judge(
    q: Question,
    answer: Answer,
    ranked: Answer,
    latency_ms: float,
    docs: Mapping[str, Document],
    top_k: int,
) -> QuestionResult:
    """Everything measured about one question in one mode."""
    answer_text = " ".join(s.text for s in answer.sentences)  # the answer without [n] markers
    correct = None
    if q.answerable:
        got = normalise(answer_text)
        correct = not answer.abstained and any(normalise(a) in got for a in q.answers)
    on_evidence = sum(overlaps(s.doc_id, s.start, s.end, q.spans) for s in answer.sentences)
    rank = first_hit_rank(ranked, q.spans) if q.answerable else None
    violations = verbatim_violations(answer, docs)
    if ranked is not answer:
        violations += verbatim_violations(ranked, docs)
    reasons = []
    if q.answerable:
        if answer.abstained:
            reasons.append("abstained on an answerable question")
        elif not correct:
            reasons.append("no acceptable answer in the answer")
        if rank is None or rank > top_k:
            reasons.append(f"evidence not in the top {top_k} passages")
    elif not answer.abstained:
        reasons.append("answered an unanswerable question")
    if violations:
        reasons.append(f"{len(violations)} non-verbatim span(s)")
    return QuestionResult(
        id=q.id,
        kind=q.kind,
        answerable=q.answerable,
        question=q.question,
        answers=list(q.answers),
        evidence=q.evidence,
        answer=answer.answer,
        abstained=answer.abstained,
        correct=correct,
        first_hit_rank=rank,
        sentences=len(answer.sentences),
        sentences_on_evidence=on_evidence,
        answer_words=len(answer_text.split()),
        latency_ms=latency_ms,
        violations=violations,
        top_citations=[
            f"[{c.id}] {c.chunk_id}" + (f" › {c.section}" if c.section else "")
            for c in answer.citations[:3]
        ],
        failure_reasons=reasons,
    )


def ranx_scores(results: Sequence[QuestionResult]) -> None:
    """Fill ``result.retrieval`` for answerable questions with ranx per-question metrics.

    Each question has one relevant pseudo-document, ``evidence``; the first
    retrieved passage overlapping the evidence stands for it, at its rank.
    """
    judged = [r for r in results if r.answerable]
    if not judged:
        return
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate

    qrels = {r.id: {"evidence": 1} for r in judged}
    run: dict[str, dict[str, float]] = {}
    for r in judged:
        depth = max(RANKING_DEPTH, r.first_hit_rank or 0)
        docs = {f"miss{rank}": 1.0 / rank for rank in range(1, depth + 1)}
        if r.first_hit_rank is not None:
            del docs[f"miss{r.first_hit_rank}"]
            docs["evidence"] = 1.0 / r.first_hit_rank
        run[r.id] = docs
    ranx_run = Run.from_dict(run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba's type-safety notes on ranx internals
        ranx_evaluate(Qrels.from_dict(qrels), ranx_run, list(_RANX_METRICS), return_mean=False)
    for r in judged:
        r.retrieval = {m: float(ranx_run.scores[m][r.id]) for m in _RANX_METRICS}


# -- aggregation ---------------------------------------------------------------------------


@dataclass
class MetricSet:
    n: int
    n_answerable: int
    n_unanswerable: int
    recall_at_1: float | None
    recall_at_3: float | None
    recall_at_5: float | None
    mrr_at_10: float | None
    ndcg_at_10: float | None
    accuracy: float | None
    citation_precision: float | None
    abstention_recall: float | None
    false_abstention_rate: float | None
    median_answer_words: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    verbatim_violations: int


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if values else None


def aggregate(results: Sequence[QuestionResult]) -> MetricSet:
    answerable = [r for r in results if r.answerable]
    unanswerable = [r for r in results if not r.answerable]
    answered = [r for r in answerable if not r.abstained]
    n_sentences = sum(r.sentences for r in answered)
    latencies = [r.latency_ms for r in results]

    def retrieval(metric: str) -> float | None:
        return _mean([r.retrieval[metric] for r in answerable if metric in r.retrieval])

    return MetricSet(
        n=len(results),
        n_answerable=len(answerable),
        n_unanswerable=len(unanswerable),
        recall_at_1=retrieval("recall@1"),
        recall_at_3=retrieval("recall@3"),
        recall_at_5=retrieval("recall@5"),
        mrr_at_10=retrieval("mrr@10"),
        ndcg_at_10=retrieval("ndcg@10"),
        accuracy=_mean([float(bool(r.correct)) for r in answerable]),
        citation_precision=(
            sum(r.sentences_on_evidence for r in answered) / n_sentences if n_sentences else None
        ),
        abstention_recall=_mean([float(r.abstained) for r in unanswerable]),
        false_abstention_rate=_mean([float(r.abstained) for r in answerable]),
        median_answer_words=(
            float(statistics.median(r.answer_words for r in answered)) if answered else None
        ),
        latency_p50_ms=float(np.percentile(latencies, 50)) if latencies else None,
        latency_p95_ms=float(np.percentile(latencies, 95)) if latencies else None,
        verbatim_violations=sum(len(r.violations) for r in results),
    )


@dataclass
class ModeReport:
    mode: str
    overall: MetricSet
    by_kind: dict[str, MetricSet]
    results: list[QuestionResult]

    @property
    def failures(self) -> list[QuestionResult]:
        return [r for r in self.results if r.failure_reasons]


@dataclass
class Calibration:
    mode: str
    threshold: float
    balanced_accuracy: float
    abstention_recall: float
    false_abstention_rate: float
    previous_threshold: float
    previous_balanced_accuracy: float
    n_answerable: int
    n_unanswerable: int
    scores: dict[str, float]  # question id → evidence score
    stored_at: str | None = None


@dataclass
class EvalReport:
    questions_file: str
    n_questions: int
    top_k: int
    ranking_depth: int
    index_version: str
    model: dict[str, Any]
    chunking: dict[str, Any]
    abstain_threshold: float
    created_at: str
    modes: dict[str, ModeReport]
    calibration: Calibration | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["modes"] = {
            mode: {
                "overall": dataclasses.asdict(m.overall),
                "by_kind": {k: dataclasses.asdict(v) for k, v in m.by_kind.items()},
                "failures": [r.id for r in m.failures],
            }
            for mode, m in self.modes.items()
        }
        out["results"] = {
            mode: [dataclasses.asdict(r) for r in m.results] for mode, m in self.modes.items()
        }
        return _finite(out)


def _finite(obj: Any) -> Any:
    """JSON has no infinities: they become null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


# -- running -------------------------------------------------------------------------------


def parse_modes(modes: str | Iterable[str]) -> list[str]:
    names = modes.split(",") if isinstance(modes, str) else list(modes)
    out: list[str] = []
    for name in (n.strip() for n in names):
        if name not in ALL_MODES:
            raise InvalidInputError(f"unknown mode {name!r}; choose from {', '.join(ALL_MODES)}")
        if name not in out:
            out.append(name)
    if not out:
        raise InvalidInputError("no modes given; choose from " + ", ".join(ALL_MODES))
    return out


def _asker(engine: Engine, mode: str) -> Callable[[str, int], Answer]:
    """``ask(question, top_k)`` for one mode; ``naive`` builds its windows first."""
    if mode == NAIVE:
        naive = NaiveBaseline(engine.index.documents.values(), engine.embedder, engine.encode_query)
        return lambda question, top_k: naive.ask(question, top_k)
    engine_mode = cast(Mode, mode)
    return lambda question, top_k: engine.ask(question, top_k, engine_mode)


def evaluate(
    engine: Engine,
    questions: Sequence[Question],
    modes: Iterable[str] = ALL_MODES,
    top_k: int = 5,
    *,
    questions_file: str = "",
    log: Callable[[str], None] | None = None,
) -> EvalReport:
    """Ask every question in every mode and measure the answers.

    The answer judged for accuracy comes from ``top_k``; ranking metrics from a
    second retrieval of ``max(10, top_k)`` passages. Only the first call is timed.
    """
    mode_list = parse_modes(modes)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise InvalidInputError(f"top_k must be an integer 1..{MAX_TOP_K}, got {top_k!r}")
    if not questions:
        raise InvalidInputError("no questions to evaluate")
    docs = engine.index.documents
    depth = max(RANKING_DEPTH, top_k)
    reports: dict[str, ModeReport] = {}
    for mode in mode_list:
        if log:
            log(f"evaluating {mode} on {len(questions)} questions")
        ask = _asker(engine, mode)
        ask(questions[0].question, top_k)  # warm-up: first calls fill caches
        results = []
        for q in questions:
            started = time.perf_counter()
            answer = ask(q.question, top_k)
            latency_ms = (time.perf_counter() - started) * 1000
            ranked = answer
            if q.answerable and depth != top_k:
                ranked = ask(q.question, depth)
            results.append(judge(q, answer, ranked, latency_ms, docs, top_k))
        ranx_scores(results)
        kinds = sorted({r.kind for r in results})
        reports[mode] = ModeReport(
            mode,
            aggregate(results),
            {k: aggregate([r for r in results if r.kind == k]) for k in kinds},
            results,
        )
    params = engine.index.params
    return EvalReport(
        questions_file=questions_file,
        n_questions=len(questions),
        top_k=top_k,
        ranking_depth=depth,
        index_version=engine.version,
        model=dict(engine.index.model),
        chunking={"max_tokens": params.max_tokens, "overlap_sentences": params.overlap_sentences},
        abstain_threshold=engine.summary.abstain_threshold,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        modes=reports,
    )


# -- calibration ---------------------------------------------------------------------------

#: below this many answerable or unanswerable questions, ``--calibrate`` says its
#: threshold is a guess (the evaluation issue asks for 8 of each kind of unanswerable)
CALIBRATION_MIN_PER_CLASS = 8


def _balanced(
    answerable: np.ndarray, unanswerable: np.ndarray, t: float
) -> tuple[float, float, float]:
    """(balanced accuracy, abstention recall, false-abstention rate) at threshold ``t``."""
    recall = float(np.mean(unanswerable < t))
    false_rate = float(np.mean(answerable < t))
    return (recall + 1 - false_rate) / 2, recall, false_rate


def choose_threshold(
    answerable: Sequence[float], unanswerable: Sequence[float], *, margin: float = 0.01
) -> tuple[float, float]:
    """The threshold (abstain iff score < threshold) with the best balanced accuracy.

    Candidates sit in the gaps between consecutive distinct scores; among the
    best, the widest run of gaps wins and the threshold is its midpoint. An
    unbounded best run (abstain on nothing, or on everything) gets ``margin``
    beyond the extreme score. Returns (threshold, balanced accuracy).
    """
    if not answerable or not unanswerable:
        raise InvalidInputError(
            "calibration needs both answerable and unanswerable questions (empty 'answers'); "
            f"got {len(answerable)} answerable and {len(unanswerable)} unanswerable"
        )
    a = np.asarray(answerable, dtype=np.float64)
    u = np.asarray(unanswerable, dtype=np.float64)
    finite = np.unique(np.concatenate([a, u])[np.isfinite(np.concatenate([a, u]))])
    edges = [-math.inf, *finite.tolist(), math.inf]
    gaps = [(lo, hi) for lo, hi in zip(edges, edges[1:], strict=False)]

    def probe(lo: float, hi: float) -> float:  # a threshold strictly inside (lo, hi]
        if math.isinf(lo) and math.isinf(hi):
            return 0.0
        if math.isinf(lo):
            return hi - margin
        if math.isinf(hi):
            return lo + margin
        return (lo + hi) / 2

    scored = [_balanced(a, u, probe(lo, hi))[0] for lo, hi in gaps]
    best = max(scored)
    runs: list[tuple[float, float]] = []  # maximal runs of consecutive best gaps
    for (lo, hi), ba in zip(gaps, scored, strict=True):
        if not math.isclose(ba, best, abs_tol=1e-12):
            continue
        if runs and runs[-1][1] == lo:
            runs[-1] = (runs[-1][0], hi)
        else:
            runs.append((lo, hi))
    lo, hi = max(runs, key=lambda r: r[1] - r[0])  # inf width wins: one side is perfect
    return probe(lo, hi), best


def evidence_scores(
    engine: Engine, questions: Sequence[Question], top_k: int, mode: str
) -> dict[str, float]:
    """Per question, the score the Answerer compares with ``abstain_threshold``."""
    return {
        q.id: engine.evidence_score(q.question, top_k=top_k, mode=cast(Mode, mode))
        for q in questions
    }


def calibrate(
    engine: Engine, questions: Sequence[Question], top_k: int = 5, mode: str = "hybrid"
) -> Calibration:
    """Choose the abstention threshold that best separates answerable from unanswerable."""
    if mode not in MODES:
        raise InvalidInputError(f"calibration mode must be one of {', '.join(MODES)}, got {mode!r}")
    scores = evidence_scores(engine, questions, top_k, mode)
    a = [scores[q.id] for q in questions if q.answerable]
    u = [scores[q.id] for q in questions if not q.answerable]
    threshold, ba = choose_threshold(a, u)
    _, recall, false_rate = _balanced(np.asarray(a), np.asarray(u), threshold)
    previous = engine.summary.abstain_threshold
    return Calibration(
        mode=mode,
        threshold=threshold,
        balanced_accuracy=ba,
        abstention_recall=recall,
        false_abstention_rate=false_rate,
        previous_threshold=previous,
        previous_balanced_accuracy=_balanced(np.asarray(a), np.asarray(u), previous)[0],
        n_answerable=len(a),
        n_unanswerable=len(u),
        scores=scores,
    )


# -- output --------------------------------------------------------------------------------

#: (label, MetricSet field, format) in table order
METRIC_ROWS: tuple[tuple[str, str, str], ...] = (
    ("recall@1", "recall_at_1", "{:.3f}"),
    ("recall@3", "recall_at_3", "{:.3f}"),
    ("recall@5", "recall_at_5", "{:.3f}"),
    ("MRR@10", "mrr_at_10", "{:.3f}"),
    ("nDCG@10", "ndcg_at_10", "{:.3f}"),
    ("answer accuracy", "accuracy", "{:.3f}"),
    ("citation precision", "citation_precision", "{:.3f}"),
    ("abstention recall", "abstention_recall", "{:.3f}"),
    ("false abstention", "false_abstention_rate", "{:.3f}"),
    ("median words", "median_answer_words", "{:.1f}"),
    ("latency p50 ms", "latency_p50_ms", "{:.1f}"),
    ("latency p95 ms", "latency_p95_ms", "{:.1f}"),
    ("verbatim violations", "verbatim_violations", "{}"),
)
#: (MetricSet attribute, heading) of the per-kind tables, terminal and HTML alike
KIND_COLUMNS = (
    ("recall_at_1", "recall@1"),
    ("recall_at_5", "recall@5"),
    ("mrr_at_10", "MRR@10"),
    ("accuracy", "accuracy"),
    ("abstention_recall", "abstain"),
    ("false_abstention_rate", "false abst."),
)


def fmt(value: float | int | None, spec: str = "{:.3f}") -> str:
    return "-" if value is None else spec.format(value)


def _grid(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    )


def render_table(report: EvalReport) -> str:
    modes = list(report.modes)
    first = next(iter(report.modes.values())).overall
    lines = [
        f"{report.questions_file or 'questions'}: {report.n_questions} questions "
        f"({first.n_answerable} answerable, {first.n_unanswerable} unanswerable); "
        f"top_k={report.top_k}, ranking depth {report.ranking_depth}; "
        f"index {report.index_version}; "
        f"chunks {report.chunking['max_tokens']} tokens/{report.chunking['overlap_sentences']} "
        f"overlap; abstain threshold {report.abstain_threshold:.4f}",
        "",
    ]
    rows = [["metric", *modes]]
    for label, name, spec in METRIC_ROWS:
        rows.append([label, *(fmt(getattr(report.modes[m].overall, name), spec) for m in modes)])
    lines += [_grid(rows), "", "per kind"]
    kind_rows = [["mode", "kind", "n", *(head for _, head in KIND_COLUMNS)]]
    for m in modes:
        for kind, ms in report.modes[m].by_kind.items():
            cells = (fmt(getattr(ms, attr)) for attr, _ in KIND_COLUMNS)
            kind_rows.append([m, kind, str(ms.n), *cells])
    lines.append(_grid(kind_rows))
    lines.append("")
    lines.append(
        "failures: " + ", ".join(f"{m} {len(r.failures)}" for m, r in report.modes.items())
    )
    if report.calibration is not None:
        c = report.calibration
        lines.append(
            f"calibrated ({c.mode}): abstain threshold {c.threshold:.4f} "
            f"(was {c.previous_threshold:.4f}); balanced accuracy {c.balanced_accuracy:.3f} "
            f"(was {c.previous_balanced_accuracy:.3f}); abstention recall "
            f"{c.abstention_recall:.3f}, false abstention {c.false_abstention_rate:.3f}"
            + (f"; stored in {c.stored_at}" if c.stored_at else "")
            + "; the figures above use it and are in-sample"
        )
    return "\n".join(lines)


def render_html(report: EvalReport) -> str:
    from ._eval_report import render_html as render

    return render(report)


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CiteqaError(f"cannot write {path}: {exc.strerror or exc}") from None


def _prepare_output(path: Path) -> None:
    """Make ``path``'s folder and check it can be written, before the evaluation runs
    (minutes of work lost to a typo otherwise)."""
    if (blocker := file_in_the_way(path.parent)) is not None:
        raise CiteqaError(f"cannot write {path}: {blocker} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CiteqaError(f"cannot write {path}: {exc.strerror or exc}") from None
    if path.is_dir():
        raise CiteqaError(f"cannot write {path}: it is a folder")
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise CiteqaError(f"cannot write {path}: permission denied")


def cli_main(args: Any, settings: Any) -> int:
    """``citeqa eval``: the library above, with files in and out."""
    from ._embedding import SentenceTransformerEmbedder
    from ._store import load_index

    index_dir = Path(args.index_dir or settings.index_dir)
    modes = parse_modes(args.modes)
    for out in (args.json, args.report):
        if out:
            _prepare_output(Path(out))
    if NAIVE not in modes:
        modes.append(NAIVE)  # the baseline is always in the same run
    # Check the question set against the indexed text before the model loads.
    questions = load_questions(args.questions, load_index(index_dir).documents)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if args.calibrate:
        answerable = sum(q.answerable for q in questions)
        if min(answerable, len(questions) - answerable) < CALIBRATION_MIN_PER_CLASS:
            log(
                f"citeqa: note: calibrating on {answerable} answerable and "
                f"{len(questions) - answerable} unanswerable questions; with fewer than "
                f"{CALIBRATION_MIN_PER_CLASS} of each the threshold is a guess (delete "
                f"{index_dir / CALIBRATION_FILE} to go back to the default)"
            )

    embedder = SentenceTransformerEmbedder(settings.model_path, threads=settings.threads or None)
    engine = Engine.open(index_dir, embedder, selector=settings.make_selector() or False)
    calibration = None
    if args.calibrate:
        log(f"calibrating the abstention threshold on {len(questions)} questions")
        calibration = calibrate(engine, questions, args.top_k)
        path = write_calibration(
            index_dir,
            calibration.threshold,
            questions=str(args.questions),
            n=len(questions),
            balanced_accuracy=calibration.balanced_accuracy,
            model=engine.index.model.get("name"),
            mode=calibration.mode,
            top_k=args.top_k,
            index_version=engine.version,
            created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        calibration.stored_at = str(path)
        engine = engine.with_summary(
            dataclasses.replace(engine.summary, abstain_threshold=calibration.threshold)
        )
    report = evaluate(
        engine, questions, modes, args.top_k, questions_file=str(args.questions), log=log
    )
    report.calibration = calibration
    print(render_table(report))
    if args.json:
        _write(Path(args.json), json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n")
        log(f"wrote {args.json}")
    if args.report:
        _write(Path(args.report), render_html(report))
        log(f"wrote {args.report}")
    return 0
