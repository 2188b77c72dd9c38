"""BM25 retrieval over stemmed terms (citeqa._lexical)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from citeqa._lexical import LexicalIndex, terms

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


def test_save_load_round_trip(lexical: LexicalIndex, tmp_path: Path) -> None:
    lexical.save(tmp_path / "bm25")
    assert not list((tmp_path / "bm25").glob("*.pkl"))
    loaded = LexicalIndex.load(tmp_path / "bm25", len(TEXTS))
    for query in ("missing people", "Harris Guatemala", "forensic bodies 37,000", "nothing"):
        np.testing.assert_allclose(loaded.scores(query), lexical.scores(query))
    assert loaded.idf() == pytest.approx(lexical.idf())


QUERIES = ("missing people", "Harris Guatemala", "forensic bodies 37,000", "Mexico Mexico violence")


def test_loaded_scores_match_bm25s(lexical: LexicalIndex, tmp_path: Path) -> None:
    """``load`` reads bm25s's arrays without bm25s; it must score exactly as bm25s does."""
    import bm25s

    lexical.save(tmp_path / "bm25")
    reference = bm25s.BM25.load(str(tmp_path / "bm25"), allow_pickle=False)
    loaded = LexicalIndex.load(tmp_path / "bm25", len(TEXTS))
    for query in QUERIES:
        ids = [reference.vocab_dict[t] for t in terms(query) if t in reference.vocab_dict]
        expected = reference.get_scores_from_ids(ids)
        np.testing.assert_allclose(loaded.scores(query), expected, rtol=1e-6)


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


def test_load_rejects_files_it_cannot_score(lexical: LexicalIndex, tmp_path: Path) -> None:
    folder = tmp_path / "bm25"
    lexical.save(folder)
    params = json.loads((folder / "params.index.json").read_text())
    (folder / "params.index.json").write_text(json.dumps({**params, "method": "bm25+"}))
    with pytest.raises(ValueError, match="not supported"):
        LexicalIndex.load(folder, len(TEXTS))
    (folder / "params.index.json").write_text(json.dumps(params))
    with pytest.raises(ValueError, match="beyond the 3 chunks"):
        LexicalIndex.load(folder, 3)
    np.save(folder / "data.csc.index.npy", np.zeros(1, dtype=np.float32))
    with pytest.raises(ValueError, match="inconsistent lengths"):
        LexicalIndex.load(folder, len(TEXTS))


def test_only_a_built_index_can_be_saved(lexical: LexicalIndex, tmp_path: Path) -> None:
    lexical.save(tmp_path / "a")
    loaded = LexicalIndex.load(tmp_path / "a", len(TEXTS))
    with pytest.raises(ValueError, match="built in this process"):
        loaded.save(tmp_path / "b")
