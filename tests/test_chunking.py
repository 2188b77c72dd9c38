"""Sentence-aware chunking (citeqa._chunking): properties and examples."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from citeqa import Chunk, Chunker, ChunkingParams, Document, InvalidInputError, make_document
from citeqa._segment import segment
from citeqa._tokens import count_tokens

PROPERTY = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
# What a bullet marker looks like at the start of a line: layout, not content.
BULLET_AT_LINE_START = re.compile(
    r"^[ \t]*(?:[•·▪◦‣*+\-–—]|\d{1,3}[.)]{1,2}|[a-zA-Z][.)])[ \t]+", re.MULTILINE
)


def model_words(text: str) -> int:
    """A stand-in for a model tokenizer: whitespace words plus two special tokens."""
    return len(text.split()) + 2


# -- text generation ---------------------------------------------------------------------

WORDS = st.sampled_from(
    [
        "the", "migration", "policy", "Mexico", "asylum", "people", "government", "88,700",
        "3.5", "2021", "U.S.", "Mr.", "e.g.", "café", "naïve", "Ærø", "São", "Zürich", "“quoted”",
        "‘single’", "don’t", "it's", "🙂", "👩‍👩‍👧", "—", "(aside)", "x", "a", "Über", "東京",
        "rights-respecting", "co-operation", "…", "and", "of", "to", "in", "Harris", "Power",
    ]
)  # fmt: skip
CAPITALISED = st.sampled_from(
    ["The", "Migrants", "Mexico", "Asylum", "Harris", "Über", "État", "“Quoted”", "Forensic"]
)
END = st.sampled_from([".", "!", "?", "…", ".”", "?)", "", ";"])


@st.composite
def sentences(draw: st.DrawFn, max_words: int = 14) -> str:
    first = draw(CAPITALISED)
    rest = draw(st.lists(WORDS, max_size=max_words))
    return " ".join([first, *rest]) + draw(END)


# Whitespace between sentences of one paragraph. Runs such as " \xa0" (HTML's "&nbsp;"
# after a full stop) cost more tokens than the chunker's estimate: see WIDE_JOINS below.
PLAIN_JOINS = (" ", "  ", "\n", "\t")
WIDE_JOINS = (*PLAIN_JOINS, " \xa0", "\u3000 ", " \u2009\u2009")


@st.composite
def paragraphs(draw: st.DrawFn, joins: tuple[str, ...] = PLAIN_JOINS) -> str:
    parts = draw(st.lists(sentences(), min_size=1, max_size=6))
    out = parts[0]
    for part in parts[1:]:
        out += draw(st.sampled_from(joins)) + part
    return out


@st.composite
def blocks(draw: st.DrawFn, joins: tuple[str, ...] = PLAIN_JOINS) -> str:
    kind = draw(st.sampled_from(["para", "para", "para", "heading", "md", "bullet", "numbered"]))
    if kind == "para":
        return draw(paragraphs(joins))
    if kind == "heading":
        return " ".join([draw(CAPITALISED), *draw(st.lists(WORDS, max_size=6))]).rstrip(".;…")
    if kind == "md":
        return "#" * draw(st.integers(1, 3)) + " " + draw(CAPITALISED) + " section"
    if kind == "bullet":
        items = draw(st.lists(sentences(), min_size=1, max_size=4))
        marker = draw(st.sampled_from(["•", "-", "*", "  •", "◦"]))
        return "\n".join(f"{marker} {item}" for item in items)
    n = draw(st.integers(1, 12))
    return f"{n}.) " + draw(sentences())


@st.composite
def documents(draw: st.DrawFn, joins: tuple[str, ...] = PLAIN_JOINS) -> Document:
    parts = draw(st.lists(blocks(joins), min_size=1, max_size=10))
    text = draw(st.sampled_from(["", "\n", "  \n\n"]))
    for i, part in enumerate(parts):
        if i:
            text += draw(st.sampled_from(["\n\n", "\n", "\r\n\r\n", "\n \n", "\n\n\n"]))
        text += part
    text += draw(st.sampled_from(["", "\n", "\r\n", "\n\n  "]))
    return make_document(text, doc_id="doc")


SMALL_PARAMS = st.builds(
    ChunkingParams,
    max_tokens=st.integers(16, 120),
    overlap_sentences=st.integers(0, 3),
)


def chunker_for(params: ChunkingParams, model_max: int | None) -> Chunker:
    if model_max is None:
        return Chunker(params)
    return Chunker(params, model_tokens=model_words, model_max_tokens=model_max)


# -- invariants ----------------------------------------------------------------------------


def assert_verbatim(doc: Document, chunks: list[Chunk], *, ordered: bool = True) -> None:
    assert chunks, "a document with text yields at least one chunk"
    for i, c in enumerate(chunks):
        assert c.doc_id == doc.doc_id
        assert c.chunk_id == f"{doc.doc_id}:{i}"
        assert 0 <= c.start < c.end <= len(doc.text)
        assert doc.text[c.start : c.end] == c.text
        assert c.text == c.text.strip() or c.text[0] in "\ufeff"
        assert c.sentences, "a chunk is made of spans"
        assert c.sentences[0].start == c.start and c.sentences[-1].end == c.end
        for span in c.sentences:
            assert c.start <= span.start < span.end <= c.end
        starts = [s.start for s in c.sentences]
        assert starts == sorted(starts)
    if ordered:
        spans = [(c.start, c.end) for c in chunks]
        assert spans == sorted(set(spans)), "chunks out of document order or duplicated"


def assert_limits(chunks: list[Chunk], params: ChunkingParams, model_max: int | None) -> None:
    for c in chunks:
        assert c.n_tokens == count_tokens(c.text)
        assert count_tokens(c.text) <= params.max_tokens, c.text
        if model_max is not None:
            assert model_words(c.text) <= model_max, c.text


def layout_positions(text: str) -> set[int]:
    return {
        i
        for m in BULLET_AT_LINE_START.finditer(text)
        for i in range(m.start(), m.end())
    }


def assert_covered(doc: Document, chunks: list[Chunk]) -> None:
    text = doc.text
    in_chunk = [False] * len(text)
    in_span = [False] * len(text)
    for c in chunks:
        for i in range(c.start, c.end):
            in_chunk[i] = True
        for span in c.sentences:
            for i in range(span.start, span.end):
                in_span[i] = True
    layout = layout_positions(text)
    for i, ch in enumerate(text):
        if ch.isspace() or ch == "\ufeff" or i in layout:
            continue
        assert in_chunk[i], f"{ch!r} at {i} is in no chunk: {text[max(0, i - 20) : i + 20]!r}"
        assert in_span[i], f"{ch!r} at {i} is in no sentence: {text[max(0, i - 20) : i + 20]!r}"


def assert_headings_stay(chunks: list[Chunk], doc: Document, max_tokens: int) -> None:
    """A chunk ends with a heading only when that heading has no text of its own
    (the next thing in the document is another heading, or nothing), or when not
    even one word of that text fits under it."""
    units = sorted({s for c in chunks for s in c.sentences}, key=lambda s: (s.start, s.end))
    following = {units[i]: units[i + 1] for i in range(len(units) - 1)}
    for c in chunks:
        last = c.sentences[-1]
        if not last.is_heading or last not in following or following[last].is_heading:
            continue
        nxt = following[last]
        first_word = doc.text[nxt.start : nxt.end].split()[0]
        with_word = doc.text[c.start : doc.text.index(first_word, nxt.start) + len(first_word)]
        assert count_tokens(with_word) > max_tokens, f"chunk ends with a heading: {c.text!r}"


def assert_overlap(chunks: list[Chunk], params: ChunkingParams) -> None:
    k = params.overlap_sentences
    for a, b in zip(chunks, chunks[1:], strict=False):
        shared = [s for s in b.sentences if s in a.sentences]
        if k == 0:
            assert not shared and b.start >= a.end, (a.text, b.text)
            continue
        # What is shared is a run of at most k body sentences: A's tail, B's head.
        assert len(shared) <= k
        assert not any(s.is_heading for s in shared)
        if shared:
            assert tuple(shared) == a.sentences[-len(shared) :]
            assert tuple(shared) == b.sentences[: len(shared)]
            assert a.section == b.section


# -- properties -----------------------------------------------------------------------------


@PROPERTY
@given(doc=documents(), params=SMALL_PARAMS)
def test_chunks_are_verbatim_within_limits_and_cover_text(
    doc: Document, params: ChunkingParams
) -> None:
    # Order and overlap: see test_chunk_order_and_overlap.
    chunks = Chunker(params).chunk(doc)
    assert_verbatim(doc, chunks, ordered=False)
    assert_limits(chunks, params, None)
    assert_covered(doc, chunks)


@PROPERTY
@given(doc=documents(WIDE_JOINS), params=SMALL_PARAMS, model_max=st.integers(8, 30))
def test_both_token_limits_hold(doc: Document, params: ChunkingParams, model_max: int) -> None:
    chunks = chunker_for(params, model_max).chunk(doc)
    assert_verbatim(doc, chunks, ordered=False)
    assert_limits(chunks, params, model_max)
    assert_covered(doc, chunks)


ASCII_SENTENCES = st.lists(
    st.sampled_from(["the", "policy", "people", "border", "rights", "aid", "2021", "Mexico"]),
    max_size=5,
).map(lambda words: " ".join(["The", *words]) + ".")


@PROPERTY
@given(
    parts=st.lists(
        st.tuples(st.booleans(), st.lists(ASCII_SENTENCES, min_size=1, max_size=20)),
        min_size=1,
        max_size=5,
    ),
    overlap=st.integers(0, 3),
)
def test_overlap_carries_sentences_into_next_chunk(
    parts: list[tuple[bool, list[str]]], overlap: int
) -> None:
    # Sentences of at most 8 tokens and a 64-token budget: overlap plus the next
    # sentence always fit, so the overlap is never trimmed to make room.
    text = "\n\n".join(
        ("Section Heading\n\n" if heading else "") + " ".join(body) for heading, body in parts
    )
    doc = make_document(text, doc_id="doc")
    params = ChunkingParams(max_tokens=64, overlap_sentences=overlap)
    chunks = Chunker(params).chunk(doc)
    assert_verbatim(doc, chunks)
    assert_overlap(chunks, params)
    split_for_budget = 0
    for a, b in zip(chunks, chunks[1:], strict=False):
        if b.sentences[0].is_heading:
            continue  # a new section starts a new chunk; nothing to carry
        body_a = [s for s in a.sentences if not s.is_heading]
        if overlap == 0:
            split_for_budget += 1
            assert b.start > a.end  # assert_overlap: no shared sentence either
        elif len(body_a) > overlap:
            split_for_budget += 1
            assert b.start <= a.end, "consecutive chunks of one section do not overlap"
            assert b.sentences[:overlap] == tuple(body_a[-overlap:])
    if any(count_tokens(" ".join(body)) > params.max_tokens for _, body in parts):
        assert split_for_budget, "a section longer than the budget was not split"


HEADING_THEN_FULL_SENTENCE = make_document(
    "Short Heading\n\n" + " ".join(["Word"] * 14) + ".\n\nMore text.", doc_id="doc"
)


@PROPERTY
@given(doc=documents(), params=SMALL_PARAMS)
@example(doc=HEADING_THEN_FULL_SENTENCE, params=ChunkingParams(max_tokens=16, overlap_sentences=0))
@example(
    doc=make_document("The.\n\nThe\n\n1.) The 88,700 88,700 88,700 the.", doc_id="doc"),
    params=ChunkingParams(max_tokens=16, overlap_sentences=0),
)
def test_heading_stays_with_its_text(doc: Document, params: ChunkingParams) -> None:
    assert_headings_stay(Chunker(params).chunk(doc), doc, params.max_tokens)


@PROPERTY
@given(
    sections=st.lists(
        st.tuples(
            st.sampled_from(["", "Plain Heading", "## Markdown Heading", "3.) Numbered heading."]),
            st.lists(ASCII_SENTENCES, min_size=1, max_size=12).map(" ".join),
        ),
        min_size=1,
        max_size=8,
    ),
    overlap=st.integers(0, 3),
)
def test_heading_stays_with_its_text_when_it_fits(
    sections: list[tuple[str, str]], overlap: int
) -> None:
    # Sentences of at most 8 tokens: a heading and its first sentence always fit in 32.
    text = "\n\n".join(f"{head}\n\n{body}" if head else body for head, body in sections)
    doc = make_document(text, doc_id="doc")
    chunks = Chunker(ChunkingParams(max_tokens=32, overlap_sentences=overlap)).chunk(doc)
    assert_verbatim(doc, chunks)
    assert_headings_stay(chunks, doc, 32)


NBSP_TEXT = " \xa0".join(
    [
        "Aid reached the border.",
        "People waited for days.",
        "Officials made promises.",
        "Rights groups objected.",
        "Nothing changed at all.",
        "The report ends here.",
    ]
)
BULLET_TEXT = "The trips include:\n\n" + "\n".join(
    f"  • {item}"
    for item in (
        "Aid reached the border.",
        "People waited for days.",
        "Officials made promises.",
        "Rights groups objected.",
        "Nothing changed at all.",
    )
)


@PROPERTY
@given(doc=documents(WIDE_JOINS), params=SMALL_PARAMS, model_max=st.none() | st.integers(8, 30))
@example(doc=make_document(NBSP_TEXT, doc_id="doc"), params=ChunkingParams(22, 2), model_max=None)
@example(doc=make_document(NBSP_TEXT, doc_id="doc"), params=ChunkingParams(21, 3), model_max=None)
@example(doc=make_document(BULLET_TEXT, doc_id="doc"), params=ChunkingParams(17, 2), model_max=None)
def test_chunk_order_and_overlap(
    doc: Document, params: ChunkingParams, model_max: int | None
) -> None:
    chunks = chunker_for(params, model_max).chunk(doc)
    assert_verbatim(doc, chunks, ordered=True)
    assert_overlap(chunks, params)


# -- examples ---------------------------------------------------------------------------------


def test_heading_never_alone_when_heading_plus_sentence_exceeds_budget() -> None:
    # The sentence fits alone (15 tokens) but not with its heading (+3 tokens).
    doc = HEADING_THEN_FULL_SENTENCE
    assert count_tokens(" ".join(["Word"] * 14) + ".") <= 16
    chunks = Chunker(ChunkingParams(max_tokens=16, overlap_sentences=0)).chunk(doc)
    assert_verbatim(doc, chunks)
    assert not all(s.is_heading for s in chunks[0].sentences), [c.text for c in chunks]


@pytest.mark.parametrize("model_max", [None, 40])
def test_one_huge_sentence_is_cut_into_pieces_that_fit(model_max: int | None) -> None:
    words = ["migration", "asylum", "café", "88,700", "🙂", "policy", "rights-respecting"]
    body = " ".join(words[i % len(words)] for i in range(7000))[:50_000].rstrip()
    text = "Intro sentence.\n\nThe " + body + ".\n\nClosing sentence."
    assert len(text) > 50_000
    assert [text[s.start : s.end] for s in segment(text)][1] == "The " + body + "."
    doc = make_document(text, doc_id="big")
    params = ChunkingParams(max_tokens=200, overlap_sentences=1)
    chunks = chunker_for(params, model_max).chunk(doc)
    assert_verbatim(doc, chunks)
    assert_limits(chunks, params, model_max)
    assert_covered(doc, chunks)
    assert len(chunks) >= count_tokens(body) // params.max_tokens
    assert chunks[0].text.startswith("Intro sentence.")
    assert chunks[-1].text.endswith("Closing sentence.")


def test_unbroken_word_longer_than_budget_is_cut_by_characters() -> None:
    blob = "".join("abcdefghij"[i % 10] + "é" for i in range(3000))
    doc = make_document(f"Start. {blob} End.", doc_id="blob")
    params = ChunkingParams(max_tokens=16, overlap_sentences=0)
    chunks = Chunker(params).chunk(doc)
    assert_verbatim(doc, chunks)
    assert_limits(chunks, params, None)
    assert_covered(doc, chunks)
    # Cut by characters: without overlap, the chunks are the text, nothing lost or repeated.
    assert "".join(c.text for c in chunks).replace(" ", "") == doc.text.replace(" ", "")
    assert len(chunks) > 10


def test_sentence_is_not_cut_when_it_fits() -> None:
    doc = make_document("One sentence here. Another sentence there. A third one.", doc_id="d")
    chunks = Chunker(ChunkingParams(max_tokens=16, overlap_sentences=0)).chunk(doc)
    spans = [doc.text[s.start : s.end] for c in chunks for s in c.sentences]
    assert spans == ["One sentence here.", "Another sentence there.", "A third one."]


def test_small_document_is_one_chunk_with_section() -> None:
    text = "# Guide\n\nFirst sentence. Second sentence.\n"
    chunks = Chunker().chunk(make_document(text, doc_id="guide"))
    assert len(chunks) == 1
    assert chunks[0].text == "# Guide\n\nFirst sentence. Second sentence."
    assert chunks[0].section == "Guide"
    assert [s.is_heading for s in chunks[0].sentences] == [True, False, False]


def test_new_section_starts_a_new_chunk() -> None:
    text = "# One\n\nAlpha text.\n\n# Two\n\nBeta text."
    chunks = Chunker().chunk(make_document(text, doc_id="d"))
    assert [c.text for c in chunks] == ["# One\n\nAlpha text.", "# Two\n\nBeta text."]
    assert [c.section for c in chunks] == ["One", "Two"]


def test_seed_document_chunks(seed_docs: list[Document]) -> None:
    doc = seed_docs[0]
    params = ChunkingParams()
    chunks = chunker_for(params, 128).chunk(doc)
    assert_verbatim(doc, chunks)
    assert_limits(chunks, params, 128)
    assert_covered(doc, chunks)
    assert_overlap(chunks, params)
    assert_headings_stay(chunks, doc, params.max_tokens)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_tokens": 15}, "max_tokens must be 16..8192, got 15"),
        ({"max_tokens": 8193}, "got 8193"),
        ({"overlap_sentences": -1}, "overlap_sentences must be 0..16, got -1"),
        ({"overlap_sentences": 17}, "got 17"),
    ],
)
def test_params_rejected_with_value(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        ChunkingParams(**kwargs)


def test_params_bounds_accepted() -> None:
    ChunkingParams(max_tokens=16, overlap_sentences=0)
    ChunkingParams(max_tokens=8192, overlap_sentences=16)


def test_model_limit_needs_a_sane_maximum() -> None:
    with pytest.raises(InvalidInputError, match="model_max_tokens must be at least 8, got 7"):
        Chunker(model_tokens=model_words, model_max_tokens=7)
    with pytest.raises(InvalidInputError, match="got None"):
        Chunker(model_tokens=model_words)


def test_unknown_encoding_is_a_clear_error() -> None:
    chunker = Chunker(ChunkingParams(encoding="no-such-encoding"))
    with pytest.raises(InvalidInputError, match="unknown tiktoken encoding 'no-such-encoding'"):
        chunker.chunk(make_document("Some text.", doc_id="d"))


@pytest.mark.parametrize(
    "text, max_tokens, overlap",
    [(NBSP_TEXT, 22, 2), (NBSP_TEXT, 21, 3), (BULLET_TEXT, 16, 2), (BULLET_TEXT, 17, 3)],
    ids=["nbsp-22-2", "nbsp-21-3", "bullets-16-2", "bullets-17-3"],
)
def test_chunks_stay_in_document_order(text: str, max_tokens: int, overlap: int) -> None:
    # ". \xa0" is "&nbsp;" after a full stop in a web page saved as text; "  • " starts
    # each line of a bullet list (as in seeds/). Both cost tokens the estimate leaves out.
    doc = make_document(text, doc_id="doc")
    chunks = Chunker(ChunkingParams(max_tokens, overlap)).chunk(doc)
    spans = [(c.start, c.end) for c in chunks]
    assert spans == sorted(set(spans)), [c.text for c in chunks]
