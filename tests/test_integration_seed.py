"""End to end on seeds/ with the bundled all-MiniLM-L6-v2 model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from citeqa import (
    Chunker,
    ChunkingParams,
    Engine,
    IndexCorruptError,
    IndexMismatchError,
    index_corpus,
)
from citeqa._store import current_version, read_manifest
from citeqa._tokens import count_tokens

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CITEQA = Path(sys.executable).with_name("citeqa")
MISSING = "How many disappeared and missing people does the Mexican government recognize?"
SEED_TITLE = "Central America Trips Shed Light on Biden Administration’s Migration Agenda"


def test_model_and_index_setup(real_embedder, real_engine: Engine) -> None:  # type: ignore[no-untyped-def]
    assert real_embedder.name == "sentence-transformers/all-MiniLM-L6-v2"
    assert real_embedder.dimension == 384
    assert real_embedder.max_seq_tokens is not None
    [doc] = real_engine.documents()
    assert doc.title == SEED_TITLE
    for chunk in real_engine.index.chunks:
        assert doc.text[chunk.start : chunk.end] == chunk.text
        assert count_tokens(chunk.text) <= 200
        assert real_embedder.count_tokens(chunk.text) <= real_embedder.max_seq_tokens


def test_chunks_fit_the_real_tokenizer_on_long_text(real_embedder) -> None:  # type: ignore[no-untyped-def]
    from citeqa import make_document

    words = ["anticonstitutionnellement", "Zürich", "🙂", "88,700", "rights-respecting"]
    doc = make_document(" ".join(words[i % 5] for i in range(3000)) + ".", doc_id="long")
    chunker = Chunker(
        ChunkingParams(max_tokens=400),
        model_tokens=real_embedder.count_tokens,
        model_max_tokens=real_embedder.max_seq_tokens,
    )
    for chunk in chunker.chunk(doc):
        assert real_embedder.count_tokens(chunk.text) <= real_embedder.max_seq_tokens
        assert count_tokens(chunk.text) <= 400


def test_missing_people_question_answers_88700(real_engine: Engine, check_answer) -> None:  # type: ignore[no-untyped-def]
    answer = real_engine.ask(MISSING)
    check_answer(answer, real_engine.index.documents)
    assert not answer.abstained
    assert "88,700" in answer.answer
    cited = [s for s in answer.sentences if "88,700" in s.text]
    assert cited
    doc = real_engine.document(cited[0].doc_id)
    assert doc.text[cited[0].start : cited[0].end] == cited[0].text


def test_unanswerable_question_abstains(real_engine: Engine, check_answer) -> None:  # type: ignore[no-untyped-def]
    answer = real_engine.ask("What is the capital of Australia?")
    check_answer(answer, real_engine.index.documents)
    assert answer.abstained
    assert answer.sentences == []
    assert answer.citations


def test_a_figure_the_document_does_not_give_abstains(real_engine: Engine, check_answer) -> None:  # type: ignore[no-untyped-def]
    """The document speaks of the package and of jobs, but gives no number of jobs:
    the best sentence holds no figure, so the answer abstains rather than guess."""
    answer = real_engine.ask("How many jobs will the growth package for southern Mexico create?")
    check_answer(answer, real_engine.index.documents)
    assert answer.abstained
    answer = real_engine.ask("How many people requested protection in Mexico in 2021?")
    assert not answer.abstained
    assert "41,000" in answer.sentences[0].text


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
def test_answer_invariants_with_the_real_model(  # type: ignore[no-untyped-def]
    real_engine: Engine, check_answer, seed_questions: list[str], mode: str
) -> None:
    for question in seed_questions:
        check_answer(real_engine.ask(question, top_k=5, mode=mode), real_engine.index.documents)  # type: ignore[arg-type]


def test_reindex_unchanged_corpus_embeds_nothing(  # type: ignore[no-untyped-def]
    real_index: Path, real_embedder, tmp_path: Path
) -> None:
    index_dir = tmp_path / "index"
    shutil.copytree(real_index / "index", index_dir)
    current = (index_dir / "CURRENT").read_bytes()
    stats = index_corpus([real_index / "seeds"], index_dir, real_embedder)
    assert stats.unchanged
    assert stats.embedded == 0
    assert (index_dir / "CURRENT").read_bytes() == current


def test_corrupt_index_is_refused(real_index: Path, real_embedder, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    index_dir = tmp_path / "index"
    shutil.copytree(real_index / "index", index_dir)
    segment = read_manifest(index_dir)["segments"][-1]["name"]
    dense = index_dir / "segments" / segment / "dense.faiss"
    raw = bytearray(dense.read_bytes())
    raw[len(raw) // 2] ^= 0x55
    dense.write_bytes(bytes(raw))
    with pytest.raises(IndexCorruptError, match="dense.faiss") as exc:
        Engine.open(index_dir, real_embedder)
    assert f"rebuild it with: citeqa index --index-dir {index_dir}" in str(exc.value)


def test_mismatched_index_is_refused(hashing_index_dir: Path, real_embedder) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(IndexMismatchError) as exc:
        Engine.open(hashing_index_dir, real_embedder)
    message = str(exc.value)
    assert "hashing-test-embedder" in message
    assert "sentence-transformers/all-MiniLM-L6-v2" in message
    assert "rebuild it with: citeqa index --index-dir" in message


def test_cli_ask_json_contract(real_index: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEQA_")}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    index_dir = real_index / "index"
    proc = subprocess.run(
        [str(CITEQA), "ask", MISSING, "--json", "--index-dir", str(index_dir)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert set(answer) == {
        "question", "answer", "abstained", "index_version", "sentences", "citations",
        "short_answer",
    }
    short = answer["short_answer"]  # the learned stage's span: verbatim, in a sentence
    if short is not None:
        text = (real_index / "seeds" / "000_34741492cc8173b1.txt").read_text(encoding="utf-8")
        assert text[short["start"] : short["end"]] == short["text"]
        assert any(s["start"] <= short["start"] < short["end"] <= s["end"]
                   for s in answer["sentences"])
    assert answer["question"] == MISSING
    assert answer["abstained"] is False
    assert answer["index_version"] == current_version(index_dir)
    assert "88,700" in answer["answer"]
    text = (real_index / "seeds" / "000_34741492cc8173b1.txt").read_text(encoding="utf-8")
    citation_ids = [c["id"] for c in answer["citations"]]
    assert citation_ids == list(range(1, len(citation_ids) + 1))
    for c in answer["citations"]:
        assert set(c) == {
            "id", "chunk_id", "doc_id", "title", "section", "text", "start", "end", "score",
            "retrievers", "page",
        }
        assert text[c["start"] : c["end"]] == c["text"]
        assert c["title"] == SEED_TITLE
        assert isinstance(c["score"], float) and isinstance(c["retrievers"], dict)
        assert c["page"] is None  # a text document has no pages
    assert 1 <= len(answer["sentences"]) <= 3
    for s in answer["sentences"]:
        assert set(s) == {"text", "citation", "doc_id", "start", "end", "score", "page"}
        assert text[s["start"] : s["end"]] == s["text"]
        assert s["citation"] in citation_ids
        assert f"{s['text']} [{s['citation']}]" in answer["answer"]
