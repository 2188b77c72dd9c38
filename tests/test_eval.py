"""Evaluation: question-set loading, metrics, calibration, reports, the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from citeqa import (
    Answer,
    AnswerSentence,
    Citation,
    CiteqaError,
    Engine,
    HashingEmbedder,
    InvalidInputError,
    build_index,
    index_corpus,
    make_document,
)
from citeqa._engine import read_calibration
from citeqa._eval import (
    NaiveBaseline,
    Question,
    aggregate,
    choose_threshold,
    cli_main,
    evaluate,
    judge,
    load_questions,
    normalise,
    parse_modes,
    ranx_scores,
    render_html,
    render_table,
)
from citeqa._tokens import count_tokens

REPO = Path(__file__).resolve().parents[1]
CITEQA_BIN = Path(sys.executable).with_name("citeqa")

PLANTS = make_document(
    "# Garden plants\n\n"
    "Tomatoes need full sun and regular watering. "
    "Basil grows well next to tomatoes. "
    "The greenhouse was built in 2019 by Maria Lopez.\n\n"
    "## Pests\n\n"
    "Aphids attack young lettuce leaves in spring. "
    "Ladybirds eat aphids and protect the lettuce. "
    "Slugs come out at night after rain.\n",
    doc_id="plants",
)
BIRDS = make_document(
    "# Birds\n\n"
    "Robins sing before dawn in April. "
    "Swallows arrive from Africa in May and leave in September. "
    "Robins sing before dawn in April.\n",
    doc_id="birds",
)
DOCS = {d.doc_id: d for d in (PLANTS, BIRDS)}

GOOD_LINES = [
    {
        "id": "g1",
        "question": "Who built the greenhouse?",
        "answers": ["Maria Lopez"],
        "evidence": "The greenhouse was built in 2019 by Maria Lopez.",
        "kind": "fact",
    },
    {
        "id": "g2",
        "question": "Which insects eat aphids on the lettuce?",
        "answers": ["ladybirds"],
        "evidence": "Ladybirds eat aphids and protect the lettuce.",
        "kind": "fact",
    },
    {
        "id": "g3",
        "question": "When do swallows arrive from Africa?",
        "answers": ["in May"],
        "evidence": "Swallows arrive from Africa in May",
        "kind": "fact",
        "doc_id": "birds",
    },
    {
        "id": "g4",
        "question": "What does quantum chromodynamics predict about gluon plasma?",
        "answers": [],
        "kind": "out_of_scope",
    },
    {
        "id": "g5",
        "question": "Which cryptocurrency exchange collapsed in Zurich?",
        "answers": [],
        "evidence": "",
        "kind": "out_of_scope",
    },
]


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def small_engine() -> Engine:
    embedder = HashingEmbedder()
    data, _ = build_index([PLANTS, BIRDS], embedder)
    return Engine(data, embedder)


# -- loading -------------------------------------------------------------------------------


def test_load_questions_reads_a_good_set(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "q.jsonl", [*GOOD_LINES[:2], "", *GOOD_LINES[2:]])
    questions = load_questions(path, DOCS)
    assert [q.id for q in questions] == ["g1", "g2", "g3", "g4", "g5"]
    assert questions[0].answerable and not questions[3].answerable
    start = PLANTS.text.index("The greenhouse")
    assert questions[0].spans == (("plants", start, start + len(GOOD_LINES[0]["evidence"])),)
    assert questions[2].spans[0][0] == "birds"
    assert questions[3].spans == () and questions[3].kind == "out_of_scope"


def test_load_questions_skips_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + write_jsonl(path, GOOD_LINES[:2]).read_bytes())
    assert [q.id for q in load_questions(path, DOCS)] == ["g1", "g2"]


def test_every_occurrence_of_the_evidence_counts(tmp_path: Path) -> None:
    row = {
        "id": "r",
        "question": "When do robins sing?",
        "answers": ["before dawn"],
        "evidence": "Robins sing before dawn in April.",
    }
    (question,) = load_questions(write_jsonl(tmp_path / "q.jsonl", [row]), [PLANTS, BIRDS])
    assert len(question.spans) == 2
    assert question.kind == "answerable"  # the default label


BAD_LINES = [
    ("{not json", "Expecting property name"),
    ("[1, 2]", "expected a JSON object"),
    ({"question": "Why?", "answers": []}, "'id' must be a non-empty string"),
    ({"id": "x", "question": "  ", "answers": []}, "'question' must be a non-empty string"),
    ({"id": "x", "question": "Why?", "answers": "yes"}, "'answers' must be a list"),
    ({"id": "x", "question": "Why?", "answers": ["a"]}, "needs 'evidence'"),
    ({"id": "x", "question": "Why?", "answers": [], "evidence": "Slugs"}, "'answers' is empty"),
    (
        {"id": "x", "question": "Why?", "answers": ["a"], "evidence": "Tomatoes need shade"},
        "not an exact substring of any indexed document",
    ),
    (
        {"id": "x", "question": "Why?", "answers": ["a"], "evidence": "Slugs", "doc_id": "birds"},
        "not an exact substring of document 'birds'",
    ),
    ({"id": "x", "question": "Why?", "answers": [], "doc_id": "fish"}, "'doc_id' 'fish'"),
    ({"id": "x", "question": "Why?", "answers": [], "anwsers": ["a"]}, "unknown field"),
    ({"id": "x", "question": "Why?", "answers": [], "kind": 3}, "'kind' must be"),
    ({"id": "g1", "question": "Again?", "answers": []}, "duplicate id 'g1' (first on line 1)"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_load_questions_rejects_bad_lines_with_their_number(
    tmp_path: Path, line: object, message: str
) -> None:
    path = write_jsonl(tmp_path / "q.jsonl", [GOOD_LINES[0], GOOD_LINES[1], line])
    with pytest.raises(InvalidInputError) as info:
        load_questions(path, DOCS)
    assert str(info.value).startswith(f"{path}:3: ")
    assert message in str(info.value)


def test_load_questions_rejects_an_empty_or_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="holds no questions"):
        load_questions(write_jsonl(tmp_path / "q.jsonl", [""]), DOCS)
    with pytest.raises(InvalidInputError, match="cannot read"):
        load_questions(tmp_path / "missing.jsonl", DOCS)


def test_parse_modes() -> None:
    assert parse_modes("hybrid, lexical,hybrid") == ["hybrid", "lexical"]
    with pytest.raises(InvalidInputError, match="'sparse'"):
        parse_modes("hybrid,sparse")


def test_normalise_folds_case_quotes_and_whitespace() -> None:
    assert normalise("Harris said “Don’t\xa0 come”\n") == 'harris said "don\'t come"'


# -- metrics on a hand-checked case --------------------------------------------------------

TEXT = PLANTS.text


def _citation(cid: int, start: int, end: int) -> Citation:
    return Citation(
        cid,
        f"plants:{cid}",
        "plants",
        "Garden plants",
        None,
        TEXT[start:end],
        start,
        end,
        1.0 / cid,
    )


def _sentence(start: int, end: int, citation: int) -> AnswerSentence:
    return AnswerSentence(TEXT[start:end], citation, "plants", start, end, 0.5)


def _fact(qid: str, question: str, answer: str, evidence: str) -> tuple[Question, int]:
    """A fact question about PLANTS whose evidence is found in it; and where it starts."""
    ev = TEXT.index(evidence)
    spans = (("plants", ev, ev + len(evidence)),)
    return Question(qid, question, (answer,), evidence, "fact", spans=spans), ev


def test_metrics_for_evidence_at_rank_two() -> None:
    evidence = "Ladybirds eat aphids and protect the lettuce."
    question, ev = _fact("m1", "Which insects eat aphids?", "LADYBIRDS", evidence)
    tomatoes = TEXT.index("Tomatoes")
    aphids = TEXT.index("Aphids")
    citations = [
        _citation(1, tomatoes, tomatoes + 40),  # misses
        _citation(2, aphids, ev + 10),  # overlaps the evidence's first 10 characters
        _citation(3, ev, ev + len(evidence)),  # also overlaps: only the first hit counts
    ]
    sentences = [_sentence(aphids, ev - 1, 2), _sentence(ev, ev + len(evidence), 3)]
    answer = Answer(question.question, "...", False, "v", sentences, citations)
    result = judge(question, answer, answer, 12.0, {"plants": PLANTS}, top_k=5)
    assert result.first_hit_rank == 2
    assert result.correct is True  # case-insensitive
    assert result.sentences_on_evidence == 1 and result.violations == []
    assert result.failure_reasons == []

    unanswerable = Question("m2", "What about comets?", (), "", "out_of_scope")
    answered = judge(unanswerable, answer, answer, 30.0, {"plants": PLANTS}, top_k=5)
    assert answered.failure_reasons == ["answered an unanswerable question"]

    results = [result, answered]
    ranx_scores(results)
    assert result.retrieval["recall@1"] == 0.0
    assert result.retrieval["recall@3"] == 1.0
    assert result.retrieval["mrr@10"] == pytest.approx(0.5)
    assert result.retrieval["ndcg@10"] == pytest.approx(0.6309297535714575)  # 1/log2(3)
    metrics = aggregate(results)
    assert (metrics.recall_at_1, metrics.recall_at_3, metrics.recall_at_5) == (0.0, 1.0, 1.0)
    assert metrics.mrr_at_10 == pytest.approx(0.5)
    assert metrics.accuracy == 1.0
    assert metrics.citation_precision == 0.5  # one of two sentences overlaps the evidence
    assert metrics.abstention_recall == 0.0
    assert metrics.false_abstention_rate == 0.0
    assert metrics.median_answer_words == len(" ".join(s.text for s in sentences).split())
    assert metrics.latency_p50_ms == pytest.approx(21.0)
    assert metrics.verbatim_violations == 0


def test_a_miss_a_wrong_answer_and_a_forged_span_are_failures() -> None:
    evidence = "Slugs come out at night after rain."
    question, ev = _fact("m3", "When do slugs come out?", "at night", evidence)
    tomatoes = TEXT.index("Tomatoes")
    forged = AnswerSentence("Slugs sleep all day.", 1, "plants", tomatoes, tomatoes + 20, 0.3)
    answer = Answer(question.question, "...", False, "v", [forged], [_citation(1, 0, 10)])
    (result,) = results = [judge(question, answer, answer, 1.0, {"plants": PLANTS}, top_k=5)]
    ranx_scores(results)
    assert result.first_hit_rank is None and result.correct is False
    assert result.retrieval == {
        "recall@1": 0.0,
        "recall@3": 0.0,
        "recall@5": 0.0,
        "mrr@10": 0.0,
        "ndcg@10": 0.0,
    }
    assert result.violations == [f"plants:{tomatoes}-{tomatoes + 20}"]
    assert result.failure_reasons == [
        "no acceptable answer in the answer",
        "evidence not in the top 5 passages",
        "1 non-verbatim span(s)",
    ]
    assert aggregate(results).verbatim_violations == 1

    abstained = Answer(question.question, "no", True, "v", [], [])
    result = judge(question, abstained, abstained, 1.0, {"plants": PLANTS}, top_k=5)
    assert result.correct is False
    assert result.failure_reasons[0] == "abstained on an answerable question"
    assert aggregate([result]).false_abstention_rate == 1.0


# -- the whole evaluation on a small corpus ------------------------------------------------


def test_evaluate_covers_every_mode_and_kind(small_engine: Engine, tmp_path: Path) -> None:
    questions = load_questions(write_jsonl(tmp_path / "q.jsonl", GOOD_LINES), DOCS)
    report = evaluate(small_engine, questions, ["hybrid", "dense", "lexical", "naive"], top_k=3)
    assert list(report.modes) == ["hybrid", "dense", "lexical", "naive"]
    assert report.ranking_depth == 10
    for mode in report.modes.values():
        assert mode.overall.n == 5 and mode.overall.n_answerable == 3
        assert set(mode.by_kind) == {"fact", "out_of_scope"}
        assert mode.overall.verbatim_violations == 0
        assert mode.overall.recall_at_5 is not None
        assert mode.by_kind["fact"].abstention_recall is None
        assert mode.overall.latency_p95_ms is not None
    assert report.modes["naive"].overall.abstention_recall == 0.0  # naive never abstains
    data = json.loads(json.dumps(report.to_dict()))
    assert set(data["modes"]["hybrid"]) == {"overall", "by_kind", "failures"}
    assert len(data["results"]["lexical"]) == 5
    table = render_table(report)
    assert "recall@1" in table and "naive" in table and "out_of_scope" in table


def test_naive_windows_are_verbatim_and_cover_the_text() -> None:
    doc = make_document(
        " ".join(f"Sentence number {i} is here." for i in range(300)), doc_id="long"
    )
    embedder = HashingEmbedder()
    naive = NaiveBaseline([doc], embedder, lambda q: embedder.embed_batch([q])[0])
    assert len(naive.windows) > 3
    assert "".join(doc.text[s:e] for _, s, e in naive.windows) == doc.text
    assert all(count_tokens(doc.text[s:e]) <= 257 for _, s, e in naive.windows)
    answer = naive.ask("Which sentence is number 42?", top_k=3)
    assert len(answer.citations) == 3 and len(answer.sentences) == 2
    for s in answer.sentences:
        assert doc.text[s.start : s.end] == s.text


# -- calibration ---------------------------------------------------------------------------


def test_choose_threshold_separates_and_takes_the_widest_gap() -> None:
    assert choose_threshold([0.6, 0.7, 0.8], [0.1, 0.2, 0.3]) == (pytest.approx(0.45), 1.0)
    # Overlap: the best cut misclassifies one question at most.
    threshold, ba = choose_threshold([0.3, 0.6, 0.7], [0.1, 0.2, 0.4])
    assert ba == pytest.approx((2 / 3 + 1) / 2) and 0.4 < threshold <= 0.6
    # Two equally good cuts: (0.2, 0.25) and (0.5, 0.9); the wider gap wins.
    threshold, ba = choose_threshold([0.25, 0.9], [0.2, 0.5])
    assert (threshold, ba) == (pytest.approx(0.7), 0.75)
    with pytest.raises(InvalidInputError, match="both answerable and unanswerable"):
        choose_threshold([0.5], [])


def _plants_and_birds(tmp_path: Path) -> tuple[Path, Path]:
    """An index of PLANTS and BIRDS (fake embedder) and GOOD_LINES as a question file."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for doc in (PLANTS, BIRDS):
        (corpus / f"{doc.doc_id}.md").write_text(doc.text, encoding="utf-8")
    index_dir = tmp_path / "index"
    index_corpus([corpus], index_dir, HashingEmbedder())
    return index_dir, write_jsonl(tmp_path / "q.jsonl", GOOD_LINES)


