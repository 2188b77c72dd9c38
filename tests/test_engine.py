"""Building, re-indexing, opening, asking and changing documents (citeqa._engine/_index)."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import citeqa._engine
from citeqa import (
    BuildStats,
    Chunker,
    ChunkingParams,
    Document,
    DocumentConflictError,
    DocumentError,
    DocumentNotFoundError,
    Engine,
    HashingEmbedder,
    IndexMismatchError,
    InvalidInputError,
    SummaryParams,
    build_index,
    compact,
    index_corpus,
    make_document,
)
from citeqa._engine import index_is_current
from citeqa._index import SEGMENTS_PER_TIER, IndexData
from citeqa._store import clean_leftovers, current_version, load_index, read_manifest
from citeqa._types import sha256_text

NEW_TEXT = (
    "# Marsupials Report\n\n"
    "Kangaroos hop across the outback at dawn. Wombats dig burrows under eucalyptus trees.\n\n"
    "Koalas sleep for most of the day."
)


def snapshot(index_dir: Path) -> dict[str, int]:
    """Every file under the index with its modification time (ns)."""
    return {
        p.relative_to(index_dir).as_posix(): p.stat().st_mtime_ns
        for p in index_dir.rglob("*")
        if p.is_file() and p.name != ".lock"
    }


def texts_to_embed(doc: Document, embedder: HashingEmbedder) -> set[str]:
    """Distinct texts a build embeds for ``doc``: its chunks and its sentences."""
    chunker = Chunker(
        ChunkingParams(),
        model_tokens=embedder.count_tokens,
        model_max_tokens=embedder.max_seq_tokens,
    )
    chunks = chunker.chunk(doc)
    sentences = {doc.text[s.start : s.end] for c in chunks for s in c.sentences}
    return {c.text for c in chunks} | sentences


# -- index_corpus ----------------------------------------------------------------------------


def test_first_build_embeds_every_distinct_text(seeds_copy: Path, tmp_path: Path) -> None:
    embedder = HashingEmbedder()
    stats = index_corpus([seeds_copy], tmp_path / "index", embedder)
    assert isinstance(stats, BuildStats)
    assert not stats.unchanged and stats.reused == 0
    assert stats.documents == 1 and stats.chunks > 10 and stats.sentences > stats.chunks
    [doc] = load_index(tmp_path / "index").documents.values()
    assert stats.embedded == embedder.texts_embedded == len(texts_to_embed(doc, embedder))


def test_reindex_unchanged_corpus_embeds_and_writes_nothing(
    seeds_copy: Path, tmp_path: Path
) -> None:
    index_dir = tmp_path / "index"
    index_corpus([seeds_copy], index_dir, HashingEmbedder())
    before = snapshot(index_dir)
    current = (index_dir / "CURRENT").read_bytes()

    second = HashingEmbedder()
    stats = index_corpus([seeds_copy], index_dir, second)
    assert stats.unchanged
    assert stats.embedded == 0 and second.texts_embedded == 0 and second.calls == 0
    assert stats.reused > 0
    assert (index_dir / "CURRENT").read_bytes() == current
    assert snapshot(index_dir) == before


def test_adding_a_document_embeds_only_its_texts(seeds_copy: Path, tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    index_corpus([seeds_copy], index_dir, HashingEmbedder())
    old_version = current_version(index_dir)
    (seeds_copy / "marsupials.md").write_text(NEW_TEXT, encoding="utf-8")

    embedder = HashingEmbedder()
    stats = index_corpus([seeds_copy], index_dir, embedder)
    new_doc = make_document(NEW_TEXT, doc_id="marsupials")
    expected = texts_to_embed(new_doc, embedder)
    assert not stats.unchanged
    assert stats.documents == 2
    assert embedder.texts_embedded == stats.embedded == len(expected)
    assert stats.reused > 0
    version = current_version(index_dir)
    assert version != old_version and version.startswith("000002-")
    data = load_index(index_dir)
    assert data.documents["marsupials"].title == "Marsupials Report"
    # Vectors reused from the old index are exactly the vectors a fresh build computes.
    fresh, _ = build_index(list(data.documents.values()), HashingEmbedder())
    assert (data.chunk_vectors() == fresh.chunk_vectors()).all()
    assert (np.asarray(data.sentences.vectors) == np.asarray(fresh.sentences.vectors)).all()


def test_changing_a_document_reembeds_only_changed_text(seeds_copy: Path, tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    (seeds_copy / "marsupials.md").write_text(NEW_TEXT, encoding="utf-8")
    index_corpus([seeds_copy], index_dir, HashingEmbedder())
    changed = NEW_TEXT.replace("Koalas sleep", "Koalas doze")
    (seeds_copy / "marsupials.md").write_text(changed, encoding="utf-8")
    embedder = HashingEmbedder()
    stats = index_corpus([seeds_copy], index_dir, embedder)
    # The changed sentence and the one chunk holding it; nothing of the seed document.
    assert embedder.texts_embedded == 2
    assert stats.embedded == embedder.texts_embedded
    assert "Koalas doze" in load_index(index_dir).documents["marsupials"].text


def test_removing_a_document_from_the_corpus(seeds_copy: Path, tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    (seeds_copy / "marsupials.md").write_text(NEW_TEXT, encoding="utf-8")
    index_corpus([seeds_copy], index_dir, HashingEmbedder())
    (seeds_copy / "marsupials.md").unlink()
    embedder = HashingEmbedder()
    stats = index_corpus([seeds_copy], index_dir, embedder)
    assert embedder.texts_embedded == 0 and not stats.unchanged
    data = load_index(index_dir)
    assert list(data.documents) == ["000_34741492cc8173b1"]
    assert {c.doc_id for c in data.chunks} == {"000_34741492cc8173b1"}


def sentence_texts(data: IndexData, doc: Document) -> list[str]:
    s = data.sentences
    return [doc.text[s.starts[i] : s.ends[i]] for i, d in enumerate(s.doc_ids) if d == doc.doc_id]


def test_other_chunking_params_rebuild_reusing_sentence_vectors(
    seeds_copy: Path, tmp_path: Path
) -> None:
    index_dir = tmp_path / "index"
    index_corpus([seeds_copy], index_dir, HashingEmbedder())
    before = load_index(index_dir)
    embedder = HashingEmbedder()
    stats = index_corpus([seeds_copy], index_dir, embedder, ChunkingParams(max_tokens=64))
    assert not stats.unchanged and stats.embedded > 0
    data = load_index(index_dir)
    assert data.params.max_tokens == 64
    assert max(c.n_tokens for c in data.chunks) <= 64
    # a vector is the model's for a text: the sentences (but those split to fit 64
    # tokens) keep theirs, and the new chunks are most of what is embedded (a chunk
    # takes only a chunk's float32 vector, never a sentence's stored float16 one)
    scratch = HashingEmbedder()
    fresh, _ = build_index(list(data.documents.values()), scratch, ChunkingParams(max_tokens=64))
    assert embedder.texts_embedded == stats.embedded
    old_sentences = {s for d in before.documents.values() for s in sentence_texts(before, d)}
    new_sentences = {s for d in data.documents.values() for s in sentence_texts(data, d)}
    assert len(new_sentences - old_sentences) < 0.2 * len(new_sentences)
    assert stats.embedded <= len({c.text for c in data.chunks} | (new_sentences - old_sentences))
    assert (data.chunk_vectors() == fresh.chunk_vectors()).all()
    assert (np.asarray(data.sentences.vectors) == np.asarray(fresh.sentences.vectors)).all()


def test_other_model_rebuilds_from_scratch(seeds_copy: Path, tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    index_corpus([seeds_copy], index_dir, HashingEmbedder())
    other = HashingEmbedder(dimension=64, name="other")
    stats = index_corpus([seeds_copy], index_dir, other)
    assert not stats.unchanged and stats.reused == 0 and other.texts_embedded == stats.embedded
    assert load_index(index_dir).model["name"] == "other"


def newest_segment(index_dir: Path) -> Path:
    return index_dir / "segments" / read_manifest(index_dir)["segments"][-1]["name"]


def test_corrupt_index_is_rebuilt(seeds_copy: Path, tmp_path: Path) -> None:
    index_dir = tmp_path / "index"
    index_corpus([seeds_copy], index_dir, HashingEmbedder())
    (newest_segment(index_dir) / "dense.faiss").write_bytes(b"garbage")
    embedder = HashingEmbedder()
    stats = index_corpus([seeds_copy], index_dir, embedder)
    assert not stats.unchanged and stats.embedded > 0
    assert load_index(index_dir).chunks


def test_bad_documents_fail_before_anything_is_written(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "good.txt").write_text("Fine text.")
    (corpus / "bad.txt").write_bytes(b"caf\xe9")
    embedder = HashingEmbedder()
    with pytest.raises(DocumentError, match="not UTF-8"):
        index_corpus([corpus], tmp_path / "index", embedder)
    assert not (tmp_path / "index").exists()
    assert embedder.calls == 0


def test_index_is_current_without_a_model(seeds_copy: Path, tmp_path: Path) -> None:
    from citeqa._engine import index_is_current

    index_dir = tmp_path / "index"
    name = HashingEmbedder().name
    assert not index_is_current([seeds_copy], index_dir, name)  # no index yet
    index_corpus([seeds_copy], index_dir, HashingEmbedder())
    assert index_is_current([seeds_copy], index_dir, name)
    assert index_is_current([seeds_copy], index_dir, name, ChunkingParams())
    assert not index_is_current([seeds_copy], index_dir, "other-model")
    assert not index_is_current([seeds_copy], index_dir, name, ChunkingParams(max_tokens=64))
    (seeds_copy / "marsupials.md").write_text(NEW_TEXT, encoding="utf-8")
    assert not index_is_current([seeds_copy], index_dir, name)


# -- Engine.ask validation --------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"question": ""}, "the question is empty"),
        ({"question": "   \n\t"}, "the question is empty"),
        ({"question": "\u200b\ufeff?!"}, "the question has no letters or digits"),
        ({"question": "x" * 2001}, "the question is 2001 characters; the limit is 2000"),
        ({"question": "why\x00"}, "NUL"),
        ({"question": "who is \udcff?"}, "the question is not valid UTF-8 text"),
        ({"top_k": 0}, "top_k must be an integer 1..20, got 0"),
        ({"top_k": 21}, "got 21"),
        ({"top_k": -1}, "got -1"),
        ({"top_k": True}, "got True"),
        ({"top_k": 2.0}, "got 2.0"),
        ({"top_k": "5"}, "got '5'"),
        ({"mode": "fuzzy"}, "mode must be one of hybrid, dense, lexical, got 'fuzzy'"),
        ({"mode": "HYBRID"}, "got 'HYBRID'"),
    ],
)
def test_ask_rejects_bad_input(engine: Engine, kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"question": "migration", "top_k": 5, "mode": "hybrid", **kwargs}
    calls = engine.embedder.calls  # type: ignore[attr-defined]
    with pytest.raises(InvalidInputError, match=re.escape(message)):
        engine.ask(**args)  # type: ignore[arg-type]
    assert engine.embedder.calls == calls  # type: ignore[attr-defined]  # validated before encoding


def test_ask_accepts_limits(engine: Engine) -> None:
    assert engine.ask("x" * 2000, top_k=20).question == "x" * 2000
    assert engine.ask("  migration  ", top_k=1).question == "migration"


# -- Engine: open, documents, changes ---------------------------------------------------------


def test_open_checks_the_model(hashing_index_dir: Path) -> None:
    with pytest.raises(IndexMismatchError, match="rebuild it with"):
        Engine.open(hashing_index_dir, HashingEmbedder(dimension=64))
    engine = Engine.open(hashing_index_dir, HashingEmbedder())
    assert engine.version == current_version(hashing_index_dir)


def test_index_with_another_model_says_it_builds_anew(
    hashing_index_copy: Path, seeds_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="citeqa"):
        stats = index_corpus([seeds_copy], hashing_index_copy, HashingEmbedder(name="other"))
    assert stats.embedded > 0 and stats.reused == 0
    assert "building the index anew" in caplog.text and "other" in caplog.text
    assert "rebuild it with" not in caplog.text  # it is doing just that


def test_index_repairs_a_damaged_generation_even_when_nothing_changed(tmp_path: Path) -> None:
    for name, text in (("a", "Rivers flow. The Nile is long."), ("b", "Owls hunt at night.")):
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.txt").write_text(text)
    index_dir, only_a = tmp_path / "index", [tmp_path / "a"]
    index_corpus(only_a, index_dir, HashingEmbedder())
    first = current_version(index_dir)
    index_corpus([tmp_path / "a", tmp_path / "b"], index_dir, HashingEmbedder())
    damaged = current_version(index_dir)
    documents = newest_segment(index_dir) / "documents.jsonl"  # the one holding b
    documents.write_bytes(documents.read_bytes().replace(b"Owls", b"Bats"))
    name = HashingEmbedder().name
    # The fallback holds what only_a holds, but CURRENT still names the damaged one.
    assert not index_is_current(only_a, index_dir, name)
    stats = index_corpus(only_a, index_dir, HashingEmbedder())
    assert not stats.unchanged
    assert current_version(index_dir) not in (damaged, first)
    assert index_is_current(only_a, index_dir, name)
    assert (index_dir / "damaged" / damaged).is_dir()


def test_open_reads_calibration(hashing_index_copy: Path) -> None:
    (hashing_index_copy / "calibration.json").write_text(json.dumps({"abstain_threshold": -50}))
    engine = Engine.open(hashing_index_copy, HashingEmbedder())
    assert engine.summary.abstain_threshold == -50
    assert not engine.ask("What is the capital of Australia?").abstained


def test_open_ignores_a_calibration_chosen_for_another_model(
    hashing_index_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = hashing_index_copy / "calibration.json"
    path.write_text(json.dumps({"abstain_threshold": -50, "model": "another-model"}))
    with caplog.at_level(logging.WARNING, logger="citeqa"):
        engine = Engine.open(hashing_index_copy, HashingEmbedder())
    assert engine.summary.abstain_threshold == SummaryParams().abstain_threshold
    assert "chosen for model another-model" in caplog.text
    path.write_text(json.dumps({"abstain_threshold": -50, "model": engine.index.model["name"]}))
    assert Engine.open(hashing_index_copy, HashingEmbedder()).summary.abstain_threshold == -50


@pytest.mark.parametrize(
    "text", ["{}", "[]", '{"abstain_threshold": NaN}', '{"abstain_threshold": Infinity}',
             '{"abstain_threshold": true}', '{"abstain_threshold": "high"}']
)
def test_open_refuses_unreadable_calibration(hashing_index_copy: Path, text: str) -> None:
    # NaN would never abstain and Infinity always: neither is a threshold
    (hashing_index_copy / "calibration.json").write_text(text)
    with pytest.raises(InvalidInputError, match="calibration.json is unreadable"):
        Engine.open(hashing_index_copy, HashingEmbedder())


def test_documents_and_lookup(engine: Engine) -> None:
    [doc] = engine.documents()
    assert engine.document(doc.doc_id) is doc
    assert engine.chunk_counts() == {doc.doc_id: len(engine.index.chunks)}
    with pytest.raises(DocumentNotFoundError, match="no document with id 'nope'") as exc:
        engine.document("nope")
    assert str(exc.value) == "no document with id 'nope'"


def test_add_document_embeds_only_it_and_answers_from_it(
    engine: Engine, embedder: HashingEmbedder, check_answer  # type: ignore[no-untyped-def]
) -> None:
    old_version = engine.version
    doc = make_document(NEW_TEXT, doc_id="marsupials")
    stats = engine.add_documents([doc])
    assert embedder.texts_embedded == stats.embedded == len(texts_to_embed(doc, embedder))
    assert engine.version != old_version
    answer = engine.ask("Where do wombats dig burrows?")
    check_answer(answer, engine.index.documents)
    assert not answer.abstained
    assert answer.sentences[0].doc_id == "marsupials"
    assert "Wombats dig burrows" in answer.answer


def test_adding_the_same_document_again_writes_nothing(hashing_index_copy: Path) -> None:
    engine = Engine.open(hashing_index_copy, HashingEmbedder())
    doc = make_document(NEW_TEXT, doc_id="marsupials")
    assert not engine.add_documents([doc]).unchanged
    version = engine.version
    files = sorted(p.name for p in hashing_index_copy.iterdir())
    again = engine.add_documents([make_document(NEW_TEXT, doc_id="marsupials")])
    assert again.unchanged and again.embedded == 0
    assert engine.version == version == current_version(hashing_index_copy)
    assert sorted(p.name for p in hashing_index_copy.iterdir()) == files
    changed = engine.add_documents([make_document(NEW_TEXT + " More.", doc_id="marsupials")])
    assert not changed.unchanged and engine.version != version


def test_add_existing_without_replace_is_refused(engine: Engine) -> None:
    [doc] = engine.documents()
    with pytest.raises(DocumentError, match="already exists"):
        engine.add_documents([doc], replace=False)


def test_same_source_replaces_only_a_document_from_that_source(engine: Engine) -> None:
    engine.add_documents([make_document(NEW_TEXT, doc_id="report", source="upload:a b.txt")])
    other = make_document("Echidnas lay eggs.", doc_id="report", source="upload:a_b.txt")
    with pytest.raises(DocumentConflictError, match="another source.*'upload:a b.txt'"):
        engine.add_documents([other], same_source=True)
    assert engine.document("report").text == NEW_TEXT
    same = make_document("Platypuses lay eggs.", doc_id="report", source="upload:a b.txt")
    engine.add_documents([same], same_source=True)
    assert engine.document("report").text == "Platypuses lay eggs."
    engine.add_documents([other])  # without same_source, an id is replaced whatever its source
    assert engine.document("report").source == "upload:a_b.txt"


def test_replace_document(engine: Engine, embedder: HashingEmbedder) -> None:
    engine.add_documents([make_document(NEW_TEXT, doc_id="marsupials")])
    embedder.texts_embedded = 0
    engine.add_documents([make_document("Platypuses lay eggs.", doc_id="marsupials")])
    assert engine.document("marsupials").text == "Platypuses lay eggs."
    assert embedder.texts_embedded == 1  # one sentence, which is also the whole chunk
    assert not any("Wombats" in c.text for c in engine.index.chunks)


def test_delete_document(engine: Engine, embedder: HashingEmbedder) -> None:
    engine.add_documents([make_document(NEW_TEXT, doc_id="marsupials")])
    embedder.texts_embedded = 0
    engine.delete_document("marsupials")
    assert embedder.texts_embedded == 0
    assert "marsupials" not in engine.index.documents
    assert all(c.doc_id != "marsupials" for c in engine.index.chunks)
    assert "marsupials" not in engine.index.sentences.doc_ids
    answer = engine.ask("Where do wombats dig burrows?", top_k=20)
    assert all(c.doc_id != "marsupials" for c in answer.citations)
    with pytest.raises(DocumentNotFoundError):
        engine.delete_document("marsupials")
    with pytest.raises(InvalidInputError, match="invalid doc_id"):
        engine.delete_document("../etc")


def test_changes_are_persisted(hashing_index_copy: Path) -> None:
    engine = Engine.open(hashing_index_copy, HashingEmbedder())
    engine.add_documents([make_document(NEW_TEXT, doc_id="marsupials")])
    assert current_version(hashing_index_copy) == engine.version
    reopened = Engine.open(hashing_index_copy, HashingEmbedder())
    assert reopened.document("marsupials").title == "Marsupials Report"
    reopened.delete_document("marsupials")
    assert "marsupials" not in load_index(hashing_index_copy).documents
    assert len(list((hashing_index_copy / "generations").iterdir())) == 2


def test_a_write_builds_on_what_another_writer_persisted(hashing_index_copy: Path) -> None:
    """Two writers on one folder (a server and ``citeqa index``, or two servers):
    the second change must not silently drop the first."""
    server = Engine.open(hashing_index_copy, HashingEmbedder())
    other = Engine.open(hashing_index_copy, HashingEmbedder())
    other.add_documents([make_document(NEW_TEXT, doc_id="marsupials")])
    server.add_documents([make_document("Platypus notes. They lay eggs.", doc_id="monotremes")])
    on_disk = load_index(hashing_index_copy).documents
    assert {"marsupials", "monotremes"} <= set(on_disk)
    assert server.version == current_version(hashing_index_copy)
    assert "marsupials" in server.index.documents


def test_refresh_serves_what_another_writer_persisted(hashing_index_copy: Path) -> None:
    server = Engine.open(hashing_index_copy, HashingEmbedder())
    old = server.version
    assert server.refresh() is False  # nothing changed
    other = Engine.open(hashing_index_copy, HashingEmbedder())
    other.add_documents([make_document(NEW_TEXT, doc_id="marsupials")])
    assert server.version == old  # until it looks
    assert server.refresh() is True
    assert server.version == other.version == current_version(hashing_index_copy)
    assert "marsupials" in server.index.documents
    assert server.ask("Where do wombats dig burrows?").citations[0].doc_id == "marsupials"
    assert server.refresh() is False


def test_refresh_reads_a_new_calibration(hashing_index_copy: Path) -> None:
    engine = Engine.open(hashing_index_copy, HashingEmbedder())
    question = "What is the capital of Australia?"
    assert engine.ask(question).abstained
    (hashing_index_copy / "calibration.json").write_text(json.dumps({"abstain_threshold": -50}))
    assert engine.refresh() is True
    assert engine.summary.abstain_threshold == -50
    assert not engine.ask(question).abstained
    assert engine.refresh() is False


def test_refresh_keeps_serving_when_the_new_generation_cannot_be_loaded(
    hashing_index_copy: Path, seeds_copy: Path
) -> None:
    engine = Engine.open(hashing_index_copy, HashingEmbedder())
    version = engine.version
    # Another model's index replaces ours: this engine cannot serve it.
    index_corpus([seeds_copy], hashing_index_copy, HashingEmbedder(name="another-model"))
    with pytest.raises(IndexMismatchError):
        engine.refresh()
    assert engine.refresh() is False  # tried once, until CURRENT changes again
    assert engine.version == version
    assert engine.ask("migration").index_version == version


def test_an_unreadable_calibration_fails_refresh_once_but_not_writes(
    hashing_index_copy: Path,
) -> None:
    engine = Engine.open(hashing_index_copy, HashingEmbedder())
    threshold = engine.summary.abstain_threshold
    (hashing_index_copy / "calibration.json").write_text("{}")
    with pytest.raises(InvalidInputError, match="calibration.json is unreadable"):
        engine.refresh()
    assert engine.refresh() is False
    assert engine.summary.abstain_threshold == threshold
    engine.add_documents([make_document(NEW_TEXT, doc_id="marsupials")])  # writes still work
    assert current_version(hashing_index_copy) == engine.version


def test_refresh_without_an_index_dir_does_nothing(engine: Engine) -> None:
    assert engine.index_dir is None
    assert engine.refresh() is False


def test_in_memory_engine_does_not_write(engine: Engine, hashing_index_dir: Path) -> None:
    before = snapshot(hashing_index_dir)
    engine.add_documents([make_document(NEW_TEXT, doc_id="marsupials")])
    assert snapshot(hashing_index_dir) == before


def test_failed_change_keeps_serving_the_old_generation(engine: Engine) -> None:
    version = engine.version
    with pytest.raises(DocumentNotFoundError):
        engine.delete_document("nope")
    assert engine.version == version
    assert engine.ask("migration").index_version == version


def test_deleting_the_last_document_is_refused(engine: Engine, embedder: HashingEmbedder) -> None:
    [doc] = engine.documents()
    version = engine.version
    with pytest.raises(DocumentConflictError, match=f"{doc.doc_id!r} is the last document"):
        engine.delete_document(doc.doc_id)
    assert engine.version == version and engine.document(doc.doc_id) is doc
    assert embedder.calls == 0


def test_build_index_rejects_duplicate_ids(embedder: HashingEmbedder) -> None:
    doc = make_document("Same id.", doc_id="same")
    with pytest.raises(DocumentError, match="two documents share the id 'same'"):
        build_index([doc, doc], embedder)


def test_vector_cache_is_keyed_by_text(engine: Engine) -> None:
    cache = engine.index.vector_cache()
    for chunk, vector in zip(engine.index.chunks, engine.index.chunk_vectors(), strict=True):
        assert (cache[sha256_text(chunk.text)] == vector).all()
    assert len(cache) >= len({c.text for c in engine.index.chunks})


def _small_doc(n: int) -> Document:
    return make_document(f"Note {n} on reef fish. Parrotfish graze algae {n} times a day.",
                         doc_id=f"note-{n}")


def _pause_merges(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Make a merge stop once its segment is written, until ``go`` is set."""
    written, go = threading.Event(), threading.Event()
    write = citeqa._engine.write_segment

    def write_then_wait(index_dir: Path, segment: Any) -> Any:
        entry = write(index_dir, segment)
        written.set()
        assert go.wait(60)
        return entry

    monkeypatch.setattr(citeqa._engine, "write_segment", write_then_wait)
    return written, go


