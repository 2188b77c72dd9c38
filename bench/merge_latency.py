"""The write that completes a size tier: does it wait for the merge it starts?

With a hashing embedder of the bundled model's dimension (the store's and the index's
cost alone), writes nine segments of equal size (``--chunks``): one size tier
short of the ten that the merge policy merges. Then, in a fresh engine, the tenth
such write (``Engine.add_documents`` of a batch of documents, durable when it
returns) completes the tier. Measures the time until that write returns, and until
the merged generation is served. The documents are the seed's paragraphs, numbered.

``--src`` runs the same script against another checkout's ``src/`` (before merges ran
in the background, the write itself merged). Figures go to
``bench/results/merge_latency.json`` (one entry per label) and RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from _common import BENCH, REPO, WORK, use_src, write_section

RESULTS_JSON = BENCH / "results" / "merge_latency.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chunks", type=int, default=2000,
                        help="size of a segment: CHUNKS/4 documents of four seed paragraphs "
                             "(5000 gives 2,941 chunks)")
    parser.add_argument("--label", default="background merges", help="this run's name")
    parser.add_argument("--src", type=Path, help="another checkout's src/ to measure instead")
    args = parser.parse_args()
    use_src(args.src)
    from citeqa import Engine, HashingEmbedder, build_index, make_document
    from citeqa._index import SEGMENTS_PER_TIER
    from citeqa._store import read_manifest, write_index

    embedder = HashingEmbedder(dimension=384)
    (seed,) = sorted((REPO / "seeds").glob("*.txt"))
    paragraphs = [p for p in seed.read_text(encoding="utf-8").split("\n\n") if p.strip()]

    def batch(n: int, chunks: int) -> list:  # documents of about ``chunks`` chunks
        docs = []
        for i in range(chunks // 4):  # four paragraphs a document: about four chunks
            text = "\n\n".join(f"{paragraphs[(4 * i + k) % len(paragraphs)]} (batch {n}, "
                               f"note {i}.{k})" for k in range(4))
            docs.append(make_document(text, doc_id=f"b{n}-{i}"))
        return docs

    index_dir = WORK / f"merge-latency-{args.label.replace(' ', '-')}"
    shutil.rmtree(index_dir, ignore_errors=True)
    started = time.perf_counter()
    data, docs = None, []
    for n in range(SEGMENTS_PER_TIER - 1):
        docs += batch(n, args.chunks)
        data, _ = build_index(docs, embedder, previous=data, auto_merge=False)
    assert data is not None
    write_index(index_dir, data)
    build_s = time.perf_counter() - started
    segments = len(read_manifest(index_dir)["segments"])
    chunks = len(data.chunks)
    print(f"built {chunks} chunks in {segments} segments in {build_s:.1f} s")

    engine = Engine.open(index_dir, embedder)
    last = batch(SEGMENTS_PER_TIER - 1, args.chunks)
    started = time.perf_counter()
    engine.add_documents(last)
    write_s = time.perf_counter() - started
    after_write = len(read_manifest(index_dir)["segments"])
    wait = getattr(engine, "wait_for_merges", None)
    if wait is not None:
        assert wait(3600)
    served_s = time.perf_counter() - started
    result = {
        "label": args.label,
        "chunks_before": chunks,
        "segments_before": segments,
        "write_chunks": len(engine.index.chunks) - chunks,
        "write_s": round(write_s, 2),
        "segments_after_write": after_write,
        "merged_served_s": round(served_s, 2),
        "segments_at_end": len(engine.index.segments),
    }
    print(json.dumps(result))
    shutil.rmtree(index_dir, ignore_errors=True)

    runs = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    runs[args.label] = result
    RESULTS_JSON.write_text(json.dumps(runs, indent=2) + "\n")
    def segments(n: int) -> str:
        return f"{n} segment{'s' if n != 1 else ''}"

    rows = "\n".join(
        f"| {r['label']} | {r['chunks_before'] // r['segments_before']:,} | "
        f"{r['chunks_before'] + r['write_chunks']:,} | {r['write_s']:.2f} "
        f"({segments(r['segments_after_write'])} on disk) | {r['merged_served_s']:.2f} "
        f"({segments(r['segments_at_end'])}) |"
        for r in runs.values()
    )
    write_section("the write that completes a tier", (
        "Hashing embedder (384 dimensions). Nine segments, then a tenth of the same "
        "size written by `Engine.add_documents`, which completes the size tier: the "
        "merge policy merges the ten. A run with `--src` measures another checkout "
        "(before background merges: `git worktree add /work/old_head 2d49da0`).\n\n"
        "| run | chunks a segment | chunks | the write returns, s | the merged index "
        "is served, s |\n"
        "| --- | ---: | ---: | ---: | ---: |\n" + rows
    ))


if __name__ == "__main__":
    main()
