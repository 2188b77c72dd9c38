"""Asking while a document is added: question latency during a write vs idle.

One engine per backend over a copy of the seeds index, with query batching on (as
the server runs it). A thread adds a new document of about 100 KB (the seed text
with every word changed, so every chunk and sentence is embedded again) while the
main thread asks the dev-set questions one after another with a 50 ms pause. The
baseline is the same questions asked with no write going on, in the same process.
Before, the ONNX encoder took one lock for every forward pass, so a question
waited behind indexing batches of 64 texts.
"""

from __future__ import annotations

import argparse
import shutil
import threading
import time

from _common import WORK, questions, seed_index, stats_ms, wait_for_quiet, write_section


def new_document_text() -> str:
    from _common import REPO

    seed = next((REPO / "seeds").glob("*.txt")).read_text(encoding="utf-8")
    words = seed.split(" ")
    return " ".join(f"{w}{i % 97}" for i, w in enumerate(words)) * 3


def measure(backend: str, pause_s: float) -> tuple[dict[str, float], dict[str, float], float]:
    from citeqa import Engine, make_document
    from citeqa._embedding import make_embedder

    index_dir = WORK / f"write-{backend}"
    shutil.rmtree(index_dir, ignore_errors=True)
    shutil.copytree(seed_index(), index_dir)
    engine = Engine.open(index_dir, make_embedder(backend, onnx_dir=WORK / "onnx"))
    engine.enable_batching()
    qs = questions()
    try:
        for q in qs[:10]:
            engine.ask(q)  # warm-up
        idle: list[float] = []
        for q in qs[:40]:
            t = time.perf_counter()
            engine.ask(q)
            idle.append(time.perf_counter() - t)
            time.sleep(pause_s)

        done = threading.Event()
        took: list[float] = []

        def write() -> None:
            t = time.perf_counter()
            engine.add_documents([make_document(new_document_text(), doc_id="written")])
            took.append(time.perf_counter() - t)
            done.set()

        writer = threading.Thread(target=write)
        writer.start()
        during: list[float] = []
        i = 0
        while not done.is_set():
            t = time.perf_counter()
            engine.ask(qs[i % len(qs)])
            during.append(time.perf_counter() - t)
            i += 1
            time.sleep(pause_s)
        writer.join()
    finally:
        engine.close()
        shutil.rmtree(index_dir, ignore_errors=True)
    return stats_ms(idle), stats_ms(during), took[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pause-ms", type=float, default=50.0)
    args = parser.parse_args()
    load = wait_for_quiet()
    lines = [
        f"A new document of {len(new_document_text()) // 1000} KB added by a thread while "
        f"the dev questions are asked one by one, {args.pause_ms:g} ms apart; query "
        f"batching on; load average when measuring: {load}.",
        "",
        "| backend | add took s | asks during | p50 ms idle → during | p95 ms idle → during "
        "| max ms idle → during |",
        "| --- | ---: | ---: | --- | --- | --- |",
    ]
    for backend in ("onnx", "torch"):
        idle, during, took = measure(backend, args.pause_ms / 1000)
        lines.append(
            f"| {backend} | {took:.1f} | {int(during['n'])} | {idle['p50']:.1f} → "
            f"{during['p50']:.1f} | {idle['p95']:.1f} → {during['p95']:.1f} | "
            f"{idle['max']:.1f} → {during['max']:.1f} |"
        )
        print(lines[-1], flush=True)
    lines += [
        "",
        "The ONNX encoder takes no lock, so a question runs beside an indexing batch. "
        "The torch encoder keeps one (its modules are not safe to call from two threads "
        "at once), so there a question can wait for a whole batch.",
    ]
    write_section("asking during a write", "\n".join(lines))


if __name__ == "__main__":
    main()
