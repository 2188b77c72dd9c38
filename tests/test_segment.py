"""Headings and sentences with exact offsets (citeqa._segment)."""

from __future__ import annotations

from pathlib import Path

import pytest

from citeqa._segment import segment

SEED = next((Path(__file__).resolve().parents[1] / "seeds").glob("*.txt")).read_text(
    encoding="utf-8"
)


def texts(text: str, *, headings: bool | None = None) -> list[str]:
    return [
        text[s.start : s.end]
        for s in segment(text)
        if headings is None or s.is_heading == headings
    ]


def test_seed_headings_detected() -> None:
    heads = texts(SEED, headings=True)
    assert heads[0] == "Central America Trips Shed Light on Biden Administration’s Migration Agenda"
    for expected in (
        "Collaborating with Mexico",
        "2.) Ensure access to asylum in Mexico.",
        "Addressing root causes of migration in Central America",
        "“Don’t come” messaging isn’t rooted in reality",
        "Key cooperation on Mexico’s disappearances and forensic crises",
    ):
        assert expected in heads
    # Ordinary paragraphs and the two-line masthead are not headings.
    assert not any(h.startswith("WOLA:") for h in heads)
    assert all(len(h.split()) <= 24 for h in heads)


def test_seed_sections_follow_headings() -> None:
    spans = segment(SEED)
    current = None
    for span in spans:
        if span.is_heading:
            current = SEED[span.start : span.end]
        assert span.section == current
    sentence = next(
        s for s in spans if "88,700 disappeared" in SEED[s.start : s.end] and not s.is_heading
    )
    assert sentence.section == "Key cooperation on Mexico’s disappearances and forensic crises"


def test_seed_spans_verbatim_stripped_ordered() -> None:
    spans = segment(SEED)
    assert len(spans) > 50
    previous_end = 0
    for span in spans:
        piece = SEED[span.start : span.end]
        assert piece and piece == piece.strip()
        assert span.start >= previous_end
        previous_end = span.end


def test_seed_bullets_excluded_from_sentences() -> None:
    sentences = texts(SEED, headings=False)
    assert not any(s.startswith("•") for s in sentences)
    usaid = "USAID chief Samantha Power began a five-day trip to Central America starting June 13."
    assert usaid in sentences


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "He met Mr. Smith at the U.S. Army base. Then he left.",
            ["He met Mr. Smith at the U.S. Army base.", "Then he left."],
        ),
        (
            "Dr. Jones and Mrs. Lee arrived, e.g. at noon. They talked.",
            ["Dr. Jones and Mrs. Lee arrived, e.g. at noon.", "They talked."],
        ),
        ("The U.S. government acted. It worked.", ["The U.S. government acted.", "It worked."]),
        ("See J. Smith for details. Then call.", ["See J. Smith for details.", "Then call."]),
        ("Costs rose 3.5 percent. Wages did not.", ["Costs rose 3.5 percent.", "Wages did not."]),
        ("Really? Yes! It is… True.", ["Really?", "Yes!", "It is…", "True."]),
        (
            "He said “Go home.” Then he left.",
            ["He said “Go home.”", "Then he left."],
        ),
        ("(This is aside.) Next one.", ["(This is aside.)", "Next one."]),
        ("version 2.0 is out. 3 more follow.", ["version 2.0 is out.", "3 more follow."]),
        ("a lower-case start. another one.", ["a lower-case start. another one."]),
    ],
)
def test_sentence_boundaries(text: str, expected: list[str]) -> None:
    assert texts(text, headings=False) == expected


def test_bullets_are_layout() -> None:
    text = "Intro line here.\n\n  • First bullet. Second sentence.\n- dash item\n* star item\n"
    spans = segment(text)
    got = [text[s.start : s.end] for s in spans]
    assert got == [
        "Intro line here.", "First bullet.", "Second sentence.", "dash item", "star item"
    ]
    assert not any(s.is_heading for s in spans)


def test_markdown_headings() -> None:
    text = "# Title\n\nSome text here. More text.\n\n## Part two ##\nBody of part two.\n"
    spans = segment(text)
    heads = [(text[s.start : s.end], s.section) for s in spans if s.is_heading]
    assert heads == [("# Title", "Title"), ("## Part two ##", "Part two")]
    body = [(text[s.start : s.end], s.section) for s in spans if not s.is_heading]
    assert body == [
        ("Some text here.", "Title"),
        ("More text.", "Title"),
        ("Body of part two.", "Part two"),
    ]


def test_heading_heuristics() -> None:
    text = (
        "Short Heading\n\n"
        "not a heading because lower case\n\n"
        "Ends with a period.\n\n"
        "Two line block\nis a paragraph\n\n"
        + " ".join(["Word"] * 30)
        + "\n\nLast text."
    )
    assert texts(text, headings=True) == ["Short Heading"]


def test_numbered_line_with_two_sentences_is_not_heading() -> None:
    text = "1.) First point. It has two sentences.\n\nBody."
    assert texts(text, headings=True) == []


def test_crlf_nbsp_and_unicode_offsets() -> None:
    text = "\ufeffTitle Line\r\n\r\nCafé “quoted” text.\xa0Next 🙂 sentence.\r\n\xa0\r\nÉtat final."
    spans = segment(text)
    for span in spans:
        piece = text[span.start : span.end]
        assert piece == piece.strip()
        assert "\r" not in piece and "\n" not in piece
    assert "Next 🙂 sentence." in texts(text, headings=False)
    assert "État final." in texts(text, headings=False)


def test_empty_and_blank_text() -> None:
    assert segment("") == []
    assert segment(" \n\n\t\r\n") == []


@pytest.mark.parametrize("opener", ["État", "Über", "Österreich", "Ángel"])
def test_sentence_may_start_with_non_ascii_capital(opener: str) -> None:
    text = f"The first sentence ends here. {opener} opens the second one."
    assert texts(text, headings=False) == [
        "The first sentence ends here.",
        f"{opener} opens the second one.",
    ]


def test_byte_order_mark_is_not_part_of_the_first_sentence() -> None:
    text = "\ufeffFirst sentence here. Second one."
    assert texts(text, headings=False) == ["First sentence here.", "Second one."]


def test_a_heading_after_a_byte_order_mark_is_a_heading() -> None:
    text = "\ufeffBakery notes\n\nThe oven was built in 1912."
    assert texts(text, headings=True) == ["Bakery notes"]
    assert segment(text)[1].section == "Bakery notes"
