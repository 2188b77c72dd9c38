"""Sentences a question names by the document's structure (citeqa._structure) and how
the answerer adds them, with the fake embedder."""

from __future__ import annotations

import numpy as np
import pytest

from citeqa import (
    ChunkingParams,
    Engine,
    HashingEmbedder,
    SummaryParams,
    build_index,
    make_document,
)
from citeqa._answer import Answerer
from citeqa._structure import LAST, about_the_document, item_number


def one_document_engine(text: str) -> Engine:
    """An in-memory engine over ``text`` alone, in small chunks (the fake embedder)."""
    embedder = HashingEmbedder()
    data, _ = build_index(
        [make_document(text, doc_id="doc")], embedder, ChunkingParams(max_tokens=40)
    )
    return Engine(data, embedder)


@pytest.mark.parametrize(
    "question, number",
    [
        ("What is WOLA's second recommendation?", 2),
        ("What does the 3rd step require?", 3),
        ("Name the tenth key priority.", 10),
        ("What is the first area where changes are needed?", 1),
        ("How many people asked in the first five months of 2021?", None),
        ("What year did the first Moon landing take place?", None),
        ("When did Harris first visit Guatemala?", None),
        ("What is WOLA's final recommendation?", LAST),
        ("And the last step?", LAST),
        ("What happened last year?", None),
        ("How many asked in the last five months?", None),
    ],
)
def test_item_named_by_ordinal(question: str, number: int | None) -> None:
    named = item_number(question)
    assert (named[0] if named else None) == number


REPORT = (
    "# Report on Rivers\n\n"
    "Rivers carry water from the mountains to the sea. Salmon swim upstream every autumn "
    "to spawn in gravel beds. Otters hunt along muddy banks at night.\n\n"
    "Floods reshape the valley floor every few decades. Farmers plant willows to hold "
    "the soil. Bridges are rebuilt after the largest floods.\n\n"
    "## What should change\n\n"
    "We make these recommendations to the basin authority:\n\n"
    "1.) Restore the wetlands along the lower course.\n\n"
    "2.) Remove the weirs that block migrating fish.\n\n"
    "3.) Publish water quality data every month.\n"
)


@pytest.fixture
def report_engine() -> Engine:
    return one_document_engine(REPORT)


def test_the_item_a_question_names_is_the_answer(report_engine: Engine) -> None:
    answer = report_engine.ask("What is the report's second recommendation?")
    assert not answer.abstained
    assert answer.sentences[0].text == "2.) Remove the weirs that block migrating fish."
    without = report_engine.with_summary(SummaryParams(structure_weight=0.0))
    plain = without.ask("What is the report's second recommendation?")
    assert "2.)" not in plain.answer  # the words alone do not find it


def test_the_last_item_is_the_highest_numbered(report_engine: Engine) -> None:
    without = report_engine.with_summary(SummaryParams(structure_weight=0.0))
    for question in ("What is the final recommendation?", "What is the last recommendation?"):
        said = [s.text for s in report_engine.ask(question).sentences]
        assert "3.) Publish water quality data every month." in said
        assert "3.)" not in without.ask(question).answer  # the words alone do not find it


def test_an_item_outside_the_retrieved_passages_is_added(report_engine: Engine) -> None:
    question = "What is the third recommendation about salmon and otters?"
    without = report_engine.with_summary(SummaryParams(structure_weight=0.0)).ask(question, top_k=1)
    assert all("3.)" not in c.text for c in without.citations)
    answer = report_engine.ask(question, top_k=1)
    [citation] = answer.citations  # still top_k passages
    assert "3.) Publish water quality data every month." in citation.text
    assert citation.retrievers == {"numbered_item": 1}
    assert answer.sentences[0].text.startswith("3.)")


def test_an_item_needs_a_list_noun_the_document_uses(report_engine: Engine) -> None:
    for question in (
        "What is the second pillar of the river plan?",  # the report never says "pillar"
        "What is the fifth recommendation?",  # there is no fifth
    ):
        answer = report_engine.ask(question)
        assert all("numbered_item" not in c.retrievers for c in answer.citations)
        assert not answer.sentences or not answer.sentences[0].text[:1].isdigit()


