"""The in-memory index and how it is built.

An index holds the documents, their chunks, one vector per chunk (FAISS,
inner product over normalised vectors), BM25 over the chunks, and one vector
per sentence so the summariser never embeds corpus text at query time.
Building reuses every vector whose text it has seen before (content hash), so
re-indexing an unchanged corpus embeds nothing and adding one document embeds
only that document.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._chunking import Chunker, ChunkingParams
from ._embedding import Embedder
from ._exceptions import DocumentError
from ._lexical import LexicalIndex, Postings
from ._types import Chunk, Document, sha256_text

FORMAT_VERSION = 2  # segments; 1 (one folder per generation) still loads
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


#: How the merge policy groups segments: a tier holds segments within a factor
#: TIER_RATIO of each other's size (live chunks); when one holds SEGMENTS_PER_TIER,
#: they merge into one of the next tier (Lucene's tiered merges, its default of 10).
#: A write thus rewrites each chunk about log10(corpus size) times over its life.
SEGMENTS_PER_TIER = 10
TIER_RATIO = 10
#: a segment whose chunks are this share deleted (or more) is rewritten without them
EXPUNGE_DELETED_SHARE = 0.5


@dataclass
class SentenceTable:
    doc_ids: list[str]
    starts: np.ndarray  # int64
    ends: np.ndarray  # int64
    is_heading: np.ndarray  # bool
    #: (n, dim), normalised: float16 in a segment (memory-mapped when loaded);
    #: ``VectorRows`` (reads float32) in an index
    vectors: Any


class VectorRows:
    """The sentence vectors of several segments as one matrix, read row by row.

    Each segment's float16 matrix stays where it is (memory-mapped from disk when
    loaded), so an index does not hold a second copy; rows read come back float32.
    """

    def __init__(self, parts: Sequence[np.ndarray], part_of: np.ndarray, row_in: np.ndarray,
                 dimension: int) -> None:
        self._parts = list(parts)
        self._part_of = part_of
        self._row_in = row_in
        self.shape = (len(row_in), dimension)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: Any) -> np.ndarray:
        if isinstance(rows, (int, np.integer)):
            return self[np.asarray([rows])][0]
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.shape[1]), dtype=np.float32)
        parts = self._part_of[rows]
        for part in np.unique(parts):
            mask = parts == part
            out[mask] = self._parts[int(part)][self._row_in[rows[mask]]]
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self[np.arange(len(self))]
        return whole if dtype is None else whole.astype(dtype)


class SegmentedDense:
    """The chunk vectors' FAISS indexes of several segments searched as one.

    Row numbers are the index's (``row_of`` maps each segment row to it, -1 for a
    deleted chunk). Each segment is searched for ``k`` plus its deleted rows, so a
    flat segment still gives the exact top ``k``.
    """

    def __init__(self, parts: Sequence[tuple[Any, np.ndarray]], ntotal: int, dimension: int
                 ) -> None:
        self._parts = [
            (index, row_of, int((row_of < 0).sum())) for index, row_of in parts if index.ntotal
        ]
        self.ntotal = ntotal
        self.d = dimension
        # where each row lives: its part and its row there
        self._part_of = np.zeros(ntotal, dtype=np.int32)
        self._row_in = np.zeros(ntotal, dtype=np.int64)
        for p, (_, row_of, _) in enumerate(self._parts):
            live = np.flatnonzero(row_of >= 0)
            self._part_of[row_of[live]] = p
            self._row_in[row_of[live]] = live

    def vectors(self, rows: Any) -> np.ndarray:
        """The vectors of ``rows``, read from their segments' indexes (no copy of all)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.d), dtype=np.float32)
        parts = self._part_of[rows]
        for p in np.unique(parts):
            mask = parts == p
            out[mask] = self._parts[int(p)][0].reconstruct_batch(self._row_in[rows[mask]])
        return out

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(queries)
        scores = [np.full((n, 0), -np.inf, dtype=np.float32)]
        rows = [np.full((n, 0), -1, dtype=np.int64)]
        for index, row_of, dead in self._parts:
            found_scores, found = index.search(queries, min(index.ntotal, k + dead))
            mapped = np.where(found >= 0, row_of[np.maximum(found, 0)], -1)
            scores.append(np.where(mapped >= 0, found_scores, -np.inf).astype(np.float32))
            rows.append(mapped)
        all_scores, all_rows = np.concatenate(scores, axis=1), np.concatenate(rows, axis=1)
        out_scores = np.full((n, k), -np.inf, dtype=np.float32)
        out_rows = np.full((n, k), -1, dtype=np.int64)
        for q in range(n):  # best first; equal scores in row order, as one flat index
            order = np.lexsort((all_rows[q], -all_scores[q]))
            order = order[all_rows[q][order] >= 0][:k]
            out_scores[q, : len(order)] = all_scores[q][order]
            out_rows[q, : len(order)] = all_rows[q][order]
        return out_scores, out_rows

    def reconstruct_n(self, start: int, n: int) -> np.ndarray:
        whole = np.zeros((self.ntotal, self.d), dtype=np.float32)
        for index, row_of, _ in self._parts:
            vectors = index.reconstruct_n(0, index.ntotal)
            live = row_of >= 0
            whole[row_of[live]] = vectors[live]
        return whole[start : start + n]


