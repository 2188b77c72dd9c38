"""Scale: index real manuals (Debian's Python, PostgreSQL): build, disk, memory, queries.

Picks pages (shuffled with a fixed seed) until they hold ``--chunks`` chunks at the
default ``ChunkingParams``, copies them to ``bench/.work/pydocs/corpus-<n>/``, builds
with ``citeqa.index_corpus`` and the default ONNX encoder, then measures: build time
against a bare-embedding projection from a sample (texts/s), index size on disk,
in-process ``Engine.ask`` p50/p95 over ``--questions`` questions made from section
titles (against bare ``embed_batch([q])`` in the same run), and the resident set of a
real server after start and after those questions. Figures go to RESULTS.md and to
``bench/results/scale.json`` (one entry per corpus size) for ``scale_chart.py``.

Needs ``apt-get install -y python3.11-doc postgresql-doc-15`` and ``pip install html2text``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import (
    BENCH,
    WORK,
    start_server,
    stats_ms,
    stop,
    time_each,
    wait_for_quiet,
    write_section,
)

SCALE_JSON = BENCH / "results" / "scale.json"


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def pick_corpus(target_chunks: int, embedder) -> tuple[Path, int, list[str]]:  # type: ignore[no-untyped-def]
    import _pydocs

    from citeqa import Chunker, ChunkingParams, load_documents

    files = _pydocs.convert()
    random.Random(0).shuffle(files)
    chunker = Chunker(ChunkingParams(), model_tokens=embedder.count_tokens,
                      model_max_tokens=embedder.max_seq_tokens)
    chosen: list[Path] = []
    total = 0
    titles: list[str] = []
    for f in files:
        if total >= target_chunks:
            break
        doc = load_documents([f])[0]
        total += len(chunker.chunk(doc))
        chosen.append(f)
        for line in doc.text.splitlines():
            m = re.match(r"#{1,3} (?:[\d.]+ )?(.{4,80}?)¶?$", line.strip())
            if m and m.group(1)[:1].isalpha():
                titles.append(m.group(1).strip("`* "))
    corpus = WORK / "pydocs" / f"corpus-{target_chunks}"
    if corpus.exists():
        shutil.rmtree(corpus)
    corpus.mkdir(parents=True)
    for f in chosen:
        shutil.copyfile(f, corpus / f.name)
    return corpus, total, titles


def probe(docs, embedder, sample: int) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    """Bare throughput on a sample of the same kind of text (chunks and sentences)."""
    from citeqa import Chunker, ChunkingParams

    chunker = Chunker(ChunkingParams(), model_tokens=embedder.count_tokens,
                      model_max_tokens=embedder.max_seq_tokens)
    chunk_texts: list[str] = []
    sent_texts: set[str] = set()
    for d in docs:
        for c in chunker.chunk(d):
            chunk_texts.append(c.text)
            sent_texts.update(d.text[s.start : s.end] for s in c.sentences)
    rng = random.Random(1)
    cs = rng.sample(chunk_texts, min(sample, len(chunk_texts)))
    ss = rng.sample(sorted(sent_texts), min(sample, len(sent_texts)))
    embedder.embed(cs[:16])
    t = time.perf_counter()
    embedder.embed(cs)
    chunk_rate = len(cs) / (time.perf_counter() - t)
    t = time.perf_counter()
    embedder.embed(ss)
    sent_rate = len(ss) / (time.perf_counter() - t)
    projected = len(chunk_texts) / chunk_rate + len(sent_texts) / sent_rate
    print(f"bare embed: {chunk_rate:.1f} chunks/s, {sent_rate:.1f} sentences/s; "
          f"projected embedding time {projected:.0f} s")
    return chunk_rate, sent_rate, projected


def add_one_page(index_dir: Path, embedder) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """Add one new page to a copy of the index (``Engine.add_documents``, durable when
    it returns) and delete it again: the write costs a segment and a manifest, not the
    index. Timed with the embedding of the page counted apart."""
    from citeqa import Engine, make_document

    copy = WORK / f"{index_dir.name}-add"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(index_dir, copy)
    engine = Engine.open(copy, embedder)
    text = "\n\n".join(
        f"Paragraph {i} of a page added to a large index: segments make this write cost "
        f"what it adds. Tombstones record deletions; merges run by a size-tiered policy."
        for i in range(12)
    )
    page = make_document(f"# Added page\n\n{text}", doc_id="added-page")
    t = time.perf_counter()
    vectors = embedder.embed([text])  # what embedding a page this size costs, alone
    embed_s = time.perf_counter() - t
    before = dir_bytes(copy)
    t = time.perf_counter()
    stats = engine.add_documents([page])
    add_s = time.perf_counter() - t
    written = dir_bytes(copy) - before
    t = time.perf_counter()
    engine.delete_document("added-page")
    delete_s = time.perf_counter() - t
    engine.close()
    shutil.rmtree(copy, ignore_errors=True)
    del vectors
    return {"add_s": add_s, "embedded": stats.embedded, "embed_page_s": embed_s,
            "add_written_bytes": written, "delete_s": delete_s}


def _runs() -> list[dict]:  # type: ignore[type-arg]
    return json.loads(SCALE_JSON.read_text()) if SCALE_JSON.exists() else []


def _save(entry: dict) -> None:  # type: ignore[type-arg]
    """One entry per corpus size in scale.json (read by scale_chart.py and memory.py)."""
    runs = [r for r in _runs() if r.get("chunks") != entry["chunks"]] + [entry]
    SCALE_JSON.parent.mkdir(parents=True, exist_ok=True)
    SCALE_JSON.write_text(json.dumps(sorted(runs, key=lambda r: r["chunks"]), indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=20_000, help="corpus size to build")
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--sample", type=int, default=256, help="texts for the throughput probe")
    parser.add_argument("--queries-only", action="store_true",
                        help="keep the last build of this size; measure queries and the server")
    args = parser.parse_args()
    load = wait_for_quiet()

    from citeqa import ChunkingParams, Engine, index_corpus, load_documents
    from citeqa._embedding import make_embedder

    embedder = make_embedder("onnx", onnx_dir=WORK / "onnx")
    corpus, planned, titles = pick_corpus(args.chunks, embedder)
    docs = load_documents([corpus])
    print(f"corpus: {len(docs)} pages, ~{planned} chunks, {dir_bytes(corpus) / 1e6:.1f} MB text")

    index_dir = WORK / f"pydocs-index-{args.chunks}"
    if args.queries_only:
        # Re-measure queries and the server in a fresh process on the last build: a
        # process that just built 20,000 chunks carries its garbage into the timings.
        newest_first = sorted(_runs(), key=lambda r: r.get("date", ""), reverse=True)
        built = next((r for r in newest_first if r.get("target_chunks") == args.chunks), None)
        if built is None or not index_dir.is_dir():
            raise SystemExit(f"no build for --chunks {args.chunks}; run without --queries-only")
        chunk_rate, sent_rate = built["chunk_rate"], built["sentence_rate"]
        projected, build_s = built["embed_projection_s"], built["build_s"]
        counts = (built["chunks"], built["sentences"], built["documents"])
        sample_size = built.get("sample", args.sample)
    else:
        chunk_rate, sent_rate, projected = probe(docs, embedder, args.sample)
        shutil.rmtree(index_dir, ignore_errors=True)
        t = time.perf_counter()
        stats = index_corpus([corpus], index_dir, embedder, ChunkingParams())
        build_s = time.perf_counter() - t
        print(f"build: {stats.chunks} chunks, {stats.sentences} sentences in {build_s:.0f} s")
        _save({
            "target_chunks": args.chunks, "sample": args.sample, "chunks": stats.chunks,
            "corpus": "Debian's Python and PostgreSQL manuals",
            "sentences": stats.sentences, "documents": stats.documents, "build_s": build_s,
            "embed_projection_s": projected, "chunk_rate": chunk_rate,
            "sentence_rate": sent_rate, "date": time.strftime("%Y-%m-%d"),
        })
        # Queries in a fresh process: this one carries the build's garbage into timings.
        again = [sys.executable, __file__, "--chunks", str(args.chunks), "--queries-only",
                 "--questions", str(args.questions)]
        raise SystemExit(subprocess.run(again, check=False).returncode)
    disk = dir_bytes(index_dir)
    n_chunks, n_sentences, n_documents = counts
    print(f"build: {n_chunks} chunks, {n_sentences} sentences in {build_s:.0f} s; "
          f"{disk / 1e6:.1f} MB on disk")

    random.Random(2).shuffle(titles)
    qs = [f"What is {t}?" for t in titles[: args.questions]]
    engine = Engine.open(index_dir, embedder)
    for q in qs[:10]:
        engine.ask(q)
    bare = stats_ms(time_each(lambda q: embedder.embed_batch([q]), qs))
    ask = stats_ms(time_each(engine.ask, qs))
    first_stage = stats_ms(time_each(engine.with_selector(None).ask, qs))
    engine = None
    add = add_one_page(index_dir, embedder)

    import httpx
    import psutil

    proc, url, ready_s = start_server(index_dir, backend="onnx", threads=0)
    try:
        rss_start = psutil.Process(proc.pid).memory_info().rss
        with httpx.Client(base_url=url, timeout=60) as client:
            for q in qs:
                client.post("/ask", json={"question": q}).raise_for_status()
        rss_after = psutil.Process(proc.pid).memory_info().rss
    finally:
        stop(proc)

    entry = {
        **built, "disk_bytes": disk, "ask_p50_ms": ask["p50"], "ask_p95_ms": ask["p95"],
        "bare_p50_ms": bare["p50"], "first_stage_p50_ms": first_stage["p50"],
        "first_stage_p95_ms": first_stage["p95"], "rss_start": rss_start, "rss_after": rss_after,
        "ready_s": ready_s, "date": time.strftime("%Y-%m-%d"), **add,
    }
    _save(entry)

    per_k = disk / n_chunks * 1000 / 1e6
    lines = [
        f"Corpus: {n_documents} pages of Debian's python3.11-doc and postgresql-doc-15 "
        "manuals (html2text), "
        f"{dir_bytes(corpus) / 1e6:.1f} MB of text; default `ChunkingParams`, ONNX encoder, "
        f"load average when measuring: {load}.",
        "",
        "| what | figure |",
        "| --- | --- |",
        f"| chunks / sentences embedded | {n_chunks} / {n_sentences} "
        f"({n_sentences / n_chunks:.1f} sentences per chunk) |",
        f"| bare `embed` throughput before the build (sample of {sample_size} each) | "
        f"{chunk_rate:.1f} chunks/s, {sent_rate:.1f} sentences/s |",
        f"| build (`index_corpus`, wall) | {build_s:.0f} s = {n_chunks / build_s:.2f} chunks/s "
        f"({projected / build_s:.2f}× the speed projected from bare embedding, "
        f"{projected:.0f} s) |",
        f"| index on disk | {disk / 1e6:.1f} MB ({per_k:.2f} MB per 1,000 chunks) |",
        f"| `Engine.ask` in process, {len(qs)} title questions | p50 {ask['p50']:.2f} ms, "
        f"p95 {ask['p95']:.2f} ms ({ask['p50'] / bare['p50']:.2f}× bare "
        f"`embed_batch([q])` p50 {bare['p50']:.2f} ms) |",
        f"| the same without the learned stage (`CITEQA_SELECTOR=off`) | p50 "
        f"{first_stage['p50']:.2f} ms, p95 {first_stage['p95']:.2f} ms |",
        f"| server RSS after start / after {len(qs)} questions | {rss_start / 2**20:.0f} MiB / "
        f"{rss_after / 2**20:.0f} MiB (ready in {ready_s:.1f} s) |",
        f"| add one page (`Engine.add_documents`, durable) | {add['add_s']:.2f} s, "
        f"{add['embedded']} texts embedded, {add['add_written_bytes'] / 1e6:.2f} MB written |",
        f"| delete it again (a tombstone) | {add['delete_s']:.2f} s |",
    ]
    print("\n".join(lines))
    write_section(f"scale ({n_chunks} chunks)", "\n".join(lines))


if __name__ == "__main__":
    main()
