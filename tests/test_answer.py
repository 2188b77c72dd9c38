"""Retrieval, extractive summarising and abstention (citeqa._answer), with the fake embedder."""

from __future__ import annotations

import dataclasses

import pytest

from citeqa import (
    ABSTAIN_TEXT,
    ChunkingParams,
    Engine,
    HashingEmbedder,
    SummaryParams,
    build_index,
    make_document,
)
from citeqa._answer import (
    _about_the_document,
    _expected_type,
    _focus_terms,
    _has_type,
    _item_number,
)

MODES = ("hybrid", "dense", "lexical")
MISSING = "How many disappeared and missing people does the Mexican government recognize?"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("top_k", [1, 3, 5, 20])
def test_answer_invariants(
    engine: Engine, check_answer, seed_questions: list[str], mode: str, top_k: int  # type: ignore[no-untyped-def]
) -> None:
    docs = engine.index.documents
    answered = abstained = 0
    for question in seed_questions:
        answer = engine.ask(question, top_k=top_k, mode=mode)  # type: ignore[arg-type]
        check_answer(answer, docs)
        assert answer.question == question
        assert answer.index_version == engine.version
        assert len(answer.citations) <= top_k
        for c in answer.citations:
            assert c.chunk_id in {ch.chunk_id for ch in engine.index.chunks}
            if mode != "hybrid":
                assert set(c.retrievers) == {mode}
        answered += not answer.abstained
        abstained += answer.abstained
    assert answered, "the fake embedder answers some seed questions"


def test_sentence_cites_best_ranked_passage_holding_it(engine: Engine) -> None:
    for question in ("asylum in Mexico", "Harris Guatemala visit", MISSING, "border crackdowns"):
        answer = engine.ask(question, top_k=10)
        for s in answer.sentences:
            holding = [c.id for c in answer.citations if c.start <= s.start and s.end <= c.end]
            assert s.citation == min(holding)


def test_sentences_are_in_document_order(engine: Engine) -> None:
    for question in ("asylum in Mexico", "migration policy", "Harris Guatemala"):
        answer = engine.ask(question, top_k=10)
        keys = [(s.doc_id, s.start) for s in answer.sentences]
        assert keys == sorted(keys)
        assert len(set(keys)) == len(keys)


def test_seed_fact_found_by_fake_embedder(engine: Engine) -> None:
    answer = engine.ask(MISSING)
    assert not answer.abstained
    assert any("88,700" in s.text for s in answer.sentences)
    assert "88,700" in answer.answer
    assert answer.citations[0].retrievers.get("lexical") == 1


def test_unrelated_question_abstains_but_lists_citations(engine: Engine) -> None:
    answer = engine.ask("What is the capital of Australia?")
    assert answer.abstained
    assert answer.answer == ABSTAIN_TEXT
    assert answer.sentences == []
    assert answer.citations  # what was looked at is still shown


def test_lexical_mode_without_known_terms_cites_nothing(engine: Engine) -> None:
    answer = engine.ask("kangaroo platypus wombat", mode="lexical")
    assert answer.abstained and answer.citations == [] and answer.sentences == []


def test_abstain_threshold_decides(engine: Engine) -> None:
    never = engine.with_summary(SummaryParams(abstain_threshold=-100.0))
    always = engine.with_summary(SummaryParams(abstain_threshold=100.0))
    for question in ("What is the capital of Australia?", MISSING):
        assert not never.ask(question).abstained
        assert always.ask(question).abstained
    assert never.version == engine.version


@pytest.mark.parametrize("max_sentences", [1, 2])
def test_max_sentences_and_words(engine: Engine, max_sentences: int) -> None:
    summary = dataclasses.replace(
        SummaryParams(), max_sentences=max_sentences, keep_ratio=0.0, abstain_threshold=-100.0
    )
    limited = engine.with_summary(summary)
    for question in ("migration", "asylum in Mexico", "Central America"):
        answer = limited.ask(question, top_k=20)
        assert 1 <= len(answer.sentences) <= max_sentences


def test_word_budget_limits_further_sentences(engine: Engine) -> None:
    summary = SummaryParams(max_words=1, keep_ratio=0.0, abstain_threshold=-100.0)
    answer = engine.with_summary(summary).ask("migration", top_k=20)
    assert len(answer.sentences) == 1  # the best sentence always; no room for a second


def test_to_dict_is_plain_data(engine: Engine) -> None:
    answer = engine.ask(MISSING)
    as_dict = answer.to_dict()
    assert set(as_dict) == {
        "question", "answer", "abstained", "index_version", "sentences", "citations",
    }
    assert set(as_dict["sentences"][0]) == {"text", "citation", "doc_id", "start", "end", "score"}
    assert set(as_dict["citations"][0]) == {
        "id", "chunk_id", "doc_id", "title", "section", "text", "start", "end", "score",
        "retrievers",
    }


@pytest.mark.parametrize(
    "question, kind",
    [
        ("How many people are missing?", "number"),
        ("how much money was pledged", "number"),
        ("What percentage of migrants return?", "number"),
        ("When did Mayorkas visit Mexico?", "date"),
        ("In which year was it signed?", "date"),
        ("Who is the USAID chief?", "name"),
        ("Who led the delegation?", "name"),
        ("Why do people migrate?", None),
        ("asylum", None),
    ],
)
def test_expected_answer_type(question: str, kind: str | None) -> None:
    assert _expected_type(question) == kind


