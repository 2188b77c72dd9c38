"""The on-disk index (citeqa._store): round trip, atomic writes, refusal of bad indexes."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from citeqa import (
    Document,
    HashingEmbedder,
    IndexCorruptError,
    IndexMismatchError,
    IndexNotFoundError,
    IndexStoreError,
    make_document,
)
from citeqa._fsutil import sha256_file
from citeqa._index import FORMAT_VERSION, IndexData, build_index, model_info
from citeqa._store import (
    KEEP_GENERATIONS,
    MergeLock,
    clean_leftovers,
    current_version,
    load_index,
    merge_running,
    read_manifest,
    read_segment_vectors,
    write_index,
)

REBUILD = "rebuild it with: citeqa index --index-dir"


def extra_doc(n: int = 0) -> Document:
    return make_document(
        f"# Extra {n}\n\nThe extra document number {n} talks about kangaroos. "
        f"It has a second sentence about wombats {n}.",
        doc_id=f"extra-{n}",
    )


@pytest.fixture(scope="module")
def data(seed_docs: list[Document]) -> IndexData:
    """Built once; nothing here mutates it."""
    built, _ = build_index([*seed_docs, extra_doc()], HashingEmbedder())
    return built


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, data: IndexData) -> Path:
    index_dir = tmp_path_factory.mktemp("store") / "index"
    write_index(index_dir, data)
    return index_dir


@pytest.fixture
def written(tmp_path: Path, pristine: Path) -> Path:
    """A private copy of the written index, free to damage."""
    index_dir = tmp_path / "index"
    shutil.copytree(pristine, index_dir)
    return index_dir


def live_folder(index_dir: Path) -> Path:
    return index_dir / "generations" / current_version(index_dir)


def segment_folder(index_dir: Path) -> Path:
    """The folder of the live generation's newest segment."""
    name = read_manifest(index_dir)["segments"][-1]["name"]
    return index_dir / "segments" / name


def assert_same_index(a: IndexData, b: IndexData) -> None:
    assert a.version == b.version and a.generation == b.generation
    assert a.model == b.model and a.params == b.params
    assert a.documents == b.documents
    assert a.chunks == b.chunks
    assert len(a.chunk_sentence_rows) == len(b.chunk_sentence_rows)
    for x, y in zip(a.chunk_sentence_rows, b.chunk_sentence_rows, strict=True):
        np.testing.assert_array_equal(x, y)
    assert a.sentences.doc_ids == b.sentences.doc_ids
    np.testing.assert_array_equal(a.sentences.starts, b.sentences.starts)
    np.testing.assert_array_equal(a.sentences.ends, b.sentences.ends)
    np.testing.assert_array_equal(a.sentences.is_heading, b.sentences.is_heading)
    np.testing.assert_array_equal(a.sentences.vectors, b.sentences.vectors)
    np.testing.assert_array_equal(a.chunk_vectors(), b.chunk_vectors())
    for query in ("disappeared missing people", "kangaroos", "asylum Mexico"):
        np.testing.assert_allclose(a.lexical.scores(query), b.lexical.scores(query), rtol=1e-6)
    assert a.created_at == b.created_at


def test_round_trip(written: Path, data: IndexData) -> None:
    loaded = load_index(written, model=model_info(HashingEmbedder()))
    assert_same_index(data, loaded)
    assert loaded.version == current_version(written)
    # Spans keep their sections through the round trip.
    sections = {s.section for c in loaded.chunks for s in c.sentences}
    assert "Collaborating with Mexico" in sections and "Extra 0" in sections


