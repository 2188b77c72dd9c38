"""Indexing on Ray (``citeqa index --ray``) against the in-process build, and a projection.

One corpus (by default seeds/ replicated into ``--copies`` variants, every sentence
made distinct so nothing is deduplicated; or ``--corpus DIR``), indexed afresh:
(1) in-process (``index_corpus``, the encoder on both cores), (2) on a local Ray
cluster of two node processes with one CPU each (``ray start --head`` plus a second
node) with 1 and then 2 encoder actors, each one thread. Per run: chunks/s, and where
the wall time went: the driver's own share (listing, loading the previous generation,
then loading the new segments, merging and committing), the Ray pipeline, attaching
to Ray. Start-up overhead is measured apart: one seed document on Ray vs in-process.
The projection for N nodes divides the pipeline's work by N (the measured per-node
rate) and keeps the driver's work and the start-up fixed (Amdahl).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import time
from pathlib import Path

from _common import BENCH, REPO, WORK, wait_for_quiet, write_section


def make_corpus(target: Path, copies: int, parts: int = 4) -> Path:
    """seeds/ in ``copies`` variants, each in ``parts`` files of whole paragraphs;
    variant k tags every sentence with k, so no text repeats (a repeat would be
    embedded once in-process, once per segment on Ray)."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for seed in sorted((REPO / "seeds").glob("*.txt")):
        paragraphs = [p for p in seed.read_text(encoding="utf-8").split("\n\n") if p.strip()]
        size = -(-len(paragraphs) // parts)
        for k in range(copies):
            for n in range(parts):
                text = "\n\n".join(paragraphs[n * size : (n + 1) * size]) + "\n"
                varied = re.sub(r"([.!?])(\s)", rf" (v{k})\1\2", text)
                (target / f"{seed.stem}-v{k:03d}-{n}.txt").write_text(varied, encoding="utf-8")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", help="a folder to index (default: seeds/ replicated)")
    parser.add_argument("--copies", type=int, default=10,
                        help="variants of seeds/ (about 30 chunks each, in 4 files) when no "
                        "--corpus")
    parser.add_argument("--nodes", type=int, default=2, help="Ray node processes")
    args = parser.parse_args()
    load = wait_for_quiet()

    from citeqa import index_corpus
    from citeqa._ray import RayTimings, index_corpus_ray, local_cluster
    from citeqa.settings import Settings

    corpus = Path(args.corpus) if args.corpus else make_corpus(WORK / "ray-corpus", args.copies)
    one_doc = WORK / "ray-one"
    shutil.rmtree(one_doc, ignore_errors=True)
    one_doc.mkdir(parents=True)
    shutil.copy(sorted((REPO / "seeds").glob("*.txt"))[0], one_doc)
    settings = Settings()
    embedder = settings.make_embedder()  # exports the ONNX model once, if needed

    def fresh(name: str) -> Path:
        target = WORK / name
        shutil.rmtree(target, ignore_errors=True)
        return target

    rows: list[dict[str, object]] = []
    t = time.perf_counter()
    stats = index_corpus([corpus], fresh("ray-bench-local"), embedder)
    local_s = time.perf_counter() - t
    chunks = stats.chunks
    rows.append({"run": "in-process (2 threads)", "workers": 0, "seconds": local_s,
                 "chunks": chunks, "embedded": stats.embedded})
    t = time.perf_counter()
    small = index_corpus([one_doc], fresh("ray-bench-one-local"), embedder)
    one_local_s = time.perf_counter() - t

    started = time.perf_counter()
    with local_cluster(nodes=args.nodes, cpus_per_node=1) as cluster:
        cluster_s = time.perf_counter() - started
        os.environ.update(cluster.env)
        import ray

        timings = {}
        for workers in (1, 2):
            if workers > args.nodes:
                continue
            timing = RayTimings()
            stats = index_corpus_ray(
                [corpus], fresh(f"ray-bench-{workers}"), settings, address=cluster.address,
                workers=workers, embedder=embedder, report=print, timings=timing,
            )
            assert stats.chunks == chunks, (stats.chunks, chunks)
            timings[workers] = timing
            rows.append({"run": f"Ray, {workers} actor(s)", "workers": workers,
                         "seconds": timing.total_s, "chunks": stats.chunks,
                         "embedded": stats.embedded, **timing.__dict__,
                         "driver_s": timing.driver_s})
        one = RayTimings()
        index_corpus_ray([one_doc], fresh("ray-bench-one"), settings, address=cluster.address,
                         workers=min(2, args.nodes), embedder=embedder, timings=one)
        ray.shutdown()

    startup_s = one.total_s - one_local_s
    best = timings[max(timings)]
    per_node = chunks / best.pipeline_s  # a node like this one: 2 cores, 2 actors
    attach_s = timings[min(timings)].connect_s
    fixed_s = best.driver_s + startup_s + attach_s
    driver_per_chunk = best.driver_s / chunks
    projection = []
    for n in (1, 2, 4, 8, 16, 32):
        total = fixed_s + chunks / (n * per_node)
        projection.append({"nodes": n, "seconds": total, "chunks_per_s": chunks / total,
                           "driver_share": fixed_s / total})

    lines = [
        f"Corpus `{corpus.relative_to(REPO) if corpus.is_relative_to(REPO) else corpus}`: "
        f"{chunks} chunks, {rows[0]['embedded']} texts embedded (chunks and sentences); "
        f"ONNX encoder, one fresh build per run; a local Ray cluster of {args.nodes} node "
        f"processes with 1 CPU each (started in {cluster_s:.1f} s, not counted below); "
        f"load average when measuring: {load}.",
        "",
        "| run | wall s | chunks/s | Ray pipeline s | actors busy | driver s (list + commit) "
        "| driver share | attach s | segments |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        if r["workers"]:
            lines.append(
                f"| {r['run']} | {r['seconds']:.2f} | {chunks / float(r['seconds']):.1f} "
                f"| {r['pipeline_s']:.2f} "
                f"| {float(r['actor_busy_s']) / (float(r['pipeline_s']) * int(r['workers'])):.0%} "
                f"| {r['driver_s']:.2f} "
                f"| {float(r['driver_s']) / float(r['seconds']):.0%} "
                f"| {r['connect_s']:.2f} | {r['segments']} |"
            )
        else:
            lines.append(f"| {r['run']} | {r['seconds']:.2f} | "
                         f"{chunks / float(r['seconds']):.1f} | | | | | | 1 |")
    lines += [
        "",
        "*actors busy*: the actors' time embedding and writing segments over actors × "
        "pipeline time (the rest: starting them, loading the model, waiting for blocks).",
        "",
        f"Start-up overhead: one seed document ({small.chunks} chunks) takes "
        f"{one.total_s:.2f} s on Ray ({one.workers} actors) and {one_local_s:.2f} s in-process: "
        f"**{startup_s:.1f} s** of fixed cost (Ray Data planning, starting the actors, one model "
        "load each), paid once per run.",
        "",
        f"Projection for N nodes like this one (2 cores, 2 actors): the pipeline's measured "
        f"rate, **{per_node:.1f} chunks/s per node**, times N; the driver's work "
        f"({best.driver_s:.2f} s here, {driver_per_chunk * 1000:.2f} ms a chunk, on one "
        f"machine), attaching to Ray ({attach_s:.1f} s) and the start-up ({startup_s:.1f} s) "
        "stay fixed. For this corpus:",
        "",
        "| nodes | wall s | chunks/s | driver, attach and start-up share |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for p in projection:
        lines.append(f"| {p['nodes']} | {p['seconds']:.1f} | {p['chunks_per_s']:.1f} "
                     f"| {p['driver_share']:.0%} |")
    lines += [
        "",
        f"The ceiling, however many nodes: the driver's {1 / driver_per_chunk:.0f} chunks/s "
        "(loading every new segment, merging, committing), less the start-up for small "
        "runs. Not measured: nodes on other machines (network, a shared file system for the "
        "files and the index).",
    ]
    print("\n".join(lines))
    (BENCH / "results" / "ray_indexing.json").write_text(json.dumps({
        "chunks": chunks, "runs": rows, "startup_s": startup_s, "one_doc_ray_s": one.total_s,
        "one_doc_local_s": one_local_s, "cluster_start_s": cluster_s,
        "per_node_chunks_per_s": per_node, "driver_s_per_chunk": driver_per_chunk,
        "projection": projection,
    }, indent=1, default=str))
    write_section("ray indexing", "\n".join(lines))


if __name__ == "__main__":
    main()