def test_calibrate_from_the_cli_writes_a_separating_threshold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    index_dir, questions = _plants_and_birds(tmp_path)
    monkeypatch.setattr(
        "citeqa._embedding.SentenceTransformerEmbedder", lambda *a, **k: HashingEmbedder()
    )
    args = SimpleNamespace(
        questions=questions,
        index_dir=index_dir,
        top_k=5,
        modes="hybrid",
        json=tmp_path / "out.json",
        report=tmp_path / "out.html",
        calibrate=True,
    )
    settings = SimpleNamespace(
        index_dir=Path("unused"), model_path=None, threads=0, make_selector=lambda: None
    )
    assert cli_main(args, settings) == 0

    data = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    cal = data["calibration"]
    answerable = {row["id"] for row in GOOD_LINES if row["answers"]}
    scores = cal["scores"]
    assert min(v for k, v in scores.items() if k in answerable) > cal["threshold"]
    assert max(v for k, v in scores.items() if k not in answerable) < cal["threshold"]
    assert cal["balanced_accuracy"] == 1.0
    stored = json.loads((index_dir / "calibration.json").read_text(encoding="utf-8"))
    assert stored["abstain_threshold"] == cal["threshold"]
    assert stored["n"] == 5 and stored["model"] == "hashing-test-embedder"
    assert read_calibration(index_dir) == cal["threshold"]
    assert Engine.open(index_dir, HashingEmbedder()).summary.abstain_threshold == cal["threshold"]
    # The run after calibrating uses the new threshold: it separates the set.
    assert data["abstain_threshold"] == cal["threshold"]
    assert data["modes"]["hybrid"]["overall"]["abstention_recall"] == 1.0
    assert data["modes"]["hybrid"]["overall"]["false_abstention_rate"] == 0.0
    assert list(data["modes"]) == ["hybrid", "naive"]  # the baseline always runs
    out = capsys.readouterr()
    assert "calibrated (hybrid)" in out.out
    # 3 answerable and 2 unanswerable questions: it says the threshold is a guess
    assert "calibrating on 3 answerable and 2 unanswerable questions" in out.err
    assert str(index_dir / "calibration.json") in out.err


