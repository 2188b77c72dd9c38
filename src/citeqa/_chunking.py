"""Sentence-aware chunking measured in tiktoken tokens.

A chunk is a run of whole sentences from one section, at most ``max_tokens``
tiktoken tokens and at most the embedding model's own limit (so the model
never truncates a chunk silently). Consecutive chunks of a section share
``overlap_sentences`` sentences. A sentence is cut only when it alone exceeds
a limit; it is then cut at whitespace.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ._exceptions import InvalidInputError
from ._segment import segment
from ._tokens import DEFAULT_ENCODING, count_tokens
from ._types import Chunk, Document, Span

TokenCounter = Callable[[str], int]


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    return start, end


@dataclass(frozen=True)
class ChunkingParams:
    max_tokens: int = 200
    overlap_sentences: int = 1
    encoding: str = DEFAULT_ENCODING

    def __post_init__(self) -> None:
        if not 16 <= self.max_tokens <= 8192:
            raise InvalidInputError(f"max_tokens must be 16..8192, got {self.max_tokens}")
        if not 0 <= self.overlap_sentences <= 16:
            raise InvalidInputError(
                f"overlap_sentences must be 0..16, got {self.overlap_sentences}"
            )


@dataclass(frozen=True)
class _Limit:
    count: TokenCounter
    max_tokens: int


class Chunker:
    """Turns documents into chunks.

    ``model_tokens``/``model_max_tokens`` describe the embedding model's own
    tokenizer; when given, every chunk also fits that limit.
    """

    def __init__(
        self,
        params: ChunkingParams | None = None,
        *,
        model_tokens: TokenCounter | None = None,
        model_max_tokens: int | None = None,
    ) -> None:
        self.params = params or ChunkingParams()
        encoding = self.params.encoding
        self._limits = [_Limit(lambda t: count_tokens(t, encoding), self.params.max_tokens)]
        if model_tokens is not None:
            if model_max_tokens is None or model_max_tokens < 8:
                raise InvalidInputError(
                    f"model_max_tokens must be at least 8, got {model_max_tokens}"
                )
            self._limits.append(_Limit(model_tokens, model_max_tokens))

    def _fits(self, text: str) -> bool:
        return all(limit.count(text) <= limit.max_tokens for limit in self._limits)

    def _cut(self, text: str, span: Span) -> list[Span]:
        """Cut an over-long sentence at whitespace into pieces that fit."""
        words: list[tuple[int, int]] = []
        pos = span.start
        for word in text[span.start : span.end].split():
            s = text.index(word, pos)
            words.append((s, s + len(word)))
            pos = s + len(word)
        pieces: list[Span] = []
        i = 0
        while i < len(words):
            # Grow by doubling, then back off: O(log n) counts per piece.
            lo, hi = i + 1, i + 1
            while hi <= len(words) and self._fits(text[words[i][0] : words[hi - 1][1]]):
                lo, hi = hi, min(len(words), hi * 2 - i) if hi < len(words) else hi + 1
            hi = min(hi, len(words) + 1)
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if self._fits(text[words[i][0] : words[mid - 1][1]]):
                    lo = mid
                else:
                    hi = mid
            if not self._fits(text[words[i][0] : words[lo - 1][1]]):
                # A single "word" longer than the budget: cut it by characters.
                s, e = words[i]
                step = max(1, (e - s) // 2)
                while step > 1 and not self._fits(text[s : s + step]):
                    step //= 2
                pieces.append(Span(s, s + step, False, span.section))
                words[i] = (s + step, e)
                continue
            pieces.append(Span(words[i][0], words[lo - 1][1], False, span.section))
            i = lo
        return pieces

    def _units(self, text: str) -> list[tuple[Span, list[int]]]:
        """Spans that each fit alone, with their token counts per limit."""
        units: list[tuple[Span, list[int]]] = []
        for span in segment(text):
            pieces = [span] if self._fits(text[span.start : span.end]) else self._cut(text, span)
            for piece in pieces:
                body = text[piece.start : piece.end]
                units.append((piece, [limit.count(body) for limit in self._limits]))
        return units

    def _prefix_that_fits(self, text: str, start: int, span: Span) -> Span | None:
        """The longest word prefix of ``span`` such that ``text[start:end]`` fits."""
        ends = [m.end() for m in re.finditer(r"\S+", text[span.start : span.end])]
        lo, hi = 0, len(ends)  # ends[:lo] fit; find the largest such lo
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._fits(text[start : span.start + ends[mid - 1]]):
                lo = mid
            else:
                hi = mid - 1
        if lo == 0:
            return None
        return Span(span.start, span.start + ends[lo - 1], False, span.section)

    def chunk(self, doc: Document) -> list[Chunk]:
        text = doc.text
        units = self._units(text)
        groups: list[list[int]] = []  # indices into units
        current: list[int] = []

        base = [limit.count("") for limit in self._limits]  # special tokens, if any

        def gap_tokens(i: int) -> list[int]:
            # What separates a unit from the one before it (newlines, bullet
            # markers) costs tokens too.
            gap = text[units[i - 1][0].end : units[i][0].start] if i else ""
            return [max(1, lim.count(gap) - b) for lim, b in zip(self._limits, base, strict=True)]

        def fits(indices: Sequence[int]) -> bool:
            for k, limit in enumerate(self._limits):
                total = units[indices[0]][1][k]
                for i in indices[1:]:
                    total += units[i][1][k] - base[k] + gaps[i][k]
                if total > limit.max_tokens:
                    return False
                # Near the limit a sum of parts may be off by a merge at a join:
                # count the real text.
                if total > limit.max_tokens * 0.8:
                    exact = text[units[indices[0]][0].start : units[indices[-1]][0].end]
                    if limit.count(exact) > limit.max_tokens:
                        return False
            return True

        gaps = [gap_tokens(i) for i in range(len(units))]
        i = 0
        while i < len(units):
            span = units[i][0]
            has_body = any(not units[j][0].is_heading for j in current)
            if current and span.is_heading and has_body:
                groups.append(current)  # a heading opens a new chunk: it stays with its text
                current = [i]
            elif current and not has_body and not fits([*current, i]):
                # Headings alone cannot close a chunk: cut the sentence so that
                # its first part fits under them.
                head = self._prefix_that_fits(text, units[current[0]][0].start, span)
                if head is None and len(current) > 1:
                    # A stack of headings too long to share a chunk: the outer
                    # ones go alone, the innermost stays with its text.
                    groups.append(current[:-1])
                    current = current[-1:]
                    continue
                if head is None:  # not even one word fits under the heading
                    groups.append(current)
                    current = [i]
                elif head.end == span.end:  # the estimate was pessimistic: it all fits
                    current.append(i)
                else:
                    rest = Span(head.end, span.end, False, span.section)
                    rest = Span(*_strip_span(text, rest.start, rest.end), False, span.section)
                    units[i : i + 1] = [
                        (head, [lim.count(text[head.start : head.end]) for lim in self._limits]),
                        (rest, [lim.count(text[rest.start : rest.end]) for lim in self._limits]),
                    ]
                    gaps[i : i + 1] = [gaps[i], [1] * len(self._limits)]
                    gaps[i + 1] = gap_tokens(i + 1)
                    current.append(i)
            elif current and not fits([*current, i]):
                groups.append(current)
                body = [j for j in current if not units[j][0].is_heading]
                carry = (
                    body[-self.params.overlap_sentences :] if self.params.overlap_sentences else []
                )
                while carry and not fits([*carry, i]):
                    carry = carry[1:]
                current = [*carry, i]
            else:
                current.append(i)
            i += 1
        if current:
            groups.append(current)

        chunks: list[Chunk] = []
        for group in groups:
            spans = [units[i][0] for i in group]
            start, end = spans[0].start, spans[-1].end
            body_spans = [s for s in spans if not s.is_heading]
            section = (body_spans[0] if body_spans else spans[-1]).section
            chunk_text = text[start:end]
            chunks.append(
                Chunk(
                    chunk_id=f"{doc.doc_id}:{len(chunks)}",
                    doc_id=doc.doc_id,
                    start=start,
                    end=end,
                    text=chunk_text,
                    n_tokens=self._limits[0].count(chunk_text),
                    section=section,
                    sentences=tuple(spans),
                )
            )
        return chunks
