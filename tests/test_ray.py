"""``citeqa index --ray`` on a real local Ray cluster (a head and a second node process),
against the in-process ``index_corpus`` of the same corpus; and that nothing imports
Ray without ``--ray``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from citeqa import Engine, index_corpus
from citeqa._store import load_index, read_manifest
from citeqa.settings import Settings
from conftest import CITEQA_BIN, REPO, SEEDS

QUESTIONS = [json.loads(line)["question"]
             for line in (REPO / "tests" / "questions.jsonl").read_text().splitlines()[:5]]


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEQA_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **(extra or {}))
    return env


def _make_corpus(root: Path) -> Path:
    """seeds/ plus its paragraphs in groups of eight as Markdown files: several
    documents, so the run writes several segments."""
    corpus = root / "corpus"
    shutil.copytree(SEEDS, corpus)
    (seed,) = sorted(SEEDS.glob("*.txt"))
    paragraphs = [p for p in seed.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    for n, i in enumerate(range(0, len(paragraphs), 8)):
        (corpus / f"part_{n:02d}.md").write_text("\n\n".join(paragraphs[i : i + 8]) + "\n",
                                                 encoding="utf-8")
    return corpus


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, str]]:
    """A real Ray cluster: ``ray start --head`` (1 CPU) and a second node (1 CPU)."""
    pytest.importorskip("ray")
    from citeqa._ray import local_cluster

    with local_cluster(nodes=2, cpus_per_node=1) as running:
        yield {"address": running.address, **running.env}


def _index_on_ray(corpus: Path, index_dir: Path, cluster: dict[str, str],
                  *extra: str) -> str:
    env = _env({k: v for k, v in cluster.items() if k != "address"})
    done = subprocess.run(
        [str(CITEQA_BIN), "index", str(corpus), "--index-dir", str(index_dir),
         "--ray", cluster["address"], *extra],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "citeqa: ray: " in done.stderr  # progress on stderr
    return done.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, cluster: dict[str, str]
          ) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ray")
    corpus = _make_corpus(root)
    _index_on_ray(corpus, root / "ray-index", cluster)
    index_corpus([corpus], root / "local-index", Settings().make_embedder())
    return {"root": root, "corpus": corpus, "ray": root / "ray-index",
            "local": root / "local-index"}


@pytest.mark.integration
def test_ray_index_equals_the_in_process_one(built: dict[str, Path]) -> None:
    ray_data = load_index(built["ray"], model=None)
    local = load_index(built["local"], model=None)
    assert len(ray_data.segments) > 1  # one segment per block of documents
    assert ray_data.documents == local.documents
    assert ray_data.model == local.model and ray_data.params == local.params
    assert ray_data.chunks == local.chunks
    assert len(ray_data.chunk_sentence_rows) == len(local.chunk_sentence_rows)
    for a, b in zip(ray_data.chunk_sentence_rows, local.chunk_sentence_rows, strict=True):
        assert a.tolist() == b.tolist()
    assert ray_data.sentences.doc_ids == local.sentences.doc_ids
    assert ray_data.sentences.starts.tolist() == local.sentences.starts.tolist()
    assert ray_data.sentences.ends.tolist() == local.sentences.ends.tolist()
    assert np.allclose(ray_data.chunk_vectors(), local.chunk_vectors(), atol=1e-4)
    assert np.allclose(np.asarray(ray_data.sentences.vectors),
                       np.asarray(local.sentences.vectors), atol=2e-3)  # float16 rows

    embedder = Settings().make_embedder()
    on_ray = Engine.open(built["ray"], embedder)
    in_process = Engine.open(built["local"], embedder)
    for question in QUESTIONS:
        a, b = on_ray.ask(question), in_process.ask(question)
        assert a.answer == b.answer, question
        assert [(c.doc_id, c.start, c.end) for c in a.citations] == [
            (c.doc_id, c.start, c.end) for c in b.citations
        ]


def _owners(index_dir: Path) -> dict[str, str]:
    """The segment holding each live document of the live generation."""
    owner = {}
    for entry in read_manifest(index_dir)["segments"]:
        meta = json.loads((index_dir / "segments" / entry["name"] / "segment.json").read_text())
        for doc in meta["documents"]:
            if doc["doc_id"] not in entry["deleted"]:
                owner[doc["doc_id"]] = entry["name"]
    return owner


def _embedded(stdout: str) -> int:
    found = re.search(r"(\d+) texts embedded", stdout)
    assert found, stdout
    return int(found.group(1))


@pytest.mark.integration
def test_a_second_run_embeds_only_the_changed_texts(
    built: dict[str, Path], cluster: dict[str, str], tmp_path: Path
) -> None:
    # The same corpus folder (a document's source is its path), changed and put back.
    corpus = built["corpus"]
    saved = tmp_path / "saved"
    shutil.copytree(corpus, saved)
    index_dir = tmp_path / "index"
    shutil.copytree(built["ray"], index_dir)
    local_dir = tmp_path / "local"
    shutil.copytree(built["local"], local_dir)
    owner = _owners(index_dir)
    try:
        changed = corpus / "part_01.md"
        changed.write_text(changed.read_text(encoding="utf-8") + "\nA sentence added later.\n",
                           encoding="utf-8")
        (corpus / "part_02.md").unlink()
        out = _index_on_ray(corpus, index_dir, cluster)
        version = read_manifest(index_dir)["index_version"]
        again = _index_on_ray(corpus, index_dir, cluster)
        in_process = index_corpus([corpus], local_dir, Settings().make_embedder())
    finally:
        shutil.rmtree(corpus)
        shutil.copytree(saved, corpus)
    after = _owners(index_dir)
    moved = {doc_id for doc_id, segment in after.items() if segment != owner[doc_id]}
    assert moved == {"part_01"}  # the others stay in their segments, not re-embedded
    assert "part_02" not in after
    data = load_index(index_dir, model=None)
    texts = {c.text for c in data.chunks if c.doc_id == "part_01"}
    doc = data.documents["part_01"]
    texts |= {doc.text[s:e] for d, s, e in zip(data.sentences.doc_ids, data.sentences.starts,
                                                data.sentences.ends, strict=True)
              if d == "part_01"}
    # Only the changed document's new texts are embedded; its unchanged sentences and
    # chunks take their vectors from its old segment, as in process.
    assert 0 < _embedded(out) == in_process.embedded < len(texts)

    assert _embedded(again) == 0 and "unchanged, nothing written" in again
    assert read_manifest(index_dir)["index_version"] == version


def test_without_ray_nothing_imports_ray(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(SEEDS, corpus)
    code = (
        "import sys, citeqa, citeqa.cli\n"
        "assert 'ray' not in sys.modules, 'import citeqa imported ray'\n"
        f"rc = citeqa.cli.main(['index', {str(corpus)!r}, '--index-dir', "
        f"{str(tmp_path / 'index')!r}])\n"
        "assert rc == 0\n"
        "assert not [m for m in sys.modules if m == 'ray' or m.startswith('ray.')], "
        "'citeqa index imported ray'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_env({"CITEQA_EMBEDDER": "hashing"}), timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def test_ray_not_installed_is_a_one_line_error(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['ray'] = None  # as if not installed\n"
        "from citeqa.cli import main\n"
        f"sys.exit(main(['index', {str(SEEDS)!r}, '--index-dir', "
        f"{str(tmp_path / 'index')!r}, '--ray']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_env({"CITEQA_EMBEDDER": "hashing"}), timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "citeqa: error: citeqa index --ray needs Ray: pip install 'citeqa[ray]'"
    ]
    assert not (tmp_path / "index").exists()


def test_ray_workers_needs_ray(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(CITEQA_BIN), "index", str(SEEDS), "--index-dir", str(tmp_path / "i"),
         "--ray-workers", "2"],
        capture_output=True, text=True, env=_env({"CITEQA_EMBEDDER": "hashing"}), timeout=120,
    )
    assert done.returncode == 1 and "--ray-workers needs --ray" in done.stderr
