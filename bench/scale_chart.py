"""Chart and projections from the measured scale runs: bench/results/scale.png.

Reads bench/results/{scale,memory,indexing,faiss}.json (written by scale.py,
memory.py, indexing.py, faiss_index.py), plots chunks against build time, server
RSS and query latency (measured points, projected lines), and prints the projected
cost at 1 million and 10 million chunks on this CPU. Projections are linear in the
measured per-chunk costs of the largest scale run; query latency swaps the measured
exact search for its cost at the projected size (or the HNSW p50 above
``HNSW_MIN_CHUNKS``); the sentence scoring works on the candidates only, so it stays.
"""

from __future__ import annotations

import json

import numpy as np
from _common import BENCH

from citeqa._index import HNSW_EF_SEARCH, HNSW_MIN_CHUNKS

RES = BENCH / "results"


def load(name: str):  # type: ignore[no-untyped-def]
    path = RES / name
    return json.loads(path.read_text()) if path.exists() else None


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = load("scale.json")
    if not scale:
        raise SystemExit("run bench/scale.py first")
    mem, idx, fa = load("memory.json"), load("indexing.json"), load("faiss.json")
    r = scale[-1]
    n0, spc = r["chunks"], r["sentences"] / r["chunks"]
    base_rss = mem["points"][0][1] * 2**20 if mem else r["rss_start"]
    per_chunk_build = r["build_s"] / n0
    per_chunk_disk = r["disk_bytes"] / n0
    per_chunk_ram = max((r["rss_after"] - base_rss) / n0, per_chunk_disk)

    flat_per_vec = hnsw_ms = matvec_per_vec = 0.0
    if fa:
        big = max(fa["rows"], key=lambda x: x["n"])
        flat_per_vec = big["flat"]["p50"] / big["n"]
        key = f"hnsw{HNSW_EF_SEARCH}"
        hn = [x for x in fa["rows"] if key in x]
        hnsw_ms = max(hn, key=lambda x: x["n"])[key]["p50"] if hn else 0.0
        sv = max(fa["sentences"], key=lambda x: x["n"])
        matvec_per_vec = sv["matvec"]["p50"] / sv["n"]

    def build_s(n: float) -> float:
        return per_chunk_build * n

    def ram(n: float) -> float:
        return base_rss + per_chunk_ram * n

    def query_ms(n: float) -> float:
        # Only the chunk search grows with the corpus: sentences are scored within the
        # 64 best candidates. BM25 (sparse, per query term) is not modelled.
        dense = hnsw_ms if n >= HNSW_MIN_CHUNKS else flat_per_vec * n
        return r["ask_p50_ms"] - flat_per_vec * n0 + dense

    xs = np.logspace(1, 7, 60)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    meas_n = [x["chunks"] for x in scale]
    ax = axes[0]
    ax.loglog(xs, [build_s(x) / 3600 for x in xs], "--", label="projected (linear)")
    pts = [(x["chunks"], x["build_s"]) for x in scale]
    if idx:
        pts += [(i["chunks"], i["build_s"]) for i in idx if i["backend"] == "onnx"]
    ax.loglog([p[0] for p in pts], [p[1] / 3600 for p in pts], "o", label="measured")
    ax.set(title="build time (ONNX, 2 cores)", xlabel="chunks", ylabel="hours")
    ax = axes[1]
    ax.loglog(xs, [ram(x) / 2**30 for x in xs], "--", label="projected server RSS")
    ax.loglog(xs, [per_chunk_disk * x / 2**30 for x in xs], ":", label="projected disk")
    mpts = [(x["chunks"], x["rss_after"]) for x in scale]
    if mem:
        mpts.append((mem["seeds_chunks"], mem["points"][-1][1] * 2**20))
    ax.loglog([p[0] for p in mpts], [p[1] / 2**30 for p in mpts], "o", label="measured RSS")
    ax.loglog(meas_n, [x["disk_bytes"] / 2**30 for x in scale], "s", label="measured disk")
    ax.axhline(24, color="red", lw=0.8)
    ax.text(12, 30, "this machine: 24 GiB", color="red", fontsize=8)
    ax.set(title="memory and disk", xlabel="chunks", ylabel="GiB")
    ax = axes[2]
    ax.loglog(xs, [query_ms(x) for x in xs], "--", label="projected ask p50")
    ax.loglog(meas_n, [x["ask_p50_ms"] for x in scale], "o", label="measured ask p50")
    ax.loglog(meas_n, [x["ask_p95_ms"] for x in scale], "^", label="measured ask p95")
    ax.axvline(HNSW_MIN_CHUNKS, color="grey", lw=0.8)
    ax.text(HNSW_MIN_CHUNKS * 1.1, 0.04, "HNSW from here", color="grey", fontsize=8,
            transform=ax.get_xaxis_transform())
    ax.set(title="in-process Engine.ask latency", xlabel="chunks", ylabel="ms")
    for ax in axes:
        ax.grid(True, which="both", lw=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = RES / "scale.png"
    fig.savefig(out, dpi=110)
    print(f"wrote {out.relative_to(BENCH.parent)}")
    print(f"per chunk: build {per_chunk_build:.3f} s, disk {per_chunk_disk / 1e3:.1f} kB, "
          f"RAM {per_chunk_ram / 1e3:.1f} kB; {spc:.1f} sentences per chunk")
    for n in (1_000_000, 10_000_000):
        print(f"{n:>10,} chunks: embedding/build {build_s(n) / 86400:.1f} days, disk "
              f"{per_chunk_disk * n / 2**30:.0f} GiB, RAM {ram(n) / 2**30:.0f} GiB, query p50 "
              f"{query_ms(n):.0f} ms; scoring every sentence instead would add "
              f"{matvec_per_vec * spc * n:.0f} ms")


if __name__ == "__main__":
    main()