def test_layout_and_manifest(written: Path, data: IndexData) -> None:
    assert (written / "CURRENT").read_text(encoding="utf-8") == data.version + "\n"
    assert sorted(p.name for p in live_folder(written).iterdir()) == ["manifest.json"]
    manifest = read_manifest(written)
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["index_version"] == data.version
    assert manifest["model"] == model_info(HashingEmbedder())
    assert manifest["tokenizer"] == {"encoding": data.params.encoding}
    assert manifest["chunking"] == {"max_tokens": 200, "overlap_sentences": 1}
    assert manifest["counts"] == {
        "documents": 2,
        "chunks": len(data.chunks),
        "sentences": len(data.sentences.doc_ids),
        "segments": 1,
    }
    (entry,) = manifest["segments"]
    folder = written / "segments" / entry["name"]
    assert entry["deleted"] == [] and entry["chunks"] == len(data.chunks)
    assert entry["sha256"] == sha256_file(folder / "segment.json")
    assert "documents" not in manifest  # a write's manifest grows with segments, not documents
    meta = json.loads((folder / "segment.json").read_text())
    by_id = {d["doc_id"]: d for d in meta["documents"]}
    for doc in data.documents.values():
        assert by_id[doc.doc_id]["sha256"] == doc.sha256
        assert by_id[doc.doc_id]["chars"] == len(doc.text)
    on_disk = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.name != "segment.json"
    )
    assert sorted(meta["files"]) == on_disk
    for name in ("documents.jsonl", "chunks.jsonl", "sentences.jsonl", "sentence_vectors.npy",
                 "dense.faiss", "postings/terms.json", "postings/counts.npy"):
        assert name in meta["files"]
    vectors = np.load(folder / "sentence_vectors.npy")
    assert vectors.dtype == np.float16 and len(vectors) == len(data.sentences.doc_ids)
    assert not [p for p in written.rglob("*") if p.suffix in (".pkl", ".pickle")]
    assert not list(written.glob(".tmp-*"))


def test_a_write_adds_a_segment_and_tombstones(written: Path, data: IndexData) -> None:
    """Adding a document writes only its segment; replacing one records a tombstone in
    the segment that held it, and the old generation's files are untouched."""
    first = read_manifest(written)["segments"][0]["name"]
    before = {p: p.stat().st_mtime_ns for p in (written / "segments").rglob("*")}
    changed = make_document("# Extra 0\n\nNow about koalas only.", doc_id="extra-0")
    docs = [d for d in data.documents.values() if d.doc_id != "extra-0"]
    nxt, stats = build_index([*docs, changed, extra_doc(1)], HashingEmbedder(), previous=data)
    write_index(written, nxt)
    manifest = read_manifest(written)
    assert [e["name"] for e in manifest["segments"]][0] == first
    assert manifest["segments"][0]["deleted"] == ["extra-0"]
    assert manifest["segments"][1]["documents"] == 2  # extra-0 (new text) and extra-1
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # nothing rewritten
    loaded = load_index(written)
    assert "koalas" in loaded.documents["extra-0"].text
    assert_same_index(nxt, loaded)
    fresh, _ = build_index([*docs, changed, extra_doc(1)], HashingEmbedder())
    assert loaded.chunks == fresh.chunks  # the rows one segment would give


def test_read_segment_vectors_reads_what_the_loaded_segment_holds(written: Path) -> None:
    """A Ray worker reads a changed document's old vectors from its segment's files:
    the same texts and vectors (float32 for chunks, float16 for sentences) as the
    loaded segment gives, of those documents only."""
    (segment,) = load_index(written).segments
    assert len(segment.documents) > 1
    some = ["extra-0"]
    want = segment.vectors_by_text(some)
    got = read_segment_vectors(written, segment.name, some)
    assert got.keys() == want.keys()
    assert len(got) < len(segment.vectors_by_text())
    for digest, vector in want.items():
        assert got[digest].dtype == vector.dtype
        np.testing.assert_array_equal(got[digest], vector)
    assert {v.dtype for v in got.values()} == {np.dtype(np.float16), np.dtype(np.float32)}
    assert read_segment_vectors(written, segment.name, ["no-such-document"]) == {}


def test_read_segment_vectors_refuses_a_damaged_file_by_name(written: Path) -> None:
    folder = segment_folder(written)
    (folder / "chunks.jsonl").write_text("{not json\n", encoding="utf-8")
    with pytest.raises(IndexCorruptError, match="chunks.jsonl"):
        read_segment_vectors(written, folder.name, ["extra-0"])


