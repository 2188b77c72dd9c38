"""Retrieval, extractive summarising and abstention (citeqa._answer), with the fake embedder."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from citeqa import ABSTAIN_TEXT, Engine, SummaryParams
from citeqa._answer import (
    Answerer,
    _countries,
    _expected_type,
    _focus_terms,
    _has_type,
    _name_runs,
    _titled_people,
    _type_tokens,
    core_question,
    spell_out_titles,
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
        "short_answer",
    }
    assert set(as_dict["sentences"][0]) == {
        "text", "citation", "doc_id", "start", "end", "score", "page"
    }
    assert set(as_dict["citations"][0]) == {
        "id", "chunk_id", "doc_id", "title", "section", "text", "start", "end", "score",
        "retrievers", "page",
    }
    assert as_dict == dataclasses.asdict(answer)  # written out by hand: no field forgotten
    assert as_dict["citations"][0]["retrievers"] is not answer.citations[0].retrievers


@pytest.mark.parametrize(
    "question, kind",
    [
        ("How many people are missing?", "number"),
        ("how much money was pledged", "number"),
        ("What percentage of migrants return?", "number"),
        ("What exact number of troops were sent?", "number"),
        ("What is the total dollar value of the package?", "number"),
        ("What annual budget does COMAR get?", "number"),
        ("what is comar's annual budget", "number"),
        ("When did Mayorkas visit Mexico?", "date"),
        ("In which year was it signed?", "date"),
        ("On what exact date was it announced?", "date"),
        ("On which dates did Harris travel?", "date"),
        ("Who is the USAID chief?", "name"),
        ("Who led the delegation?", "name"),
        ("What is the name of Mexico's refugee agency?", "name"),
        ("what's the name of the task force", "name"),
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


def test_a_place_the_corpus_never_names_is_missing(engine: Engine) -> None:
    # no table of capitals standing for their countries (it changed no SQuAD question's
    # count: docs/learned-stage.md): a place is judged by its own words
    answerer = engine._answerer
    assert answerer._missing_names("What did Havana promise the region?") == 1
    assert answerer._missing_names("What did Narnia promise the region?") == 1
    assert answerer._missing_names("What did Mexico promise the region?") == 0


def test_a_longer_form_of_a_known_word_is_no_missing_name(engine: Engine) -> None:
    answerer = engine._answerer
    assert answerer._missing_names("How many applied from January to May?") == 0  # a date
    assert answerer._missing_names("When did Mexico send the Guardsmen?") == 0  # "Guard"
    assert answerer._missing_names("Did Guatemalans protest?") == 0
    assert answerer._missing_names("When did Mexico send the Narnians?") == 1


@pytest.mark.parametrize(
    "question, runs",
    [
        ("When was the Asylum Cooperative Agreement signed?", [("asylum", "cooper", "agreement")]),
        ("Which Asylum Office?", [("asylum", "offic")]),  # "Which" opens the question
        ("When is Guatemala's NGO Law due?", [("ngo", "law")]),  # a possessive ends a run
        ("What did the Justice-DHS Alpha unit do?", []),  # a compound describes
        ("Who met Secretary of State Antony Blinken?", [("state", "antoni", "blinken")]),
        ("Did Vice President Kamala Harris go?", [("kamala", "harri")]),  # titles apart
        ("Did Harris go to Mexico?", []),
    ],
)
def test_name_runs(question: str, runs: list[tuple[str, ...]]) -> None:
    assert _name_runs(question) == runs


def test_a_name_whose_words_the_corpus_never_puts_together_is_missing(engine: Engine) -> None:
    answerer = engine._answerer
    # every word is in the commentary, the name is not
    assert answerer._missing_names("When did Mexico sign the Asylum Cooperative Agreement?") == 1
    # "Customs" is no word of it, and "Border Protection" no name of it
    assert answerer._missing_names("What did Customs and Border Protection report?") == 2
    # names the commentary has, also with a word between or in another order
    assert answerer._missing_names("When does the NGO Law take effect?") == 0
    assert answerer._missing_names("What did Vice President Harris say?") == 0
    assert answerer._missing_names("What is the Minors Program for Central Americans?") == 0
    assert answerer._missing_names("Who leads the Alpha Task Force?") == 0
    assert answerer._missing_names("What does Buenos Aires want to expand?") == 2  # 2 words


@pytest.mark.parametrize(
    "question, spelled",
    [
        ("What did the VP say?", "What did the vice president say?"),
        ("Who echoed the VP's words?", "Who echoed the vice president's words?"),
        ("Where did the V.P. go?", "Where did the vice president go?"),
        ("Did Sec. Mayorkas go?", "Did Secretary Mayorkas go?"),
        ("Did Amb. Salazar speak?", "Did Ambassador Salazar speak?"),
        ("Is VPN use VPs' business? See sec. 3.", "Is VPN use VPs' business? See sec. 3."),
    ],
)
def test_abbreviated_titles_are_spelled_out(question: str, spelled: str) -> None:
    assert spell_out_titles(question) == spelled


def test_an_abbreviated_title_is_no_missing_name(engine: Engine) -> None:
    question = "Which Mexican leader did the VP meet in private?"
    assert core_question(question) == "Which Mexican leader did the vice president meet in private?"
    vector = engine.embedder.embed([core_question(question)])[0]
    spelled = "Which Mexican leader did the vice president meet in private?"
    assert engine._answerer.evidence_score(question, vector) == pytest.approx(
        engine._answerer.evidence_score(spelled, vector)
    )


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
    "text, kind, tokens",
    [
        ("A $130 million investment over three years", "number", {"130", "million", "three"}),
        ("over 88,700 people on June 14-15, 2021", "number", {"88700"}),  # dates are no counts
        ("a five-day trip, twenty-five people", "number", {"five-day", "twenty", "five"}),
        ("a long-term plan", "number", set()),
        ("one of the policies, one shelter", "number", {"one"}),
        ("in Mexico June 14-15 and in May 2021", "date", {"june 14-15", "june", "may", "2021"}),
        ("caravans in recent years, until today", "date", {"recent years", "until", "today"}),
        ("the law may end in May", "date", {"may"}),  # the month, not the verb
        ("in the weeks before June 14-15, 2021", "calendar", {"june 14-15", "june"}),
        ("starts at noon on Fridays or at 9 a.m.", "date", {"noon", "fridays", "9 a.m"}),
        ("they graze at dawn and rest at midday", "date", {"dawn", "midday"}),
        ("met with Harris, UNHCR and Mexico’s president", "name", {"harri", "unhcr", "mexico"}),
        ("Mayorkas visited Mexico June 14-15, not on a Friday", "name", {"mexico"}),  # no months
        ("Families fleeing persecution have the right", "name", set()),  # opens the text
    ],
)
def test_type_tokens(text: str, kind: str, tokens: set[str]) -> None:
    assert _type_tokens(text, kind) == tokens


def test_countries_are_found_by_name_and_short_form() -> None:
    text = "the U.S., El Salvador and Guinea-Bissau, Niger, Nigeria, Central America, Bolivia"
    assert _countries(text) == {
        "United States", "El Salvador", "Guinea-Bissau", "Niger", "Nigeria",
        "Bolivia, Plurinational State of",
    }
    assert _countries("a Mexican official, Nigerians") == set()


@pytest.mark.parametrize(
    "text, people",
    [
        ("Secretary of State Antony Blinken had met", {"antony blinken": {"minister"}}),
        (
            "Secretary of the Department of Homeland Security Alejandro Mayorkas visited",
            {"alejandro mayorkas": {"minister"}},
        ),
        ("USAID chief Samantha Power began", {"samantha power": {"lead"}}),
        (
            "Vice President Kamala Harris’ trip, Secretary Mayorkas",
            {"kamala harris": {"president"}, "mayorkas": {"minister"}},
        ),
        ("Joint Task Force Alpha, between the Departments of Justice and Homeland Security", {}),
        ("the head of USAID and the Special Prosecutor against Impunity (FECI)", {}),
    ],
)
def test_titled_people(text: str, people: dict[str, set[str]]) -> None:
    assert _titled_people(text) == people


def _row(engine: Engine, fragment: str) -> int:
    answerer = engine._answerer
    rows = range(len(answerer.index.sentences.starts))
    return next(r for r in rows if fragment in answerer.sentence_text(r))


@pytest.mark.parametrize(
    "question, fragments, answers",
    [
        ("How much aid did Harris announce in April?", ["$310 million in humanitarian"], True),
        # the sentence's only figure is the one the question names
        ("How much of the $310 million went to Honduras?", ["$310 million in humanitarian"], False),
        ("How many jobs will the package for southern Mexico create?", ["create jobs"], False),
        ("When did DHS end Remain in Mexico?", ["officially ending the Remain"], True),
        ("When will the high-level dialogues begin?", ["Plans for high-level dialogues"], False),
        # a count of years answers how many years, not how many girls
        ("How many girls does the $40 million plan train?", ["three-year initiative"], False),
        ("How many years does the $40 million plan run?", ["three-year initiative"], True),
        ("Who is Guatemala's attorney general?", ["Families fleeing persecution"], False),
        # a sum of money answers "how much funding", a count of people does not
        ("How much funding did the missing-persons partnership get?", ["88,700"], False),
        ("How much funding did UNHCR get in FY2020?", ["$42 million in support"], True),
        ("What budget does COMAR have?", ["additional budget and staffing"], False),
        ("does the scheme pay a stipend, and how much is it", ["2,739 people"], False),
        ("What percentage of cases go unpunished?", ["88,700"], False),
        # a sentence on another year does not answer for this one
        ("How much did the US give UNHCR in FY2021?", ["$42 million in support"], False),
        ("How much did the US give UNHCR in FY2020?", ["$42 million in support"], True),
        ("How much did the US give UNHCR in 2020?", ["$42 million in support"], True),
        # "in past weeks" tells when, but not on what date
        ("On what date was Operation Sentinel announced?", ["related Operation Sentinel"], False),
        ("When did DHS announce Operation Sentinel?", ["related Operation Sentinel"], True),
        # an office is held by a person: a body or a plain name does not answer
        ("Who leads Joint Task Force Alpha?", ["announcement of Joint Task Force Alpha"], False),
        ("Who is the USAID chief?", ["chief Samantha Power"], True),
        ("Who is Mexico's foreign minister?", ["Foreign Minister Marcelo Ebrard"], True),
        # ... of the office asked about, and not a person the question names
        ("Who was the U.S. ambassador to Mexico?", ["Foreign Minister Marcelo Ebrard"], False),
        ("Who was the head of FECI when Harris visited?", ["President Kamala Harris"], False),
        # a head of state is a president, though a head is a leader
        ("Who is the Mexican head of state Harris met?", ["President Andrés Manuel"], True),
        ("Who is the head of the Mexican task force?", ["President Andrés Manuel"], False),
        ("What is the name of the Guatemalan president?", ["chief Samantha Power"], False),
        # "On June 15" tells no year
        ("In what year was the Minors Program created?", ["On June 15, the administration"], False),
        ("In what year did Title 42 expulsions go on?", ["In May 2021, the UN"], True),
        # a region is no country
        ("Which countries did Power visit on her trip?", ["five-day trip to Central"], False),
        ("In which country did Blinken meet his counterparts?", ["Costa Rica on June 1"], True),
        ("Which country did Harris visit after Guatemala?", ["visit to Mexico on June 8"], True),
        # "thousands" is no exact number
        ("Exactly how many troops did Mexico deploy?", ["deployment of thousands"], False),
        ("How many troops did Mexico deploy?", ["deployment of thousands"], True),
        # any sentence of the answer may hold it
        (
            "When will the high-level dialogues begin?",
            ["Plans for high-level dialogues", "officially ending the Remain"],
            True,
        ),
        (
            "Who is the head of the Special Prosecutor against Impunity (FECI)?",
            ["Special Prosecutor against Impunity (FECI)"],
            False,
        ),
        # a group of people, not a name, answers this "who"
        ("Who has the right to seek asylum?", ["Families fleeing persecution"], True),
        ("Why do migrants leave?", ["Families fleeing persecution"], True),  # no type asked
    ],
)
def test_answer_must_hold_the_type_asked_for(
    engine: Engine, question: str, fragments: list[str], answers: bool
) -> None:
    rows = np.asarray([_row(engine, fragment) for fragment in fragments])
    assert engine._answerer._answers_type(question, rows) is answers


@pytest.mark.parametrize(
    "question, lacks",
    [
        ("How many jobs will the package for southern Mexico create?", True),
        (MISSING, False),  # the best sentence gives 88,700
    ],
)
def test_missing_type_lowers_the_evidence(engine: Engine, question: str, lacks: bool) -> None:
    vector = engine.embedder.embed([question])[0]
    answerer = engine._answerer
    lenient = Answerer(
        answerer.index, dataclasses.replace(answerer.params, missing_type_penalty=0.0)
    )
    penalty = answerer.params.missing_type_penalty
    assert penalty > 0
    assert answerer.evidence_score(question, vector) == pytest.approx(
        lenient.evidence_score(question, vector) - (penalty if lacks else 0.0)
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("support to the refugee agency, COMAR, in Mexico", True),  # an acronym is a name
        ("a meeting with the secretary in March", False),
        ("a meeting with Alejandro Mayorkas", True),
        ("The meeting went well.", False),  # a capital that opens a sentence is no name
        ("the U.S. and the UN", False),  # too short to tell from an abbreviation
    ],
)
def test_names_are_runs_of_capitalised_words_or_acronyms(text: str, expected: bool) -> None:
    assert _has_type(text, "name") is expected


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
    "question, core",
    [
        ("According to the WOLA commentary, how many are missing?", "How many are missing?"),
        ("In the article, what did Harris say?", "What did Harris say?"),
        ("In this report, when was the law passed?", "When was the law passed?"),
        ("What did Harris say, according to the authors?", "What did Harris say?"),
        ("How many according to the report?", "How many?"),
        ("Who is the minister mentioned in the commentary?", "Who is the minister?"),
        ("Who is the official who was quoted in the article?", "Who is the official?"),
        # here the mention is what is asked about
        ("What plans are mentioned in the article?", "What plans are mentioned in the article?"),
        ("What does the article say about caravans?", "Caravans"),  # a topic
        ("Does the commentary mention Title 42?", "Title 42"),
        ("Did the report discuss Honduras?", "Honduras"),
        ("What does the law say about asylum?", "What does the law say about asylum?"),
        ("What does the article say?", "What does the article say?"),
        # the article is what is asked about, or a place is not a source: unchanged
        ("Who are the authors of the article?", "Who are the authors of the article?"),
        ("What is in the article?", "What is in the article?"),
        ("In the United States, how many?", "In the United States, how many?"),
        ("According to the commentary?", "According to the commentary?"),
    ],
)
def test_core_question_drops_a_frame_that_names_the_corpus(question: str, core: str) -> None:
    assert core_question(question) == core


def test_a_framed_question_gets_the_answer_of_the_bare_one(engine: Engine) -> None:
    bare = engine.ask(MISSING)
    framed = engine.ask("According to the commentary, " + MISSING[0].lower() + MISSING[1:])
    assert framed.question.startswith("According to the commentary, how many")
    assert framed.answer == bare.answer
    assert [c.chunk_id for c in framed.citations] == [c.chunk_id for c in bare.citations]


@pytest.mark.parametrize(
    "question", ["Does the commentary mention Narnia?", "According to the Narnia Times, why?"]
)
def test_a_name_in_the_frame_or_topic_still_counts_as_missing(
    engine: Engine, question: str
) -> None:
    """The frame goes before matching, but "Narnia" is still a name the corpus lacks,
    even where the bare topic would open with it."""
    vector = engine.embedder.embed([core_question(question)])[0]
    answerer = engine._answerer
    lenient = Answerer(
        answerer.index, dataclasses.replace(answerer.params, missing_name_penalty=0.0)
    )
    assert answerer.evidence_score(question, vector) == pytest.approx(
        lenient.evidence_score(question, vector) - answerer.params.missing_name_penalty
    )
