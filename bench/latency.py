"""Query latency: bare ``SentenceTransformer.encode([q])`` vs ``Engine.ask`` vs ``POST /ask``.

Every question of tests/questions.jsonl, ``--rounds`` times each, after a warm-up.
Ratios are p50 against the bare encode p50 of this run. Both encoder backends
(torch, onnx) are measured in process and over HTTP (a keep-alive httpx client
against a real uvicorn on a free loopback port).
"""

from __future__ import annotations

import argparse
import gc
import statistics

from _common import (
    fmt,
    questions,
    seed_index,
    start_server,
    stats_ms,
    stop,
    time_each,
    wait_for_quiet,
    write_section,
)


def rounds_of(fn, qs, rounds):  # type: ignore[no-untyped-def]
    for q in qs[:10]:
        fn(q)  # warm-up
    samples: list[float] = []
    round_p50: list[float] = []
    for _ in range(rounds):
        got = time_each(fn, qs)
        samples += got
        round_p50.append(statistics.median(got) * 1000)
    s = stats_ms(samples)
    s["round_p50_min"], s["round_p50_max"] = min(round_p50), max(round_p50)
    return s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="0: library default")
    args = parser.parse_args()
    load = wait_for_quiet()
    qs = questions()
    threads = args.threads or None
    from _common import WORK

    from citeqa import Engine
    from citeqa._embedding import bundled_model_path, export_onnx, make_embedder

    index_dir = seed_index()
    export_onnx(None, WORK / "onnx")
    rows: list[tuple[str, dict[str, float]]] = []

    import torch
    from sentence_transformers import SentenceTransformer

    if threads:
        torch.set_num_threads(threads)
    model = SentenceTransformer(str(bundled_model_path()), device="cpu", local_files_only=True)
    bare = rounds_of(lambda q, m=model: m.encode([q]), qs, args.rounds)
    rows.append(("bare SentenceTransformer.encode([q]) (torch)", bare))
    model = None
    gc.collect()

    for backend in ("torch", "onnx"):
        embedder = make_embedder(backend, threads=threads, onnx_dir=WORK / "onnx")
        engine = Engine.open(index_dir, embedder)
        rows.append((f"bare {backend} embed_batch([q])",
                     rounds_of(lambda q, e=embedder: e.embed_batch([q]), qs, args.rounds)))
        rows.append((f"Engine.ask in process ({backend})",
                     rounds_of(engine.ask, qs, args.rounds)))
        first_stage = Engine.open(index_dir, embedder, selector=False)
        rows.append((f"Engine.ask in process ({backend}, learned stage off)",
                     rounds_of(first_stage.ask, qs, args.rounds)))
        gc.collect()

    import os

    import httpx

    for backend, selector in (("torch", "on"), ("onnx", "on"), ("onnx", "off")):
        os.environ["CITEQA_SELECTOR"] = selector  # the server reads it at start
        proc, url, _ = start_server(index_dir, backend=backend, threads=args.threads)
        os.environ.pop("CITEQA_SELECTOR")
        try:
            with httpx.Client(base_url=url, timeout=30) as client:
                def post(q: str) -> None:
                    r = client.post("/ask", json={"question": q})
                    r.raise_for_status()

                stage = "" if selector == "on" else ", learned stage off"
                rows.append((f"POST /ask over HTTP, keep-alive ({backend}{stage})",
                             rounds_of(post, qs, args.rounds)))
        finally:
            stop(proc)

    base = bare["p50"]
    lines = [
        f"{len(qs)} questions × {args.rounds} rounds each, after a 10-question warm-up; "
        f"threads: {args.threads or 'library default'}; load average when measuring: {load}.",
        "",
        "| path | p50 ms | p95 ms | min ms | max ms | p50 range over rounds "
        "| p50 / bare encode p50 |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for name, s in rows:
        lines.append(
            f"| {name} | {s['p50']:.2f} | {s['p95']:.2f} | {s['min']:.2f} | {s['max']:.2f} | "
            f"{s['round_p50_min']:.2f}–{s['round_p50_max']:.2f} | {s['p50'] / base:.2f}× |"
        )
        print(f"{name:55s} {fmt(s)}  ratio {s['p50'] / base:.2f}")
    write_section(f"latency (threads={args.threads or 'default'})", "\n".join(lines))


if __name__ == "__main__":
    main()