def test_cli_eval_makes_output_folders_and_refuses_bad_outputs_before_evaluating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index_dir, questions = _plants_and_birds(tmp_path)
    loaded: list[bool] = []

    def embedder(*args: object, **kwargs: object) -> HashingEmbedder:
        loaded.append(True)
        return HashingEmbedder()

    monkeypatch.setattr("citeqa._embedding.SentenceTransformerEmbedder", embedder)
    settings = SimpleNamespace(
        index_dir=Path("unused"), model_path=None, threads=0, make_selector=lambda: None
    )

    def run(json_out: Path | None, report: Path | None) -> int:
        args = SimpleNamespace(questions=questions, index_dir=index_dir, top_k=5,
                               modes="hybrid", json=json_out, report=report, calibrate=False)
        return cli_main(args, settings)

    out = tmp_path / "new" / "folders"
    assert run(out / "eval.json", out / "eval.html") == 0
    assert json.loads((out / "eval.json").read_text(encoding="utf-8"))["n_questions"] == 5
    assert (out / "eval.html").is_file()
    loaded.clear()
    with pytest.raises(CiteqaError, match="it is a folder"):
        run(out, None)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(CiteqaError) as caught:
        run(None, tmp_path / "a-file" / "sub" / "report.html")
    assert str(caught.value) == (
        f"cannot write {tmp_path}/a-file/sub/report.html: {tmp_path}/a-file is a file, not a folder"
    )
    assert loaded == []  # refused before the model loaded


