"""What one write costs on a large index: add a page, replace it, delete it, compact.

Builds (once) a 20,000-chunk index of the scale corpus (Debian's manuals, see
``scale.py``) with a hashing embedder of the bundled model's dimension, so the figures
are the store's and the index's, not the model's: embedding one page with the real
model costs a few seconds more, the same before and after. Then, in a fresh engine:
``Engine.add_documents`` of one new page (durable when it returns), replacing it,
deleting it, and ``citeqa compact``; the time of each and the bytes it wrote.

``--src`` runs the same script against another checkout's ``src/`` (an older citeqa
whose every write rewrote the whole index), for the before/after figure. Figures go
to ``bench/results/segments.json`` (one entry per label) and RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from _common import BENCH, WORK, use_src, write_section

RESULTS_JSON = BENCH / "results" / "segments.json"


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def written_bytes(path: Path, since: dict[Path, int]) -> int:
    """Bytes of the files that are new or changed since ``since`` (path -> mtime)."""
    return sum(
        f.stat().st_size for f in path.rglob("*")
        if f.is_file() and since.get(f) != f.stat().st_mtime_ns
    )


def snapshot(path: Path) -> dict[Path, int]:
    return {f: f.stat().st_mtime_ns for f in path.rglob("*") if f.is_file()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", type=Path, default=WORK / "pydocs" / "corpus-20000",
                        help="the folder to index (default: scale.py's 20,000-chunk corpus)")
    parser.add_argument("--label", default="segments", help="name of this run in the results")
    parser.add_argument("--src", type=Path, help="another checkout's src/ to measure instead")
    args = parser.parse_args()
    citeqa = use_src(args.src)
    from citeqa import Engine, HashingEmbedder, index_corpus, load_documents, make_document

    embedder = HashingEmbedder(dimension=384)
    index_dir = WORK / f"segments-{args.label}"
    shutil.rmtree(index_dir, ignore_errors=True)
    docs = load_documents([args.corpus])
    t = time.perf_counter()
    stats = index_corpus([args.corpus], index_dir, embedder, documents=docs)
    build_s = time.perf_counter() - t
    print(f"built {stats.chunks} chunks in {build_s:.1f} s; {dir_bytes(index_dir) / 1e6:.1f} MB")

    t = time.perf_counter()
    engine = Engine.open(index_dir, embedder, selector=False)
    open_s = time.perf_counter() - t
    text = "\n\n".join(
        f"Paragraph {i} of a page added to a large index, about tombstones and merges."
        for i in range(12)
    )
    page = make_document(f"# Added page\n\n{text}", doc_id="added-page")
    changed = make_document(f"# Added page\n\n{text}\n\nOne more sentence.", doc_id="added-page")
    figures: dict[str, float | int | str] = {
        "label": args.label, "chunks": stats.chunks, "build_s": build_s, "open_s": open_s,
        "disk_bytes": dir_bytes(index_dir), "date": time.strftime("%Y-%m-%d"),
    }
    for name, write in (
        ("add", lambda: engine.add_documents([page])),
        ("replace", lambda: engine.add_documents([changed])),
        ("delete", lambda: engine.delete_document("added-page")),
    ):
        before = snapshot(index_dir)
        t = time.perf_counter()
        write()
        figures[f"{name}_s"] = time.perf_counter() - t
        figures[f"{name}_written_bytes"] = written_bytes(index_dir, before)
        print(f"{name}: {figures[f'{name}_s']:.3f} s, "
              f"{int(figures[f'{name}_written_bytes']) / 1e6:.2f} MB written")
    if hasattr(citeqa, "compact"):
        before = snapshot(index_dir)
        t = time.perf_counter()
        merged = citeqa.compact(index_dir)
        figures["compact_s"] = time.perf_counter() - t
        figures["compact_written_bytes"] = written_bytes(index_dir, before)
        figures["segments_before_compact"] = merged.segments_before
        print(f"compact: {figures['compact_s']:.2f} s of {merged.segments_before} segments")
    engine.close()
    shutil.rmtree(index_dir, ignore_errors=True)

    runs = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    runs[args.label] = figures
    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_JSON.write_text(json.dumps(runs, indent=1))
    rows = [
        "Hashing embedder (384 dimensions): the store's and the index's cost alone; the real "
        "model adds the page's embedding (a few seconds), the same in every row. Each write "
        "is `Engine.add_documents` / `delete_document`, durable when it returns.",
        "",
        "| run | chunks | build s | open s | add s (MB written) | replace s (MB) | "
        "delete s (MB) | compact s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in runs.values():
        mb = {k: run.get(f"{k}_written_bytes", 0) / 1e6 for k in ("add", "replace", "delete")}
        compact = f"{run['compact_s']:.2f}" if "compact_s" in run else "–"
        rows.append(
            f"| {run['label']} | {run['chunks']} | {run['build_s']:.1f} | {run['open_s']:.2f} | "
            f"{run['add_s']:.2f} ({mb['add']:.2f}) | {run['replace_s']:.2f} "
            f"({mb['replace']:.2f}) | {run['delete_s']:.2f} ({mb['delete']:.2f}) | {compact} |"
        )
    write_section("one write on a large index", "\n".join(rows))


if __name__ == "__main__":
    main()
