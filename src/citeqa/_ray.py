"""``citeqa index --ray``: read, chunk and embed documents on a Ray cluster.

Imported only when ``--ray`` is given (``pip install 'citeqa[ray]'``); nothing else
in citeqa imports Ray. The pipeline, with the driver at both ends::

    driver: list the files (ids from their paths)                  list_document_files
       │    take the writer lock, load the previous generation
       ▼
    Ray Data tasks: read + convert + chunk each file                _read_and_chunk
       │    (a document equal to the previous generation's is passed on unchunked)
       ▼
    actor pool (--ray-workers): one model load per actor;            _EmbedSegments
       │    each batch of documents -> one segment, embedded in batches of
       │    ``embed_batch`` texts (a changed document's unchanged sentences and
       │    chunks take their vectors from its old segment), written to
       │    segments/<name>/ by the actor
       ▼
    driver: load the new segments, next generation (unchanged documents stay in
            their old segments), merge policy, commit the manifest once   _commit

Semantics are those of ``index_corpus``: the index then holds exactly the documents
under the paths; an unchanged document is not re-embedded; a file that cannot be
read fails the run (each named, nothing committed); nothing is written when nothing
changed; a changed document re-embeds only its new texts.

Every node must see the files and the index folder at the same paths (one machine,
or a shared file system) and have the same citeqa and model installed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._chunking import Chunker, ChunkingParams
from ._documents import (
    duplicate_id_error,
    list_document_files,
    read_document,
    unreadable_files_error,
)
from ._embedding import Embedder
from ._exceptions import CiteqaError, DocumentError, InvalidInputError
from ._index import (
    BuildStats,
    build_segment,
    merge,
    model_info,
    new_segment_name,
    plan_merges,
    with_segments,
)
from ._store import (
    SEGMENT_FILE,
    SEGMENTS_DIR,
    current_version,
    discard_segments,
    load_previous,
    load_segment,
    read_segment_vectors,
    write_index,
    write_segment,
    writer_lock,
)
from ._types import Chunk, Document, Span

#: documents per segment when not given: about four segments per worker, so the
#: actors stay busy to the end, at most 200 documents per segment
MAX_DOCS_PER_SEGMENT = 200
INSTALL_HINT = "citeqa index --ray needs Ray: pip install 'citeqa[ray]'"


def import_ray() -> Any:
    """Ray, or an ``InvalidInputError`` saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (the extra is ray[data])
    except ImportError:
        raise InvalidInputError(INSTALL_HINT) from None
    return ray


@dataclasses.dataclass
class RayTimings:
    """Where a ``--ray`` run's wall time went (seconds), for the benchmark."""

    connect_s: float = 0.0  # ray.init (attach, or start a local Ray)
    list_s: float = 0.0  # listing files, loading the previous generation
    pipeline_s: float = 0.0  # Ray Data: read, chunk, embed, write segments
    commit_s: float = 0.0  # driver: load new segments, assemble, merge, write manifest
    total_s: float = 0.0
    #: seconds the actors spent embedding and writing segments, added up
    actor_busy_s: float = 0.0
    workers: int = 0
    segments: int = 0

    @property
    def driver_s(self) -> float:
        return self.list_s + self.commit_s


# -- on the workers ------------------------------------------------------------------------

_WORKER_EMBEDDERS: dict[str, Embedder] = {}


def _worker_embedder(settings: dict[str, Any]) -> Embedder:
    """The driver's embedder, built once per worker process (one model load), with one
    thread per CPU the worker holds unless CITEQA_THREADS says otherwise."""
    key = json.dumps(settings, sort_keys=True, default=str)
    if key not in _WORKER_EMBEDDERS:
        from .settings import Settings

        values = dict(settings)
        values["threads"] = values.get("threads") or 1
        _WORKER_EMBEDDERS[key] = Settings(**values).make_embedder()
    return _WORKER_EMBEDDERS[key]


def _doc_signature(doc: Document) -> list[Any]:
    """What makes two documents of one id equal (``Document.__eq__``), text by hash."""
    return [doc.title, doc.sha256, doc.source, doc.format, list(doc.page_starts)]


