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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=20_000, help="corpus size to build")
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--sample", type=int, default=256, help="texts for the throughput probe")
    args = parser.parse_args()
    load = wait_for_quiet()

    from citeqa import ChunkingParams, Engine, index_corpus, load_documents
    from citeqa._embedding import make_embedder

    embedder = make_embedder("onnx", onnx_dir=WORK / "onnx")
    corpus, planned, titles = pick_corpus(args.chunks, embedder)
    docs = load_documents([corpus])
    print(f"corpus: {len(docs)} pages, ~{planned} chunks, {dir_bytes(corpus) / 1e6:.1f} MB text")

    # Bare throughput on a sample of the same kind of text (chunks and sentences).
    from citeqa import Chunker

    chunker = Chunker(ChunkingParams(), model_tokens=embedder.count_tokens,
                      model_max_tokens=embedder.max_seq_tokens)
    chunk_texts: list[str] = []
    sent_texts: set[str] = set()
    for d in docs:
        for c in chunker.chunk(d):
            chunk_texts.append(c.text)
            sent_texts.update(d.text[s.start : s.end] for s in c.sentences)
    rng = random.Random(1)
    cs = rng.sample(chunk_texts, min(args.sample, len(chunk_texts)))
    ss = rng.sample(sorted(sent_texts), min(args.sample, len(sent_texts)))
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

    index_dir = WORK / f"pydocs-index-{args.chunks}"
    shutil.rmtree(index_dir, ignore_errors=True)
    t = time.perf_counter()
    stats = index_corpus([corpus], index_dir, embedder, ChunkingParams())
    build_s = time.perf_counter() - t
    disk = dir_bytes(index_dir)
    print(f"build: {stats.chunks} chunks, {stats.sentences} sentences in {build_s:.0f} s; "
          f"{disk / 1e6:.1f} MB on disk")

    random.Random(2).shuffle(titles)
    qs = [f"What is {t}?" for t in titles[: args.questions]]
    engine = Engine.open(index_dir, embedder)
    for q in qs[:10]:
        engine.ask(q)
    bare = stats_ms(time_each(lambda q: embedder.embed_batch([q]), qs))
    ask = stats_ms(time_each(engine.ask, qs))
    engine = None

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
        "chunks": stats.chunks, "sentences": stats.sentences, "documents": stats.documents,
        "build_s": build_s, "embed_projection_s": projected, "chunk_rate": chunk_rate,
        "sentence_rate": sent_rate, "disk_bytes": disk, "ask_p50_ms": ask["p50"],
        "ask_p95_ms": ask["p95"], "bare_p50_ms": bare["p50"], "rss_start": rss_start,
        "rss_after": rss_after, "ready_s": ready_s, "date": time.strftime("%Y-%m-%d"),
    }
    SCALE_JSON.parent.mkdir(parents=True, exist_ok=True)
    runs = json.loads(SCALE_JSON.read_text()) if SCALE_JSON.exists() else []
    runs = [r for r in runs if r.get("chunks") != stats.chunks] + [entry]
    SCALE_JSON.write_text(json.dumps(sorted(runs, key=lambda r: r["chunks"]), indent=1))

    per_k = disk / stats.chunks * 1000 / 1e6
    lines = [
        f"Corpus: {stats.documents} pages of Debian's python3.11-doc and postgresql-doc-15 "
        "manuals (html2text), "
        f"{dir_bytes(corpus) / 1e6:.1f} MB of text; default `ChunkingParams`, ONNX encoder, "
        f"load average when measuring: {load}.",
        "",
        "| what | figure |",
        "| --- | --- |",
        f"| chunks / sentences embedded | {stats.chunks} / {stats.sentences} "
        f"({stats.sentences / stats.chunks:.1f} sentences per chunk) |",
        f"| bare `embed` throughput (sample of {len(cs)} each) | {chunk_rate:.1f} chunks/s, "
        f"{sent_rate:.1f} sentences/s |",
        f"| build (`index_corpus`, wall) | {build_s:.0f} s = {stats.chunks / build_s:.2f} chunks/s "
        f"({build_s / projected:.2f}× the bare-embedding projection of {projected:.0f} s) |",
        f"| index on disk | {disk / 1e6:.1f} MB ({per_k:.2f} MB per 1,000 chunks) |",
        f"| `Engine.ask` in process, {len(qs)} title questions | p50 {ask['p50']:.2f} ms, "
        f"p95 {ask['p95']:.2f} ms ({ask['p50'] / bare['p50']:.2f}× bare "
        f"`embed_batch([q])` p50 {bare['p50']:.2f} ms) |",
        f"| server RSS after start / after {len(qs)} questions | {rss_start / 2**20:.0f} MiB / "
        f"{rss_after / 2**20:.0f} MiB (ready in {ready_s:.1f} s) |",
    ]
    print("\n".join(lines))
    write_section(f"scale ({stats.chunks} chunks)", "\n".join(lines))


if __name__ == "__main__":
    main()