# -- the HTML report -----------------------------------------------------------------------

HOSTILE = '<script>alert("x")</script>'


def test_html_report_is_self_contained_and_escapes_text(
    small_engine: Engine, tmp_path: Path
) -> None:
    rows = [
        *GOOD_LINES,
        {
            "id": "<b>q9</b>",
            "question": f"What is {HOSTILE} & <img src=x onerror=y>?",
            "answers": [],
            "kind": "out<_>scope $x",
        },
    ]
    questions = load_questions(write_jsonl(tmp_path / "q.jsonl", rows), DOCS)
    report = evaluate(small_engine, questions, ["hybrid", "naive"], top_k=3)
    assert any(r.id == "<b>q9</b>" for r in report.modes["naive"].failures)
    html = render_html(report)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert "http://" not in html and "https://" not in html
    assert '<img alt="chart" src="data:image/png;base64,' in html
    assert "<script" not in html and "<b>q9" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "&lt;b&gt;q9&lt;/b&gt;" in html and "out&lt;_&gt;scope $x" in html


# -- the real CLI on the dev set -----------------------------------------------------------


def _cli_eval(index_dir: Path, questions: Path, out: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(
        [str(CITEQA_BIN), "eval", str(questions), "--index-dir", str(index_dir)]
        + ["--json", str(out), *args],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "recall@1" in done.stdout
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return data


@pytest.mark.integration
@pytest.mark.slow
def test_cli_eval_on_the_dev_set(real_index: Path, tmp_path: Path) -> None:
    data = _cli_eval(
        real_index / "index", REPO / "tests" / "questions.jsonl", tmp_path / "out.json"
    )
    assert data["n_questions"] == 90 and data["top_k"] == 5 and data["calibration"] is None
    assert list(data["modes"]) == ["hybrid", "dense", "lexical", "naive"]
    for mode, block in data["modes"].items():
        overall = block["overall"]
        assert overall["verbatim_violations"] == 0, mode
        assert overall["n"] == 90
        for key in (
            "recall_at_1",
            "recall_at_3",
            "recall_at_5",
            "mrr_at_10",
            "ndcg_at_10",
            "accuracy",
            "abstention_recall",
            "false_abstention_rate",
            "latency_p50_ms",
            "latency_p95_ms",
        ):
            assert 0 <= overall[key], (mode, key)
        assert set(block["by_kind"]) == {"fact", "paraphrase", "out_of_scope", "near_domain"}
        assert len(data["results"][mode]) == 90
        assert all(r["violations"] == [] for r in data["results"][mode])

    # Quality regression on the dev set, hybrid mode. Issue 4's targets where they
    # hold; where they do not yet (README, "Evaluation"), the measured level is the floor.
    hybrid = data["modes"]["hybrid"]
    overall, kinds = hybrid["overall"], hybrid["by_kind"]
    assert kinds["out_of_scope"]["abstention_recall"] == 1.0  # target: all
    assert kinds["near_domain"]["abstention_recall"] >= 0.5  # target: at least half
    # target 0.05; measured 0.061 with the learned stage, whose choices the type check
    # reads (0.015 without it): docs/learned-stage.md
    assert overall["false_abstention_rate"] <= 0.07
    assert overall["median_answer_words"] <= 40  # target
    assert overall["recall_at_1"] >= 0.90  # target
    assert overall["recall_at_5"] >= 0.98  # target
    # measured 0.848 with the learned stage (0.894 with the first stage alone, whose
    # weights were chosen on this set; docs/learned-stage.md)
    assert overall["accuracy"] >= 0.84


def _hybrid_holds_targets(
    data: dict[str, Any], *, recall_at_1: float = 0.90, accuracy: float
) -> None:
    """Issue 4's targets that hold on a set written by others, and a floor at today's
    accuracy where the target (0.95) does not hold."""
    hybrid = data["modes"]["hybrid"]
    overall, kinds = hybrid["overall"], hybrid["by_kind"]
    assert overall["verbatim_violations"] == 0
    assert kinds["out_of_scope"]["abstention_recall"] == 1.0
    assert kinds["near_domain"]["abstention_recall"] >= 0.5
    assert overall["false_abstention_rate"] <= 0.05
    assert overall["median_answer_words"] <= 40
    assert overall["recall_at_1"] >= recall_at_1
    assert overall["recall_at_5"] >= 0.98
    assert overall["accuracy"] >= accuracy


@pytest.mark.integration
@pytest.mark.slow
def test_cli_eval_on_the_independent_set(real_index: Path, tmp_path: Path) -> None:
    """tests/questions_independent.jsonl was written by other sessions from the document
    alone (README, "Evaluation"): issue 4's targets where they hold, else today's level."""
    questions = REPO / "tests" / "questions_independent.jsonl"
    data = _cli_eval(real_index / "index", questions, tmp_path / "out.json", "--modes", "hybrid")
    assert data["n_questions"] == 181
    _hybrid_holds_targets(data, accuracy=0.90)  # measured 0.906 (0.915 without the selector)


@pytest.mark.integration
@pytest.mark.slow
def test_cli_eval_on_the_sealed_sets(real_index: Path, tmp_path: Path) -> None:
    """The twelve sets other sessions wrote from the document alone, each measured once
    before its failures were read (README, "Sealed sets"), run together."""
    questions = tmp_path / "sealed.jsonl"
    with questions.open("w", encoding="utf-8") as out:
        for name in ("", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12"):
            out.write((REPO / "tests" / f"questions_sealed{name}.jsonl").read_text("utf-8"))
    data = _cli_eval(real_index / "index", questions, tmp_path / "out.json", "--modes", "hybrid")
    assert data["n_questions"] == 824
    # measured with the learned stage: near-domain abstention 0.809, false abstention
    # 0.047, recall@1 0.930, accuracy 0.854 (without it: 0.843, 0.017, 0.924, 0.873)
    _hybrid_holds_targets(data, accuracy=0.85)