def _chunk_row(chunk: Chunk) -> list[Any]:
    return [
        chunk.chunk_id, chunk.start, chunk.end, chunk.n_tokens, chunk.section,
        [[s.start, s.end, s.is_heading, s.section] for s in chunk.sentences],
    ]


def _chunks_from_rows(doc: Document, rows: list[list[Any]]) -> list[Chunk]:
    return [
        Chunk(
            chunk_id=chunk_id, doc_id=doc.doc_id, start=start, end=end,
            text=doc.text[start:end], n_tokens=n_tokens, section=section,
            sentences=tuple(Span(s, e, bool(h), sec) for s, e, h, sec in spans),
        )
        for chunk_id, start, end, n_tokens, section, spans in rows
    ]


def _document_json(doc: Document) -> str:
    return json.dumps({
        "doc_id": doc.doc_id, "title": doc.title, "text": doc.text, "source": doc.source,
        "format": doc.format, "page_starts": list(doc.page_starts),
    }, ensure_ascii=False)


def _document_from_json(text: str) -> Document:
    row = json.loads(text)
    row["page_starts"] = tuple(row["page_starts"])
    return Document(**row)


def _read_and_chunk(
    batch: dict[str, Any], *, settings: dict[str, Any], params: ChunkingParams,
    limits: Any, previous: dict[str, list[Any]], owners: dict[str, str],
) -> dict[str, list[Any]]:
    """Ray Data task: read and convert each file; chunk the documents that changed.
    ``previous``: each previous document's signature; ``owners``: the segment that
    holds it (its vectors are reused for a changed document's unchanged texts)."""
    out: dict[str, list[Any]] = {
        k: [] for k in ("path", "doc_id", "doc", "chunks", "reuse", "error")
    }
    chunker: Chunker | None = None
    for given, absolute, doc_id in zip(
        batch["path"], batch["absolute"], batch["doc_id"], strict=True
    ):
        out["path"].append(str(given))
        try:
            doc = read_document(Path(str(absolute)), doc_id=str(doc_id), limits=limits)
        except DocumentError as exc:
            out["doc_id"].append("")
            out["doc"].append("")
            out["chunks"].append("")
            out["reuse"].append("")
            out["error"].append(str(exc).replace(str(absolute), str(given)))
            continue
        doc = dataclasses.replace(doc, source=str(given))  # as index_corpus records it
        out["doc_id"].append(doc.doc_id)
        out["error"].append("")
        if previous.get(doc.doc_id) == _doc_signature(doc):
            out["doc"].append("")  # unchanged: it stays in its old segment
            out["chunks"].append("")
            out["reuse"].append("")
            continue
        out["reuse"].append(owners.get(doc.doc_id, ""))
        if chunker is None:
            embedder = _worker_embedder(settings)
            chunker = Chunker(
                params,
                model_tokens=embedder.count_tokens if embedder.max_seq_tokens else None,
                model_max_tokens=embedder.max_seq_tokens,
            )
        out["doc"].append(_document_json(doc))
        out["chunks"].append(json.dumps([_chunk_row(c) for c in chunker.chunk(doc)]))
    return out


