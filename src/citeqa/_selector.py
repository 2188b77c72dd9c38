"""The learned answer stage: a small cross-encoder that reads a question beside each
candidate sentence and says how likely the sentence answers it, and where in the
sentence the answer is.

It is the bundled all-MiniLM-L6-v2 fine-tuned on public SQuAD 2.0 articles
(``train/``, ``make train``) and shipped as int8 ONNX in ``models/selector/`` with its
model card. Serving needs onnxruntime and tokenizers only: no torch, no download.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from ._exceptions import InvalidInputError

#: between the title (or section) and the sentence, as in training
CONTEXT_SEPARATOR = " | "
#: the longest answer span the stage marks, in tokens
MAX_SPAN_TOKENS = 24


def bundled_selector_dir() -> Path:
    return Path(str(resources.files("citeqa") / "models" / "selector"))


@lru_cache(maxsize=1)
def bundled_selector() -> AnswerSelector:
    """The bundled selector, loaded once per process (a session takes concurrent runs)."""
    return AnswerSelector()


@dataclass(frozen=True)
class Selection:
    """The stage's reading of one candidate: ``probability`` that the sentence answers
    the question, and the answer's span as character offsets into the sentence
    (``None`` when no span fits)."""

    probability: float
    span: tuple[int, int] | None


class AnswerSelector:
    """Scores (question, context, sentence) triples with the ONNX selector."""

    def __init__(self, model_dir: str | os.PathLike[str] | None = None, *,
                 threads: int | None = None) -> None:
        folder = Path(model_dir) if model_dir is not None else bundled_selector_dir()
        meta_path = folder / "selector.json"
        if not meta_path.is_file() or not (folder / "model.onnx").is_file():
            raise InvalidInputError(
                f"{folder} holds no answer selector (model.onnx and selector.json); "
                "set CITEQA_SELECTOR=off or run make train"
            )
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        self.name = str(self.meta.get("name", folder.name))
        self.max_tokens = int(self.meta.get("max_tokens", 128))
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(self.max_tokens, strategy="only_second")
        self._tokenizer.enable_padding(pad_id=0)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(
            str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )

    def select(
        self, question: str, candidates: Sequence[tuple[str, str]]
    ) -> list[Selection]:
        """One ``Selection`` per (context, sentence) candidate, in their order."""
        if not candidates:
            return []
        pairs = [(question, context + CONTEXT_SEPARATOR + sentence)
                 for context, sentence in candidates]
        encodings = self._tokenizer.encode_batch(pairs, add_special_tokens=True)
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        types = np.asarray([e.type_ids for e in encodings], dtype=np.int64)
        score, start, end = self._session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        )
        probability = 1.0 / (1.0 + np.exp(-score.astype(np.float64)))
        out = []
        for i, (context, sentence) in enumerate(candidates):
            shift = len(context) + len(CONTEXT_SEPARATOR)
            span = _best_span(encodings[i], start[i], end[i], shift, len(sentence))
            out.append(Selection(float(probability[i]), span))
        return out


def _best_span(
    encoding: object, start: np.ndarray, end: np.ndarray, shift: int, length: int
) -> tuple[int, int] | None:
    """The highest start + end logit pair inside the sentence, at most
    ``MAX_SPAN_TOKENS`` long, as character offsets into the sentence."""
    offsets = encoding.offsets  # type: ignore[attr-defined]
    seq = encoding.sequence_ids  # type: ignore[attr-defined]
    inside = np.asarray(
        [s == 1 and b > a and a >= shift for s, (a, b) in zip(seq, offsets, strict=True)]
    )
    if not inside.any():
        return None
    s_logits = np.where(inside, start, -np.inf)
    e_logits = np.where(inside, end, -np.inf)
    n = len(s_logits)
    pair = s_logits[:, None] + e_logits[None, :]
    band = np.triu(np.ones((n, n), dtype=bool)) & ~np.triu(
        np.ones((n, n), dtype=bool), k=MAX_SPAN_TOKENS
    )
    pair = np.where(band, pair, -np.inf)
    s, e = np.unravel_index(int(np.argmax(pair)), pair.shape)
    if not np.isfinite(pair[s, e]):
        return None
    a, b = offsets[s][0] - shift, offsets[e][1] - shift
    return (a, b) if 0 <= a < b <= length else None
