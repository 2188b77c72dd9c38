"""Sentence-aware chunking measured in tiktoken tokens.

A chunk is a run of whole sentences from one section, at most ``max_tokens``
tiktoken tokens and at most the embedding model's own limit (so the model
never truncates a chunk silently). Consecutive chunks of a section share
``overlap_sentences`` sentences. A sentence is cut only when it alone exceeds
a limit; it is then cut at whitespace.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ._exceptions import InvalidInputError
from ._segment import segment
from ._tokens import DEFAULT_ENCODING, count_tokens
from ._types import Chunk, Document, Span

TokenCounter = Callable[[str], int]


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

    def chunk(self, doc: Document) -> list[Chunk]:
        text = doc.text
        units = self._units(text)
        groups: list[list[int]] = []  # indices into units
        current: list[int] = []

        def estimate(indices: Sequence[int]) -> list[int]:
            # Sum of the parts plus one per join: joins are whitespace, which
            # rarely merges with a neighbour. The exact count is checked below.
            return [
                sum(units[i][1][k] for i in indices) + len(indices) - 1
                for k in range(len(self._limits))
            ]

        def fits(indices: Sequence[int]) -> bool:
            return all(
                n <= limit.max_tokens
                for n, limit in zip(estimate(indices), self._limits, strict=True)
            )

        for i, (span, _) in enumerate(units):
            has_body = any(not units[j][0].is_heading for j in current)
            if current and span.is_heading and has_body:
                groups.append(current)  # a heading opens a new chunk: it stays with its text
                current = [i]
                continue
            if current and not fits([*current, i]):
                groups.append(current)
                body = [j for j in current if not units[j][0].is_heading]
                carry = (
                    body[-self.params.overlap_sentences :] if self.params.overlap_sentences else []
                )
                while carry and not fits([*carry, i]):
                    carry = carry[1:]
                current = [*carry, i]
                continue
            current.append(i)
        if current:
            groups.append(current)

        chunks: list[Chunk] = []
        for group in self._enforce_exact(text, units, groups):
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

    def _enforce_exact(
        self, text: str, units: list[tuple[Span, list[int]]], groups: list[list[int]]
    ) -> list[list[int]]:
        """Split any group whose exact token count exceeds a limit."""
        out: list[list[int]] = []
        stack = list(reversed(groups))
        while stack:
            group = stack.pop()
            start, end = units[group[0]][0].start, units[group[-1]][0].end
            if len(group) == 1 or self._fits(text[start:end]):
                out.append(group)
                continue
            half = len(group) // 2
            stack.append(group[half:])
            stack.append(group[:half])
        return out