class _EmbedSegments:
    """Ray Data actor: loads the model once; each batch of documents becomes one
    segment, written to the index folder. Passes every row's id and error on."""

    def __init__(self, settings: dict[str, Any], params: ChunkingParams, index_dir: str,
                 generation: int, embed_batch: int) -> None:
        self.embedder = _worker_embedder(settings)
        self.params = params
        self.index_dir = Path(index_dir)
        self.generation = generation
        self.embed_batch = embed_batch

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        docs: list[Document] = []
        chunks: list[Chunk] = []
        old: dict[str, list[str]] = {}  # old segment -> the changed documents it holds
        for doc_json, chunks_json, reuse in zip(
            batch["doc"], batch["chunks"], batch["reuse"], strict=True
        ):
            if doc_json:
                doc = _document_from_json(str(doc_json))
                docs.append(doc)
                chunks.extend(_chunks_from_rows(doc, json.loads(str(chunks_json))))
                if reuse:
                    old.setdefault(str(reuse), []).append(doc.doc_id)
        name, embedded, reused, n_chunks = "", 0, 0, 0
        started = time.perf_counter()
        if docs:
            cache: dict[str, Any] = {}
            for segment_name, doc_ids in old.items():
                cache.update(read_segment_vectors(self.index_dir, segment_name, doc_ids))
            segment, embedded, reused = build_segment(
                docs, self.embedder, self.params, name=new_segment_name(self.generation),
                cache=cache, chunks=chunks, batch_size=self.embed_batch,
            )
            write_segment(self.index_dir, segment)
            name, n_chunks = segment.name, len(segment.chunks)
        n = len(batch["doc_id"])
        return {
            "path": [str(p) for p in batch["path"]],
            "doc_id": [str(d) for d in batch["doc_id"]],
            "error": [str(e) for e in batch["error"]],
            # the segment's figures on its first row only, so they add up
            "segment": [name] + [""] * (n - 1),
            "embedded": [embedded] + [0] * (n - 1),
            "reused": [reused] + [0] * (n - 1),
            "chunks": [n_chunks] + [0] * (n - 1),
            "changed": [len(docs)] + [0] * (n - 1),
            "busy_s": [time.perf_counter() - started] + [0.0] * (n - 1),
        }


# -- on the driver -------------------------------------------------------------------------


def connect(address: str | None) -> Any:
    """Attach to Ray. ``address`` None is ``ray.init()``: the cluster in RAY_ADDRESS, else
    the one ``ray start`` last started on this machine, else a new local Ray for this
    process (all cores; it stops when the process ends). "auto" attaches to a cluster
    on this machine and fails when there is none; "host:port" attaches to that one."""
    ray = import_ray()
    if not ray.is_initialized():
        import logging

        try:
            ray.init(address=address, logging_level=logging.WARNING,
                     configure_logging=True, log_to_driver=True)
        except ConnectionError as exc:
            raise InvalidInputError(
                f"cannot reach a Ray cluster at {address or 'auto'}: {exc}; start one with "
                "`ray start --head`, or give --ray without an address for a local Ray"
            ) from None
    return ray


