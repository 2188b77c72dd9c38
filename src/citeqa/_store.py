"""The on-disk index: plain files plus a manifest, written atomically.

Layout of an index directory::

    CURRENT                    name of the live generation (replaced atomically)
    generations/<version>/     one complete, immutable index generation
        manifest.json          format, model, chunking, counts, per-file sha256
        documents.jsonl        doc_id, title, source, text (offsets index this text),
                               format and page_starts (PDF) when not plain text
        chunks.jsonl           chunk_id, doc_id, start, end, n_tokens, section, sentence rows
        sentences.jsonl        doc_id, start, end, heading, section
        sentence_vectors.npy   float32, one row per sentence
        dense.faiss            FAISS index of chunk vectors, row i == chunk i
        bm25/                  bm25s files (numpy arrays saved without pickle, JSON)
    calibration.json           abstention threshold chosen by ``citeqa eval --calibrate``
    damaged/<version>/         a damaged live generation that a later write replaced

A generation is written in ``.tmp-*``, fsynced, renamed into ``generations/``
and only then named in ``CURRENT``: a crash at any point leaves the previous
generation live and whole. Loading checks every file against the manifest's
checksums and counts before FAISS or numpy reads it; when the generation named in
``CURRENT`` fails that check, the newest older generation that passes is served
instead (with a warning naming the bad file), and when none passes the original
error is raised. The next write builds on that fallback, keeps it as the previous
generation and moves the damaged one to ``damaged/``. What crashed writers leave
behind (``.tmp-*`` folders, temporary files, generations newer than ``CURRENT`` that
were never made live) is ignored by loading and removed by the next writer, or by a
load while no writer is at work.
Folders are renamed out of ``generations/`` before they are deleted, so a crash
mid-deletion never leaves a half-deleted folder that looks like a generation.
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
import uuid
from collections.abc import Iterator
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
from ._index import FORMAT_VERSION, IndexData, SentenceTable
from ._lexical import LexicalIndex
from ._types import Chunk, Document, Span

log = logging.getLogger("citeqa")
KEEP_GENERATIONS = 2  # the live one and the one before it
DAMAGED_DIR = "damaged"  # damaged generations a write replaced, kept for inspection
_GENERATION = re.compile(r"[0-9]{6,}-[0-9a-f]+")  # "<generation>-<fingerprint>", see build_index


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
def writer_lock(index_dir: Path, *, wait: bool = True) -> Iterator[None]:
    """One writer per index directory, across processes. With ``wait=False``, a
    directory another process is writing raises ``IndexBusyError`` at once."""
    check_index_dir(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    with open(index_dir / ".lock", "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise IndexBusyError(
                f"another process is writing the index at {index_dir} (a citeqa index "
                "run?); try again when it is done"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _write_jsonl(path: Path, rows: Any) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_index(index_dir: Path, data: IndexData, *, base: str | None = None) -> Path:
    """Persist ``data`` as a new generation and make it live. Returns its folder.

    ``base`` is the generation ``data`` was built from, which stays as the previous
    one; without it, the generation live until now does. They differ when the live
    one was damaged and a writer built on the older one it fell back to: that older
    one is the intact copy, so it is kept and the damaged one moved to ``damaged/``.
    """
    import faiss

    index_dir = Path(index_dir)
    generations = index_dir / "generations"
    generations.mkdir(parents=True, exist_ok=True)
    tmp = index_dir / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        _write_jsonl(
            tmp / "documents.jsonl",
            (
                {
                    "doc_id": d.doc_id,
                    "title": d.title,
                    "source": d.source,
                    "text": d.text,
                    # absent (not written) for text: an index from before PDF support loads
                    **({"format": d.format} if d.format != "text" else {}),
                    **({"page_starts": list(d.page_starts)} if d.page_starts else {}),
                }
                for d in data.documents.values()
            ),
        )
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
                for c, rows in zip(data.chunks, data.chunk_sentence_rows, strict=True)
            ),
        )
        s = data.sentences
        sections: dict[int, str | None] = {}
        for chunk, rows in zip(data.chunks, data.chunk_sentence_rows, strict=True):
            for span, row in zip(chunk.sentences, rows, strict=True):
                sections[int(row)] = span.section
        _write_jsonl(
            tmp / "sentences.jsonl",
            (
                {
                    "doc_id": s.doc_ids[i],
                    "start": int(s.starts[i]),
                    "end": int(s.ends[i]),
                    "heading": bool(s.is_heading[i]),
                    "section": sections.get(i),
                }
                for i in range(len(s.doc_ids))
            ),
        )
        np.save(tmp / "sentence_vectors.npy", s.vectors.astype(np.float32), allow_pickle=False)
        faiss.write_index(data.dense, str(tmp / "dense.faiss"))
        data.lexical.save(tmp / "bm25")

        files = {}
        for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
            fsync_file(path)
            rel = path.relative_to(tmp).as_posix()
            files[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
        counts_by_doc: dict[str, int] = {}
        for chunk in data.chunks:
            counts_by_doc[chunk.doc_id] = counts_by_doc.get(chunk.doc_id, 0) + 1
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
            "dense": {"type": type(data.dense).__name__, "metric": "inner_product"},
            "counts": {
                "documents": len(data.documents),
                "chunks": len(data.chunks),
                "sentences": len(s.doc_ids),
            },
            "documents": [
                {
                    "doc_id": d.doc_id,
                    "title": d.title,
                    "sha256": d.sha256,
                    "chars": len(d.text),
                    "chunks": counts_by_doc.get(d.doc_id, 0),
                    "source": d.source,
                    "format": d.format,
                    "pages": d.pages,
                }
                for d in data.documents.values()
            ],
            "files": files,
        }
        atomic_write_bytes(
            tmp / "manifest.json",
            (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode(),
        )
        for folder in [p for p in tmp.rglob("*") if p.is_dir()] + [tmp]:
            fsync_dir(folder)
        final = generations / data.version
        if final.exists():  # an earlier attempt at this very version: replace it
            _discard(index_dir, final)
        os.rename(tmp, final)
        fsync_dir(generations)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno is None:  # numpy's short write: "88320 requested and 39904 written"
            raise OSError(
                errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (a short write: {exc})", str(tmp)
            ) from exc
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        before: str | None = current_version(index_dir)
    except IndexStoreError:
        before = None
    atomic_write_bytes(index_dir / "CURRENT", (data.version + "\n").encode())
    previous = base or before
    if before is not None and before not in (previous, data.version):
        _set_aside(index_dir, before, previous)
    _prune(index_dir, keep={data.version} | ({previous} if previous else set()))
    return final


def _set_aside(index_dir: Path, damaged: str, previous: str | None) -> None:
    """Move a damaged generation out of ``generations/`` instead of deleting it: it may
    hold the only copy of a document (one added over HTTP), readable in part."""
    source = index_dir / "generations" / damaged
    if not source.is_dir():
        return
    target = index_dir / DAMAGED_DIR / damaged
    target.parent.mkdir(exist_ok=True)
    if target.exists():
        target = target.with_name(f"{damaged}-{uuid.uuid4().hex[:8]}")
    os.rename(source, target)
    fsync_dir(index_dir / "generations")
    fsync_dir(target.parent)
    log.warning(
        "moved the damaged generation %s to %s; %s stays as the previous one",
        damaged, target, previous,
    )


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
    """Temporary folders and files of crashed writes. Call only while holding the lock."""
    removed = []
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
            for gen in sorted(generations.iterdir()) if generations.is_dir() else []:
                if gen.name > current:
                    _discard(index_dir, gen)
                    removed.append(gen)
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


def _read_jsonl(path: Path, hint: str) -> list[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except (ValueError, UnicodeDecodeError) as exc:
        raise IndexCorruptError(f"{path} cannot be read ({exc}); {hint}") from None


def load_index(index_dir: Path, *, model: dict[str, Any] | None = None) -> IndexData:
    """Load the live generation, verified; ``model`` is what the caller will embed with.

    When the generation named in ``CURRENT`` is damaged (an ``IndexCorruptError``), the
    newest older generation that verifies is loaded instead and a warning names the bad
    file; when none does, the original error is raised. A model or format mismatch is
    never papered over by a fallback.
    """
    index_dir = Path(index_dir)
    version = current_version(index_dir)
    clean_leftovers(index_dir)
    try:
        return _load_generation(index_dir, version, model)
    except IndexCorruptError as exc:
        if not (index_dir / "generations" / version).is_dir():
            raise  # CURRENT names no generation at all: the pointer is damaged, not the data
        for older in _older_generations(index_dir, version):
            try:
                data = _load_generation(index_dir, older, model)
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


def _load_generation(index_dir: Path, version: str, model: dict[str, Any] | None) -> IndexData:
    import faiss

    folder = index_dir / "generations" / version
    hint = _rebuild_hint(index_dir)
    manifest = read_manifest(index_dir, version)
    if manifest.get("format_version") == FORMAT_VERSION and manifest.get(
        "index_version"
    ) != version:
        raise IndexCorruptError(
            f"{folder / 'manifest.json'} names index version {manifest.get('index_version')!r}, "
            f"not {version!r}; {hint}"
        )
    if manifest.get("format_version") != FORMAT_VERSION:
        why = (
            f"index at {index_dir} has format {manifest.get('format_version')!r}, this citeqa "
            f"reads format {FORMAT_VERSION}"
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
    _check_files(folder, manifest, hint)

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
        vectors = np.load(folder / "sentence_vectors.npy", allow_pickle=False)
        dense = faiss.read_index(str(folder / "dense.faiss"))
        lexical = LexicalIndex.load(folder / "bm25", len(chunks))
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
        raise IndexCorruptError(
            f"index files in {folder} are inconsistent ({exc!r}); {hint}"
        ) from None

    counts = manifest.get("counts", {})
    expected = (counts.get("documents"), counts.get("chunks"), counts.get("sentences"))
    actual = (len(docs), len(chunks), len(spans))
    if expected != actual or dense.ntotal != len(chunks) or len(vectors) != len(spans):
        raise IndexCorruptError(
            f"index in {folder} disagrees with its manifest: documents/chunks/sentences "
            f"{actual}, vectors {dense.ntotal}/{len(vectors)}, manifest says {expected}; {hint}"
        )
    for meta in manifest.get("documents", []):
        known = by_id.get(meta.get("doc_id"))
        if known is None or known.sha256 != meta.get("sha256"):
            raise IndexCorruptError(
                f"{folder / 'documents.jsonl'} disagrees with the manifest; {hint}"
            )
    chunking = manifest.get("chunking", {})
    params = ChunkingParams(
        max_tokens=int(chunking.get("max_tokens", 0)),
        overlap_sentences=int(chunking.get("overlap_sentences", 0)),
        encoding=manifest.get("tokenizer", {}).get("encoding", ""),
    )
    return IndexData(
        version=version,
        generation=int(manifest.get("generation", 0)),
        model=manifest["model"],
        params=params,
        documents=by_id,
        chunks=chunks,
        chunk_sentence_rows=rows_per_chunk,
        dense=dense,
        sentences=SentenceTable(
            doc_ids=[s for s in (r["doc_id"] for r in sent_rows)],
            starts=np.asarray([s.start for s in spans], dtype=np.int64),
            ends=np.asarray([s.end for s in spans], dtype=np.int64),
            is_heading=np.asarray([s.is_heading for s in spans], dtype=bool),
            vectors=np.asarray(vectors, dtype=np.float32),
        ),
        lexical=lexical,
        created_at=str(manifest.get("created_at", "")),
    )
