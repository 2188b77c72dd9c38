"""The learned answer stage: the bundled ONNX selector, and the answerer that uses it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from citeqa import (
    Document,
    Engine,
    HashingEmbedder,
    InvalidInputError,
    SummaryParams,
    build_index,
)
from citeqa._selector import AnswerSelector, bundled_selector, bundled_selector_dir
from citeqa.settings import Settings

PARIS = [
    ("Travel notes", "The museum shop sells postcards and books."),
    ("Travel notes", "The Eiffel Tower stands in Paris, on the Champ de Mars."),
    ("Travel notes", "Bananas are picked green and ripen on the way."),
]


def test_the_answering_sentence_scores_highest_and_its_span_is_marked() -> None:
    selector = bundled_selector()
    out = selector.select("In which city is the Eiffel Tower?", PARIS)
    assert len(out) == 3
    probabilities = [s.probability for s in out]
    assert max(probabilities) == probabilities[1]
    assert probabilities[1] > 0.5 > max(probabilities[0], probabilities[2])
    span = out[1].span
    assert span is not None
    assert "Paris" in PARIS[1][1][span[0] : span[1]]


def test_spans_are_offsets_into_the_sentence() -> None:
    sentences = [("A title", s) for s in (
        "In 1969, Apollo 11 landed on the Moon with Neil Armstrong and Buzz Aldrin.",
        "Über 300 Menschen — and 2 dogs — crossed the bridge on 4 June 2021 ✓.",
        "x",
    )]
    for selection, (_, sentence) in zip(
        bundled_selector().select("Who landed on the Moon?", sentences), sentences, strict=True
    ):
        assert 0.0 <= selection.probability <= 1.0
        if selection.span is not None:
            a, b = selection.span
            assert 0 <= a < b <= len(sentence)
            assert sentence[a:b].strip()


def test_no_candidates_no_work() -> None:
    assert bundled_selector().select("Anything?", []) == []


def test_a_folder_without_a_selector_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="holds no answer selector"):
        AnswerSelector(tmp_path)


def test_another_selector_folder_is_read(tmp_path: Path) -> None:
    folder = tmp_path / "selector"
    shutil.copytree(bundled_selector_dir(), folder)
    meta = json.loads((folder / "selector.json").read_text())
    meta.update(name="mine")
    (folder / "selector.json").write_text(json.dumps(meta))
    selector = Settings(selector_path=folder).make_selector()
    assert selector is not None and selector.name == "mine"


def test_the_setting_turns_the_stage_off() -> None:
    assert Settings(selector="off").make_selector() is None
    assert Settings().make_selector() is bundled_selector()


def _engine(selector: AnswerSelector | None, abstain_threshold: float = -10.0) -> Engine:
    """Two small documents; the fake embedder's cosines say little, so abstention (the
    first stage's evidence, not the learned stage's) is set by ``abstain_threshold``."""
    docs = [
        Document("tower", "Paris landmarks",
                 "Paris landmarks\n\nThe Eiffel Tower was finished in 1889 for the World's "
                 "Fair. It is 330 metres tall. Gustave Eiffel's company built it.\n\n"
                 "The Louvre holds the Mona Lisa. It opened as a museum in 1793."),
        Document("fruit", "Fruit", "Fruit\n\nBananas are picked green. Apples keep for months "
                 "in a cool store. Lemons grow in Sicily."),
    ]
    index, _ = build_index(docs, HashingEmbedder())
    summary = SummaryParams(abstain_threshold=abstain_threshold)
    return Engine(index, HashingEmbedder(), summary=summary, selector=selector)


def test_the_engine_answers_with_the_stage_and_marks_a_verbatim_short_answer() -> None:
    engine = _engine(bundled_selector())
    answer = engine.ask("When was the Eiffel Tower finished?")
    assert not answer.abstained
    assert answer.sentences[0].text.startswith("The Eiffel Tower was finished in 1889")
    short = answer.short_answer
    assert short is not None and "1889" in short.text
    doc = engine.document(short.doc_id)
    assert doc.text[short.start : short.end] == short.text
    first = answer.sentences[0]
    assert first.start <= short.start < short.end <= first.end
    assert answer.to_dict()["short_answer"] == {
        "text": short.text, "doc_id": short.doc_id, "start": short.start, "end": short.end}


def test_an_abstaining_answer_has_no_short_answer() -> None:
    engine = _engine(bundled_selector(), abstain_threshold=10.0)
    answer = engine.ask("When was the Eiffel Tower finished?")
    assert answer.abstained and answer.short_answer is None and answer.sentences == []
    assert answer.to_dict()["short_answer"] is None


def test_without_the_stage_there_is_no_short_answer() -> None:
    engine = _engine(None)
    answer = engine.ask("When was the Eiffel Tower finished?")
    assert answer.short_answer is None
    assert answer.to_dict()["short_answer"] is None
