"""The in-memory index and how it is built.

An index holds the documents, their chunks, one vector per chunk (FAISS,
inner product over normalised vectors), BM25 over the chunks, and one vector
per sentence so the summariser never embeds corpus text at query time.
Building reuses every vector whose text it has seen before (content hash), so
re-indexing an unchanged corpus embeds nothing and adding one document embeds
only that document.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._chunking import Chunker, ChunkingParams
from ._embedding import Embedder
from ._exceptions import DocumentError
from ._lexical import LexicalIndex
from ._types import Chunk, Document, sha256_text

FORMAT_VERSION = 1
ProgressFactory = Callable[[int], Callable[[int], None]]
# Measured by bench/faiss_index.py on 2 cores (k=64): exact IndexFlatIP costs
# ~16 ms a query at 100k vectors (several times the encoder's own time) and grows
# linearly (157 ms at 1M); HNSW stays near 1 ms. Below this, exact search is cheap
# and exact.
HNSW_MIN_CHUNKS = 100_000
# On 100k real vectors (the scale corpus), efConstruction 80 left recall@10 against
# exact near 0.97 whatever efSearch; 160 with efSearch 256 reaches 0.998 at ~1.1 ms.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 160
HNSW_EF_SEARCH = 256


@dataclass
class SentenceTable:
    doc_ids: list[str]
    starts: np.ndarray  # int64
    ends: np.ndarray  # int64
    is_heading: np.ndarray  # bool
    vectors: np.ndarray  # float32 (n, dim), normalised


@dataclass
class IndexData:
    version: str
    generation: int
    model: dict[str, Any]
    params: ChunkingParams
    documents: dict[str, Document]
    chunks: list[Chunk]
    chunk_sentence_rows: list[np.ndarray]  # per chunk: rows of the sentence table
    dense: Any  # faiss.Index over chunk vectors, row i == chunks[i]
    sentences: SentenceTable
    lexical: LexicalIndex
    created_at: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def chunk_rows(self, doc_ids: Iterable[str]) -> np.ndarray:
        """The sorted rows of the chunks of ``doc_ids`` (unknown ids hold none)."""
        by_doc = self.extra.get("chunk_rows_by_doc")
        if by_doc is None:  # built once per generation; a race builds it twice, harmlessly
            lists: dict[str, list[int]] = {}
            for row, chunk in enumerate(self.chunks):
                lists.setdefault(chunk.doc_id, []).append(row)
            by_doc = {d: np.asarray(r, dtype=np.int64) for d, r in lists.items()}
            self.extra["chunk_rows_by_doc"] = by_doc
        parts = [by_doc[d] for d in dict.fromkeys(doc_ids) if d in by_doc]
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)

    def chunk_vectors(self) -> np.ndarray:
        n = self.dense.ntotal
        if n == 0:
            return np.zeros((0, int(self.model["dimension"])), dtype=np.float32)
        return np.asarray(self.dense.reconstruct_n(0, n), dtype=np.float32)

    def vector_cache(self) -> dict[str, np.ndarray]:
        """Vectors by sha256 of their text, for reuse by the next build."""
        cache: dict[str, np.ndarray] = {}
        for chunk, vector in zip(self.chunks, self.chunk_vectors(), strict=True):
            cache[sha256_text(chunk.text)] = vector
        for i, doc_id in enumerate(self.sentences.doc_ids):
            text = self.documents[doc_id].text[self.sentences.starts[i] : self.sentences.ends[i]]
            cache[sha256_text(text)] = self.sentences.vectors[i]
        return cache


@dataclass(frozen=True)
class BuildStats:
    documents: int
    chunks: int
    sentences: int
    embedded: int  # texts sent to the model
    reused: int  # texts whose vectors came from the previous index
    seconds: float
    unchanged: bool = False
    #: ids of documents the previous generation held and this one does not
    removed: tuple[str, ...] = ()


def model_info(embedder: Embedder) -> dict[str, Any]:
    return {
        "name": embedder.name,
        "dimension": embedder.dimension,
        "max_seq_tokens": embedder.max_seq_tokens,
    }


def fingerprint(model: dict[str, Any], params: ChunkingParams, docs: Iterable[Document]) -> str:
    digest = hashlib.sha256()
    digest.update(repr((FORMAT_VERSION, sorted(model.items()), params)).encode())
    for doc in docs:
        digest.update(f"\x00{doc.doc_id}\x00{doc.title}\x00{doc.sha256}".encode())
        if doc.format != "text" or doc.page_starts:  # so a text index keeps its fingerprint
            digest.update(f"\x00{doc.format}\x00{doc.page_starts}".encode())
    return digest.hexdigest()


def single_threaded_search() -> None:
    """One query at a time searches best on one FAISS thread.

    FAISS's OpenMP threads and the encoder's ONNX Runtime threads (which spin for
    a while after each run) fought over two cores: at 20,000 chunks an exact
    search took 9 ms instead of 2-3 ms (bench/scale.py; README, Performance).
    """
    import faiss

    faiss.omp_set_num_threads(1)


def build_dense(vectors: np.ndarray) -> Any:
    import faiss

    dimension = vectors.shape[1]
    index: Any
    if len(vectors) >= HNSW_MIN_CHUNKS:
        index = faiss.IndexHNSWFlat(dimension, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        index = faiss.IndexFlatIP(dimension)
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def build_index(
    documents: Sequence[Document],
    embedder: Embedder,
    params: ChunkingParams | None = None,
    *,
    previous: IndexData | None = None,
    progress: ProgressFactory | None = None,
    batch_size: int = 64,
) -> tuple[IndexData, BuildStats]:
    """Chunk, embed and index ``documents``; reuse what ``previous`` already has."""
    started = time.perf_counter()
    params = params or ChunkingParams()
    seen: set[str] = set()
    for doc in documents:
        if doc.doc_id in seen:
            raise DocumentError(f"two documents share the id {doc.doc_id!r}; ids must be unique")
        seen.add(doc.doc_id)
    docs = sorted(documents, key=lambda d: d.doc_id)
    model = model_info(embedder)
    same_setup = previous is not None and previous.model == model and previous.params == params

    chunker = Chunker(
        params,
        model_tokens=embedder.count_tokens if embedder.max_seq_tokens else None,
        model_max_tokens=embedder.max_seq_tokens,
    )
    old_chunks: dict[str, list[Chunk]] = {}
    if same_setup and previous is not None:
        for chunk in previous.chunks:
            old_chunks.setdefault(chunk.doc_id, []).append(chunk)
    chunks: list[Chunk] = []
    for doc in docs:
        old = previous.documents.get(doc.doc_id) if same_setup and previous else None
        if old is not None and old.sha256 == doc.sha256 and doc.doc_id in old_chunks:
            chunks.extend(old_chunks[doc.doc_id])
        else:
            chunks.extend(chunker.chunk(doc))

    # The sentence table: each (doc, start, end) once, however many chunks share it.
    row_of: dict[tuple[str, int, int], int] = {}
    sent_docs: list[str] = []
    sent_bounds: list[tuple[int, int, bool]] = []
    chunk_rows: list[np.ndarray] = []
    for chunk in chunks:
        rows = []
        for span in chunk.sentences:
            key = (chunk.doc_id, span.start, span.end)
            if key not in row_of:
                row_of[key] = len(sent_docs)
                sent_docs.append(chunk.doc_id)
                sent_bounds.append((span.start, span.end, span.is_heading))
            rows.append(row_of[key])
        chunk_rows.append(np.asarray(rows, dtype=np.int64))
    by_id = {doc.doc_id: doc for doc in docs}
    sent_texts = [by_id[d].text[s:e] for d, (s, e, _) in zip(sent_docs, sent_bounds, strict=True)]

    # A vector depends only on the model and the text, so other chunking parameters
    # still reuse it: every sentence, and any chunk that comes out the same.
    same_model = previous is not None and previous.model == model
    cache = previous.vector_cache() if same_model and previous is not None else {}
    all_texts = [c.text for c in chunks] + sent_texts
    hashes = [sha256_text(t) for t in all_texts]
    missing: dict[str, str] = {}
    for h, text in zip(hashes, all_texts, strict=True):
        if h not in cache and h not in missing:
            missing[h] = text
    if missing:
        tick = progress(len(missing)) if progress else None
        vectors = embedder.embed(list(missing.values()), batch_size=batch_size, progress=tick)
        cache.update(zip(missing.keys(), vectors, strict=True))
    dim = embedder.dimension
    matrix = (
        np.stack([cache[h] for h in hashes]).astype(np.float32)
        if hashes
        else np.zeros((0, dim), dtype=np.float32)
    )
    chunk_vectors, sentence_vectors = matrix[: len(chunks)], matrix[len(chunks) :]

    generation = (previous.generation + 1) if previous is not None else 1
    version = f"{generation:06d}-{fingerprint(model, params, docs)[:12]}"
    starts = np.asarray([b[0] for b in sent_bounds], dtype=np.int64)
    ends = np.asarray([b[1] for b in sent_bounds], dtype=np.int64)
    heading = np.asarray([b[2] for b in sent_bounds], dtype=bool)
    data = IndexData(
        version=version,
        generation=generation,
        model=model,
        params=params,
        documents=by_id,
        chunks=chunks,
        chunk_sentence_rows=chunk_rows,
        dense=build_dense(chunk_vectors),
        sentences=SentenceTable(sent_docs, starts, ends, heading, sentence_vectors),
        lexical=LexicalIndex.build([c.text for c in chunks]),
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    stats = BuildStats(
        documents=len(docs),
        chunks=len(chunks),
        sentences=len(sent_docs),
        embedded=len(missing),
        reused=len(set(hashes)) - len(missing),
        seconds=time.perf_counter() - started,
    )
    return data, stats
