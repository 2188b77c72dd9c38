"""FAISS index type by corpus size, and the cost of the all-sentences product.

Exact ``IndexFlatIP`` vs ``IndexHNSWFlat`` (citeqa's M and efConstruction; efSearch
128 and citeqa's 256) at several sizes: single-query latency with k=64 (the depth
citeqa searches), HNSW build time, and recall@10 of HNSW against exact search
(tie-aware: a hit scoring at least the exact 10th score counts, since the corpus
holds duplicate texts whose vectors tie). Latency
uses normalised random vectors; recall is measured twice: on real vectors (the
chunk and sentence vectors of the largest scale index, with held-out real sentence
vectors as queries) padded to size with random ones, and on random vectors only
(the hard case). The bare baseline is the exact index. Also times
``sentence_vectors @ q`` (what ``_answer._sentence_similarity`` does per query) at
growing sentence counts. Figures go to RESULTS.md and ``bench/results/faiss.json``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from _common import BENCH, WORK, stats_ms, wait_for_quiet, write_section

DIM = 384
EFS = (128, 256)  # 256 is citeqa's efSearch
FAISS_JSON = BENCH / "results" / "faiss.json"


def unit(n: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def real_vectors() -> np.ndarray | None:
    from citeqa._store import load_index

    dirs = sorted(WORK.glob("pydocs-index-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    for d in reversed(dirs):
        try:
            data = load_index(d)
        except Exception:  # noqa: BLE001 - an unfinished build: try the next
            continue
        return np.concatenate([data.chunk_vectors(), data.sentences.vectors]).astype(np.float32)
    return None


def latency(index, queries: np.ndarray, k: int = 64) -> dict[str, float]:  # type: ignore[no-untyped-def]
    for q in queries[:5]:
        index.search(q[None], k)
    out = []
    for q in queries:
        t = time.perf_counter()
        index.search(q[None], k)
        out.append(time.perf_counter() - t)
    return stats_ms(out)


def recall(hnsw, exact_scores: np.ndarray, queries: np.ndarray, ef: int) -> float:  # type: ignore[no-untyped-def]
    hnsw.hnsw.efSearch = ef
    got, _ = hnsw.search(queries, 10)
    tenth = exact_scores[:, -1:] - 1e-6
    return float(np.mean((got >= tenth).sum(axis=1) / 10))


def hnsw_of(base: np.ndarray):  # type: ignore[no-untyped-def]
    import faiss

    from citeqa._index import HNSW_EF_CONSTRUCTION, HNSW_M

    index = faiss.IndexHNSWFlat(DIM, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    t = time.perf_counter()
    index.add(base)
    return index, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flat-sizes", default="20000,100000,300000,1000000")
    parser.add_argument("--hnsw-sizes", default="20000,100000")
    parser.add_argument("--sentence-sizes", default="100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    load = wait_for_quiet()
    import faiss

    rng = np.random.default_rng(0)
    flat_sizes = [int(s) for s in args.flat_sizes.split(",")]
    hnsw_sizes = [int(s) for s in args.hnsw_sizes.split(",")]
    queries = unit(args.queries, rng)
    pool = unit(max(flat_sizes + hnsw_sizes), rng)
    rows = []
    for n in sorted(set(flat_sizes + hnsw_sizes)):
        base = pool[:n]
        flat = faiss.IndexFlatIP(DIM)
        flat.add(base)
        row = {"n": n, "flat": latency(flat, queries)}
        if n in hnsw_sizes:
            exact, _ = flat.search(queries, 10)
            hnsw, build_s = hnsw_of(base)
            row["hnsw_build_s"] = build_s
            for ef in EFS:
                hnsw.hnsw.efSearch = ef
                row[f"hnsw{ef}"] = latency(hnsw, queries)
                row[f"recall_random{ef}"] = recall(hnsw, exact, queries, ef)
            del hnsw
        print(n, {k: (v["p50"] if isinstance(v, dict) else v) for k, v in row.items()}, flush=True)
        rows.append(row)

    real = real_vectors()
    real_rows = []
    if real is not None:
        perm = np.random.default_rng(1).permutation(len(real))
        held = real[perm[: args.queries]]
        kept = real[perm[args.queries :]]
        for n in hnsw_sizes:
            base = np.concatenate([kept, pool[: max(0, n - len(kept))]])[:n]
            flat = faiss.IndexFlatIP(DIM)
            flat.add(base)
            exact, _ = flat.search(held, 10)
            hnsw, _ = hnsw_of(base)
            real_rows.append({"n": n, "real": min(n, len(kept)),
                              **{f"recall{ef}": recall(hnsw, exact, held, ef) for ef in EFS}})
            print(real_rows[-1], flush=True)
            del hnsw

    sent_rows = []
    for n in [int(s) for s in args.sentence_sizes.split(",")]:
        mat = np.empty((n, DIM), dtype=np.float32)
        for i in range(0, n, len(pool)):  # timing only: tiled copies are fine
            mat[i : i + len(pool)] = pool[: min(len(pool), n - i)]
        q = queries[0]
        times = []
        for j in range(30):
            t = time.perf_counter()
            mat @ queries[j % len(queries)]
            times.append(time.perf_counter() - t)
        sent_rows.append({"n": n, "matvec": stats_ms(times[3:]), "mib": mat.nbytes / 2**20})
        del mat, q
        print(sent_rows[-1], flush=True)

    FAISS_JSON.parent.mkdir(parents=True, exist_ok=True)
    FAISS_JSON.write_text(json.dumps({"rows": rows, "real": real_rows, "sentences": sent_rows},
                                     indent=1))
    lines = [
        f"384-dimensional normalised vectors; {args.queries} single-vector queries, k=64 "
        f"(citeqa's search depth), one process, faiss default threads; load average when "
        f"measuring: {load}. Ratio = exact p50 / HNSW p50 (how much faster HNSW is).",
        "",
        "| vectors | exact p50 / p95 ms | HNSW ef128 p50 / p95 ms | HNSW ef256 p50 / p95 ms "
        "| speed-up ef256 | HNSW build s | recall@10 random ef128 / ef256 |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        f = r["flat"]
        if "hnsw256" in r:
            lo, hi = r["hnsw128"], r["hnsw256"]
            lines.append(
                f"| {r['n']:,} | {f['p50']:.2f} / {f['p95']:.2f} | {lo['p50']:.2f} / "
                f"{lo['p95']:.2f} | {hi['p50']:.2f} / {hi['p95']:.2f} | "
                f"{f['p50'] / hi['p50']:.1f}× | {r['hnsw_build_s']:.1f} | "
                f"{r['recall_random128']:.3f} / {r['recall_random256']:.3f} |")
        else:
            lines.append(f"| {r['n']:,} | {f['p50']:.2f} / {f['p95']:.2f} | – | – | – | – | – |")
    if real_rows:
        lines += ["", "Recall@10 of HNSW against exact (tie-aware), real vectors (scale index) "
                  "padded with random ones, held-out real sentence vectors as queries:", "",
                  "| vectors | of which real | recall@10 ef128 | recall@10 ef256 |",
                  "| ---: | ---: | ---: | ---: |"]
        for r in real_rows:
            lines.append(f"| {r['n']:,} | {r['real']:,} | {r['recall128']:.3f} | "
                         f"{r['recall256']:.3f} |")
    lines += ["", "`sentence_vectors @ q` over every sentence, what a query would cost if it "
              "scored all sentences (citeqa scores only the 64 candidates' sentences):", "",
              "| sentence vectors | matrix MiB | p50 ms | p95 ms |",
              "| ---: | ---: | ---: | ---: |"]
    for r in sent_rows:
        lines.append(f"| {r['n']:,} | {r['mib']:.0f} | {r['matvec']['p50']:.2f} | "
                     f"{r['matvec']['p95']:.2f} |")
    print("\n".join(lines))
    write_section("faiss index type", "\n".join(lines))


if __name__ == "__main__":
    main()
