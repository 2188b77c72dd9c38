"""Split a document into headings and sentences, keeping exact character offsets.

Plain-text and Markdown documents both arrive here. A block is a run of
non-blank lines; a bullet or numbered line starts a block of its own. A block
is a heading when it is a Markdown ``#`` line, or a single short line without
closing punctuation (how web pages saved as text mark their sections).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ._types import Span

_BULLET = re.compile(r"[ \t]*(?:[•·▪◦‣*+\-–—]|\d{1,3}[.)]{1,2}|[a-zA-Z][.)])[ \t]+")
_MD_HEADING = re.compile(r"[ \t]{0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$")
_NUMBERED_HEADING = re.compile(r"[ \t]*\d{1,3}[.)]{1,2}[ \t]+\S")
# A sentence ends at . ! ? (or …), possibly followed by closing quotes/brackets,
# then whitespace, then something that can open a sentence.
_BOUNDARY = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s+[\"'“‘(\[]*(\S))")
_ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr jr st mt vs etc inc ltd co corp gov sen rep gen col lt
    no nos vol pp fig jan feb mar apr jun jul aug sep sept oct nov dec approx dept est
    u.s u.k u.n e.g i.e a.m p.m""".split()
)
_MAX_HEADING_WORDS = 24


def _lines(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each line, without its newline."""
    pos = 0
    for line in text.splitlines(keepends=True):
        stripped = line.rstrip("\r\n")
        yield pos, pos + len(stripped)
        pos += len(line)


def _blocks(text: str) -> Iterator[tuple[int, int, bool]]:
    """(start, end, single_line) of each block of consecutive non-blank lines."""
    start = end = -1
    n_lines = 0
    for line_start, line_end in _lines(text):
        line = text[line_start:line_end]
        if not line.strip():
            if start >= 0:
                yield start, end, n_lines == 1
            start = -1
            continue
        opens_block = bool(_BULLET.match(line) or _MD_HEADING.match(line))
        if start >= 0 and opens_block:
            yield start, end, n_lines == 1
            start = -1
        if start < 0:
            start, n_lines = line_start, 0
        end = line_end
        n_lines += 1
        if _MD_HEADING.match(line):  # a Markdown heading is always one line
            yield start, end, True
            start = -1
    if start >= 0:
        yield start, end, n_lines == 1


def _blank(char: str) -> bool:
    return char.isspace() or char == "\ufeff"  # a byte-order mark is invisible too


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and _blank(text[start]):
        start += 1
    while end > start and _blank(text[end - 1]):
        end -= 1
    return start, end


def _heading_text(text: str, start: int, end: int, single_line: bool) -> str | None:
    """The heading's name if the block is a heading, else None."""
    block = text[start:end].lstrip("\ufeff")  # a file's byte-order mark: not a character
    md = _MD_HEADING.match(block)
    if md:
        return md.group(2).strip() or None
    if not single_line:
        return None
    words = block.split()
    if not words or len(words) > _MAX_HEADING_WORDS:
        return None
    if _NUMBERED_HEADING.match(block):
        # "2.) Ensure access to asylum in Mexico." - a numbered, one-sentence line.
        marker = _BULLET.match(block)
        body_start = marker.end() if marker else 0
        return block.strip() if len(_sentence_bounds(block, body_start, len(block))) == 1 else None
    if _BULLET.match(block):
        return None
    if block.rstrip()[-1] in ".!?:;,…":
        return None
    first = block.lstrip()[0]
    return block.strip() if (first.isupper() or first.isdigit() or first in "“\"'‘") else None


def _is_abbreviation(text: str, dot: int) -> bool:
    """True when the period at ``dot`` ends an abbreviation, not a sentence."""
    word_start = dot
    while (
        word_start > 0 and not text[word_start - 1].isspace() and text[word_start - 1] not in '("“‘'
    ):
        word_start -= 1
    word = text[word_start:dot].lower()
    if not word:
        return False
    if len(word) == 1 and word.isalpha():  # an initial: "J. Smith"
        return True
    return word in _ABBREVIATIONS


def _sentence_bounds(text: str, start: int, end: int) -> list[tuple[int, int]]:
    bounds: list[tuple[int, int]] = []
    cursor = start
    for match in _BOUNDARY.finditer(text, start, end):
        opener = match.group(1)
        if not (opener.isupper() or opener.isdigit() or opener in "¿¡"):
            continue
        first_dot = match.start()
        if (
            text[first_dot] == "."
            and match.end() - first_dot == 1
            and _is_abbreviation(text, first_dot)
        ):
            continue
        s, e = _strip(text, cursor, match.end())
        if e > s:
            bounds.append((s, e))
        cursor = match.end()
    s, e = _strip(text, cursor, end)
    if e > s:
        bounds.append((s, e))
    return bounds


def segment(text: str) -> list[Span]:
    """Headings and sentences of ``text`` in order; each knows its section heading."""
    spans: list[Span] = []
    section: str | None = None
    for start, end, single_line in _blocks(text):
        heading = _heading_text(text, start, end, single_line)
        if heading is not None:
            s, e = _strip(text, start, end)
            section = heading
            spans.append(Span(s, e, is_heading=True, section=section))
            continue
        bullet = _BULLET.match(text, start, end)
        if bullet:  # the marker is layout, not part of the first sentence
            start = bullet.end()
        for s, e in _sentence_bounds(text, start, end):
            spans.append(Span(s, e, is_heading=False, section=section))
    return spans
