"""The on-disk index: immutable segments, named by generation manifests, written atomically.

Layout of an index directory::

    CURRENT                    name of the live generation (replaced atomically)
    generations/<version>/     one index generation
        manifest.json          format, model, chunking, live counts, each segment (the
                               sha256 of its segment.json) with its tombstones: the
                               documents deleted or replaced since it was written
    segments/<name>/           one immutable segment, shared by the generations naming it
        segment.json           counts, each document (sha256, chunks, ...), per-file sha256
        documents.jsonl        doc_id, title, source, text (offsets index this text),
                               format and page_starts (PDF) when not plain text
        chunks.jsonl           chunk_id, doc_id, start, end, n_tokens, section, sentence rows
        sentences.jsonl        doc_id, start, end, heading, section
        sentence_vectors.npy   float16, one row per sentence (memory-mapped when served)
        dense.faiss            FAISS index of chunk vectors, row i == chunk i
        postings/              term counts per chunk and chunk lengths (numpy, JSON):
                               BM25 weighs them with the statistics of all live chunks
    calibration.json           abstention threshold chosen by ``citeqa eval --calibrate``
    .lock, .merge.lock         one writer at a time, one merge at a time (flock)
    damaged/<version>/         a damaged live generation that a later write replaced
                               (and under damaged/segments/ the segments only it named)

A write adds what changed: a new segment (written in ``.tmp-*``, fsynced, renamed
into ``segments/``) and a new manifest (written aside, renamed into
``generations/``), and only then names the manifest in ``CURRENT``: a crash at any
point leaves the previous generation live and whole. Merges (``citeqa compact``,
and the merge policy after a write) are writes too: a merged segment and a manifest
naming it instead of the segments it replaces. A merge builds its segment without
the writer lock (``.lock``), under the merge lock (``.merge.lock``, see
``MergeLock``), so writes go on meanwhile. Loading checks every file against
the checksums before FAISS or numpy reads it; when the generation named in
``CURRENT`` fails that check, the newest older generation that passes is served
instead (with a warning naming the bad file), and when none passes the original
error is raised. The next write builds on that fallback, keeps it as the previous
generation and moves the damaged one to ``damaged/``. What crashed writers leave
behind (``.tmp-*`` folders, temporary files, generations newer than ``CURRENT``
that were never made live, segments no kept generation names) is ignored by
loading and removed by the next writer, or by a load while no writer is at work.
Folders are renamed out of ``generations/`` and ``segments/`` before they are
deleted, so a crash mid-deletion never leaves a half-deleted one in place.
Format 1 (one folder per generation, before segments) still loads; the next write
stores its content as a segment.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ._chunking import ChunkingParams
from ._exceptions import (
    IndexBusyError,
    IndexCorruptError,
    IndexMismatchError,
    IndexNotFoundError,
    IndexStoreError,
)
from ._fsutil import atomic_write_bytes, file_in_the_way, fsync_dir, fsync_file, sha256_file
from ._index import (
    FORMAT_VERSION,
    IndexData,
    Segment,
    SentenceTable,
    assemble,
    new_segment_name,
    vectors_by_text,
)
from ._lexical import Postings
from ._types import Chunk, Document, Span

log = logging.getLogger("citeqa")
KEEP_GENERATIONS = 2  # the live one and the one before it
DAMAGED_DIR = "damaged"  # damaged generations a write replaced, kept for inspection
_GENERATION = re.compile(r"[0-9]{6,}-[0-9a-f]+")  # "<generation>-<fingerprint>", see build_index
_SEGMENT = _GENERATION  # "<generation>-<random>", see new_segment_name
SEGMENTS_DIR = "segments"
SEGMENT_FILE = "segment.json"
MERGE_LOCK_FILE = ".merge.lock"
#: format 1 (a generation in one folder, before segments) still loads
READABLE_FORMATS = (FORMAT_VERSION, 1)


def _rebuild_hint(index_dir: Path) -> str:
    # without PATH, citeqa index would index the default corpus (seeds/) instead
    return f"rebuild it with: citeqa index --index-dir {index_dir} PATH... (its documents)"


def check_index_dir(index_dir: Path) -> None:
    """Refuse an index location that is, or lies under, a file (before any work)."""
    blocker = file_in_the_way(index_dir)
    if blocker == index_dir:
        raise IndexStoreError(f"the index location {index_dir} is a file, not a folder")
    if blocker is not None:
        raise IndexStoreError(
            f"cannot make the index folder {index_dir}: {blocker} is a file, not a folder"
        )


@contextlib.contextmanager
def writer_lock(
    index_dir: Path, *, wait: bool = True, timeout_s: float = 0.0
) -> Iterator[None]:
    """One writer per index directory, across processes. With ``wait=False``, a
    directory another process is writing raises ``IndexBusyError`` after ``timeout_s``
    (at once by default)."""
    check_index_dir(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    with open(index_dir / ".lock", "a+") as fh:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise IndexBusyError(
                        f"another process is writing the index at {index_dir} (a citeqa "
                        "index run?); try again when it is done"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class MergeLock:
    """One merge at a time per index directory, across processes (``.merge.lock``).

    A merge builds its segment without the writer lock, so writes go on meanwhile;
    it takes the writer lock only to read the generation it merges and to commit.
    While a merge holds this lock, clean-ups leave unnamed segments and temporary
    folders alone: the merge's own are among them. A killed merge's lock is freed
    by the kernel, and the next clean-up removes what it left.
    """

    def __init__(self, index_dir: Path) -> None:
        self.path = Path(index_dir) / MERGE_LOCK_FILE
        self._fh: Any = None

    def acquire(self, *, wait: bool = True) -> bool:
        """Take the lock; with ``wait=False``, False at once if another merge holds it."""
        check_index_dir(self.path.parent)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115 - closed by release
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            fh.close()
            return False
        self._fh = fh
        return True

    def release(self) -> None:
        """Free the lock (nothing if it is not held)."""
        fh, self._fh = self._fh, None
        if fh is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            fh.close()


def merge_running(index_dir: Path) -> bool:
    """Whether a merge (of any process) holds the index's merge lock now."""
    lock = MergeLock(index_dir)
    if not lock.path.exists():
        return False
    try:
        if lock.acquire(wait=False):
            lock.release()
            return False
    except OSError:
        pass  # cannot tell: assume one runs, so nothing of it is deleted
    return True


