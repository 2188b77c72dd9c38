"""Memory: resident set of a real server over 10,000 questions, and index size on disk.

Starts ``bench/_serve.py`` (the same app as ``citeqa serve``) on a free loopback
port with the default ONNX backend over the seeds index, asks ``--questions``
questions cycling tests/questions.jsonl with one keep-alive httpx client, and
reads the server's RSS (psutil) after start and every ``--every`` questions. The
baseline is the RSS right after ``/readyz`` first answered. Index size on disk per
1,000 chunks comes from the seeds index and from every scale run recorded in
``bench/results/scale.json``.
"""

from __future__ import annotations

import argparse
import json
import time

from _common import BENCH, questions, seed_index, start_server, stop, wait_for_quiet, write_section
from scale import SCALE_JSON, dir_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--questions", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=2_000)
    args = parser.parse_args()
    load = wait_for_quiet()

    import httpx
    import psutil

    from citeqa._store import load_index

    index_dir = seed_index()
    qs = questions()
    proc, url, ready_s = start_server(index_dir, backend="onnx", threads=0)
    points: list[tuple[int, float, float]] = []
    try:
        server = psutil.Process(proc.pid)
        mib = 2**20
        points.append((0, server.memory_info().rss / mib, 0.0))
        t0 = time.perf_counter()
        with httpx.Client(base_url=url, timeout=30) as client:
            for i in range(1, args.questions + 1):
                client.post("/ask", json={"question": qs[i % len(qs)]}).raise_for_status()
                if i % args.every == 0:
                    points.append((i, server.memory_info().rss / mib, time.perf_counter() - t0))
                    print(f"{i:6d} questions: RSS {points[-1][1]:.1f} MiB")
    finally:
        stop(proc)

    start_rss = points[0][1]
    lines = [
        f"Server: `bench/_serve.py` (ONNX, default threads, batching on) over the seeds index, "
        f"ready in {ready_s:.2f} s; {args.questions} questions cycling the {len(qs)} of "
        f"tests/questions.jsonl, one keep-alive client; load average when measuring: {load}.",
        "",
        "| questions answered | RSS MiB | vs after start | elapsed s |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for n, rss, el in points:
        lines.append(f"| {n} | {rss:.1f} | {rss / start_rss:.3f}× | {el:.1f} |")
    growth = points[-1][1] - points[1][1] if len(points) > 2 else 0.0
    lines += ["", f"Growth from {points[1][0]} to {points[-1][0]} questions: {growth:+.1f} MiB.",
              "", "| index | chunks | sentences | on disk | per 1,000 chunks |",
              "| --- | ---: | ---: | ---: | ---: |"]
    data = load_index(index_dir)
    disk = dir_bytes(index_dir)
    sizes = [("seeds", len(data.chunks), len(data.sentences.doc_ids), disk)]
    if SCALE_JSON.exists():
        for r in json.loads(SCALE_JSON.read_text()):
            corpus = r.get("corpus", "Debian's Python manuals")
            sizes.append((corpus, r["chunks"], r["sentences"], r["disk_bytes"]))
    for name, n, ns, b in sizes:
        lines.append(f"| {name} | {n} | {ns} | {b / 1e6:.2f} MB | {b / n * 1000 / 1e6:.2f} MB |")
    print("\n".join(lines))
    (BENCH / "results" / "memory.json").write_text(json.dumps(
        {"points": points, "seeds_chunks": len(data.chunks), "seeds_disk": disk}, indent=1))
    write_section("memory", "\n".join(lines))


if __name__ == "__main__":
    main()
