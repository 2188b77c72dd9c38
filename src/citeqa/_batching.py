"""Dynamic micro-batching of query encodings.

Concurrent callers each want one question encoded. Encoding them one at a time
serialises on the model; encoding them together costs little more than one
forward pass. ``MicroBatcher.encode`` enqueues the question and blocks on a
future; one worker thread takes the first waiting question, gathers more for at
most ``max_wait_ms`` or until ``max_batch`` are waiting, calls
``embedder.embed_batch`` once and hands each caller its row. A lone caller pays
no waiting: the worker only waits while the batch could still grow *and* other
requests arrived during the previous forward pass or the wait.

A question answered while no other is (``answering`` counts them) and that
finds the encoder free is encoded on its caller's own thread, if the embedder
runs as fast from any thread (``Embedder.any_thread``: ONNX, not torch): the
hand-over to the worker and back costs about half a millisecond, and more while
ONNX Runtime's threads spin after a forward pass. Under load every question goes
through the worker, where batches form. One lock keeps the encoder to one
forward pass at a time either way.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ._embedding import Embedder
from ._exceptions import CiteqaError, InvalidInputError

MAX_BATCH_LIMIT = 1024
MAX_WAIT_MS_LIMIT = 1000.0


class BatcherClosedError(CiteqaError):
    """The batcher was closed; no more questions can be encoded with it."""


@dataclass
class _Request:
    text: str
    future: Future[np.ndarray]


_STOP = object()


class MicroBatcher:
    """Encodes concurrent single texts together, one ``embed_batch`` call per batch."""

    def __init__(
        self, embedder: Embedder, *, max_batch: int = 32, max_wait_ms: float = 2.0
    ) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int):
            raise InvalidInputError(f"max_batch must be an integer, got {max_batch!r}")
        if not 1 <= max_batch <= MAX_BATCH_LIMIT:
            raise InvalidInputError(f"max_batch must be 1..{MAX_BATCH_LIMIT}, got {max_batch}")
        if not 0.0 <= float(max_wait_ms) <= MAX_WAIT_MS_LIMIT:
            raise InvalidInputError(
                f"max_wait_ms must be 0..{MAX_WAIT_MS_LIMIT:g}, got {max_wait_ms}"
            )
        self.embedder = embedder
        self.max_batch = max_batch
        self.max_wait_s = float(max_wait_ms) / 1000.0
        self._queue: queue.SimpleQueue[_Request | object] = queue.SimpleQueue()
        self._closed = False
        self._close_lock = threading.Lock()
        self._encoder_lock = threading.Lock()  # one forward pass at a time
        self._answering = 0
        self._answering_lock = threading.Lock()
        #: sizes of the batches sent to the embedder (bounded; for benchmarks and tests)
        self.batch_sizes: list[int] = []
        #: called with each batch's size (metrics); must be quick and thread-safe
        self.on_batch: Callable[[int], None] | None = None
        self._worker = threading.Thread(target=self._run, name="citeqa-batcher", daemon=True)
        self._worker.start()

    # -- callers ---------------------------------------------------------------------------------

    def submit(self, text: str) -> Future[np.ndarray]:
        """Queue ``text``; the future resolves to its vector (or the embedder's exception)."""
        future: Future[np.ndarray] = Future()
        with self._close_lock:
            if self._closed:
                raise BatcherClosedError("the query batcher is closed; open a new engine")
            self._queue.put(_Request(text, future))
        return future

    @contextmanager
    def answering(self) -> Iterator[None]:
        """Marks one question being answered, from before its encoding to its answer."""
        with self._answering_lock:
            self._answering += 1
        try:
            yield
        finally:
            with self._answering_lock:
                self._answering -= 1

    def encode(self, text: str) -> np.ndarray:
        """The vector for ``text``, encoded together with whatever else is waiting.

        With at most one question ``answering``, nothing queued and the encoder free,
        the caller's own thread encodes it (if ``embedder.any_thread``).
        """
        if (
            self.embedder.any_thread
            and self._answering <= 1
            and self._queue.empty()
            and self._encoder_lock.acquire(blocking=False)
        ):
            try:
                if self._closed:
                    raise BatcherClosedError("the query batcher is closed; open a new engine")
                self._record(1)
                vectors = np.asarray(self.embedder.embed_batch([text]), np.float32)
            finally:
                self._encoder_lock.release()
            _check_rows(vectors, 1)
            return np.array(vectors[0], dtype=np.float32, copy=True)
        return self.submit(text).result()

    __call__ = encode

    def close(self, timeout_s: float = 10.0) -> None:
        """Finish what is queued, then stop the worker. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        if threading.current_thread() is not self._worker:
            self._worker.join(timeout_s)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> MicroBatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- worker ----------------------------------------------------------------------------------

    def _gather(self, first: _Request) -> tuple[list[_Request], bool]:
        """``first`` plus whatever arrives within the wait; True if a stop was seen."""
        batch = [first]
        deadline: float | None = None  # set once the queue runs dry with company waiting
        while len(batch) < self.max_batch:
            try:
                if deadline is None:
                    item = self._queue.get_nowait()
                else:
                    item = self._queue.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                # Only a batch that already has company waits for more: a lone request
                # (the single-client case) is encoded at once, so its latency is unchanged.
                if deadline is not None or len(batch) == 1 or self.max_wait_s <= 0:
                    break
                deadline = time.perf_counter() + self.max_wait_s
                continue
            if item is _STOP:
                return batch, True
            assert isinstance(item, _Request)
            batch.append(item)
        return batch, False

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is _STOP:
                break
            assert isinstance(item, _Request)
            batch, stopping = self._gather(item)
            self._encode(batch)
        # Anything queued after the stop marker (cannot happen via submit) fails cleanly.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Request):
                item.future.set_exception(BatcherClosedError("the query batcher is closed"))

    def _encode(self, batch: list[_Request]) -> None:
        live = [r for r in batch if r.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            with self._encoder_lock:
                self._record(len(live))
                vectors = np.asarray(self.embedder.embed_batch([r.text for r in live]), np.float32)
            _check_rows(vectors, len(live))
        except BaseException as exc:  # noqa: BLE001 - every caller hears the failure
            for r in live:
                r.future.set_exception(exc)
            return
        for r, row in zip(live, vectors, strict=True):
            r.future.set_result(np.array(row, dtype=np.float32, copy=True))

    def _record(self, size: int) -> None:
        if len(self.batch_sizes) < 100_000:
            self.batch_sizes.append(size)
        if self.on_batch is not None:
            self.on_batch(size)


def _check_rows(vectors: np.ndarray, texts: int) -> None:
    if vectors.shape[0] != texts:
        raise CiteqaError(f"the embedder returned {vectors.shape[0]} vectors for {texts} texts")