def _write_jsonl(path: Path, rows: Any) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _document_row(d: Document) -> dict[str, Any]:
    return {
        "doc_id": d.doc_id,
        "title": d.title,
        "source": d.source,
        "text": d.text,
        # absent (not written) for text: an index from before PDF support loads
        **({"format": d.format} if d.format != "text" else {}),
        **({"page_starts": list(d.page_starts)} if d.page_starts else {}),
    }


def _publish(index_dir: Path, final: Path, fill: Callable[[Path], None]) -> None:
    """Make the folder ``final`` appear whole or not at all: ``fill`` writes it in a
    ``.tmp-*`` folder, which is fsynced and renamed into place (replacing an earlier
    attempt at the same name). On failure nothing is left; a short write (numpy's
    "88320 requested and 39904 written", no errno) is said as the full disk it is."""
    tmp = index_dir / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        fill(tmp)
        for folder in [p for p in tmp.rglob("*") if p.is_dir()] + [tmp]:
            fsync_dir(folder)
        if final.exists():
            _discard(index_dir, final)
        os.rename(tmp, final)
        fsync_dir(final.parent)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno is None:
            raise OSError(
                errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (a short write: {exc})", str(tmp)
            ) from exc
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _seal(tmp: Path, meta: dict[str, Any], name: str) -> None:
    """Fsync and checksum every file of ``tmp`` into ``meta["files"]``; write ``meta``
    as ``name``."""
    files = {}
    for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
        fsync_file(path)
        files[path.relative_to(tmp).as_posix()] = {
            "sha256": sha256_file(path), "bytes": path.stat().st_size,
        }
    meta["files"] = files
    atomic_write_bytes(tmp / name, (json.dumps(meta, indent=2, ensure_ascii=False) + "\n").encode())


