"""Embedders: the base class batching, the factory, and the ONNX backend against torch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from citeqa import HashingEmbedder
from citeqa._embedding import BUNDLED_MODEL_NAME, make_embedder
from citeqa._exceptions import InvalidInputError

REPO = Path(__file__).resolve().parents[1]


def test_embed_batches_and_matches_embed_batch() -> None:
    embedder = HashingEmbedder(dimension=32)
    texts = [f"text {i}" for i in range(10)]
    ticks: list[int] = []
    vectors = embedder.embed(texts, batch_size=4, progress=ticks.append)
    assert ticks == [4, 4, 2] and embedder.calls == 3
    np.testing.assert_array_equal(vectors, HashingEmbedder(dimension=32).embed_batch(texts))


class _Recording(HashingEmbedder):
    def __init__(self) -> None:
        super().__init__(dimension=32)
        self.batches: list[list[str]] = []

    def embed_batch(self, texts):  # type: ignore[no-untyped-def]
        self.batches.append(list(texts))
        return super().embed_batch(texts)


def test_embed_groups_texts_of_similar_length_and_keeps_input_order() -> None:
    embedder = _Recording()
    texts = ["a " * n for n in (9, 1, 7, 3, 8, 2, 6, 4)]
    vectors = embedder.embed(texts, batch_size=3)
    lengths = [[len(t) for t in batch] for batch in embedder.batches]
    flat = [n for batch in lengths for n in batch]
    assert flat == sorted(flat)  # a batch pads to its longest text: similar lengths together
    np.testing.assert_array_equal(vectors, HashingEmbedder(dimension=32).embed_batch(texts))


def test_unknown_backend_is_rejected_with_the_value() -> None:
    with pytest.raises(InvalidInputError, match="backend must be one of torch, onnx, got 'tpu'"):
        make_embedder("tpu")


@pytest.fixture(scope="module")
def onnx_embedder(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    pytest.importorskip("onnxruntime")
    from citeqa._embedding import OnnxEmbedder

    return OnnxEmbedder(cache_dir=tmp_path_factory.mktemp("onnx"))


@pytest.mark.integration
@pytest.mark.slow
def test_onnx_matches_torch_and_reports_the_same_model(onnx_embedder, real_embedder) -> None:  # type: ignore[no-untyped-def]
    from citeqa._index import model_info

    assert model_info(onnx_embedder) == model_info(real_embedder)
    assert onnx_embedder.name == BUNDLED_MODEL_NAME
    with open(REPO / "tests" / "questions.jsonl", encoding="utf-8") as fh:
        texts = [json.loads(line)["question"] for line in fh][:30]
    seed = next((REPO / "seeds").glob("*.txt")).read_text(encoding="utf-8")
    texts += [seed[:4000], "x", " "]  # one longer than max_seq_length: truncation agrees
    a, b = onnx_embedder.embed_batch(texts), real_embedder.embed_batch(texts)
    assert a.shape == b.shape and a.dtype == np.float32
    assert float((a * b).sum(axis=1).min()) >= 0.999
    assert [onnx_embedder.count_tokens(t) for t in texts] == [
        real_embedder.count_tokens(t) for t in texts
    ]


@pytest.mark.integration
@pytest.mark.slow
def test_an_index_built_with_torch_serves_with_onnx_same_top5(  # type: ignore[no-untyped-def]
    onnx_embedder, real_engine
) -> None:
    from citeqa import Engine

    onnx_engine = Engine(real_engine.index, onnx_embedder, selector=real_engine.selector)
    with open(REPO / "tests" / "questions.jsonl", encoding="utf-8") as fh:
        questions = [json.loads(line)["question"] for line in fh]
    for q in questions:
        torch_ids = [c.chunk_id for c in real_engine.ask(q, top_k=5).citations]
        onnx_ids = [c.chunk_id for c in onnx_engine.ask(q, top_k=5).citations]
        assert onnx_ids == torch_ids, q


@pytest.mark.integration
@pytest.mark.slow
def test_onnx_encodes_from_several_threads_at_once(onnx_embedder) -> None:  # type: ignore[no-untyped-def]
    # No lock: a question is encoded beside an indexing batch, not queued behind it.
    from concurrent.futures import ThreadPoolExecutor

    seed = next((REPO / "seeds").glob("*.txt")).read_text(encoding="utf-8")
    batches = [[seed[i : i + 900] for i in range(k * 900, k * 900 + 7200, 900)] for k in range(4)]
    batches += [[f"question {k}: who met whom, and when?"] for k in range(8)]
    alone = [onnx_embedder.embed_batch(b) for b in batches]
    with ThreadPoolExecutor(max_workers=6) as pool:
        together = list(pool.map(onnx_embedder.embed_batch, batches * 3))
    for got, want in zip(together, alone * 3, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_onnx_without_an_export_says_what_to_do(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from citeqa._embedding import OnnxEmbedder

    with pytest.raises(InvalidInputError, match="run citeqa index once"):
        OnnxEmbedder(cache_dir=tmp_path, export=False)


def _broken_model(folder: Path, files: dict[str, str]) -> Path:
    """A model folder: the bundled model's tokenizer and ``files`` (path -> text)."""
    from citeqa._embedding import bundled_model_path

    bundled = bundled_model_path()
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt"):
        (folder / name).write_bytes((bundled / name).read_bytes())
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