def test_a_running_merge_keeps_clean_ups_off_its_files(written: Path) -> None:
    """A merge writes its segment without the writer lock: while it holds the merge
    lock, clean-ups and writes leave unnamed segments and temporary folders alone."""
    in_flight = written / "segments" / "000009-0123456789ab"
    shutil.copytree(segment_folder(written), in_flight)
    tmp_dir = written / ".tmp-merging"
    tmp_dir.mkdir()
    lock = MergeLock(written)
    assert not merge_running(written)
    assert lock.acquire(wait=False)
    try:
        assert merge_running(written)
        assert not MergeLock(written).acquire(wait=False)  # one merge at a time
        assert clean_leftovers(written) == []
        data = load_index(written)
        nxt, _ = build_index([*data.documents.values(), extra_doc(1)], HashingEmbedder(),
                             previous=data)
        write_index(written, nxt)  # a write goes on, and prunes nothing of the merge's
        assert in_flight.is_dir() and tmp_dir.is_dir()
    finally:
        lock.release()
    assert not merge_running(written)
    assert {in_flight, tmp_dir} <= set(clean_leftovers(written))
    assert not in_flight.exists() and not tmp_dir.exists()


def test_leftover_tmp_dir_is_ignored_then_cleaned(written: Path, data: IndexData) -> None:
    leftover = written / ".tmp-crashed"
    (leftover / "postings").mkdir(parents=True)
    (leftover / "chunks.jsonl").write_text("half a line")
    assert load_index(written).version == data.version
    again, _ = build_index(
        [*data.documents.values(), extra_doc(1)], HashingEmbedder(), previous=data
    )
    write_index(written, again)
    assert not leftover.exists()
    assert load_index(written).version == again.version


def test_failed_write_leaves_previous_generation_live(
    written: Path, data: IndexData, monkeypatch: pytest.MonkeyPatch
) -> None:
    import faiss

    before = sorted(p.name for p in (written / "generations").iterdir())
    nxt, _ = build_index([*data.documents.values(), extra_doc(1)], HashingEmbedder(), previous=data)

    def boom(*args: object) -> None:
        raise OSError("88320 requested and 39904 written")  # numpy's short write, no errno

    monkeypatch.setattr(faiss, "write_index", boom)
    with pytest.raises(OSError, match="requested and") as failed:
        write_index(written, nxt)
    # said as what it is, with the folder, so the CLI and the server can name the cause
    assert failed.value.errno == errno.ENOSPC
    assert failed.value.strerror.startswith(os.strerror(errno.ENOSPC))
    assert Path(failed.value.filename).parent == written
    assert current_version(written) == data.version
    assert sorted(p.name for p in (written / "generations").iterdir()) == before
    assert not list(written.glob(".tmp-*"))
    assert_same_index(data, load_index(written))


def test_generation_not_named_in_current_is_ignored(written: Path, data: IndexData) -> None:
    # A crash after the rename but before CURRENT changed: the old generation stays live.
    nxt, _ = build_index([*data.documents.values(), extra_doc(1)], HashingEmbedder(), previous=data)
    write_index(written, nxt)
    (written / "CURRENT").write_text(data.version + "\n")
    assert load_index(written).version == data.version


def test_old_generations_pruned(tmp_path: Path, seed_docs: list[Document]) -> None:
    index_dir = tmp_path / "index"
    embedder = HashingEmbedder()
    previous = None
    versions = []
    for n in range(4):
        current, _ = build_index([*seed_docs, extra_doc(n)], embedder, previous=previous)
        write_index(index_dir, current)
        versions.append(current.version)
        previous = current
    assert KEEP_GENERATIONS == 2
    kept = sorted(p.name for p in (index_dir / "generations").iterdir())
    assert kept == versions[-2:]
    assert current_version(index_dir) == versions[-1]
    assert [v.split("-")[0] for v in versions] == ["000001", "000002", "000003", "000004"]


# -- refusal -------------------------------------------------------------------------------


def test_missing_index(tmp_path: Path) -> None:
    for index_dir in (tmp_path / "nope", tmp_path):
        with pytest.raises(IndexNotFoundError, match=re.escape(f"no index at {index_dir}")) as exc:
            load_index(index_dir)
        assert "citeqa index --index-dir" in str(exc.value)
    assert not (tmp_path / "nope").exists()