def _fill_segment(tmp: Path, segment: Segment) -> None:
    """Write ``segment``'s files and its ``segment.json`` into the folder ``tmp``."""
    import faiss

    _write_jsonl(tmp / "documents.jsonl",
                 (_document_row(d) for d in segment.documents.values()))
    _write_jsonl(
        tmp / "chunks.jsonl",
        (
            {
                "chunk_id": c.chunk_id,
                "doc_id": c.doc_id,
                "start": c.start,
                "end": c.end,
                "n_tokens": c.n_tokens,
                "section": c.section,
                "sentence_rows": rows.tolist(),
            }
            for c, rows in zip(segment.chunks, segment.chunk_sentence_rows, strict=True)
        ),
    )
    st = segment.sentences
    sections: dict[int, str | None] = {}
    for chunk, rows in zip(segment.chunks, segment.chunk_sentence_rows, strict=True):
        for span, row in zip(chunk.sentences, rows, strict=True):
            sections[int(row)] = span.section
    _write_jsonl(
        tmp / "sentences.jsonl",
        (
            {
                "doc_id": st.doc_ids[i],
                "start": int(st.starts[i]),
                "end": int(st.ends[i]),
                "heading": bool(st.is_heading[i]),
                "section": sections.get(i),
            }
            for i in range(len(st.doc_ids))
        ),
    )
    np.save(tmp / "sentence_vectors.npy", np.asarray(st.vectors, dtype=np.float16),
            allow_pickle=False)
    faiss.write_index(segment.dense, str(tmp / "dense.faiss"))
    segment.postings.save(tmp / "postings")
    chunks_of: dict[str, int] = {}
    for chunk in segment.chunks:
        chunks_of[chunk.doc_id] = chunks_of.get(chunk.doc_id, 0) + 1
    _seal(tmp, {
        "format_version": FORMAT_VERSION,
        "name": segment.name,
        "dense": {"type": type(segment.dense).__name__, "metric": "inner_product"},
        "counts": {
            "documents": len(segment.documents),
            "chunks": len(segment.chunks),
            "sentences": len(st.doc_ids),
        },
        "documents": [
            {
                "doc_id": d.doc_id,
                "title": d.title,
                "sha256": d.sha256,
                "chars": len(d.text),
                "chunks": chunks_of.get(d.doc_id, 0),
                "source": d.source,
                "format": d.format,
                "pages": d.pages,
            }
            for d in segment.documents.values()
        ],
    }, SEGMENT_FILE)


def write_segment(index_dir: Path, segment: Segment) -> dict[str, Any]:
    """Write ``segment`` to ``segments/<name>/`` (atomically; once: a segment already
    there is left as it is). Returns its entry for a manifest. Any process may call it
    (a Ray worker does); only the writer holding the lock names it in a manifest."""
    index_dir = Path(index_dir)
    root = index_dir / SEGMENTS_DIR
    final = root / segment.name
    if not _SEGMENT.fullmatch(segment.name):
        raise ValueError(f"bad segment name {segment.name!r}")
    if not (final / SEGMENT_FILE).is_file():  # else written already: segments never change
        root.mkdir(parents=True, exist_ok=True)
        _publish(index_dir, final, lambda tmp: _fill_segment(tmp, segment))
    return {
        "name": segment.name,
        "sha256": sha256_file(final / SEGMENT_FILE),
        "documents": len(segment.documents),
        "chunks": len(segment.chunks),
        "sentences": len(segment.sentences.doc_ids),
    }