# -- fusion, reranking, names and answer types -----------------------------------------------


def test_fusion_keeps_a_clear_dense_winner_without_lexical_hits(engine: Engine) -> None:
    """A paraphrase shares no word with its passage: stray lexical hits elsewhere must
    not bury the dense side's clear first choice (reciprocal rank fusion did)."""
    answerer = engine._answerer
    weight = answerer.params.lexical_fusion_weight
    dense = [(1, 0.70), (2, 0.70 - weight - 0.01), (3, 0.40)]
    lexical = [(2, 9.0), (3, 4.5), (4, 1.0)]
    fused = answerer._fuse(dense, lexical)
    assert [row for row, _ in fused][:2] == [1, 2]
    scores = dict(fused)
    assert scores[3] == pytest.approx(0.40 + weight * 0.5)
    # a lexical-only hit gets the dense floor
    assert scores[4] == pytest.approx(0.40 + weight * 1.0 / 9.0)
    assert answerer._fuse([], lexical) == lexical and answerer._fuse(dense, []) == dense


def test_citations_are_ordered_by_their_best_sentence(engine: Engine) -> None:
    never = engine.with_summary(SummaryParams(abstain_threshold=-100.0))
    for question in (MISSING, "asylum in Mexico", "Harris Guatemala visit", "border crackdowns"):
        answer = never.ask(question, top_k=10)
        assert [c.id for c in answer.citations] == list(range(1, len(answer.citations) + 1))
        scores = [c.score for c in answer.citations]
        assert scores == sorted(scores, reverse=True)
        best = max(answer.sentences, key=lambda s: s.score)
        assert best.citation == 1  # the answer's best sentence comes from passage [1]
        assert best.score == answer.citations[0].score


def test_seat_of_government_counts_as_its_country(engine: Engine) -> None:
    answerer = engine._answerer
    assert answerer._missing_names("What did Washington promise the region?") == 0  # "U.S."
    assert answerer._missing_names("What did Havana promise the region?") == 1  # no Cuba
    assert answerer._missing_names("What did Narnia promise the region?") == 1


@pytest.mark.parametrize(
    "text, expected",
    [
        ("began a five-day trip", True),
        ("thousands of disappeared migrants", True),
        ("over 88,700 people", True),
        ("a long trip to the region", False),
        ("someone went there", False),
    ],
)
def test_number_words_count_as_numbers(text: str, expected: bool) -> None:
    assert _has_type(text, "number") is expected


@pytest.mark.parametrize(
    "question, focus",
    [
        ("Which specific areas are mentioned in the memorandum?", {"specif", "area"}),
        ("How many days did the trip last?", {"day"}),
        ("In what year was it signed?", {"year"}),
        ("Why do people migrate?", set()),
    ],
)
def test_question_focus(question: str, focus: set[str]) -> None:
    assert _focus_terms(question) == focus


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
    ],
)
def test_item_named_by_ordinal(question: str, number: int | None) -> None:
    named = _item_number(question)
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


def one_document_engine(text: str) -> Engine:
    """An in-memory engine over ``text`` alone, in small chunks (the fake embedder)."""
    embedder = HashingEmbedder()
    data, _ = build_index(
        [make_document(text, doc_id="doc")], embedder, ChunkingParams(max_tokens=40)
    )
    return Engine(data, embedder)


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
        ("When was the commentary published?", True),
        ("Which organization published this report?", True),
        ("Who wrote this article?", True),
        ("What is the title of the document?", True),
        ("When was the report on disappearances published?", False),
        ("What is the title of the executive order?", False),
        ("When did Harris visit Guatemala?", False),
    ],
)
def test_questions_about_the_document_itself(question: str, about: bool) -> None:
    assert _about_the_document(question) is about


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


def test_a_title_question_gets_the_title(bulletin_engine: Engine) -> None:
    answer = bulletin_engine.ask("What is the title of the bulletin?")
    assert answer.sentences[0].text.lstrip("# ") == "Otters Return to the Lower Valley"
    assert "4 Mar 2024" not in answer.answer


AGENCIES = (
    "# Agencies\n\n"
    + " ".join(f"Rangers patrolled sector {i} of the forest in spring." for i in range(1, 25))
    + " Funding for the Wetland Restoration Office (WRO) doubled last year."
    + " The WRO hired twelve hydrologists. Volunteers planted reeds along the shore.\n"
)


@pytest.mark.parametrize("question", ["What is the WRO?", "What does WRO stand for?"])
def test_an_acronym_question_gets_the_sentence_that_spells_it_out(question: str) -> None:
    engine = one_document_engine(AGENCIES)
    answer = engine.ask(question)
    assert not answer.abstained
    assert "Wetland Restoration Office (WRO)" in answer.sentences[0].text
    plain = engine.with_summary(SummaryParams(structure_weight=0.0)).ask(question)
    assert plain.abstained or "(WRO)" not in plain.sentences[0].text