BROKEN_MODELS = [
    ({"config.json": "{}"}, "ValueError: Unrecognized model in"),
    ({"config.json": "{}", "modules.json": "garbage"}, "JSONDecodeError: Expecting value"),
    ({"modules.json": '[{"idx": 0}]'}, "KeyError: 'path'"),
    ({"config.json": '{"model_type": "bert"}', "model.safetensors": "x"}, "SafetensorError"),
]


@pytest.mark.parametrize(("files", "detail"), BROKEN_MODELS)
def test_a_broken_model_folder_is_one_clean_error_on_torch(
    tmp_path: Path, files: dict[str, str], detail: str
) -> None:
    from citeqa._embedding import SentenceTransformerEmbedder

    folder = _broken_model(tmp_path / "model", files)
    with pytest.raises(InvalidInputError) as caught:
        SentenceTransformerEmbedder(folder)
    message = str(caught.value)
    assert message.startswith(f"{folder} is not a usable sentence-transformers model (")
    assert detail in message and "\n" not in message and len(message) < 400


@pytest.mark.parametrize(
    ("files", "detail"),
    [
        ({"config.json": "{}"}, "ValueError: Unrecognized model in"),
        ({"config.json": "{}", "sentence_bert_config.json": "garbage"}, "JSONDecodeError"),
    ],
)
def test_a_broken_model_folder_is_one_clean_error_on_onnx(
    tmp_path: Path, files: dict[str, str], detail: str
) -> None:
    pytest.importorskip("onnxruntime")
    from citeqa._embedding import OnnxEmbedder

    folder = _broken_model(tmp_path / "model", files)
    with pytest.raises(InvalidInputError) as caught:
        OnnxEmbedder(folder, cache_dir=tmp_path / "cache")
    assert str(caught.value).startswith(f"{folder} is not a usable sentence-transformers model (")
    assert detail in str(caught.value)


def test_stale_onnx_exports_are_pruned_and_nothing_else(tmp_path: Path) -> None:
    from citeqa._embedding import ONNX_META, _weights_key, prune_stale_exports

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}", encoding="utf-8")
    cache = tmp_path / "cache"

    def export(name: str, source: Path | str, manifest: bool = True) -> Path:
        folder = cache / name
        folder.mkdir(parents=True)
        (folder / "model.onnx").write_bytes(b"onnx")
        if manifest:
            (folder / ONNX_META).write_text(json.dumps({"source": str(source)}), "utf-8")
        return folder

    current = export(_weights_key(model), model)
    gone = export("0" * 16, tmp_path / "deleted-venv" / "model")  # its virtualenv was removed
    changed = export("1" * 16, model)  # the model's weights changed since this export
    foreign = export("notes", model, manifest=False)
    garbled = export("2" * 16, model, manifest=False)
    (garbled / ONNX_META).write_text("not json", encoding="utf-8")
    kept = export("3" * 16, tmp_path / "also-gone")

    removed = prune_stale_exports(cache, keep=kept)
    assert sorted(removed) == sorted([gone, changed])
    assert all(f.is_dir() for f in (current, foreign, garbled, kept))
    assert not gone.exists() and not changed.exists()
    assert prune_stale_exports(tmp_path / "no-cache-yet") == []
