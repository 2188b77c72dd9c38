"""The public entry point: build an index, open it, ask questions, change documents."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ._answer import Answerer, SummaryParams, core_question
from ._chunking import ChunkingParams
from ._converters import ConversionLimits
from ._documents import load_documents, validate_doc_id
from ._embedding import Embedder, SentenceTransformerEmbedder
from ._engine_limits import MAX_QUESTION_CHARS, MAX_SCOPE_DOCS, MAX_TOP_K
from ._exceptions import (
    CiteqaError,
    DocumentConflictError,
    DocumentNotFoundError,
    IndexStoreError,
    InvalidInputError,
)
from ._fsutil import atomic_write_json
from ._index import (
    BuildStats,
    IndexData,
    ProgressFactory,
    Segment,
    build_index,
    fingerprint,
    merge_group,
    model_info,
    new_segment_name,
    plan_merges,
    single_threaded_search,
    with_merged,
)
from ._selector import AnswerSelector, bundled_selector
from ._store import (
    MergeLock,
    current_version,
    discard_segments,
    load_index,
    load_previous,
    write_index,
    write_segment,
    writer_lock,
)
from ._types import MODES, Answer, Document, Mode

if TYPE_CHECKING:
    from ._batching import MicroBatcher

CALIBRATION_FILE = "calibration.json"
log = logging.getLogger("citeqa")


def validate_query(question: str, top_k: int, mode: str) -> str:
    if not isinstance(question, str) or not question.strip():
        raise InvalidInputError("the question is empty; ask something")
    if not any(c.isalnum() for c in question):
        # only punctuation, zero-width spaces or a byte-order mark
        raise InvalidInputError("the question has no letters or digits; ask something")
    if len(question) > MAX_QUESTION_CHARS:
        raise InvalidInputError(
            f"the question is {len(question)} characters; the limit is {MAX_QUESTION_CHARS}"
        )
    if "\x00" in question:
        raise InvalidInputError("the question contains a NUL character")
    try:
        question.encode("utf-8")
    except UnicodeEncodeError:  # bytes a Latin-1 terminal passed through as surrogates
        raise InvalidInputError("the question is not valid UTF-8 text") from None
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise InvalidInputError(f"top_k must be an integer 1..{MAX_TOP_K}, got {top_k!r}")
    if mode not in MODES:
        raise InvalidInputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return question.strip()


def read_calibration(index_dir: Path, model_name: str | None = None) -> float | None:
    """The threshold ``citeqa eval --calibrate`` stored, or None. One chosen for another
    model than ``model_name`` is ignored: cosines of two models do not share a scale."""
    path = Path(index_dir) / CALIBRATION_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        value = data["abstain_threshold"]
        if isinstance(value, bool) or not math.isfinite(threshold := float(value)):
            raise ValueError(f"abstain_threshold must be a finite number, got {value!r}")
        chosen_for = data.get("model")
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(
            f"{path} is unreadable ({exc}); delete it or run citeqa eval --calibrate again"
        ) from None
    if model_name is not None and chosen_for is not None and chosen_for != model_name:
        log.warning(
            "ignoring %s: its threshold was chosen for model %s, and the index is built with "
            "%s; the default threshold applies until citeqa eval --calibrate runs again",
            path, chosen_for, model_name,
        )
        return None
    return threshold


def with_calibration(
    summary: SummaryParams, index_dir: Path, model_name: str | None = None
) -> SummaryParams:
    """``summary`` with the abstention threshold stored with the index for its model."""
    threshold = read_calibration(index_dir, model_name)
    if threshold is None or threshold == summary.abstain_threshold:
        return summary
    return dataclasses.replace(summary, abstain_threshold=threshold)


def write_calibration(index_dir: Path, threshold: float, **details: object) -> Path:
    path = Path(index_dir) / CALIBRATION_FILE
    atomic_write_json(path, {"abstain_threshold": threshold, **details})
    return path


def index_corpus(
    paths: Iterable[str | Path],
    index_dir: str | Path,
    embedder: Embedder,
    params: ChunkingParams | None = None,
    *,
    progress: ProgressFactory | None = None,
    limits: ConversionLimits | None = None,
    documents: Sequence[Document] | None = None,
) -> BuildStats:
    """Index the documents under ``paths`` into ``index_dir``, reusing what it can.

    The index then holds exactly those documents: any other the previous generation
    held (one added over HTTP, a file deleted since) is gone, and ``removed`` names it.
    Nothing is written when the corpus, model and parameters are unchanged.
    ``documents``: what ``load_documents(paths)`` returned already (not read again).
    """
    index_dir = Path(index_dir)
    if documents is None:
        documents = load_documents(paths, limits=limits)  # fails before anything is touched
    with writer_lock(index_dir):
        previous = load_previous(index_dir, model_info(embedder))
        data, stats = build_index(documents, embedder, params, previous=previous, progress=progress)
        # A previous that is not CURRENT's is the fallback from a damaged generation:
        # writing even the same content makes an intact one live again.
        if (
            previous is not None
            and _same_content(previous, data)
            and previous.version == current_version(index_dir)
        ):
            return dataclasses.replace(stats, unchanged=True)
        write_index(index_dir, data, base=previous.version if previous else None)
    if previous is not None:
        removed = sorted(previous.documents.keys() - {doc.doc_id for doc in documents})
        stats = dataclasses.replace(stats, removed=tuple(removed))
    return stats


@dataclasses.dataclass(frozen=True)
class CompactStats:
    segments_before: int
    segments_after: int
    chunks: int
    #: chunks of deleted or replaced documents the merge dropped
    expunged_chunks: int
    seconds: float
    version: str


#: how long a document change waits for another writer before it is refused as busy
WRITE_WAIT_S = 5.0


def compact(index_dir: str | Path, *, everything: bool = True) -> CompactStats:
    """Merge the index's segments: all into one (``everything``), or those the merge
    policy picks. Nothing is embedded; answers stay the same. A new generation like any
    write: a crash leaves the previous one live, and a server picks it up on refresh.
    Writes go on while it merges (see ``run_merges``); it waits for another merge."""
    stats = run_merges(Path(index_dir), everything=everything)
    assert stats is not None  # it waited for the merge lock
    return stats


def run_merges(
    index_dir: Path, *, everything: bool, loaded: Iterable[Segment] = (), wait: bool = True
) -> CompactStats | None:
    """Merge segments as Lucene does, beside the writes: under the merge lock, read the
    live generation (holding the writer lock a moment), build and write the merged
    segments without it, then take it again to commit them in place of theirs on the
    generation live by then; documents deleted or replaced meanwhile stay so. None when
    another merge runs and ``wait`` is False. ``loaded``: segments already in memory."""
    started = time.perf_counter()

    def unchanged(data: IndexData) -> CompactStats:
        return CompactStats(len(data.segments), len(data.segments), len(data.chunks), 0,
                            time.perf_counter() - started, data.version)

    lock = MergeLock(index_dir)
    if not lock.acquire(wait=wait):
        return None
    try:
        with writer_lock(index_dir):
            data = load_index(index_dir, loaded=loaded)
        groups = [list(data.segments)] if everything else plan_merges(data)
        groups = [g for g in groups if len(g) > 1 or data.deleted.get(g[0].name)]
        if not groups:
            return unchanged(data)
        merges = []
        for group in groups:
            merge = merge_group(group, data.deleted, new_segment_name(data.generation + 1),
                                data.model, data.params)
            if merge.segment.documents:  # else every document of the group is deleted
                write_segment(index_dir, merge.segment)
            merges.append(merge)
        with writer_lock(index_dir):
            now = load_index(index_dir, loaded=data.segments)
            lock.release()  # the writer lock keeps clean-ups away from the new segments now
            if (now.model, now.params) != (data.model, data.params):
                groups, merges = [], []  # rebuilt meanwhile with another model or chunking
            merged = with_merged(now, merges)
            names = {seg.name for seg in merged.segments}
            discard_segments(index_dir, [m.segment.name for m in merges
                                         if m.segment.name not in names])
            if not names - {seg.name for seg in now.segments}:
                return unchanged(now)
            merged.generation = now.generation + 1
            merged.version = f"{merged.generation:06d}-{now.version.split('-', 1)[1]}"
            write_index(index_dir, merged, base=now.version)
    finally:
        lock.release()
    return CompactStats(
        segments_before=len(now.segments),
        segments_after=len(merged.segments),
        chunks=len(merged.chunks),
        expunged_chunks=sum(
            sum(len(seg.chunks) for seg in group) - len(merge.segment.chunks)
            for group, merge in zip(groups, merges, strict=True)
            if merge.segment.name in names
        ),
        seconds=time.perf_counter() - started,
        version=merged.version,
    )


def _same_content(a: IndexData, b: IndexData) -> bool:
    """Whether two generations hold the same documents, model and parameters: a version
    is "<generation>-<fingerprint of those>"."""
    return a.version.split("-", 1)[1] == b.version.split("-", 1)[1]


def index_is_current(
    paths: Iterable[str | Path],
    index_dir: str | Path,
    model_name: str,
    params: ChunkingParams | None = None,
    *,
    limits: ConversionLimits | None = None,
    documents: Sequence[Document] | None = None,
) -> bool:
    """True when ``index_dir`` already holds exactly these documents, built with
    ``model_name`` and ``params`` — decided without loading the model."""
    try:
        index = load_index(Path(index_dir))
        if index.version != current_version(Path(index_dir)):
            return False  # a fallback from a damaged generation: a write repairs it
    except CiteqaError:
        return False
    if index.model.get("name") != model_name or index.params != (params or ChunkingParams()):
        return False
    if documents is None:
        documents = load_documents(paths, limits=limits)
    current = fingerprint(index.model, index.params, index.documents.values())
    return current == fingerprint(index.model, index.params, sorted(documents, key=_doc_key))


def _doc_key(doc: Document) -> str:
    return doc.doc_id


class Engine:
    """Answers questions from an index; optionally persists document changes.

    Readers always see one complete index generation: a change builds the next
    generation aside, persists it, then swaps one reference.
    """

    def __init__(
        self,
        index: IndexData,
        embedder: Embedder,
        *,
        summary: SummaryParams | None = None,
        index_dir: str | Path | None = None,
        selector: AnswerSelector | None = None,
    ) -> None:
        self.embedder = embedder
        self.selector = selector
        self.summary = summary or SummaryParams()
        self.index_dir = Path(index_dir) if index_dir is not None else None
        self._answerer = Answerer(index, self.summary, selector)
        single_threaded_search()
        self._write_lock = threading.Lock()
        self._merge_state = threading.Lock()
        self._merge_wanted = False
        self._merger: threading.Thread | None = None
        self.encode_query: Callable[[str], np.ndarray] = self._encode_one
        self._batcher: MicroBatcher | None = None
        #: (CURRENT, calibration mtime) when ``refresh`` last looked
        self._seen_on_disk: tuple[str, int | None] | None = None

    @classmethod
    def open(
        cls,
        index_dir: str | Path,
        embedder: Embedder | None = None,
        *,
        summary: SummaryParams | None = None,
        selector: AnswerSelector | bool = True,
    ) -> Engine:
        """Load the index at ``index_dir`` (checked against the embedder's model).

        ``selector``: the learned answer stage; True loads the bundled one, False
        answers with the first stage alone (faster, less accurate on new documents)."""
        index_dir = Path(index_dir)
        embedder = embedder or SentenceTransformerEmbedder()
        if selector is True:
            selector = bundled_selector()
        chosen = selector or None
        index = load_index(index_dir, model=model_info(embedder))
        summary = with_calibration(summary or SummaryParams(), index_dir, index.model.get("name"))
        return cls(index, embedder, summary=summary, index_dir=index_dir, selector=chosen)

    @property
    def index(self) -> IndexData:
        return self._answerer.index

    @property
    def version(self) -> str:
        return self._answerer.index.version

    def _encode_one(self, question: str) -> np.ndarray:
        return np.asarray(self.embedder.embed_batch([question])[0], dtype=np.float32)

    def enable_batching(self, max_batch: int = 32, max_wait_ms: float = 2.0) -> MicroBatcher:
        """Encode concurrent questions together (one forward pass per batch).

        Swaps ``encode_query`` for a ``MicroBatcher``; ``close`` stops it. Calling
        it again replaces (and closes) the previous batcher.
        """
        from ._batching import MicroBatcher

        batcher = MicroBatcher(self.embedder, max_batch=max_batch, max_wait_ms=max_wait_ms)
        previous, self._batcher = self._batcher, batcher
        self.encode_query = batcher.encode
        if previous is not None:
            previous.close()
        return batcher

    def close(self) -> None:
        """Stop the query batcher, if any; questions are then encoded one by one."""
        batcher, self._batcher = self._batcher, None
        self.encode_query = self._encode_one
        if batcher is not None:
            batcher.close()

    def ask(
        self,
        question: str,
        top_k: int = 5,
        mode: Mode = "hybrid",
        doc_ids: Sequence[str] | None = None,
    ) -> Answer:
        """Answer ``question``; with ``doc_ids``, from those documents only: retrieval
        chooses its top-k among their passages (an unknown id is a
        ``DocumentNotFoundError``). Sentences and citations of paged documents (PDF)
        carry their page."""
        question = validate_query(question, top_k, mode)
        answerer = self._answerer  # one generation for the whole answer
        scope = self._scope(answerer.index, doc_ids)
        batcher = self._batcher
        with batcher.answering() if batcher is not None else nullcontext():
            vector = self.encode_query(core_question(question))
            answer = answerer.answer(question, vector, top_k=top_k, mode=mode, scope=scope)
        return answer.with_pages(answerer.index.documents)

    def evidence_score(
        self,
        question: str,
        top_k: int = 5,
        mode: Mode = "hybrid",
        doc_ids: Sequence[str] | None = None,
    ) -> float:
        """The score ``ask`` compares with the abstention threshold (for calibration)."""
        question = validate_query(question, top_k, mode)
        answerer = self._answerer
        scope = self._scope(answerer.index, doc_ids)
        vector = self.encode_query(core_question(question))
        return answerer.evidence_score(question, vector, top_k, mode, scope)

    @staticmethod
    def _scope(index: IndexData, doc_ids: Sequence[str] | None) -> np.ndarray | None:
        """The chunk rows of ``doc_ids`` (None: every chunk), each id checked."""
        if doc_ids is None:
            return None
        if isinstance(doc_ids, str) or not doc_ids:
            raise InvalidInputError(
                "doc_ids must be a non-empty list of document ids (omit it to ask them all)"
            )
        if len(doc_ids) > MAX_SCOPE_DOCS:
            raise InvalidInputError(
                f"doc_ids names {len(doc_ids)} documents; the limit is {MAX_SCOPE_DOCS}"
            )
        unknown = [d for d in dict.fromkeys(doc_ids) if d not in index.documents]
        if unknown:
            shown = ", ".join(repr(d) for d in unknown[:5]) + (", …" if len(unknown) > 5 else "")
            raise DocumentNotFoundError(
                f"no document with id {shown} in the index; an indexed file's id is its "
                "path without the suffix, '/' as '.' (GET /documents lists them)"
            )
        return index.chunk_rows(doc_ids)

    def with_selector(self, selector: AnswerSelector | None) -> Engine:
        """The same index and embedder with another learned stage (None: the first
        stage alone)."""
        return Engine(
            self.index, self.embedder, summary=self.summary, index_dir=self.index_dir,
            selector=selector,
        )

    def with_summary(self, summary: SummaryParams) -> Engine:
        """The same index and embedder with other summary parameters (for evaluation)."""
        return Engine(
            self.index, self.embedder, summary=summary, index_dir=self.index_dir,
            selector=self.selector,
        )

    # -- documents ---------------------------------------------------------------------------

    def documents(self) -> list[Document]:
        return list(self.index.documents.values())

    def document(self, doc_id: str) -> Document:
        doc = self.index.documents.get(doc_id)
        if doc is None:
            raise DocumentNotFoundError(f"no document with id {doc_id!r}")
        return doc

    def chunk_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for chunk in self.index.chunks:
            counts[chunk.doc_id] = counts.get(chunk.doc_id, 0) + 1
        return counts

    def add_documents(
        self, documents: Sequence[Document], *, replace: bool = True, same_source: bool = False
    ) -> BuildStats:
        """Add (or replace) documents; embeds only new text; durable before it returns.

        ``replace=False`` refuses an id the index holds; ``same_source=True`` refuses one
        held by a document from another ``source`` (an id derived from a file name must
        not replace another file's document). Both raise ``DocumentConflictError``,
        checked against the generation on disk, so two servers sharing it agree.
        """

        def change(current: dict[str, Document]) -> dict[str, Document]:
            for doc in documents:
                old = current.get(doc.doc_id)
                if old is not None and not replace:
                    raise DocumentConflictError(
                        f"a document with id {doc.doc_id!r} already exists"
                    )
                if old is not None and same_source and old.source != doc.source:
                    raise DocumentConflictError(
                        f"a document with id {doc.doc_id!r} from another source already "
                        f"exists ({old.source or 'unknown'!r}, not {doc.source!r})"
                    )
                current[doc.doc_id] = doc
            return current

        return self._apply(change)

    def delete_document(self, doc_id: str) -> BuildStats:
        validate_doc_id(doc_id)

        def change(current: dict[str, Document]) -> dict[str, Document]:
            if doc_id not in current:
                raise DocumentNotFoundError(f"no document with id {doc_id!r}")
            if len(current) == 1:
                raise DocumentConflictError(
                    f"{doc_id!r} is the last document; an index needs at least one, "
                    "so add another before deleting it"
                )
            del current[doc_id]
            return current

        return self._apply(change)

    def _apply(self, change: Callable[[dict[str, Document]], dict[str, Document]]) -> BuildStats:
        with self._write_lock:
            if self.index_dir is None:
                return self._rebuild(change, persist=False)
            # Another process writing (a ``citeqa index`` run) may hold the lock for
            # minutes: refuse soon rather than leave the caller waiting unseen. A
            # merge's commit holds it for a moment only.
            with writer_lock(self.index_dir, wait=False, timeout_s=WRITE_WAIT_S):
                # Build on the generation on disk if another writer (``citeqa index``,
                # a second server) replaced ours, instead of discarding its work.
                self._sync_with_disk(writing=True)
                return self._rebuild(change, persist=True)

    def refresh(self) -> bool:
        """Serve what is on disk now: the generation another writer (``citeqa index``,
        another server) made, and the threshold ``citeqa eval --calibrate`` stored.

        Returns True when the engine changed. Cheap when nothing did (it reads
        ``CURRENT`` and stats the calibration file), so a server calls it every few
        seconds. It returns False at once while this engine writes: that write
        builds on the generation on disk anyway. A generation that cannot be
        loaded (``IndexStoreError``) or an unreadable calibration
        (``InvalidInputError``) raises once; the engine keeps serving what it had
        and does not retry until one of the two files changes again.
        """
        if self.index_dir is None or not self._write_lock.acquire(blocking=False):
            return False
        try:
            return self._sync_with_disk(writing=False)
        finally:
            self._write_lock.release()

    def _sync_with_disk(self, *, writing: bool) -> bool:
        """Load what is on disk if it changed; a write needs only the generation (a bad
        calibration must not block it) and looks even if ``refresh`` already did."""
        assert self.index_dir is not None
        try:
            on_disk = current_version(self.index_dir)
        except IndexStoreError:
            return False  # nothing usable on disk: our generation is the best there is
        try:
            stamp: int | None = (self.index_dir / CALIBRATION_FILE).stat().st_mtime_ns
        except FileNotFoundError:
            stamp = None
        if not writing:
            if (on_disk, stamp) == self._seen_on_disk:
                return False
            self._seen_on_disk = (on_disk, stamp)  # before loading: a bad one is tried once
        index = self.index
        if on_disk != index.version:
            fresh = load_index(
                self.index_dir, model=model_info(self.embedder), loaded=index.segments
            )
            if fresh.version != index.version:  # else it fell back to ours (damaged on disk)
                index = fresh
        summary = self.summary
        if not writing and stamp is not None:
            summary = with_calibration(summary, self.index_dir, index.model.get("name"))
        if index is self.index and summary is self.summary:
            return False
        self.summary = summary
        self._answerer = Answerer(index, summary, self.selector)
        return True

    def _rebuild(
        self, change: Callable[[dict[str, Document]], dict[str, Document]], *, persist: bool
    ) -> BuildStats:
        previous = self.index
        documents = change(dict(previous.documents))
        on_disk = persist and self.index_dir is not None
        data, stats = build_index(
            list(documents.values()), self.embedder, previous.params, previous=previous,
            auto_merge=not on_disk,  # on disk, merges run beside the writes (merge_soon)
        )
        if _same_content(previous, data):
            # the same documents again (a re-posted file): no new generation to write
            return dataclasses.replace(stats, unchanged=True)
        if on_disk and self.index_dir is not None:
            write_index(self.index_dir, data, base=previous.version)
        self._answerer = Answerer(data, self.summary, self.selector)
        if on_disk:
            self.merge_soon()
        return stats

    def merge_soon(self) -> None:
        """Run the merge policy's merges in a background thread (one at a time), so a
        write returns as soon as its own segment is durable; the thread commits each
        merge as a new generation and serves it. A merge killed with the process
        costs nothing but its work (see ``run_merges``)."""
        if self.index_dir is None or not plan_merges(self.index):
            return
        with self._merge_state:
            self._merge_wanted = True
            if self._merger is not None and self._merger.is_alive():
                return  # it plans again before it stops
            self._merger = threading.Thread(target=self._merge_while_wanted,
                                            name="citeqa-merge", daemon=True)
            self._merger.start()

    def wait_for_merges(self, timeout_s: float | None = None) -> bool:
        """Wait for the background merges to finish; False if they still run."""
        merger = self._merger
        if merger is not None:
            merger.join(timeout_s)
            return not merger.is_alive()
        return True

    def _merge_while_wanted(self) -> None:
        assert self.index_dir is not None
        while True:
            with self._merge_state:
                if not self._merge_wanted:
                    self._merger = None
                    return
                self._merge_wanted = False
            try:
                stats = run_merges(self.index_dir, everything=False,
                                       loaded=self.index.segments, wait=False)
                if stats is not None and stats.version != self.index.version:
                    with self._write_lock:
                        self._sync_with_disk(writing=True)
                    log.info("merged %d segments into %d: index %s", stats.segments_before,
                             stats.segments_after, stats.version)
                    if plan_merges(self.index):
                        with self._merge_state:
                            self._merge_wanted = True
            except Exception as exc:  # noqa: BLE001 - a failed merge must not stop serving
                log.warning("a background merge of %s failed (%s); the index is as it was",
                            self.index_dir, exc)