def flip_byte(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    "damage, file_name",
    [
        (lambda f: flip_byte(f / "dense.faiss", (f / "dense.faiss").stat().st_size // 2),
         "dense.faiss"),
        (lambda f: flip_byte(f / "sentence_vectors.npy", -1), "sentence_vectors.npy"),
        (lambda f: (f / "chunks.jsonl").write_bytes((f / "chunks.jsonl").read_bytes()[:-40]),
         "chunks.jsonl"),
        (lambda f: (f / "documents.jsonl").write_text(""), "documents.jsonl"),
        (lambda f: (f / "sentences.jsonl").unlink(), "sentences.jsonl"),
        (lambda f: (f / "postings" / "counts.npy").unlink(), "counts.npy"),
        (lambda f: (f / "segment.json").unlink(), "segment.json"),
        (lambda f: (f / "segment.json").write_text("{}"), "segment.json"),
    ],
    ids=["flip-dense", "flip-vectors", "truncate-chunks", "empty-documents", "no-sentences",
         "no-postings-file", "no-segment-meta", "other-segment-meta"],
)
def test_corrupt_segment_files_are_refused_by_name(written: Path, damage, file_name: str) -> None:  # type: ignore[no-untyped-def]
    damage(segment_folder(written))
    with pytest.raises(IndexCorruptError, match=re.escape(file_name)) as exc:
        load_index(written, model=model_info(HashingEmbedder()))
    assert REBUILD in str(exc.value)


@pytest.mark.parametrize(
    "damage",
    [
        lambda f: (f / "manifest.json").unlink(),
        lambda f: (f / "manifest.json").write_text("{not json"),
        lambda f: (f / "manifest.json").write_text("[]"),
    ],
    ids=["no-manifest", "bad-manifest-json", "manifest-not-object"],
)
def test_corrupt_manifests_are_refused_by_name(written: Path, damage) -> None:  # type: ignore[no-untyped-def]
    damage(live_folder(written))
    with pytest.raises(IndexCorruptError, match="manifest.json") as exc:
        load_index(written, model=model_info(HashingEmbedder()))
    assert REBUILD in str(exc.value)


def test_manifest_counts_that_disagree_are_refused(written: Path) -> None:
    path = live_folder(written) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["counts"]["chunks"] += 1
    path.write_text(json.dumps(manifest))
    with pytest.raises(IndexCorruptError, match="disagrees with its manifest"):
        load_index(written)


@pytest.mark.parametrize("change", [
    lambda m: m.update(segments=None),
    lambda m: m["segments"][0].update(name="../outside"),
    lambda m: m["segments"][0].update(deleted=["extra-0"]),
    lambda m: m.update(segments=m["segments"] * 2),
], ids=["no-segments", "bad-segment-name", "counts-disagree", "document-in-two-segments"])
def test_manifest_that_does_not_hold_together_is_refused(written: Path, change) -> None:  # type: ignore[no-untyped-def]
    path = live_folder(written) / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))
    with pytest.raises(IndexCorruptError, match="manifest|segment|inconsistent"):
        load_index(written)


@pytest.mark.parametrize("content", ["garbage\n", "", "\n", "../outside\n", ".tmp-x\n"])
def test_garbage_current_is_refused(written: Path, content: str) -> None:
    (written / "CURRENT").write_text(content)
    with pytest.raises(IndexCorruptError) as exc:
        load_index(written)
    message = str(exc.value)
    assert REBUILD in message
    assert "CURRENT" in message or "garbage" in message


def test_binary_current_is_refused(written: Path) -> None:
    (written / "CURRENT").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(IndexCorruptError, match="CURRENT"):
        load_index(written)


def test_other_model_is_a_mismatch(written: Path) -> None:
    other = model_info(HashingEmbedder(dimension=128, name="other-model"))
    with pytest.raises(IndexMismatchError) as exc:
        load_index(written, model=other)
    message = str(exc.value)
    assert "hashing-test-embedder" in message and "other-model" in message
    assert f"{REBUILD} {written}" in message