def index_corpus_ray(
    paths: Sequence[str | Path],
    index_dir: str | Path,
    settings: Any,
    params: ChunkingParams | None = None,
    *,
    address: str | None = None,
    workers: int | None = None,
    docs_per_segment: int | None = None,
    embed_batch: int = 64,
    embedder: Embedder | None = None,
    report: Callable[[str], None] | None = None,
    timings: RayTimings | None = None,
) -> BuildStats:
    """Index the documents under ``paths`` into ``index_dir`` on Ray (see the module
    docstring). ``settings``: a ``citeqa.settings.Settings``; each actor builds its
    embedder from it. ``embedder``: the driver's (its model info names the index; the
    driver loads one when not given, which also exports the ONNX model once).
    ``workers``: actors (default: the cluster's CPUs). ``report``: progress lines."""
    started = time.perf_counter()
    timings = timings if timings is not None else RayTimings()
    params = params or ChunkingParams()
    index_dir = Path(index_dir)
    say = report or (lambda _line: None)
    if workers is not None and workers < 1:
        raise InvalidInputError(f"--ray-workers must be at least 1, got {workers}")
    if docs_per_segment is not None and docs_per_segment < 1:
        raise InvalidInputError(f"docs_per_segment must be at least 1, got {docs_per_segment}")
    files = list_document_files(paths)  # fails before anything is touched
    if embedder is None:
        embedder = settings.make_embedder()
    model = model_info(embedder)
    timings.list_s = time.perf_counter() - started

    t = time.perf_counter()
    ray = connect(address)
    timings.connect_s = time.perf_counter() - t
    if workers is None:
        workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
    timings.workers = workers
    per_segment = docs_per_segment or max(
        1, min(MAX_DOCS_PER_SEGMENT, math.ceil(len(files) / (4 * workers)))
    )
    # The lock is held before any actor writes a segment: a reader's clean-up removes
    # segments no generation names only while no writer holds it.
    with writer_lock(index_dir):
        t = time.perf_counter()
        previous = load_previous(index_dir, model)
        same_setup = previous is not None and previous.params == params
        base = previous if same_setup else None
        signatures = (
            {d.doc_id: _doc_signature(d) for d in base.documents.values()} if base else {}
        )
        # Where each document's vectors are, for a changed one to reuse (a format-1
        # generation, read as one segment, has no folder in segments/).
        stored = {
            seg.name for seg in (base.segments if base else ())
            if (index_dir / SEGMENTS_DIR / seg.name / SEGMENT_FILE).is_file()
        }
        owners = {
            doc_id: segment.name
            for doc_id, segment in (base.segment_of().items() if base else ())
            if segment.name in stored
        }
        generation = (previous.generation + 1) if previous is not None else 1
        timings.list_s += time.perf_counter() - t

        t = time.perf_counter()
        rows = _run_pipeline(
            ray, files, settings=settings, params=params, index_dir=index_dir,
            generation=generation, workers=workers, per_segment=per_segment,
            embed_batch=embed_batch, signatures=signatures, owners=owners, say=say,
        )
        timings.pipeline_s = time.perf_counter() - t

        t = time.perf_counter()
        errors = [r["error"] for r in rows if r["error"]]
        if errors:
            discard_segments(index_dir, [r["segment"] for r in rows if r["segment"]])
            raise unreadable_files_error(errors)
        seen: dict[str, str] = {}
        for r in rows:
            if r["doc_id"] in seen:
                discard_segments(index_dir, [r["segment"] for r in rows if r["segment"]])
                raise duplicate_id_error(r["path"], seen[r["doc_id"]], r["doc_id"])
            seen[r["doc_id"]] = r["path"]
        names = [r["segment"] for r in rows if r["segment"]]
        segments = [load_segment(index_dir, name) for name in names]
        data = with_segments(base, segments, seen, model=model, params=params)
        if plans := plan_merges(data):
            data = merge(data, plans)
        embedded = sum(int(r["embedded"]) for r in rows)
        timings.actor_busy_s = sum(float(r["busy_s"]) for r in rows)
        fresh = sum(len(s.chunks) + len(s.sentences.doc_ids) for s in segments)
        stats = BuildStats(
            documents=len(data.documents),
            chunks=len(data.chunks),
            sentences=len(data.sentences.doc_ids),
            embedded=embedded,
            # the kept documents' vectors, and the changed ones' unchanged texts
            reused=len(data.chunks) + len(data.sentences.doc_ids) - fresh
            + sum(int(r["reused"]) for r in rows),
            seconds=0.0,
        )
        timings.segments = len(segments)
        if (
            previous is not None
            and not segments
            and previous.version.split("-", 1)[1] == data.version.split("-", 1)[1]
            and previous.version == current_version(index_dir)
        ):
            stats = dataclasses.replace(stats, unchanged=True)
        else:
            write_index(index_dir, data, base=previous.version if previous else None)
        timings.commit_s = time.perf_counter() - t
    if previous is not None:
        removed = sorted(previous.documents.keys() - seen.keys())
        stats = dataclasses.replace(stats, removed=tuple(removed))
    timings.total_s = time.perf_counter() - started
    return dataclasses.replace(stats, seconds=timings.total_s)


