"""The dense index type follows corpus size (citeqa._index.build_dense)."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from citeqa import _index


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