def test_items_only_in_hybrid_mode(report_engine: Engine) -> None:
    for mode in ("dense", "lexical"):
        answer = report_engine.ask(
            "What is the third recommendation?", top_k=1, mode=mode  # type: ignore[arg-type]
        )
        assert all(set(c.retrievers) == {mode} for c in answer.citations)


@pytest.mark.parametrize(
    "question, about",
    [
        ("When was the commentary published?", "front"),
        ("Which organization published this report?", "front"),
        ("Who wrote this article?", "front"),
        ("What is the title of the document?", "title"),
        ("What is the headline of this article?", "title"),
        ("When was the report on disappearances published?", None),
        ("What is the title of the executive order?", None),
        ("When did Harris visit Guatemala?", None),
        ("What is the article about?", "front"),  # its title and subtitle say
        ("What is the topic of this report?", "front"),
        ("What is the report about disappearances?", None),
    ],
)
def test_questions_about_the_document_itself(question: str, about: str | None) -> None:
    assert about_the_document(question) == about


BULLETIN = (
    "Riverwatch Trust\n4 Mar 2024 | Bulletin\n\n"
    "# Otters Return to the Lower Valley\n\n"
    + " ".join(f"Survey {i} counted otters near bridge {i} at dawn." for i in range(1, 30))
    + "\n"
)


@pytest.fixture
def bulletin_engine() -> Engine:
    return one_document_engine(BULLETIN)


def test_the_front_matter_answers_questions_about_the_document(
    bulletin_engine: Engine,
) -> None:
    question = "When was this bulletin published?"
    without = bulletin_engine.with_summary(SummaryParams(structure_weight=0.0))
    assert "4 Mar 2024" not in without.ask(question, top_k=2).answer
    answer = bulletin_engine.ask(question, top_k=2)
    assert len(answer.citations) <= 2
    assert answer.sentences[0].text == "Riverwatch Trust\n4 Mar 2024 | Bulletin"
    assert answer.citations[0].start == 0


def test_front_matter_words_may_name_the_document(bulletin_engine: Engine) -> None:
    question = "When was the Riverwatch bulletin on otters published?"
    assert about_the_document(question) is None  # names more than a document
    front = frozenset({"riverwatch", "trust", "otter", "return"})
    assert about_the_document(question, front) == "front"
    answer = bulletin_engine.ask(question, top_k=2)
    # the dateline, not the title: the question asks when
    assert answer.sentences[0].text == "Riverwatch Trust\n4 Mar 2024 | Bulletin"


def test_front_matter_answers_no_other_question() -> None:
    # The dateline shares three words with the question and the answer one, so the
    # dateline matched best; it may answer only a question about the document itself.
    engine = one_document_engine(BULLETIN + "Volunteers recommend fencing the bridges.\n")
    question = "What did the Riverwatch Trust bulletin recommend?"
    assert about_the_document(question, frozenset({"riverwatch", "trust"})) is None
    answer = engine.ask(question, top_k=5)
    assert answer.sentences[0].text == "Volunteers recommend fencing the bridges."
    assert "Riverwatch Trust" not in answer.answer


def test_a_when_question_skips_front_matter_that_holds_no_date() -> None:
    # a Markdown guide whose front matter is its title: the date is in the text
    engine = one_document_engine(
        "# Launch guide\n\nPublished 5 May 2019 by the Rocket Club.\n\n## Steps\n\n"
        "Check the fuel valves. Clear the launch pad. Count down from ten.\n"
    )
    answer = engine.ask("When was the launch guide published?", top_k=2)
    assert [s.text for s in answer.sentences] == ["Published 5 May 2019 by the Rocket Club."]