@dataclass
class Segment:
    """An immutable part of an index: some documents with their chunks, sentences,
    vectors and term counts. Written once (``segments/<name>/``), never changed: a
    later write that deletes or replaces one of its documents records a tombstone."""

    name: str
    documents: dict[str, Document]
    chunks: list[Chunk]
    chunk_sentence_rows: list[np.ndarray]  # per chunk: rows of this segment's sentences
    sentences: SentenceTable  # vectors float16
    dense: Any  # faiss.Index over chunk vectors, row i == chunks[i]
    postings: Postings  # term counts of the chunks

    def vectors_by_text(self, doc_ids: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Vectors by sha256 of their text (of ``doc_ids`` only, if given): float32 for
        a chunk's text, float16 (as stored) for a sentence's."""
        wanted = None if doc_ids is None else set(doc_ids)
        s = self.sentences
        sentences = [
            (self.documents[doc_id].text[s.starts[i] : s.ends[i]], np.asarray(s.vectors[i]))
            for i, doc_id in enumerate(s.doc_ids)
            if wanted is None or doc_id in wanted
        ]
        chunk_rows = [i for i, c in enumerate(self.chunks) if wanted is None or c.doc_id in wanted]
        chunks = []
        if chunk_rows:
            vectors = self.dense.reconstruct_n(0, self.dense.ntotal)
            chunks = [(self.chunks[i].text, vectors[i]) for i in chunk_rows]
        return vectors_by_text(sentences, chunks)


def vectors_by_text(
    sentences: Iterable[tuple[str, np.ndarray]], chunks: Iterable[tuple[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """Vectors by sha256 of their text, for reuse by a build: sentences' as stored
    (float16), then chunks' (float32), so a chunk's vector wins over an equal sentence's."""
    cache = {sha256_text(text): vector for text, vector in sentences}
    cache.update((sha256_text(text), vector) for text, vector in chunks)
    return cache


@dataclass
class IndexData:
    """One index generation: the live documents of its segments, read as one.

    ``chunks``, the sentence table, ``dense`` and ``lexical`` number the live
    chunks and sentences of every segment in document-id order, so the same
    documents give the same rows (and answers) however they are segmented; BM25
    weighs terms with the statistics of every live chunk.
    """

    version: str
    generation: int
    model: dict[str, Any]
    params: ChunkingParams
    documents: dict[str, Document]
    chunks: list[Chunk]
    chunk_sentence_rows: list[np.ndarray]  # per chunk: rows of the sentence table
    dense: Any  # searchable like a faiss.Index over chunk vectors, row i == chunks[i]
    sentences: SentenceTable
    lexical: LexicalIndex
    created_at: str = ""
    segments: tuple[Segment, ...] = ()
    #: per segment name, its documents deleted or replaced since it was written
    deleted: dict[str, frozenset[str]] = field(default_factory=dict)
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

    def segment_of(self) -> dict[str, Segment]:
        """The segment holding each live document."""
        return {
            doc_id: seg
            for seg in self.segments
            for doc_id in seg.documents
            if doc_id not in self.deleted.get(seg.name, ())
        }

    def vector_cache(self, doc_ids: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Vectors by sha256 of their text (of the live ``doc_ids`` only, if given), for
        reuse by the next build."""
        if doc_ids is None:
            cache: dict[str, np.ndarray] = {}
            for seg in self.segments:
                cache.update(seg.vectors_by_text(self.documents.keys() & seg.documents.keys()))
            return cache
        by_segment: dict[str, list[str]] = {}
        owner = self.segment_of()
        for doc_id in doc_ids:
            if doc_id in owner:
                by_segment.setdefault(owner[doc_id].name, []).append(doc_id)
        cache = {}
        for seg in self.segments:
            if seg.name in by_segment:
                cache.update(seg.vectors_by_text(by_segment[seg.name]))
        return cache


def assemble(
    segments: Sequence[Segment],
    deleted: dict[str, frozenset[str]],
    *,
    version: str,
    generation: int,
    model: dict[str, Any],
    params: ChunkingParams,
    created_at: str = "",
) -> IndexData:
    """The index the live documents of ``segments`` make: rows in document-id order.

    ValueError when a document is live in two segments (a damaged manifest)."""
    owner: dict[str, int] = {}
    for s, seg in enumerate(segments):
        for doc_id in seg.documents:
            if doc_id in deleted.get(seg.name, ()):
                continue
            if doc_id in owner:
                raise ValueError(f"document {doc_id!r} is live in two segments")
            owner[doc_id] = s
    chunks_of: list[dict[str, list[int]]] = []
    for seg in segments:
        lists: dict[str, list[int]] = {}
        for row, chunk in enumerate(seg.chunks):
            lists.setdefault(chunk.doc_id, []).append(row)
        chunks_of.append(lists)
    chunk_maps = [np.full(len(seg.chunks), -1, dtype=np.int64) for seg in segments]
    sentence_maps = [np.full(len(seg.sentences.doc_ids), -1, dtype=np.int64) for seg in segments]
    chunks: list[Chunk] = []
    chunk_rows: list[np.ndarray] = []
    part_of: list[int] = []
    row_in: list[int] = []
    for doc_id in sorted(owner):
        s = owner[doc_id]
        seg, smap = segments[s], sentence_maps[s]
        for local in chunks_of[s].get(doc_id, []):
            chunk_maps[s][local] = len(chunks)
            chunks.append(seg.chunks[local])
            rows = []
            for srow in seg.chunk_sentence_rows[local].tolist():
                if smap[srow] < 0:
                    smap[srow] = len(part_of)
                    part_of.append(s)
                    row_in.append(srow)
                rows.append(int(smap[srow]))
            chunk_rows.append(np.asarray(rows, dtype=np.int64))
    parts = np.asarray(part_of, dtype=np.int32)
    within = np.asarray(row_in, dtype=np.int64)
    starts = np.zeros(len(within), dtype=np.int64)
    ends = np.zeros(len(within), dtype=np.int64)
    heading = np.zeros(len(within), dtype=bool)
    doc_ids: list[str] = [""] * len(within)
    for s, seg in enumerate(segments):
        mask = parts == s
        if not mask.any():
            continue
        local = within[mask]
        starts[mask] = seg.sentences.starts[local]
        ends[mask] = seg.sentences.ends[local]
        heading[mask] = seg.sentences.is_heading[local]
        for i, srow in zip(np.flatnonzero(mask).tolist(), local.tolist(), strict=True):
            doc_ids[i] = seg.sentences.doc_ids[srow]
    dimension = int(model["dimension"])
    return IndexData(
        version=version,
        generation=generation,
        model=model,
        params=params,
        documents={d: segments[owner[d]].documents[d] for d in sorted(owner)},
        chunks=chunks,
        chunk_sentence_rows=chunk_rows,
        dense=SegmentedDense(
            [(seg.dense, m) for seg, m in zip(segments, chunk_maps, strict=True)],
            len(chunks), dimension,
        ),
        sentences=SentenceTable(
            doc_ids, starts, ends, heading,
            VectorRows([seg.sentences.vectors for seg in segments], parts, within, dimension),
        ),
        lexical=LexicalIndex.from_postings(
            [(seg.postings, m) for seg, m in zip(segments, chunk_maps, strict=True)], len(chunks)
        ),
        created_at=created_at,
        segments=tuple(segments),
        deleted={name: ids for name, ids in deleted.items() if ids},
        extra={"chunk_maps": chunk_maps},
    )


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


def new_segment_name(generation: int) -> str:
    """A fresh, unique segment name; it sorts by the generation that made it."""
    return f"{generation:06d}-{uuid.uuid4().hex[:12]}"


def build_segment(
    documents: Sequence[Document],
    embedder: Embedder,
    params: ChunkingParams,
    *,
    name: str,
    cache: dict[str, np.ndarray] | None = None,
    chunks: Sequence[Chunk] | None = None,
    progress: ProgressFactory | None = None,
    batch_size: int = 64,
) -> tuple[Segment, int, int]:
    """Chunk and embed ``documents`` (sorted by id) into one segment. Returns it with
    how many texts were embedded and how many vectors came from ``cache`` (by sha256
    of the text). ``chunks``: the documents' chunks, already made (by ``Chunker``)."""
    docs = sorted(documents, key=lambda d: d.doc_id)
    if chunks is None:
        chunker = Chunker(
            params,
            model_tokens=embedder.count_tokens if embedder.max_seq_tokens else None,
            model_max_tokens=embedder.max_seq_tokens,
        )
        chunks = [chunk for doc in docs for chunk in chunker.chunk(doc)]
    else:
        order = {doc.doc_id: i for i, doc in enumerate(docs)}
        chunks = sorted(chunks, key=lambda c: order[c.doc_id])  # stable: keeps each doc's order
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

    # A vector depends only on the model and the text: reuse every one seen before.
    # A sentence's vector is kept as float16, so a chunk takes only a float32 one.
    cache = dict(cache or {})
    all_texts = [c.text for c in chunks] + sent_texts
    hashes = [sha256_text(t) for t in all_texts]
    missing: dict[str, str] = {}
    for i, (h, text) in enumerate(zip(hashes, all_texts, strict=True)):
        known = cache.get(h)
        if (known is None or (i < len(chunks) and known.dtype != np.float32)) and (
            h not in missing
        ):
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
    segment = Segment(
        name=name,
        documents=by_id,
        chunks=list(chunks),
        chunk_sentence_rows=chunk_rows,
        sentences=SentenceTable(
            sent_docs,
            np.asarray([b[0] for b in sent_bounds], dtype=np.int64),
            np.asarray([b[1] for b in sent_bounds], dtype=np.int64),
            np.asarray([b[2] for b in sent_bounds], dtype=bool),
            sentence_vectors.astype(np.float16),
        ),
        dense=build_dense(chunk_vectors),
        postings=Postings.build([c.text for c in chunks]),
    )
    return segment, len(missing), len(set(hashes)) - len(missing)


def merge_segments(segments: Sequence[Segment], deleted: dict[str, frozenset[str]], name: str,
                   model: dict[str, Any], params: ChunkingParams) -> Segment:
    """One segment holding the live documents of ``segments``; nothing is embedded."""
    view = assemble(segments, deleted, version="", generation=0, model=model, params=params)
    maps = view.extra["chunk_maps"]
    return Segment(
        name=name,
        documents=view.documents,
        chunks=view.chunks,
        chunk_sentence_rows=view.chunk_sentence_rows,
        sentences=dataclasses.replace(
            view.sentences, vectors=np.asarray(view.sentences.vectors).astype(np.float16)
        ),
        dense=build_dense(view.chunk_vectors()),
        postings=Postings.merge(
            [(seg.postings, m) for seg, m in zip(segments, maps, strict=True)], len(view.chunks)
        ),
    )


def plan_merges(data: IndexData) -> list[list[Segment]]:
    """Which segments the merge policy merges now, each list into one segment.

    Tiers by size (live chunks, powers of ``TIER_RATIO``): a tier holding
    ``SEGMENTS_PER_TIER`` segments merges; so does (alone) a segment whose chunks
    are ``EXPUNGE_DELETED_SHARE`` or more deleted.
    """
    live_chunks: dict[str, int] = {}
    for chunk, seg in ((c, s) for s in data.segments for c in s.chunks):
        if chunk.doc_id not in data.deleted.get(seg.name, ()):
            live_chunks[seg.name] = live_chunks.get(seg.name, 0) + 1
    tiers: dict[int, list[Segment]] = {}
    plans: list[list[Segment]] = []
    for seg in data.segments:
        live = live_chunks.get(seg.name, 0)
        if seg.chunks and live <= len(seg.chunks) * (1 - EXPUNGE_DELETED_SHARE):
            plans.append([seg])
            continue
        tier = int(math.log(max(live, 1), TIER_RATIO))
        tiers.setdefault(tier, []).append(seg)
    plans.extend(group for group in tiers.values() if len(group) >= SEGMENTS_PER_TIER)
    return plans


@dataclass(frozen=True)
class Merged:
    """A merged segment, and what it was merged from: per source segment, the documents
    live in it when the merge read it (all of which the merged segment holds)."""

    segment: Segment
    sources: dict[str, frozenset[str]]


def merge_group(segments: Sequence[Segment], deleted: dict[str, frozenset[str]], name: str,
                model: dict[str, Any], params: ChunkingParams) -> Merged:
    """``merge_segments``, remembering what it merged."""
    return Merged(
        merge_segments(segments, deleted, name, model, params),
        {seg.name: frozenset(seg.documents.keys() - deleted.get(seg.name, frozenset()))
         for seg in segments},
    )


def merge(data: IndexData, groups: Sequence[Sequence[Segment]]) -> IndexData:
    """``data`` with each group of segments merged into one (same documents and answers)."""
    return with_merged(data, [
        merge_group(group, data.deleted, new_segment_name(data.generation), data.model,
                    data.params)
        for group in groups
    ])


def with_merged(data: IndexData, merges: Sequence[Merged]) -> IndexData:
    """``data`` with each merged segment in place of its sources. ``data`` may be a
    later generation than the one the merge read (writes go on while a merge builds):
    a document deleted or replaced in a source since becomes a tombstone of the merged
    segment, and so does every document of a source ``data`` no longer names (a write
    drops a segment when its last document goes). Model and chunking must be those
    the merge read."""
    segments = list(data.segments)
    deleted = dict(data.deleted)
    for done in merges:
        names = set(done.sources)
        present = {seg.name for seg in segments} & names
        dead = frozenset(
            doc_id
            for name, live in done.sources.items()
            for doc_id in (live & deleted.get(name, frozenset()) if name in present else live)
        )
        at = min((i for i, seg in enumerate(segments) if seg.name in names),
                 default=len(segments))
        segments = [seg for seg in segments if seg.name not in names]
        for name in names:
            deleted.pop(name, None)
        if done.segment.documents.keys() - dead:
            segments.insert(min(at, len(segments)), done.segment)
            if dead:
                deleted[done.segment.name] = dead
    return assemble(segments, deleted, version=data.version, generation=data.generation,
                    model=data.model, params=data.params, created_at=data.created_at)


def with_segments(
    previous: IndexData | None,
    segments: Sequence[Segment],
    doc_ids: Iterable[str],
    *,
    model: dict[str, Any],
    params: ChunkingParams,
) -> IndexData:
    """The next generation after ``previous``: the documents ``doc_ids``, each taken
    from the new ``segments`` if one holds it, else from ``previous`` (built with the
    same model and chunking). A document of ``previous`` that a new segment replaces,
    or that ``doc_ids`` leaves out, gets a tombstone; a segment left with no live
    document is dropped. KeyError for an id neither holds."""
    wanted = set(doc_ids)
    fresh = {doc_id for seg in segments for doc_id in seg.documents}
    kept: list[Segment] = []
    deleted: dict[str, frozenset[str]] = {}
    if previous is not None:
        for seg in previous.segments:
            dead = previous.deleted.get(seg.name, frozenset()) | {
                d for d in seg.documents if d in fresh or d not in wanted
            }
            if seg.documents.keys() - dead:
                kept.append(seg)
                if dead:
                    deleted[seg.name] = frozenset(dead)
    missing = wanted - fresh - {d for seg in kept for d in seg.documents.keys()
                                - deleted.get(seg.name, frozenset())}
    if missing:
        raise KeyError(f"no segment holds the documents {sorted(missing)[:5]}")
    generation = (previous.generation + 1) if previous is not None else 1
    data = assemble(
        [*kept, *segments], deleted, version="", generation=generation, model=model,
        params=params, created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    data.version = f"{generation:06d}-{fingerprint(model, params, data.documents.values())[:12]}"
    return data


def build_index(
    documents: Sequence[Document],
    embedder: Embedder,
    params: ChunkingParams | None = None,
    *,
    previous: IndexData | None = None,
    progress: ProgressFactory | None = None,
    batch_size: int = 64,
    auto_merge: bool = True,
) -> tuple[IndexData, BuildStats]:
    """The index of exactly ``documents``, built on ``previous`` when it can be.

    With the same model and chunking, the previous segments stay: documents new or
    changed go to one new segment, and the ones replaced or gone become tombstones.
    So the work, and what a write adds to disk, is proportional to the change. Then
    the merge policy (``plan_merges``) may merge segments (``auto_merge``). With
    another model or chunking, everything goes to one new segment, reusing every
    vector the model already made.
    """
    started = time.perf_counter()
    params = params or ChunkingParams()
    seen: set[str] = set()
    for doc in documents:
        if doc.doc_id in seen:
            raise DocumentError(f"two documents share the id {doc.doc_id!r}; ids must be unique")
        seen.add(doc.doc_id)
    docs = sorted(documents, key=lambda d: d.doc_id)
    model = model_info(embedder)
    generation = (previous.generation + 1) if previous is not None else 1
    same_setup = previous is not None and previous.model == model and previous.params == params
    if same_setup and previous is not None:
        changed = [d for d in docs if previous.documents.get(d.doc_id) != d]
        cache = previous.vector_cache(d.doc_id for d in changed)
    else:
        changed = docs
        same_model = previous is not None and previous.model == model
        cache = previous.vector_cache() if same_model and previous is not None else {}
    embedded = hits = 0
    new: list[Segment] = []
    if changed:
        segment, embedded, hits = build_segment(
            changed, embedder, params, name=new_segment_name(generation), cache=cache,
            progress=progress, batch_size=batch_size,
        )
        new.append(segment)
    data = with_segments(previous if same_setup else None, new, seen, model=model, params=params)
    if auto_merge and (plans := plan_merges(data)):
        data = merge(data, plans)
    stats = BuildStats(
        documents=len(data.documents),
        chunks=len(data.chunks),
        sentences=len(data.sentences.doc_ids),
        embedded=embedded,
        # vectors not made now: the new segment's cache hits, and the kept documents'
        reused=hits + len(data.chunks) + len(data.sentences.doc_ids) - sum(
            len(seg.chunks) + len(seg.sentences.doc_ids) for seg in new
        ),
        seconds=time.perf_counter() - started,
    )
    return data, stats