def _run_pipeline(
    ray: Any, files: Sequence[tuple[Path, str]], *, settings: Any, params: ChunkingParams,
    index_dir: Path, generation: int, workers: int, per_segment: int, embed_batch: int,
    signatures: dict[str, list[Any]], owners: dict[str, str], say: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Run read -> chunk -> embed -> write segment; one result row per file."""
    import logging

    from ray.data import ActorPoolStrategy, DataContext, TaskPoolStrategy

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # its plan and timing lines
    # a corpus smaller than the pool is no mistake
    warnings.filterwarnings("ignore", message=r".*but the operator only received",
                            category=UserWarning)

    context = DataContext.get_current()
    context.enable_progress_bars = False  # citeqa reports its own progress
    settings_dump = settings.model_dump(mode="json")
    limits = settings.conversion_limits()
    items = [
        {"path": str(path), "absolute": str(path.resolve()), "doc_id": doc_id}
        for path, doc_id in files
    ]
    read_batch = max(1, min(per_segment, 16))
    ds = ray.data.from_items(items, override_num_blocks=max(1, math.ceil(len(items) / read_batch)))
    ds = ds.map_batches(
        _read_and_chunk,
        batch_size=read_batch,
        fn_kwargs={"settings": settings_dump, "params": params, "limits": limits,
                   "previous": signatures, "owners": owners},
        # No CPU reserved: the actors hold the cluster's CPUs, and reading is light
        # beside embedding; at most one reading task per worker at a time.
        num_cpus=0,
        compute=TaskPoolStrategy(size=workers),
    )
    ds = ds.map_batches(
        _EmbedSegments,
        batch_size=per_segment,
        fn_constructor_kwargs={
            "settings": settings_dump, "params": params, "index_dir": str(index_dir.resolve()),
            "generation": generation, "embed_batch": embed_batch,
        },
        compute=ActorPoolStrategy(size=workers),
        num_cpus=1,
    )
    rows: list[dict[str, Any]] = []
    segments = chunks = 0
    last = 0.0
    for row in ds.iter_rows():
        rows.append(dict(row))
        if row["segment"]:
            segments += 1
            chunks += int(row["chunks"])
        now = time.perf_counter()
        if row["segment"] and now - last >= 1.0 or len(rows) == len(items):
            last = now
            say(f"ray: {len(rows)}/{len(items)} documents done, {segments} segments "
                f"written ({chunks} chunks embedded)")
    return rows


# -- a local cluster, for tests and benchmarks ---------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass(frozen=True)
class LocalCluster:
    address: str
    #: what a driver process needs in its environment to attach (the cluster's token)
    env: dict[str, str]


@contextmanager
def local_cluster(nodes: int = 2, cpus_per_node: int = 1, *, timeout_s: float = 120
                  ) -> Iterator[LocalCluster]:
    """A real Ray cluster on this machine, for tests and benchmarks: ``ray start --head``
    and ``nodes - 1`` more node processes attached to it, each with ``cpus_per_node``
    CPUs, token authentication with a fresh token. Yields its address and the driver's
    environment; stops it afterwards (also on failure) by ending the processes of its
    own session folder, so another Ray on the machine is left alone."""
    import secrets

    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.is_file():
        raise CiteqaError(INSTALL_HINT)
    temp = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))  # socket paths must stay short
    cluster_env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
                   "RAY_USAGE_STATS_ENABLED": "0"}
    env = {**os.environ, **cluster_env}
    address = f"127.0.0.1:{_free_port()}"
    common = ["--num-cpus", str(cpus_per_node), "--disable-usage-stats",
              "--node-ip-address", "127.0.0.1"]

    def run(*args: str) -> None:
        done = subprocess.run([str(ray_bin), "start", *args, *common], env=env,
                              capture_output=True, text=True, timeout=timeout_s)
        if done.returncode:
            raise CiteqaError(f"ray start {' '.join(args)} failed: {done.stderr[-2000:]}")

    try:
        run("--head", "--port", address.rsplit(":", 1)[1], "--include-dashboard=false",
            f"--temp-dir={temp}")
        for _ in range(nodes - 1):
            run("--address", address)
        yield LocalCluster(address, cluster_env)
    finally:
        _stop_cluster(temp)
        shutil.rmtree(temp, ignore_errors=True)


def _stop_cluster(temp: Path, timeout_s: float = 5) -> None:
    """End the processes of the cluster whose files are under ``temp`` (its GCS server,
    raylets and their workers), by process id: SIGTERM, then SIGKILL."""
    import psutil

    mine = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(str(temp) in arg for arg in proc.info["cmdline"] or ()):
                mine.append(proc)
                mine.extend(proc.children(recursive=True))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    mine = [p for p in dict.fromkeys(mine) if p.pid != os.getpid()]
    for proc in mine:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(mine, timeout=timeout_s)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