@pytest.mark.parametrize(
    "question",
    [
        "What is the title of the bulletin?",
        "What is its title?",
        "What is the bulletin called?",
        "What is the headline?",
    ],
)
def test_a_title_question_gets_the_title_alone(question: str) -> None:
    # a body sentence that holds the word "title" must not answer it
    engine = one_document_engine(
        BULLETIN + "Title 9 of the river code protects otter dens along the bank.\n"
    )
    answer = engine.ask(question)
    assert [s.text.lstrip("# ") for s in answer.sentences] == ["Otters Return to the Lower Valley"]
    assert answer.sentences[0].citation == 1


AGENCIES = (
    "# Agencies\n\n"
    + " ".join(f"Rangers patrolled sector {i} of the forest in spring." for i in range(1, 25))
    + " Funding for the Wetland Restoration Office (WRO) doubled last year."
    + " The WRO hired twelve hydrologists. Volunteers planted reeds along the shore.\n"
)


@pytest.mark.parametrize(
    "question",
    [
        "What is the WRO?",
        "What does WRO stand for?",
        "What does the acronym WRO stand for?",
        "What is WRO short for?",
        "what is the full form of WRO",
    ],
)
def test_an_acronym_question_gets_the_sentence_that_spells_it_out(question: str) -> None:
    engine = one_document_engine(AGENCIES)
    answer = engine.ask(question)
    assert not answer.abstained
    assert "Wetland Restoration Office (WRO)" in answer.sentences[0].text
    plain = engine.with_summary(SummaryParams(structure_weight=0.0)).ask(question)
    assert plain.abstained or "(WRO)" not in plain.sentences[0].text


@pytest.mark.parametrize(
    "question, named",
    [
        ("What is the full name of the WRO?", True),
        ("What does the abbreviation WRO mean?", True),
        ("What does the WRO fund?", False),
        ("What is the full name of the director?", False),
    ],
)
def test_acronym_question_forms(question: str, named: bool) -> None:
    engine = one_document_engine(AGENCIES)
    structure = engine._answerer._structure
    rows, label = structure.named(question, list(engine.index.documents))
    texts = [engine._answerer.sentence_text(r) for r in rows]
    assert (texts, label) == (
        (["Funding for the Wetland Restoration Office (WRO) doubled last year."], "definition")
        if named
        else ([], "")
    )


PASTED = (
    "# River notes\n\n"
    "Salmon swim upstream every autumn to spawn in gravel beds.\n\n"
    "Rivers matter to everyone. Join our river campaign to learn more.\n\n"
    "Otters hunt along muddy banks at night. These include: otters.\n\n"
    "Floods reshape the valley floor every few decades. These include: floods.\n\n"
    "Protect the rivers you love. Join our river campaign to learn more.\n\n"
    "Sign up today. Join our river campaign to learn more. Share it. Tell a friend.\n"
)


def test_short_paragraphs_that_repeat_a_sentence_are_boilerplate() -> None:
    engine = one_document_engine(PASTED)
    answerer = engine._answerer
    boilerplate = {answerer.sentence_text(r) for r in answerer._structure.boilerplate_rows}
    assert boilerplate == {
        "Rivers matter to everyone.",
        "Protect the rivers you love.",
        "Join our river campaign to learn more.",
    }  # not "These include:" (too short to tell), nor the paragraph of four sentences


def test_boilerplate_sentences_score_less_by_the_penalty() -> None:
    engine = one_document_engine(PASTED)
    question = "Why do rivers matter?"
    vector = engine.embedder.embed([question])[0]
    strict = Answerer(engine.index, SummaryParams())
    lenient = Answerer(engine.index, SummaryParams(boilerplate_penalty=0.0))
    _, rows, scores, *_ = strict._evaluate(question, vector, 5, "hybrid")
    _, same_rows, lenient_scores, *_ = lenient._evaluate(question, vector, 5, "hybrid")
    assert rows.tolist() == same_rows.tolist()
    boilerplate = np.isin(rows, list(strict._structure.boilerplate_rows))
    assert boilerplate.any() and not boilerplate.all()
    penalty = SummaryParams().boilerplate_penalty
    assert penalty > 0
    body = ~np.isin(rows, strict._structure.front_rows(["doc"]))  # front matter: last
    assert np.allclose((lenient_scores - scores)[body], (penalty * boilerplate)[body], atol=1e-6)
