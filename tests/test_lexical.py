"""BM25 retrieval over stemmed terms (citeqa._lexical)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from citeqa._lexical import LexicalIndex, Postings, terms

TEXTS = [
    "The Mexican government recognizes over 88,700 disappeared and missing people.",
    "Vice President Harris visited Guatemala and Mexico in June.",
    "Migrants leave their home countries because of violence and poverty.",
    "The forensic crisis in Mexico includes roughly 37,000 unidentified bodies.",
    "",
]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Migrants are migrating", ["migrant", "migrat"]),
        ("How many people does the government recognize?", ["peopl", "govern", "recogn"]),
        ("88,700 people; 4.5 percent in 2021.", ["88700", "peopl", "4.5", "percent", "2021"]),
        ("Mexico’s and Harris's plans", ["mexico", "harri", "plan"]),
        ("a I x 7", ["7"]),
        ("", []),
    ],
)
def test_terms(text: str, expected: list[str]) -> None:
    assert terms(text) == expected


def test_question_words_are_not_terms() -> None:
    assert terms("What, which, who, when, where, why, how much, according to") == []


@pytest.fixture(scope="module")
def lexical() -> LexicalIndex:
    return LexicalIndex.build(TEXTS)


def test_best_match_ranks_first(lexical: LexicalIndex) -> None:
    scores = lexical.scores("How many missing people does the Mexican government recognize?")
    assert scores.shape == (len(TEXTS),)
    assert int(np.argmax(scores)) == 0
    assert scores[4] == 0.0  # the empty text matches nothing


def test_numbers_match_with_or_without_separators(lexical: LexicalIndex) -> None:
    for query in ("88,700", "88700"):
        scores = lexical.scores(query)
        assert int(np.argmax(scores)) == 0 and scores[0] > 0
        assert np.count_nonzero(scores) == 1


def test_unknown_or_stopword_query_scores_zero(lexical: LexicalIndex) -> None:
    for query in ("kangaroo platypus", "the and of", "", "?!"):
        scores = lexical.scores(query)
        assert scores.dtype == np.float32
        assert not scores.any()


def test_texts_with_all_terms(lexical: LexicalIndex) -> None:
    for words in (["mexico"], ["mexico", "crisis"], ["harris", "guatemala", "visited"]):
        found = lexical.texts_with([terms(w)[0] for w in words])
        scores = [lexical.scores(w) for w in words]
        expected = [i for i in range(lexical.n_docs) if all(s[i] > 0 for s in scores)]
        assert found.tolist() == expected and expected
    assert lexical.texts_with(["mexico", "narnia"]).tolist() == []
    assert lexical.texts_with([]).tolist() == []


def test_idf_prefers_rare_terms(lexical: LexicalIndex) -> None:
    idf = lexical.idf()
    assert idf[terms("Mexico")[0]] < idf[terms("forensic")[0]]
    assert all(value > 0 for value in idf.values())


QUERIES = ("missing people", "Harris Guatemala", "forensic bodies 37,000", "Mexico Mexico violence")


def test_postings_round_trip(tmp_path: Path) -> None:
    postings = Postings.build(TEXTS)
    postings.save(tmp_path / "postings")
    loaded = Postings.load(tmp_path / "postings", len(TEXTS))
    assert loaded.terms == postings.terms
    for name in ("indptr", "texts", "counts", "lengths"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(postings, name))
    assert not [p for p in (tmp_path / "postings").iterdir() if p.suffix in (".pkl", ".pickle")]


def test_scores_match_bm25s(lexical: LexicalIndex) -> None:
    """Lucene's BM25 as bm25s computes it, from term counts alone."""
    import bm25s

    reference = bm25s.BM25()
    reference.index([terms(t) or ["\x00empty"] for t in TEXTS], show_progress=False)
    for query in QUERIES:
        ids = [reference.vocab_dict[t] for t in terms(query) if t in reference.vocab_dict]
        expected = reference.get_scores_from_ids(ids)
        np.testing.assert_allclose(lexical.scores(query), expected, rtol=1e-5)


@pytest.mark.parametrize("seed", range(5))
def test_split_postings_score_as_one_index_of_the_live_texts(seed: int) -> None:
    """However the texts are split into parts, and whichever are deleted, BM25 uses the
    statistics of the live texts: the scores of one index built from those alone."""
    rng = np.random.default_rng(seed)
    texts = [*TEXTS, *(f"{a} {b}" for a, b in zip(TEXTS, reversed(TEXTS), strict=True))]
    cuts = sorted(rng.choice(np.arange(1, len(texts)), size=2, replace=False).tolist())
    alive = rng.random(len(texts)) > 0.3
    live_rows = np.cumsum(alive) - 1
    parts = []
    for lo, hi in zip([0, *cuts], [*cuts, len(texts)], strict=True):
        rows = np.where(alive[lo:hi], live_rows[lo:hi], -1)
        parts.append((Postings.build(texts[lo:hi]), rows))
    whole = LexicalIndex.from_postings(parts, int(alive.sum()))
    alone = LexicalIndex.build([t for t, a in zip(texts, alive, strict=True) if a])
    for query in (*QUERIES, "Guatemala"):
        np.testing.assert_allclose(whole.scores(query), alone.scores(query), rtol=1e-6)
    assert whole.idf() == pytest.approx(alone.idf())


def test_the_query_path_does_not_import_bm25s(hashing_index_dir: Path) -> None:
    """bm25s pulls in numba and scipy (0.4 s and 40 MB or more): only building needs it."""
    code = (
        "import json, sys\n"
        "from citeqa._store import load_index\n"
        f"index = load_index({str(hashing_index_dir)!r})\n"
        "index.lexical.scores('Harris visited Guatemala')\n"
        "print(json.dumps([m for m in ('bm25s', 'numba', 'scipy') if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_postings_load_rejects_files_that_do_not_hold_together(tmp_path: Path) -> None:
    folder = tmp_path / "postings"
    Postings.build(TEXTS).save(folder)
    with pytest.raises(ValueError, match="inconsistent lengths"):
        Postings.load(folder, 3)
    np.save(folder / "texts.npy", np.full(len(np.load(folder / "texts.npy")), 99, np.int32))
    with pytest.raises(ValueError, match="beyond the"):
        Postings.load(folder, len(TEXTS))
    np.save(folder / "counts.npy", np.zeros(1, dtype=np.int32))
    with pytest.raises(ValueError, match="inconsistent lengths"):
        Postings.load(folder, len(TEXTS))