def test_other_format_version_is_a_mismatch(written: Path) -> None:
    path = live_folder(written) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    path.write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatchError, match=f"format {FORMAT_VERSION + 1}") as exc:
        load_index(written)
    assert f"{REBUILD} {written}" in str(exc.value)


def test_every_refusal_is_an_index_store_error() -> None:
    for cls in (IndexNotFoundError, IndexMismatchError, IndexCorruptError):
        assert issubclass(cls, IndexStoreError)


def test_format_and_page_starts_round_trip(tmp_path: Path) -> None:
    embedder = HashingEmbedder()
    paged = make_document(
        "Page one says foxes.\n\nPage two says dens.\n", doc_id="paged", format="pdf",
        page_starts=(0, 22),
    )
    plain = make_document("Plain text about voles.", doc_id="plain")
    data, _ = build_index([paged, plain], embedder)
    write_index(tmp_path, data)
    loaded = load_index(tmp_path, model=model_info(embedder))
    assert loaded.documents["paged"].format == "pdf"
    assert loaded.documents["paged"].page_starts == (0, 22)
    assert loaded.documents["plain"].format == "text"
    assert loaded.documents["plain"].page_starts == ()
    rows = [json.loads(line) for line in (segment_folder(tmp_path) / "documents.jsonl").open()]
    # a plain-text row is written as before PDF support, so older citeqa reads it too
    assert set(next(r for r in rows if r["doc_id"] == "plain")) == {
        "doc_id", "title", "source", "text"
    }
    meta = json.loads((segment_folder(tmp_path) / "segment.json").read_text())
    assert {d["doc_id"]: (d["format"], d["pages"]) for d in meta["documents"]} == {
        "paged": ("pdf", 2), "plain": ("text", None)
    }


def _as_format_1(index_dir: Path) -> str:
    """Rewrite a one-segment index as citeqa wrote it before segments (format 1): the
    whole generation in its folder, float32 vectors, bm25s files, no segments/."""
    manifest = read_manifest(index_dir)
    version = manifest["index_version"]
    folder = index_dir / "generations" / version
    segment = index_dir / "segments" / manifest["segments"][0]["name"]
    meta = json.loads((segment / "segment.json").read_text())
    for name in ("documents.jsonl", "chunks.jsonl", "sentences.jsonl", "dense.faiss"):
        shutil.copy(segment / name, folder / name)
    vectors = np.load(segment / "sentence_vectors.npy").astype(np.float32)
    np.save(folder / "sentence_vectors.npy", vectors, allow_pickle=False)
    (folder / "bm25").mkdir()
    (folder / "bm25" / "params.index.json").write_text('{"method": "lucene"}')
    shutil.rmtree(index_dir / "segments")
    files = {
        p.relative_to(folder).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in folder.rglob("*") if p.is_file() and p.name != "manifest.json"
    }
    old = {k: v for k, v in manifest.items() if k != "segments"}
    old.update(format_version=1, files=files, documents=meta["documents"], counts={
        k: v for k, v in manifest["counts"].items() if k != "segments"
    })
    (folder / "manifest.json").write_text(json.dumps(old))
    return version


def test_a_format_1_index_loads_and_its_next_write_makes_it_segments(
    written: Path, data: IndexData
) -> None:
    version = _as_format_1(written)
    loaded = load_index(written, model=model_info(HashingEmbedder()))
    assert loaded.version == version and loaded.chunks == data.chunks
    for query in ("disappeared missing people", "kangaroos"):
        np.testing.assert_allclose(loaded.lexical.scores(query), data.lexical.scores(query),
                                   rtol=1e-6)
    embedder = HashingEmbedder()
    nxt, stats = build_index([*loaded.documents.values(), extra_doc(1)], embedder,
                             previous=loaded)
    assert stats.embedded == embedder.texts_embedded < 10  # the old vectors are kept
    write_index(written, nxt)
    manifest = read_manifest(written)
    assert manifest["format_version"] == FORMAT_VERSION and len(manifest["segments"]) == 2
    assert load_index(written).documents.keys() == {*data.documents, "extra-1"}
    (written / "CURRENT").write_text(version + "\n")  # the format-1 generation stays a fallback
    assert load_index(written).version == version
