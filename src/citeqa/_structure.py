"""Sentences a question names by the document's structure rather than by its words.

"WOLA's second recommendation" means the item that opens with "2.)"; "What is
FECI?" means the sentence that spells it out, "... (FECI)"; "When was the
commentary published?" means the dateline and title at the top. Such a sentence
shares few words and little meaning with the question, so neither retriever finds
it; the answerer adds it to the candidates (``Answerer._with_structure``).
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cached_property, lru_cache

import numpy as np

from ._index import IndexData
from ._lexical import terms

#: the item a question names by ordinal; LAST stands for the list's highest number
LAST = -1
_ORDINALS = {
    word: n
    for n, word in enumerate(
        "first second third fourth fifth sixth seventh eighth ninth tenth".split(), start=1
    )
} | {"last": LAST, "final": LAST}
_ORDINAL = re.compile(
    r"\b(first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|last|final"
    r"|(\d{1,2})(?:st|nd|rd|th))"
    r"\s+(?:([a-z-]+)\s+)?([a-z-]+)",
    re.I,
)
#: nouns that name the members of a numbered list ("the third *recommendation*"); an
#: ordinal before any other word ("the first *five* months", "first *time*") is not one
_LIST_NOUNS = frozenset(
    "recommendation step point item area priority principle goal measure action proposal "
    "demand lesson finding reason pillar objective change element component requirement "
    "condition criterion option stage phase commitment question issue".split()
)
#: a sentence that opens a numbered item: "2.)", "2.", "2)", "(2)" then a space
_ITEM_MARKER = re.compile(r"\s*\(?(\d{1,2})(?:\.\)|\.|\))(?!\d)\s")


def item_number(question: str) -> tuple[int, frozenset[str]] | None:
    """The item a question names by its ordinal and a list noun, with the noun's
    terms: "WOLA's second recommendation" → (2, {"recommend"}), "the 3rd step" → 3,
    "the final recommendation" → ``LAST``."""
    for match in _ORDINAL.finditer(question):
        nouns = [w for w in (match.group(3), match.group(4)) if w]
        found = frozenset(t for w in nouns for t in terms(w)) & _list_noun_terms()
        if found:
            word = match.group(1).lower()
            return (int(match.group(2)) if match.group(2) else _ORDINALS[word]), found
    return None


@lru_cache(maxsize=1)
def _list_noun_terms() -> frozenset[str]:
    return frozenset(t for w in _LIST_NOUNS for t in terms(w))


#: words that ask about a document itself rather than what it says ("When was the
#: commentary *published*?", "Who *wrote* this article?", "What is its *title*?")
_ABOUT_DOCUMENT = frozenset(
    "publish published publication release released issued posted written wrote write author "
    "authors title titled headline called date dated about topic subject subtitle".split()
)
#: what a question may call a document of the corpus ("the *commentary*", "this *article*")
DOCUMENT_NOUNS = tuple(
    "commentary article report document piece analysis paper post memo brief statement text "
    "bulletin newsletter editorial column study review essay blog story note letter update "
    "publication passage".split()
)
#: words such a question may hold besides: what the document is, and who or when
_DOCUMENT_WORDS = frozenset(DOCUMENT_NOUNS) | frozenset(
    "organization organisation group institution outlet name day year month original full "
    "exact its".split()
)
_TITLE_WORDS = "title titled headline called"  # ask for the title alone
_ASKS_WHEN = re.compile(r"\bwhen\b|\b(?:date|day|month|year)\b", re.IGNORECASE)
#: how a question names sentences by structure (``StructureLookup.named``'s labels)
NUMBERED_ITEM, DEFINITION, FRONT_MATTER = "numbered_item", "definition", "front_matter"
#: a calendar year standing alone ("in 2021", not the budget year "FY2021")
CALENDAR_YEAR = re.compile(r"\b(?:19|20)\d\d\b")

#: "What is FECI?", "What does the acronym DHS stand for?", "What is SICA short for?",
#: "What is the full name of FECI?": the sentence that spells the acronym out ("the
#: Special Prosecutor against Impunity (FECI)") answers it
_ACRONYM = r"(?i:(?:acronym|abbreviation|initialism)\s+)?([A-Z][A-Za-z&]*[A-Z][A-Za-z&]*)"
_ACRONYM_QUESTION = re.compile(
    r"^\s*(?:(?i:what|who)\s+(?i:is|are|was|were|does|do)\s+(?i:the\s+|an?\s+)?"
    rf"{_ACRONYM}\s*(?i:stand\s+for|mean|short\s+for)?"
    rf"|(?i:what\s+is\s+the\s+full\s+(?:name|form)\s+of)\s+(?i:the\s+)?{_ACRONYM})"
    r"\s*\??\s*$"
)


@lru_cache(maxsize=1)
def _document_question_terms() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """Terms of ``_ABOUT_DOCUMENT``, of it with ``_DOCUMENT_WORDS``, of ``_TITLE_WORDS``."""
    about = frozenset(t for w in _ABOUT_DOCUMENT for t in terms(w))
    allowed = about | frozenset(t for w in _DOCUMENT_WORDS for t in terms(w))
    return about, allowed, frozenset(terms(_TITLE_WORDS))


def about_the_document(question: str, front_terms: frozenset[str] = frozenset()) -> str | None:
    """What a question asks of the document itself, and nothing else: "title" (its title
    alone) or "front" (when, by whom, under what title it was published); else None.
    Such questions are answered by its front matter. Words of that front matter
    (``front_terms``: its publisher, its title) may name the document: "When was the
    WOLA commentary published?"."""
    q_terms = set(terms(question))
    about, allowed, title = _document_question_terms()
    if not q_terms & about or not q_terms <= allowed | front_terms:
        return None
    return "title" if q_terms & title else "front"


