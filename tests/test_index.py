"""The in-memory index (citeqa._index): the dense index type follows corpus size; segments,
tombstones and merges never change what the index holds or answers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np
import pytest

from citeqa import Document, Embedder, HashingEmbedder, _index, make_document
from citeqa._index import IndexData

QUESTIONS = Path(__file__).parent / "questions.jsonl"


def _unit(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, 32)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_small_corpora_get_exact_search() -> None:
    index = _index.build_dense(_unit(50, 0))
    assert isinstance(index, faiss.IndexFlatIP) and index.ntotal == 50


def test_large_corpora_get_hnsw_that_keeps_its_settings_on_disk(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(_index, "HNSW_MIN_CHUNKS", 100)
    vectors, queries = _unit(2000, 1), _unit(20, 2)
    index = _index.build_dense(vectors)
    assert isinstance(index, faiss.IndexHNSWFlat) and index.ntotal == 2000
    faiss.write_index(index, str(tmp_path / "dense.faiss"))
    loaded = faiss.read_index(str(tmp_path / "dense.faiss"))
    assert loaded.hnsw.efSearch == _index.HNSW_EF_SEARCH
    assert loaded.hnsw.efConstruction == _index.HNSW_EF_CONSTRUCTION
    flat = faiss.IndexFlatIP(32)
    flat.add(vectors)
    _, exact = flat.search(queries, 10)
    _, got = loaded.search(queries, 10)
    recall = np.mean([len(set(g) & set(e)) / 10 for g, e in zip(got, exact, strict=True)])
    assert recall >= 0.95


# -- segments ---------------------------------------------------------------------------------


def _sections(doc: Document) -> list[Document]:
    """The seed document cut at its headings: documents that share its sentences."""
    from citeqa._segment import segment

    starts = [s.start for s in segment(doc.text) if s.is_heading] + [len(doc.text)]
    return [
        make_document(doc.text[a:b], doc_id=f"section-{i:02d}")
        for i, (a, b) in enumerate(zip(starts, starts[1:], strict=False))
        if doc.text[a:b].strip()
    ]


def _segmented(docs: list[Document], embedder: Embedder) -> tuple[IndexData, list[Document]]:
    """The index of ``docs`` (plus one changed and a few deleted on the way) written in
    about ten segments, with tombstones; and the documents it ends with."""
    seed, *sections = docs
    live = [seed, sections[0]]
    data, _ = _index.build_index(live, embedder, auto_merge=False)
    doomed = [make_document(f"Doomed note {n} on tariffs and fishing quotas.", doc_id=f"doomed-{n}")
              for n in range(3)]
    for n, section in enumerate(sections[1:10]):
        live += [section, *doomed[n : n + 1]]
        data, _ = _index.build_index(live, embedder, previous=data, auto_merge=False)
    live = [d for d in live if not d.doc_id.startswith("doomed")]
    changed = make_document(sections[0].text + "\n\nA sentence added later.",
                            doc_id=sections[0].doc_id)
    live = [changed if d.doc_id == changed.doc_id else d for d in live]
    data, _ = _index.build_index(live, embedder, previous=data, auto_merge=False)
    return data, live


def test_an_index_of_many_segments_equals_one_of_a_single_segment(
    seed_docs: list[Document],
) -> None:
    embedder = HashingEmbedder()
    many, live = _segmented([seed_docs[0], *_sections(seed_docs[0])], embedder)
    one, _ = _index.build_index(live, embedder)
    assert len(many.segments) >= 10 and len(one.segments) == 1
    assert sum(len(ids) for ids in many.deleted.values()) == 4  # 3 deleted, 1 replaced
    # a version's fingerprint names the content, not its segmentation
    assert many.version.split("-")[1] == one.version.split("-")[1]
    assert many.documents == one.documents and many.chunks == one.chunks
    assert many.sentences.doc_ids == one.sentences.doc_ids
    np.testing.assert_array_equal(many.sentences.starts, one.sentences.starts)
    np.testing.assert_array_equal(np.asarray(many.sentences.vectors),
                                  np.asarray(one.sentences.vectors))
    np.testing.assert_array_equal(many.chunk_vectors(), one.chunk_vectors())
    for a, b in zip(many.chunk_sentence_rows, one.chunk_sentence_rows, strict=True):
        np.testing.assert_array_equal(a, b)
    queries = np.stack(embedder.embed(["asylum in Mexico", "Title 42", "fishing quotas"]))
    for got, want in zip(many.dense.search(queries, 20), one.dense.search(queries, 20),
                         strict=True):
        np.testing.assert_array_equal(got, want)
    for query in ("asylum in Mexico", "Title 42 expulsions", "tariffs fishing"):
        np.testing.assert_allclose(many.lexical.scores(query), one.lexical.scores(query),
                                   rtol=1e-6)


def test_the_merge_policy_bounds_the_segments_and_keeps_the_answers(
    seed_docs: list[Document],
) -> None:
    embedder = HashingEmbedder()
    docs = [seed_docs[0], *_sections(seed_docs[0])]
    data = None
    for n in range(1, len(docs) + 1):
        data, _ = _index.build_index(docs[:n], embedder, previous=data)
        assert len(data.segments) < _index.SEGMENTS_PER_TIER + 2
    assert data is not None
    one, _ = _index.build_index(docs, embedder)
    assert data.chunks == one.chunks
    merged = _index.merge(data, [list(data.segments)])
    assert len(merged.segments) == 1 and not merged.deleted and merged.chunks == one.chunks
    np.testing.assert_array_equal(merged.chunk_vectors(), one.chunk_vectors())


def test_a_merge_commits_onto_the_writes_made_while_it_ran(seed_docs: list[Document]) -> None:
    """A merge built from one generation, committed on a later one: a document deleted
    or replaced meanwhile is a tombstone of the merged segment (also when that emptied
    the segment it was merged from, which the write then dropped), and the result
    equals an index of the live documents built in one go."""
    embedder = HashingEmbedder()
    data, live = _segmented([seed_docs[0], *_sections(seed_docs[0])], embedder)
    merges = [_index.merge_group(list(data.segments), data.deleted, "000099-0000000000aa",
                                 data.model, data.params)]
    # live[1] was replaced before the merge read: a tombstone in one source, live in
    # another, so live in the merged segment
    assert any(live[1].doc_id in dead for dead in data.deleted.values())
    gone, changed = live[3], live[2]
    live = [d for d in live if d.doc_id != gone.doc_id]
    live = [make_document(d.text + "\n\nOne more line.", doc_id=d.doc_id)
            if d.doc_id == changed.doc_id else d for d in live]
    live.append(make_document("Kelp forests shelter otters.", doc_id="kelp"))
    later, _ = _index.build_index(live, embedder, previous=data, auto_merge=False)
    assert len(later.segments) < len(data.segments)  # the write dropped an emptied one

    merged = _index.with_merged(later, merges)
    assert [seg.name for seg in merged.segments] == ["000099-0000000000aa",
                                                     later.segments[-1].name]
    assert merged.deleted == {"000099-0000000000aa": frozenset({gone.doc_id, changed.doc_id})}
    one, _ = _index.build_index(live, embedder)
    assert merged.documents == one.documents and merged.chunks == one.chunks
    np.testing.assert_array_equal(merged.chunk_vectors(), one.chunk_vectors())
    for query in ("asylum in Mexico", "kelp otters"):
        np.testing.assert_allclose(merged.lexical.scores(query), one.lexical.scores(query),
                                   rtol=1e-6)

    # Every document deleted meanwhile: the merged segment has nothing live and drops out.
    kelp_only, _ = _index.build_index([make_document("Kelp.", doc_id="kelp")], embedder,
                                      previous=later, auto_merge=False)
    emptied = _index.with_merged(kelp_only, merges)
    assert [s.name for s in emptied.segments] == [s.name for s in kelp_only.segments]
    assert set(emptied.documents) == {"kelp"}


def test_a_mostly_deleted_segment_is_rewritten_without_its_dead(seed_docs: list[Document]) -> None:
    embedder = HashingEmbedder()
    sections = _sections(seed_docs[0])
    first, _ = _index.build_index(sections, embedder, auto_merge=False)
    second, _ = _index.build_index(sections[:2], embedder, previous=first, auto_merge=False)
    assert second.deleted and _index.plan_merges(second) == [list(second.segments)]
    third, _ = _index.build_index(sections[:2], embedder, previous=first)
    assert not third.deleted and {d for s in third.segments for d in s.documents} == {
        d.doc_id for d in sections[:2]
    }


class _OneVectorPerText(Embedder):
    """The model, made to give a text the same vector every time: its output otherwise
    differs in the last bits with the batch a text is embedded in (padding), which no
    index layout should be blamed for."""

    def __init__(self, model: Embedder) -> None:
        self._model = model
        self.name, self.dimension = model.name, model.dimension
        self.max_seq_tokens = model.max_seq_tokens
        self._seen: dict[str, np.ndarray] = {}

    def count_tokens(self, text: str) -> int:
        return self._model.count_tokens(text)

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in self._seen]
        if new:
            self._seen.update(zip(new, self._model.embed_batch(new), strict=True))
        return np.stack([self._seen[t] for t in texts])


@pytest.mark.integration
def test_the_dev_set_gets_the_same_answers_from_one_segment_and_from_ten(
    seed_docs: list[Document], real_embedder: Embedder
) -> None:
    """The issue's contract: segmentation (ten segments, deletions, a replacement) never
    changes an answer. The real model, the learned stage, every dev-set question."""
    from citeqa import Engine

    model = _OneVectorPerText(real_embedder)
    many, live = _segmented([seed_docs[0], *_sections(seed_docs[0])], model)
    one, _ = _index.build_index(live, model)
    assert len(many.segments) >= 10 and many.deleted and len(one.segments) == 1
    a, b = Engine(many, model), Engine(one, model)
    questions = [json.loads(line)["question"] for line in QUESTIONS.open(encoding="utf-8")]
    assert len(questions) >= 80
    for question in questions:
        got, want = a.ask(question).to_dict(), b.ask(question).to_dict()
        assert {**got, "index_version": ""} == {**want, "index_version": ""}, question
