"""Recovery in citeqa._store: fallback to the previous complete generation, leftovers."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from citeqa import Document, HashingEmbedder, IndexCorruptError, IndexMismatchError
from citeqa._index import IndexData, build_index, model_info
from citeqa._store import (
    _load_generation,
    clean_leftovers,
    current_version,
    load_index,
    write_index,
    writer_lock,
)

MODEL = model_info(HashingEmbedder())


def extra(n: int) -> Document:
    from citeqa import make_document

    return make_document(f"# Extra {n}\n\nKangaroo number {n} jumps. Wombat {n} digs.",
                         doc_id=f"extra-{n}")


@pytest.fixture(scope="module")
def two_generations(
    tmp_path_factory: pytest.TempPathFactory, seed_docs: list[Document]
) -> tuple[Path, IndexData, IndexData]:
    index_dir = tmp_path_factory.mktemp("two") / "index"
    first, _ = build_index([*seed_docs, extra(0)], HashingEmbedder())
    write_index(index_dir, first)
    second, _ = build_index([*seed_docs, extra(0), extra(1)], HashingEmbedder(), previous=first)
    write_index(index_dir, second)
    return index_dir, first, second


@pytest.fixture
def index(two_generations: tuple[Path, IndexData, IndexData], tmp_path: Path) -> Path:
    target = tmp_path / "index"
    shutil.copytree(two_generations[0], target)
    return target


def flip(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


def cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def own_segment(index: Path, version: str) -> Path:
    """The segment only ``version`` names: the one its write added."""
    manifest = json.loads((index / "generations" / version / "manifest.json").read_text())
    return index / "segments" / manifest["segments"][-1]["name"]


def manifest_of(index: Path, version: str) -> Path:
    return index / "generations" / version


#: damage done to the live generation: (what it does, given the index and the version;
#: the file the error names)
DAMAGE: dict[str, tuple[Callable[[Path, str], None], str]] = {
    "flip-dense": (lambda i, v: flip(own_segment(i, v) / "dense.faiss", -20), "dense.faiss"),
    "cut-dense": (lambda i, v: cut(own_segment(i, v) / "dense.faiss"), "dense.faiss"),
    "flip-vectors": (lambda i, v: flip(own_segment(i, v) / "sentence_vectors.npy", 200),
                     "sentence_vectors.npy"),
    "cut-chunks": (lambda i, v: cut(own_segment(i, v) / "chunks.jsonl"), "chunks.jsonl"),
    "flip-documents": (lambda i, v: flip(own_segment(i, v) / "documents.jsonl", 30),
                       "documents.jsonl"),
    "no-sentences": (lambda i, v: (own_segment(i, v) / "sentences.jsonl").unlink(),
                     "sentences.jsonl"),
    "no-postings-file": (lambda i, v: (own_segment(i, v) / "postings" / "terms.json").unlink(),
                         "terms.json"),
    "no-segment-meta": (lambda i, v: (own_segment(i, v) / "segment.json").unlink(),
                        "segment.json"),
    "no-segment": (lambda i, v: shutil.rmtree(own_segment(i, v)), "segment.json"),
    "no-manifest": (lambda i, v: (manifest_of(i, v) / "manifest.json").unlink(), "manifest.json"),
    "cut-manifest": (lambda i, v: cut(manifest_of(i, v) / "manifest.json"), "manifest.json"),
}


@pytest.mark.parametrize("name", list(DAMAGE))
def test_damaged_live_generation_falls_back_to_the_previous_one(
    index: Path, two_generations: tuple[Path, IndexData, IndexData], name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, first, second = two_generations
    damage, file_name = DAMAGE[name]
    damage(index, second.version)
    with caplog.at_level(logging.WARNING, logger="citeqa"):
        loaded = load_index(index, model=MODEL)
    # The whole previous generation: its documents, and vectors that agree with them.
    assert loaded.version == first.version
    assert loaded.documents == first.documents
    assert loaded.dense.ntotal == len(loaded.chunks) == len(first.chunks)
    assert len(loaded.sentences.vectors) == len(loaded.sentences.doc_ids)
    warning = caplog.text
    assert file_name in warning and second.version in warning and first.version in warning
    assert current_version(index) == second.version  # loading never rewrites CURRENT


@pytest.mark.parametrize("name", ["flip-dense", "cut-chunks", "no-manifest"])
def test_when_no_generation_verifies_the_original_error_is_raised(
    index: Path, two_generations: tuple[Path, IndexData, IndexData], name: str
) -> None:
    _, first, second = two_generations
    damage, file_name = DAMAGE[name]
    damage(index, second.version)
    flip(own_segment(index, first.version) / "chunks.jsonl", 5)  # the segment both name
    with pytest.raises(IndexCorruptError) as live:
        _load_generation(index, second.version, MODEL, {})
    with pytest.raises(IndexCorruptError) as exc:
        load_index(index, model=MODEL)
    assert str(exc.value) == str(live.value)  # the live generation's error, not the fallback's


def test_a_model_mismatch_never_falls_back(index: Path) -> None:
    other = model_info(HashingEmbedder(dimension=64, name="other"))
    with pytest.raises(IndexMismatchError):
        load_index(index, model=other)


def test_a_generation_newer_than_current_is_never_a_fallback(
    index: Path, two_generations: tuple[Path, IndexData, IndexData]
) -> None:
    # A crash after the rename, before CURRENT moved: the new folder was never acknowledged.
    _, first, second = two_generations
    (index / "CURRENT").write_text(first.version + "\n")
    flip(own_segment(index, first.version) / "dense.faiss", -20)
    with pytest.raises(IndexCorruptError, match="dense.faiss"):
        load_index(index, model=MODEL)


def test_manifest_of_another_generation_is_refused(
    index: Path, two_generations: tuple[Path, IndexData, IndexData]
) -> None:
    _, first, second = two_generations
    gens = index / "generations"
    shutil.copy(gens / first.version / "manifest.json", gens / second.version / "manifest.json")
    loaded = load_index(index, model=MODEL)  # second's manifest is wrong: fall back
    assert loaded.version == first.version


def test_leftovers_are_cleaned_on_load_but_not_under_a_writer(
    index: Path, two_generations: tuple[Path, IndexData, IndexData]
) -> None:
    _, first, second = two_generations
    tmp_dir = index / ".tmp-crashed"
    (tmp_dir / "postings").mkdir(parents=True)
    (tmp_dir / "chunks.jsonl").write_text("half a line")
    tmp_file = index / ".CURRENT.tmp-12345"
    tmp_file.write_text("0000")
    orphan = index / "generations" / "000009-abcdef"  # renamed in, CURRENT never moved
    shutil.copytree(index / "generations" / second.version, orphan)
    # a segment a crashed write (or Ray worker) finished, that no manifest names
    orphan_segment = index / "segments" / "000009-0123456789ab"
    shutil.copytree(own_segment(index, second.version), orphan_segment)

    with writer_lock(index):  # a writer at work: its temporary files are not leftovers
        assert clean_leftovers(index) == []
        assert load_index(index).version == second.version
        assert tmp_dir.exists() and tmp_file.exists() and orphan.exists()
        assert orphan_segment.exists()
    assert load_index(index).version == second.version
    assert not tmp_dir.exists() and not tmp_file.exists() and not orphan.exists()
    assert not orphan_segment.exists() and own_segment(index, second.version).exists()
    assert sorted(p.name for p in (index / "generations").iterdir()) == sorted(
        [first.version, second.version]
    )


def test_prune_keeps_the_previous_live_generation_not_an_orphan(
    index: Path, two_generations: tuple[Path, IndexData, IndexData], seed_docs: list[Document]
) -> None:
    _, first, second = two_generations
    orphan = index / "generations" / "000003-ffffffffffff"  # sorts after any real 000003-*
    shutil.copytree(index / "generations" / second.version, orphan)
    third, _ = build_index([*seed_docs, extra(2)], HashingEmbedder(), previous=second)
    # Write without a load in between, so only the writer's prune can remove the orphan.
    write_index(index, third)
    kept = sorted(p.name for p in (index / "generations").iterdir())
    assert kept == sorted([second.version, third.version])
    assert not list(index.glob(".tmp-*"))


def test_a_write_over_a_damaged_generation_keeps_the_intact_one(
    index: Path, two_generations: tuple[Path, IndexData, IndexData],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, first, second = two_generations
    damaged_segment = own_segment(index, second.version)
    flip(damaged_segment / "documents.jsonl", 30)
    base = load_index(index, model=MODEL)  # the fallback, as a writer would load it
    third, _ = build_index([*base.documents.values(), extra(2)], HashingEmbedder(), previous=base)
    with caplog.at_level(logging.WARNING, logger="citeqa"):
        write_index(index, third, base=base.version)
    # The intact generation stays the fallback; the damaged one is set aside, not deleted.
    assert sorted(p.name for p in (index / "generations").iterdir()) == sorted(
        [first.version, third.version]
    )
    assert (index / "damaged" / second.version / "manifest.json").is_file()
    assert (index / "damaged" / "segments" / damaged_segment.name / "documents.jsonl").is_file()
    assert not damaged_segment.exists()
    assert f"moved the damaged generation {second.version}" in caplog.text
    assert load_index(index, model=MODEL).version == third.version


def test_no_segment_is_deleted_while_a_kept_manifest_cannot_be_read(
    index: Path, two_generations: tuple[Path, IndexData, IndexData]
) -> None:
    """A damaged manifest might name any segment: clean-up deletes none then."""
    _, first, second = two_generations
    orphan_segment = index / "segments" / "000009-0123456789ab"
    shutil.copytree(own_segment(index, second.version), orphan_segment)
    cut(index / "generations" / first.version / "manifest.json")
    assert load_index(index).version == second.version
    assert orphan_segment.exists()
