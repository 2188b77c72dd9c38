"""Shared fixtures.

Unit tests use ``HashingEmbedder`` (deterministic, no model); tests marked
``integration`` share one ``SentenceTransformerEmbedder`` and one real index of
``seeds/`` for the whole session.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from citeqa import (
    Answer,
    Document,
    Engine,
    HashingEmbedder,
    index_corpus,
    load_documents,
)
from citeqa._store import load_index

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO / "seeds"
SEED_DOC_ID = "000_34741492cc8173b1"
SEED_TITLE = "Central America Trips Shed Light on Biden Administration’s Migration Agenda"
CITEQA_BIN = Path(sys.executable).with_name("citeqa")

# Questions whose answers are in the seed document, plus some it does not answer.
SEED_QUESTIONS = [
    "How many disappeared and missing people does the Mexican government recognize?",
    "On which dates did Vice President Kamala Harris visit Guatemala and Mexico?",
    "Who is the USAID chief who traveled to Central America?",
    "When did Alejandro Mayorkas visit Mexico?",
    "Where did Antony Blinken meet his counterparts?",
    "What is the Biden administration's long-term goal for Central America?",
    "How many unidentified bodies are there in Mexico?",
    "What should the U.S. do about asylum in Mexico?",
    "Why do migrants leave their home countries?",
    "anti-corruption task force",
    "What is the capital of Australia?",
    "Who won the 1998 football World Cup?",
    "migration",
]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reaches for the network or a user's configuration."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    for name in list(os.environ):
        if name.startswith("CITEQA_"):
            monkeypatch.delenv(name)


@pytest.fixture
def embedder() -> HashingEmbedder:
    """A fresh fake embedder, so its counters start at zero."""
    return HashingEmbedder()


@pytest.fixture
def seeds_copy(tmp_path: Path) -> Path:
    """A private copy of seeds/ that a test may change."""
    target = tmp_path / "seeds"
    shutil.copytree(SEEDS, target)
    return target


@pytest.fixture(scope="session")
def seed_docs() -> list[Document]:
    return load_documents([SEEDS])


@pytest.fixture(scope="session")
def hashing_index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of a copy of seeds/ built with HashingEmbedder. Treat it as read-only."""
    root = tmp_path_factory.mktemp("hashing-index")
    corpus = root / "seeds"
    shutil.copytree(SEEDS, corpus)
    index_corpus([corpus], root / "index", HashingEmbedder())
    return root / "index"


@pytest.fixture
def hashing_index_copy(hashing_index_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the small index that a test may damage."""
    target = tmp_path / "index"
    shutil.copytree(hashing_index_dir, target)
    return target


@pytest.fixture
def engine(hashing_index_dir: Path, embedder: HashingEmbedder) -> Engine:
    """An in-memory engine over the small index (changes are not persisted)."""
    data = load_index(hashing_index_dir, model=None)
    return Engine(data, embedder)


@pytest.fixture(scope="session")
def real_embedder():  # type: ignore[no-untyped-def]
    from citeqa import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder()


@pytest.fixture(scope="session")
def real_index(tmp_path_factory: pytest.TempPathFactory, real_embedder) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """seeds/ indexed with the bundled model; returns the corpus folder's parent.

    ``<root>/seeds`` is the corpus and ``<root>/index`` the index. Read-only.
    """
    root = tmp_path_factory.mktemp("real-index")
    shutil.copytree(SEEDS, root / "seeds")
    stats = index_corpus([root / "seeds"], root / "index", real_embedder)
    assert stats.embedded > 0 and not stats.unchanged
    yield root


@pytest.fixture(scope="session")
def real_engine(real_index: Path, real_embedder) -> Engine:  # type: ignore[no-untyped-def]
    return Engine.open(real_index / "index", real_embedder)


def _check_answer(
    answer: Answer, documents: dict[str, Document], *, max_sentences: int = 3
) -> None:
    """Every invariant of the Answer contract."""
    assert isinstance(answer.index_version, str) and answer.index_version
    ids = [c.id for c in answer.citations]
    assert ids == list(range(1, len(ids) + 1))
    scores = [c.score for c in answer.citations]
    assert scores == sorted(scores, reverse=True), "citations are not best first"
    by_id = {c.id: c for c in answer.citations}
    for c in answer.citations:
        doc = documents[c.doc_id]
        assert doc.text[c.start : c.end] == c.text
        assert c.title == doc.title
        assert c.retrievers and set(c.retrievers) <= {"dense", "lexical"}
        assert all(rank >= 1 for rank in c.retrievers.values())
    if answer.abstained:
        assert answer.sentences == []
        assert "do not answer" in answer.answer
        return
    assert 1 <= len(answer.sentences) <= max_sentences
    pos = 0
    for s in answer.sentences:
        doc = documents[s.doc_id]
        assert doc.text[s.start : s.end] == s.text
        assert s.text == s.text.strip() and s.text
        assert s.citation in by_id
        cited = by_id[s.citation]
        assert cited.doc_id == s.doc_id
        assert cited.start <= s.start and s.end <= cited.end
        marker = f"{s.text} [{s.citation}]"
        found = answer.answer.find(marker, pos)
        assert found >= 0, f"{marker!r} missing from {answer.answer!r}"
        pos = found + len(marker)


CheckAnswer = Callable[..., None]


@pytest.fixture
def check_answer() -> CheckAnswer:
    """``check_answer(answer, documents)`` asserts every invariant of the Answer contract."""
    return _check_answer


@pytest.fixture
def seed_questions() -> list[str]:
    return list(SEED_QUESTIONS)