class StructureLookup:
    """The structural lookups over one index generation; each map is made on the
    first question that needs it."""

    def __init__(self, index: IndexData) -> None:
        self.index = index
        self._doc_terms: dict[str, frozenset[str]] = {}
        #: doc id → its front-matter rows and their terms
        self._front: dict[str, tuple[list[int], frozenset[str]]] = {}

    def _text(self, row: int) -> str:
        s = self.index.sentences
        return self.index.documents[s.doc_ids[row]].text[int(s.starts[row]) : int(s.ends[row])]

    @cached_property
    def _numbered_rows(self) -> dict[tuple[str, int], list[int]]:
        """(doc_id, n) → rows of the sentences that open item n of a numbered list.
        Made on the first question that names an item, once per generation."""
        out: dict[tuple[str, int], list[int]] = {}
        s = self.index.sentences
        for row in range(len(s.starts)):
            doc = s.doc_ids[row]
            start = int(s.starts[row])
            match = _ITEM_MARKER.match(self.index.documents[doc].text, start, start + 8)
            if match:
                out.setdefault((doc, int(match.group(1))), []).append(row)
        return out

    def _item(self, doc_id: str, n: int) -> int:
        """``n``, or for ``LAST`` the highest item number in the document."""
        if n != LAST:
            return n
        return max((m for doc, m in self._numbered_rows if doc == doc_id), default=0)

    def _document_terms(self, doc_id: str) -> frozenset[str]:
        cached = self._doc_terms.get(doc_id)
        if cached is None:
            cached = self._doc_terms[doc_id] = frozenset(
                terms(self.index.documents[doc_id].text)
            )
        return cached

    @cached_property
    def chunk_of_sentence(self) -> dict[int, int]:
        """Sentence row → the first chunk holding it."""
        out: dict[int, int] = {}
        for chunk, rows in enumerate(self.index.chunk_sentence_rows):
            for row in rows.tolist():
                out.setdefault(row, chunk)
        return out

    @cached_property
    def _doc_rows(self) -> dict[str, range]:
        """doc_id → the rows of its sentences (a document's sentences are contiguous)."""
        out: dict[str, range] = {}
        doc_ids = self.index.sentences.doc_ids
        start = 0
        for row in range(1, len(doc_ids) + 1):
            if row == len(doc_ids) or doc_ids[row] != doc_ids[start]:
                out[doc_ids[start]] = range(start, row)
                start = row
        return out

    @cached_property
    def boilerplate_rows(self) -> frozenset[int]:
        """Rows of the sentences of a short paragraph that repeats a sentence of its
        document word for word: a call to action or a newsletter prompt pasted into the
        text ("Join the ... campaign to learn more." after several sections). Such a
        paragraph speaks of the topic in general terms, so it matches many questions
        while answering none."""
        out: set[int] = set()
        for doc_id, rows in self._doc_rows.items():
            said = [" ".join(self._text(row).split()) for row in rows]
            counts = Counter(said)
            # "These include:" may well recur in plain text; five words or more hardly do
            pasted = {
                row
                for row, words in zip(rows, said, strict=True)
                if counts[words] > 1 and words.count(" ") >= 4
            }
            for paragraph in self._paragraphs(doc_id, rows):
                if len(paragraph) <= 3 and not pasted.isdisjoint(paragraph):
                    out.update(paragraph)
        return frozenset(out)

    def _paragraphs(self, doc_id: str, rows: range) -> list[list[int]]:
        """A document's sentence rows grouped by paragraph (a blank line between)."""
        s = self.index.sentences
        text = self.index.documents[doc_id].text
        out: list[list[int]] = []
        for row in rows:
            if out and "\n\n" not in text[int(s.ends[out[-1][-1]]) : int(s.starts[row])]:
                out[-1].append(row)
            else:
                out.append([row])
        return out

    def _front_matter(self, doc_id: str, *, title_only: bool = False) -> list[int]:
        """The document's opening lines through its title and the headings right after
        it (a dateline, the title, a subtitle), or just the title; without the title
        among the first few sentences, the lines up to the first sentence of body text."""
        s = self.index.sentences
        title = self.index.documents[doc_id].title.strip()
        opening = list(self._doc_rows.get(doc_id, range(0))[:6])
        for i, row in enumerate(opening):
            if self._text(row).lstrip("#").strip() == title:
                if title_only:
                    return [row]
                end = i + 1
                while end < len(opening) and s.is_heading[opening[end]]:
                    end += 1
                return opening[:end]
        body = next((i for i, r in enumerate(opening) if not s.is_heading[r]), len(opening) - 1)
        return opening[: body + 1]

    def named(self, question: str, docs: list[str]) -> tuple[list[int], str]:
        """Rows of the sentences ``question`` names by structure in ``docs`` (the
        documents retrieved, best first), and the label for the passages added for them.

        "WOLA's second recommendation" names the sentence opening with "2." in a
        document that uses the noun ("the second pillar of <another plan>" must not
        pick item 2 of a list of recommendations); "What is FECI?" names the sentences
        that spell FECI out; "When was the commentary published?" names the front
        matter of the best document.
        """
        number = item_number(question)
        if number is not None:
            n, nouns = number
            rows = [
                r
                for doc in docs
                if not nouns.isdisjoint(self._document_terms(doc))
                for r in self._numbered_rows.get((doc, self._item(doc, n)), [])
            ]
            return rows, NUMBERED_ITEM
        acronym = _ACRONYM_QUESTION.match(question)
        if acronym is not None:
            spelled = acronym.group(1) or acronym.group(2)
            return self._definitions(spelled, docs), DEFINITION
        if docs:
            front, front_terms = self._front_of(docs[0])
            asked = about_the_document(question, front_terms)
            if asked == "title":
                return self._front_matter(docs[0], title_only=True), FRONT_MATTER
            if asked is not None:
                if _ASKS_WHEN.search(question) is None:
                    return front, FRONT_MATTER
                # "When was it published?" is answered by the dateline, not the title;
                # a front matter with no date (a Markdown title) leaves it to the text
                dated = [r for r in front if CALENDAR_YEAR.search(self._text(r))]
                return (dated, FRONT_MATTER) if dated else ([], "")
        return [], ""

    def front_rows(self, docs: list[str]) -> list[int]:
        """The front-matter rows (``_front_matter``) of ``docs``."""
        return [r for doc in docs for r in self._front_of(doc)[0]]

    def _front_of(self, doc_id: str) -> tuple[list[int], frozenset[str]]:
        cached = self._front.get(doc_id)
        if cached is None:
            rows = self._front_matter(doc_id)
            cached = rows, frozenset(t for r in rows for t in terms(self._text(r)))
            self._front[doc_id] = cached
        return cached

    def _definitions(self, acronym: str, docs: list[str]) -> list[int]:
        """Rows of the sentences of ``docs`` that spell out ``acronym``: "... (FECI)"."""
        s = self.index.sentences
        out: list[int] = []
        for doc in docs:
            rows = self._doc_rows.get(doc, range(0))
            starts = s.starts[rows.start : rows.stop]
            text = self.index.documents[doc].text
            at = text.find(f"({acronym})")
            while at >= 0 and len(rows):
                row = rows.start + int(np.searchsorted(starts, at, side="right")) - 1
                if row >= rows.start and at < int(s.ends[row]) and row not in out:
                    out.append(row)
                at = text.find(f"({acronym})", at + 1)
        return out