def write_index(index_dir: Path, data: IndexData, *, base: str | None = None) -> Path:
    """Persist ``data`` as a new generation and make it live. Returns its folder.

    Only segments not yet on disk are written, so the cost is that of the change.
    ``base`` is the generation ``data`` was built from, which stays as the previous
    one; without it, the generation live until now does. They differ when the live
    one was damaged and a writer built on the older one it fell back to: that older
    one is the intact copy, so it is kept and the damaged one moved to ``damaged/``.
    """
    index_dir = Path(index_dir)
    generations = index_dir / "generations"
    generations.mkdir(parents=True, exist_ok=True)
    entries = []
    for seg in data.segments:
        entry = write_segment(index_dir, seg)
        entry["deleted"] = sorted(data.deleted.get(seg.name, ()))
        entries.append(entry)
    manifest = {
        "format_version": FORMAT_VERSION,
        "index_version": data.version,
        "generation": data.generation,
        "created_at": data.created_at,
        "model": data.model,
        "tokenizer": {"encoding": data.params.encoding},
        "chunking": {
            "max_tokens": data.params.max_tokens,
            "overlap_sentences": data.params.overlap_sentences,
        },
        "counts": {
            "documents": len(data.documents),
            "chunks": len(data.chunks),
            "sentences": len(data.sentences.doc_ids),
            "segments": len(data.segments),
        },
        "segments": entries,
    }
    final = generations / data.version
    _publish(index_dir, final, lambda tmp: atomic_write_bytes(
        tmp / "manifest.json",
        (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode(),
    ))
    try:
        before: str | None = current_version(index_dir)
    except IndexStoreError:
        before = None
    atomic_write_bytes(index_dir / "CURRENT", (data.version + "\n").encode())
    previous = base or before
    keep = {data.version} | ({previous} if previous else set())
    if before is not None and before not in (previous, data.version):
        _set_aside(index_dir, before, previous, _named_segments(index_dir, keep) or set())
    _prune(index_dir, keep=keep)
    return final


def _named_segments(index_dir: Path, versions: set[str]) -> set[str] | None:
    """The segments the manifests of ``versions`` name; None when one of them cannot
    be read (then no segment may be deleted: it might be one that manifest names)."""
    names: set[str] = set()
    for version in versions:
        try:
            manifest = read_manifest(index_dir, version)
        except IndexStoreError:
            return None
        for entry in manifest.get("segments") or []:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                names.add(entry["name"])
    return names


def _set_aside(index_dir: Path, damaged: str, previous: str | None, kept: set[str]) -> None:
    """Move a damaged generation, and the segments only it names, out of the way
    instead of deleting them: they may hold the only copy of a document (one added
    over HTTP), readable in part. ``kept``: the segments the kept generations name."""
    source = index_dir / "generations" / damaged
    if not source.is_dir():
        return
    own = (_named_segments(index_dir, {damaged}) or set()) - kept
    target = index_dir / DAMAGED_DIR / damaged
    target.parent.mkdir(exist_ok=True)
    if target.exists():
        target = target.with_name(f"{damaged}-{uuid.uuid4().hex[:8]}")
    os.rename(source, target)
    fsync_dir(index_dir / "generations")
    for name in sorted(own):
        segment = index_dir / SEGMENTS_DIR / name
        if segment.is_dir():
            (index_dir / DAMAGED_DIR / SEGMENTS_DIR).mkdir(exist_ok=True)
            os.rename(segment, index_dir / DAMAGED_DIR / SEGMENTS_DIR / name)
    fsync_dir(target.parent)
    log.warning(
        "moved the damaged generation %s to %s; %s stays as the previous one",
        damaged, target, previous,
    )


def discard_segments(index_dir: Path, names: Iterable[str]) -> None:
    """Delete segments a writer wrote and will not name (it holds the writer lock)."""
    for name in names:
        _discard(index_dir, Path(index_dir) / SEGMENTS_DIR / name)


def _discard(index_dir: Path, folder: Path) -> None:
    """Delete ``folder``: first renamed to a ``.tmp-*`` name, so a crash mid-way leaves
    only a leftover, never a half-deleted generation."""
    trash = index_dir / f".tmp-old-{uuid.uuid4().hex}"
    try:
        os.rename(folder, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def _remove_leftovers(index_dir: Path) -> list[Path]:
    """Temporary folders and files of crashed writes. Call only while holding the lock.
    None while a merge runs: its segment is being written in a temporary folder."""
    removed: list[Path] = []
    if merge_running(index_dir):
        return removed
    for path in index_dir.glob(".tmp-*"):
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    for path in index_dir.glob(".*.tmp-*"):  # atomic_write_bytes' temporary files
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed


def _prune(index_dir: Path, keep: set[str]) -> None:
    """Drop leftovers of crashed writes and every generation but ``keep`` (the live one
    and the one live before it, :data:`KEEP_GENERATIONS`): generations that a crash
    left unnamed in ``CURRENT`` were never acknowledged and must not become fallbacks."""
    _remove_leftovers(index_dir)
    for gen in sorted((index_dir / "generations").iterdir(), key=lambda p: p.name):
        if gen.name not in keep:
            _discard(index_dir, gen)
    _prune_segments(index_dir, _named_segments(index_dir, keep))


def _prune_segments(index_dir: Path, named: set[str] | None) -> list[Path]:
    """Delete the segments no kept generation names (merged away, or written by a
    crashed write); none when ``named`` is None, or while a merge runs (the segment it
    is building is named by no generation yet). Call only while holding the lock."""
    removed: list[Path] = []
    if named is None or merge_running(index_dir):
        return removed
    root = index_dir / SEGMENTS_DIR
    for segment in sorted(root.iterdir()) if root.is_dir() else []:
        if segment.name not in named:
            _discard(index_dir, segment)
            removed.append(segment)
    return removed


def clean_leftovers(index_dir: Path) -> list[Path]:
    """Remove what crashed writers left behind, unless a writer is at work right now.

    Best effort and non-blocking: a read-only index, or one being written (by this or
    another process), is left alone. Returns what was removed.
    """
    index_dir = Path(index_dir)
    try:
        current = current_version(index_dir)
        fh = open(index_dir / ".lock", "a+")  # noqa: SIM115 - closed below
    except (OSError, IndexStoreError):
        return []
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return []  # a writer holds the lock: its temporary files are not leftovers
        try:
            removed = _remove_leftovers(index_dir)
            generations = index_dir / "generations"
            # Written completely but never named in CURRENT: a crash between the two steps.
            kept = []
            for gen in sorted(generations.iterdir()) if generations.is_dir() else []:
                if gen.name > current:
                    _discard(index_dir, gen)
                    removed.append(gen)
                else:
                    kept.append(gen.name)
            if current in kept:
                removed += _prune_segments(index_dir, _named_segments(index_dir, set(kept)))
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    if removed:
        log.info("removed %d leftovers of interrupted index writes in %s", len(removed),
                 index_dir)
    return removed


def current_version(index_dir: Path) -> str:
    pointer = Path(index_dir) / "CURRENT"
    try:
        version = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise IndexNotFoundError(
            f"no index at {index_dir}: build one with: citeqa index --index-dir {index_dir}"
        ) from None
    except (UnicodeDecodeError, OSError) as exc:
        raise IndexCorruptError(
            f"{pointer} cannot be read ({exc}); {_rebuild_hint(index_dir)}"
        ) from None
    if not version or "/" in version or version.startswith("."):
        raise IndexCorruptError(f"{pointer} does not name a generation; {_rebuild_hint(index_dir)}")
    return version


def read_manifest(index_dir: Path, version: str | None = None) -> dict[str, Any]:
    index_dir = Path(index_dir)
    version = version or current_version(index_dir)
    path = index_dir / "generations" / version / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexCorruptError(f"{path} is missing; {_rebuild_hint(index_dir)}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise IndexCorruptError(
            f"{path} is not valid JSON ({exc}); {_rebuild_hint(index_dir)}"
        ) from None
    if not isinstance(manifest, dict):
        raise IndexCorruptError(f"{path} is not a manifest object; {_rebuild_hint(index_dir)}")
    return manifest


def _check_files(folder: Path, manifest: dict[str, Any], hint: str) -> None:
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise IndexCorruptError(f"{folder / 'manifest.json'} lists no files; {hint}")
    for rel, meta in files.items():
        path = folder / rel
        if not isinstance(meta, dict) or rel.startswith("/") or ".." in rel.split("/"):
            raise IndexCorruptError(f"{folder / 'manifest.json'} lists a bad file {rel!r}; {hint}")
        if not path.is_file():
            raise IndexCorruptError(f"{path} is missing; {hint}")
        if path.stat().st_size != meta.get("bytes") or sha256_file(path) != meta.get("sha256"):
            raise IndexCorruptError(f"{path} does not match its checksum in the manifest; {hint}")


def _iter_jsonl(path: Path, hint: str) -> Iterator[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IndexCorruptError(f"{path} cannot be read ({exc}); {hint}") from None


def _read_jsonl(path: Path, hint: str) -> list[dict[str, Any]]:
    return list(_iter_jsonl(path, hint))


def load_index(
    index_dir: Path,
    *,
    model: dict[str, Any] | None = None,
    loaded: Iterable[Segment] = (),
) -> IndexData:
    """Load the live generation, verified; ``model`` is what the caller will embed with.

    ``loaded``: segments already in memory (an index this process loaded before);
    those the generation names are reused as they are, not read and checked again
    (a segment never changes), so loading after a small write costs little.

    When the generation named in ``CURRENT`` is damaged (an ``IndexCorruptError``), the
    newest older generation that verifies is loaded instead and a warning names the bad
    file; when none does, the original error is raised. A model or format mismatch is
    never papered over by a fallback.
    """
    index_dir = Path(index_dir)
    version = current_version(index_dir)
    clean_leftovers(index_dir)
    known = {seg.name: seg for seg in loaded}
    try:
        return _load_generation(index_dir, version, model, known)
    except IndexCorruptError as exc:
        if not (index_dir / "generations" / version).is_dir():
            raise  # CURRENT names no generation at all: the pointer is damaged, not the data
        for older in _older_generations(index_dir, version):
            try:
                data = _load_generation(index_dir, older, model, known)
            except IndexStoreError:
                continue
            log.warning(
                "the live index generation %s is damaged: %s -- serving the previous complete "
                "generation %s instead",
                version, exc, older,
            )
            return data
        raise


def _older_generations(index_dir: Path, version: str) -> list[str]:
    """Generation names older than ``version``, newest first (names sort by generation)."""
    try:
        names = [p.name for p in (index_dir / "generations").iterdir() if p.is_dir()]
    except OSError:
        return []
    return sorted((n for n in names if n < version and _GENERATION.fullmatch(n)), reverse=True)


def _load_generation(
    index_dir: Path, version: str, model: dict[str, Any] | None, known: dict[str, Segment]
) -> IndexData:
    folder = index_dir / "generations" / version
    hint = _rebuild_hint(index_dir)
    manifest = read_manifest(index_dir, version)
    fmt = manifest.get("format_version")
    if fmt in READABLE_FORMATS and manifest.get("index_version") != version:
        raise IndexCorruptError(
            f"{folder / 'manifest.json'} names index version {manifest.get('index_version')!r}, "
            f"not {version!r}; {hint}"
        )
    if fmt not in READABLE_FORMATS:
        why = (
            f"index at {index_dir} has format {fmt!r}, this citeqa reads formats "
            f"{', '.join(map(str, READABLE_FORMATS))}"
        )
        raise IndexMismatchError(f"{why}; {hint}", reason=why)
    if model is not None and manifest.get("model") != model:
        why = (
            f"index at {index_dir} was built with model {manifest.get('model')}, but the "
            f"configured model is {model}"
        )
        raise IndexMismatchError(
            f"{why}; {hint}, or configure the model it was built with", reason=why
        )
    chunking = manifest.get("chunking", {})
    params = ChunkingParams(
        max_tokens=int(chunking.get("max_tokens", 0)),
        overlap_sentences=int(chunking.get("overlap_sentences", 0)),
        encoding=manifest.get("tokenizer", {}).get("encoding", ""),
    )
    generation = int(manifest.get("generation", 0))
    try:
        if fmt == FORMAT_VERSION:
            entries = manifest.get("segments")
            if not isinstance(entries, list):
                raise IndexCorruptError(f"{folder / 'manifest.json'} lists no segments; {hint}")
            segments = [_segment(index_dir, entry, known, hint) for entry in entries]
            deleted = {
                e["name"]: frozenset(str(d) for d in e.get("deleted", ())) for e in entries
            }
        else:  # format 1: the whole generation in its folder, read as one segment
            segments = [_load_segment_files(folder, manifest, new_segment_name(generation),
                                            hint, legacy=True)]
            deleted = {}
        data = assemble(
            segments, deleted, version=version, generation=generation,
            model=manifest["model"], params=params,
            created_at=str(manifest.get("created_at", "")),
        )
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
        raise IndexCorruptError(
            f"index files of {folder} are inconsistent ({exc!r}); {hint}"
        ) from None
    counts = manifest.get("counts", {})
    expected = (counts.get("documents"), counts.get("chunks"), counts.get("sentences"))
    actual = (len(data.documents), len(data.chunks), len(data.sentences.doc_ids))
    if expected != actual:
        raise IndexCorruptError(
            f"index in {folder} disagrees with its manifest: documents/chunks/sentences "
            f"{actual}, manifest says {expected}; {hint}"
        )
    return data


def load_previous(index_dir: Path, model: dict[str, Any]) -> IndexData | None:
    """The live generation, if a build with ``model`` can start from it; else None
    (no index yet, another model or format, or damaged past any fallback: the build
    then writes a whole new generation beside it)."""
    try:
        return load_index(index_dir, model=model)
    except IndexNotFoundError:
        return None
    except IndexMismatchError as exc:
        log.warning("building the index anew, not reusing what it holds: %s", exc.reason)
        return None
    except IndexStoreError as exc:
        log.warning("not reusing the index at %s: %s", index_dir, exc)
        return None


def read_segment_vectors(
    index_dir: Path, name: str, doc_ids: Iterable[str]
) -> dict[str, np.ndarray]:
    """``Segment.vectors_by_text(doc_ids)`` of ``segments/<name>/`` without loading the
    segment: the JSON files are streamed and only ``doc_ids``' rows kept; vectors are
    read from memory-mapped files. For a Ray worker re-embedding changed documents,
    while the driver holds the writer lock: the driver checked the segment's checksums
    when it loaded the generation naming it, and a segment is never changed."""
    import faiss

    folder = Path(index_dir) / SEGMENTS_DIR / name
    hint = _rebuild_hint(Path(index_dir))
    wanted = set(doc_ids)
    try:
        texts = {
            r["doc_id"]: r["text"]
            for r in _iter_jsonl(folder / "documents.jsonl", hint)
            if r["doc_id"] in wanted
        }
        stored = np.load(folder / "sentence_vectors.npy", mmap_mode="r", allow_pickle=False)
        sentences = [
            (texts[r["doc_id"]][int(r["start"]) : int(r["end"])], np.asarray(stored[row]))
            for row, r in enumerate(_iter_jsonl(folder / "sentences.jsonl", hint))
            if r["doc_id"] in texts
        ]
        chunk_rows = [
            (row, texts[r["doc_id"]][int(r["start"]) : int(r["end"])])
            for row, r in enumerate(_iter_jsonl(folder / "chunks.jsonl", hint))
            if r["doc_id"] in texts
        ]
        chunks: list[tuple[str, np.ndarray]] = []
        if chunk_rows:  # the flat vectors memory-mapped, not read
            dense = faiss.read_index(str(folder / "dense.faiss"), faiss.IO_FLAG_MMAP_IFC)
            chunks = [(text, np.asarray(dense.reconstruct(row))) for row, text in chunk_rows]
    except (OSError, KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
        raise IndexCorruptError(
            f"index files in {folder} are inconsistent ({exc!r}); {hint}"
        ) from None
    return vectors_by_text(sentences, chunks)


def load_segment(index_dir: Path, name: str) -> Segment:
    """Read and check the segment ``segments/<name>/`` (one ``write_segment`` wrote,
    in this process or another), to name it in the next generation."""
    index_dir = Path(index_dir)
    meta_path = index_dir / SEGMENTS_DIR / name / SEGMENT_FILE
    try:
        digest = sha256_file(meta_path)
    except FileNotFoundError:
        raise IndexCorruptError(f"{meta_path} is missing") from None
    return _segment(index_dir, {"name": name, "sha256": digest}, {}, _rebuild_hint(index_dir))


def _segment(index_dir: Path, entry: Any, known: dict[str, Segment], hint: str) -> Segment:
    """The segment a manifest entry names: from ``known`` or read and checked."""
    name = entry.get("name") if isinstance(entry, dict) else None
    if not isinstance(name, str) or not _SEGMENT.fullmatch(name):
        raise IndexCorruptError(f"a manifest names a bad segment {entry!r}; {hint}")
    folder = index_dir / SEGMENTS_DIR / name
    meta_path = folder / SEGMENT_FILE
    if not meta_path.is_file():
        raise IndexCorruptError(f"{meta_path} is missing; {hint}")
    if sha256_file(meta_path) != entry.get("sha256"):
        raise IndexCorruptError(
            f"{meta_path} does not match its checksum in the manifest; {hint}"
        )
    if name in known:
        return known[name]
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise IndexCorruptError(f"{meta_path} is not valid JSON ({exc}); {hint}") from None
    if not isinstance(meta, dict):
        raise IndexCorruptError(f"{meta_path} is not an object; {hint}")
    return _load_segment_files(folder, meta, name, hint, legacy=False)


def _load_segment_files(
    folder: Path, meta: dict[str, Any], name: str, hint: str, *, legacy: bool
) -> Segment:
    """Read a segment's files (or, ``legacy``, a format-1 generation's) after checking
    them against ``meta``'s checksums and counts."""
    import faiss

    _check_files(folder, meta, hint)
    try:
        docs = [
            Document(
                r["doc_id"],
                r["title"],
                r["text"],
                r.get("source", ""),
                format=str(r.get("format", "text")),
                page_starts=tuple(int(x) for x in r.get("page_starts", ())),
            )
            for r in _read_jsonl(folder / "documents.jsonl", hint)
        ]
        sent_rows = _read_jsonl(folder / "sentences.jsonl", hint)
        chunk_rows = _read_jsonl(folder / "chunks.jsonl", hint)
        by_id = {d.doc_id: d for d in docs}
        spans = [
            Span(int(r["start"]), int(r["end"]), bool(r["heading"]), r.get("section"))
            for r in sent_rows
        ]
        chunks: list[Chunk] = []
        rows_per_chunk: list[np.ndarray] = []
        for r in chunk_rows:
            doc = by_id[r["doc_id"]]
            rows = np.asarray(r["sentence_rows"], dtype=np.int64)
            chunks.append(
                Chunk(
                    chunk_id=r["chunk_id"],
                    doc_id=r["doc_id"],
                    start=int(r["start"]),
                    end=int(r["end"]),
                    text=doc.text[int(r["start"]) : int(r["end"])],
                    n_tokens=int(r["n_tokens"]),
                    section=r.get("section"),
                    sentences=tuple(spans[i] for i in rows),
                )
            )
            rows_per_chunk.append(rows)
        if legacy:
            vectors = np.load(folder / "sentence_vectors.npy", allow_pickle=False).astype(
                np.float16
            )
            postings = Postings.build([c.text for c in chunks])
        else:
            vectors = np.load(folder / "sentence_vectors.npy", mmap_mode="r", allow_pickle=False)
            postings = Postings.load(folder / "postings", len(chunks))
        dense = faiss.read_index(str(folder / "dense.faiss"))
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
        raise IndexCorruptError(
            f"index files in {folder} are inconsistent ({exc!r}); {hint}"
        ) from None
    counts = meta.get("counts", {})
    expected = (counts.get("documents"), counts.get("chunks"), counts.get("sentences"))
    actual = (len(docs), len(chunks), len(spans))
    if expected != actual or dense.ntotal != len(chunks) or len(vectors) != len(spans):
        raise IndexCorruptError(
            f"index in {folder} disagrees with its manifest: documents/chunks/sentences "
            f"{actual}, vectors {dense.ntotal}/{len(vectors)}, manifest says {expected}; {hint}"
        )
    listed = {m.get("doc_id"): m.get("sha256") for m in meta.get("documents", [])}
    if listed != {d.doc_id: d.sha256 for d in docs}:
        raise IndexCorruptError(f"{folder} disagrees with the documents its manifest lists; {hint}")
    return Segment(
        name=name,
        documents=by_id,
        chunks=chunks,
        chunk_sentence_rows=rows_per_chunk,
        sentences=SentenceTable(
            doc_ids=[r["doc_id"] for r in sent_rows],
            starts=np.asarray([sp.start for sp in spans], dtype=np.int64),
            ends=np.asarray([sp.end for sp in spans], dtype=np.int64),
            is_heading=np.asarray([sp.is_heading for sp in spans], dtype=bool),
            vectors=vectors,
        ),
        dense=dense,
        postings=postings,
    )