def test_writes_go_on_while_compact_merges(
    hashing_index_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A merge holds the writer lock only to read and to commit: a write made while it
    builds goes through at once, and the merge commits on top of it."""
    engine = Engine.open(hashing_index_copy, HashingEmbedder())
    for n in range(4):
        engine.add_documents([_small_doc(n)])
    written, go = _pause_merges(monkeypatch)
    result: dict[str, Any] = {}
    merger = threading.Thread(target=lambda: result.update(stats=compact(hashing_index_copy)))
    merger.start()
    try:
        assert written.wait(60)
        engine.delete_document("note-1")  # in a segment being merged
        engine.add_documents([_small_doc(9), make_document("Reef notes, revised.",
                                                           doc_id="note-2")])
        assert clean_leftovers(hashing_index_copy) == []  # the merge's segment stays
    finally:
        go.set()
        merger.join(60)
    stats = result["stats"]
    # 5 segments merged into 1; the writes meanwhile emptied 2 of them and added 1
    assert stats.segments_before == 4 and stats.segments_after == 2
    assert engine.refresh()
    on_disk = load_index(hashing_index_copy)
    assert set(on_disk.documents) == set(engine.index.documents)
    assert {"note-0", "note-2", "note-3", "note-9"} <= set(on_disk.documents)
    assert "note-1" not in on_disk.documents
    assert on_disk.documents["note-2"].text == "Reef notes, revised."
    one, _ = build_index(list(on_disk.documents.values()), HashingEmbedder())
    assert on_disk.chunks == one.chunks
    left = {p.name for p in (hashing_index_copy / "segments").iterdir()}
    named = {e["name"] for v in os.listdir(hashing_index_copy / "generations")
             for e in read_manifest(hashing_index_copy, v)["segments"]}
    assert left == named  # nothing orphaned once the merge is in


def test_a_server_write_leaves_its_merges_to_a_background_thread(
    hashing_index_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = Engine.open(hashing_index_copy, HashingEmbedder())
    written, go = _pause_merges(monkeypatch)
    try:
        for n in range(SEGMENTS_PER_TIER + 1):
            engine.add_documents([_small_doc(n)])  # returns while the merge waits
        assert written.wait(60)
        assert len(read_manifest(hashing_index_copy)["segments"]) > SEGMENTS_PER_TIER
        assert engine.version == current_version(hashing_index_copy)
    finally:
        go.set()
    assert engine.wait_for_merges(60)
    assert engine.version == current_version(hashing_index_copy)
    assert len(engine.index.segments) <= 3
    assert len(read_manifest(hashing_index_copy)["segments"]) == len(engine.index.segments)
    one, _ = build_index(list(engine.index.documents.values()), HashingEmbedder())
    assert len(engine.index.documents) == len(one.documents) == 1 + SEGMENTS_PER_TIER + 1
    assert engine.index.chunks == one.chunks
    question = "How often do parrotfish graze algae?"
    fresh = Engine(one, HashingEmbedder(), selector=engine.selector)
    assert engine.ask(question).answer == fresh.ask(question).answer


def test_lock_file_is_the_only_extra(hashing_index_dir: Path) -> None:
    names = sorted(os.listdir(hashing_index_dir))
    assert names == [".lock", "CURRENT", "generations", "segments"]


# -- scoping and pages --------------------------------------------------------------------------

FOXES = "Foxes hunt voles at night. " * 3 + "\n\nA fox den has many entrances."
VOLES = "Voles are eaten by foxes and owls. Voles dig tunnels under the snow."


def _scoped_engine() -> Engine:
    docs = [
        make_document(FOXES, doc_id="foxes"),
        make_document(VOLES, doc_id="voles"),
        make_document(
            "Page one: foxes eat voles.\n\nPage two: owls eat voles too.\n",
            doc_id="paged", format="pdf", page_starts=(0, 28),
        ),
    ]
    embedder = HashingEmbedder()
    data, _ = build_index(docs, embedder, ChunkingParams(max_tokens=16, overlap_sentences=0))
    return Engine(data, embedder)


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
def test_scoped_question_cites_only_its_documents(mode: str) -> None:
    engine = _scoped_engine()
    everything = engine.ask("Do foxes hunt voles?", top_k=2, mode=mode)  # type: ignore[arg-type]
    assert any(c.doc_id != "voles" for c in everything.citations)
    scoped = engine.ask("Do foxes hunt voles?", top_k=2, mode=mode, doc_ids=["voles"])  # type: ignore[arg-type]
    # restricted before the top-k: filtering the top 2 afterwards would leave fewer
    assert len(engine.index.chunk_rows(["voles"])) >= 2
    assert [c.doc_id for c in scoped.citations] == ["voles", "voles"]
    assert all(s.doc_id == "voles" for s in scoped.sentences)


def test_scope_to_unknown_documents_is_refused() -> None:
    engine = _scoped_engine()
    with pytest.raises(DocumentNotFoundError, match="no document with id 'owls'"):
        engine.ask("Do foxes hunt voles?", doc_ids=["voles", "owls"])
    with pytest.raises(InvalidInputError, match="non-empty list"):
        engine.ask("Do foxes hunt voles?", doc_ids=[])


def test_citations_and_sentences_carry_their_page() -> None:
    engine = _scoped_engine()
    answer = engine.ask("What do owls eat?", top_k=5, doc_ids=["paged", "voles"])
    paged = [c for c in answer.citations if c.doc_id == "paged"]
    assert paged
    doc = engine.document("paged")
    for c in answer.citations:
        assert c.page == (doc.page_of(c.start) if c.doc_id == "paged" else None)
    for s in answer.sentences:
        assert s.page == (doc.page_of(s.start) if s.doc_id == "paged" else None)
    assert 2 in {s.page for s in answer.sentences}  # "Page two: owls eat voles too."
    assert answer.to_dict()["citations"][0]["page"] == answer.citations[0].page
