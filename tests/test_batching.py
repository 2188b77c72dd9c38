"""MicroBatcher: concurrent questions share one embed_batch call; errors reach every caller."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import pytest

from citeqa import Engine, HashingEmbedder
from citeqa._batching import BatcherClosedError, MicroBatcher
from citeqa._exceptions import InvalidInputError


class RecordingEmbedder(HashingEmbedder):
    """Records each batch; optionally blocks the first call until released."""

    def __init__(self, *, gate: threading.Event | None = None, fail: bool = False) -> None:
        super().__init__(dimension=32)
        self.batches: list[list[str]] = []
        self.threads: list[str] = []
        self.gate = gate
        self.entered = threading.Event()
        self.fail = fail

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        self.batches.append(list(texts))
        self.threads.append(threading.current_thread().name)
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10), "test gate never opened"
        if self.fail:
            raise RuntimeError("model exploded")
        return super().embed_batch(texts)


def _in_threads(fn, items):  # type: ignore[no-untyped-def]
    results: dict[int, object] = {}

    def run(i: int, item: object) -> None:
        try:
            results[i] = fn(item)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, x)) for i, x in enumerate(items)]
    for t in threads:
        t.start()
    return threads, results


def test_single_caller_gets_the_same_vector_as_embed_batch() -> None:
    embedder = RecordingEmbedder()
    reference = HashingEmbedder(dimension=32)
    question = "where did Blinken meet his counterparts"
    with MicroBatcher(embedder, max_batch=8, max_wait_ms=50) as batcher:
        vector = batcher.encode(question)
    np.testing.assert_array_equal(vector, reference.embed_batch([question])[0])
    assert vector.dtype == np.float32 and vector.shape == (32,)
    assert embedder.batches == [[question]]


def test_lone_caller_does_not_wait_for_company() -> None:
    # max_wait_ms is huge: if a lone request waited for it, this would take 1 s.
    embedder = RecordingEmbedder()
    with MicroBatcher(embedder, max_batch=8, max_wait_ms=1000) as batcher:
        for i in range(5):
            batcher.encode(f"question {i}")
    assert [len(b) for b in embedder.batches] == [1] * 5


def test_a_lone_question_is_encoded_on_its_callers_thread_if_the_embedder_allows() -> None:
    embedder = RecordingEmbedder()
    assert embedder.any_thread
    with MicroBatcher(embedder, max_batch=8, max_wait_ms=50) as batcher:
        with batcher.answering():
            batcher.encode("asked alone")
        embedder.any_thread = False  # as torch: only the worker's thread encodes
        with batcher.answering():
            batcher.encode("asked alone, torch-like")
    assert embedder.threads == [threading.current_thread().name, "citeqa-batcher"]
    assert batcher.batch_sizes == [1, 1]


def test_a_question_asked_while_another_is_answered_goes_through_the_worker() -> None:
    embedder = RecordingEmbedder()
    with MicroBatcher(embedder, max_batch=8, max_wait_ms=1) as batcher:
        with batcher.answering():  # another question, between its encoding and its answer
            with batcher.answering():
                batcher.encode("asked in company")
        with batcher.answering():
            batcher.encode("asked alone again")
    assert embedder.threads == ["citeqa-batcher", threading.current_thread().name]


def test_concurrent_callers_are_encoded_together_and_get_their_own_rows() -> None:
    gate = threading.Event()
    embedder = RecordingEmbedder(gate=gate)
    reference = HashingEmbedder(dimension=32)
    batcher = MicroBatcher(embedder, max_batch=32, max_wait_ms=5)
    try:
        first = batcher.submit("warm up")  # occupies the worker until the gate opens
        assert embedder.entered.wait(5)
        texts = [f"question number {i} about topic {i * 7}" for i in range(10)]
        futures = [batcher.submit(t) for t in texts]
        gate.set()
        first.result(5)
        vectors = [f.result(5) for f in futures]
    finally:
        batcher.close()
    assert [len(b) for b in embedder.batches] == [1, 10]
    assert embedder.batches[1] == texts  # one forward pass for all of them, in order
    for text, vector in zip(texts, vectors, strict=True):
        np.testing.assert_array_equal(vector, reference.embed_batch([text])[0])
    assert batcher.batch_sizes == [1, 10]


def test_batches_never_exceed_max_batch() -> None:
    gate = threading.Event()
    embedder = RecordingEmbedder(gate=gate)
    batcher = MicroBatcher(embedder, max_batch=4, max_wait_ms=1)
    try:
        batcher.submit("warm up")
        assert embedder.entered.wait(5)
        futures = [batcher.submit(f"q{i}") for i in range(10)]
        gate.set()
        for f in futures:
            f.result(5)
    finally:
        batcher.close()
    sizes = [len(b) for b in embedder.batches]
    assert max(sizes) <= 4 and sum(sizes) == 11
    assert sizes[1:] == [4, 4, 2]


def test_an_embedder_error_reaches_every_caller_in_the_batch() -> None:
    gate = threading.Event()
    embedder = RecordingEmbedder(gate=gate, fail=True)
    batcher = MicroBatcher(embedder, max_batch=8, max_wait_ms=1)
    try:
        first = batcher.submit("warm up")
        assert embedder.entered.wait(5)
        futures = [batcher.submit(f"q{i}") for i in range(3)]
        gate.set()
        for f in [first, *futures]:
            with pytest.raises(RuntimeError, match="model exploded"):
                f.result(5)
        # The worker survives a failed batch.
        embedder.fail = False
        assert batcher.encode("after the failure").shape == (32,)
    finally:
        batcher.close()


def test_many_threads_all_get_answers() -> None:
    embedder = RecordingEmbedder()
    reference = HashingEmbedder(dimension=32)
    texts = [f"thread question {i}" for i in range(64)]
    with MicroBatcher(embedder, max_batch=16, max_wait_ms=2) as batcher:
        threads, results = _in_threads(batcher.encode, texts)
        for t in threads:
            t.join(10)
    for i, text in enumerate(texts):
        vector = results[i]
        assert isinstance(vector, np.ndarray)
        np.testing.assert_array_equal(vector, reference.embed_batch([text])[0])
    assert sum(len(b) for b in embedder.batches) == 64
    assert max(len(b) for b in embedder.batches) <= 16


def test_close_finishes_queued_work_then_refuses_more() -> None:
    gate = threading.Event()
    embedder = RecordingEmbedder(gate=gate)
    batcher = MicroBatcher(embedder, max_batch=8, max_wait_ms=1)
    first = batcher.submit("warm up")
    assert embedder.entered.wait(5)
    queued = batcher.submit("queued before close")
    closer = threading.Thread(target=batcher.close)
    closer.start()
    gate.set()
    closer.join(5)
    assert not closer.is_alive()
    assert first.result(1).shape == (32,)
    assert queued.result(1).shape == (32,)
    assert batcher.closed
    with pytest.raises(BatcherClosedError):
        batcher.encode("too late")
    batcher.close()  # idempotent


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch": 0}, "max_batch must be 1..1024, got 0"),
        ({"max_batch": 2.5}, "max_batch must be an integer, got 2.5"),
        ({"max_wait_ms": -1}, "max_wait_ms must be 0..1000, got -1"),
    ],
)
def test_bad_parameters_are_rejected_with_the_value(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message.replace(".", r"\.")):
        MicroBatcher(HashingEmbedder(), **kwargs)  # type: ignore[arg-type]


def test_engine_enable_batching_answers_like_the_plain_engine(engine: Engine) -> None:
    question = "How many disappeared and missing people does the Mexican government recognize?"
    plain = engine.ask(question)
    batcher = engine.enable_batching(max_batch=8, max_wait_ms=1)
    try:
        assert engine.encode_query == batcher.encode
        threads, results = _in_threads(engine.ask, [question] * 6)
        for t in threads:
            t.join(10)
        for answer in results.values():
            assert answer == plain
    finally:
        engine.close()
    assert batcher.closed
    assert engine.ask(question) == plain  # back to one-by-one encoding
