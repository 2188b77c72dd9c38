"""How chunk size and overlap change retrieval and answers (hybrid mode).

For every ``max_tokens`` x ``overlap_sentences`` pair this indexes the corpus
with the bundled model into a temporary folder, runs ``citeqa eval`` logic on
the question set in hybrid mode, prints a Markdown table and writes it to
``bench/results/chunking_sweep.md``. Every build embeds from scratch (vectors
are reused only between builds with the same parameters), so a full sweep
takes a few minutes. The abstention threshold is the default one throughout,
not calibrated per setting.

    .venv/bin/python bench/sweep_chunking.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from citeqa import (
    ChunkingParams,
    Engine,
    SentenceTransformerEmbedder,
    index_corpus,
    load_documents,
)
from citeqa._eval import MetricSet, evaluate, fmt, load_questions

REPO = Path(__file__).resolve().parents[1]
MAX_TOKENS = (96, 128, 160, 200, 256)
OVERLAPS = (0, 1, 2)
COLUMNS = (
    "max_tokens",
    "overlap",
    "chunks",
    "recall@1",
    "recall@5",
    "MRR@10",
    "accuracy",
    "median words",
    "abstention recall",
    "false abstention",
)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def row(max_tokens: int, overlap: int, chunks: int, m: MetricSet) -> list[str]:
    return [
        str(max_tokens),
        str(overlap),
        str(chunks),
        fmt(m.recall_at_1),
        fmt(m.recall_at_5),
        fmt(m.mrr_at_10),
        fmt(m.accuracy),
        fmt(m.median_answer_words, "{:.1f}"),
        fmt(m.abstention_recall),
        fmt(m.false_abstention_rate),
    ]


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---:|" * len(COLUMNS)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=REPO / "seeds")
    parser.add_argument("--questions", type=Path, default=REPO / "tests" / "questions.jsonl")
    parser.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results" / "chunking_sweep.md"
    )
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--max-tokens", type=_ints, default=MAX_TOKENS, help="e.g. 96,128")
    parser.add_argument("--overlaps", type=_ints, default=OVERLAPS, help="e.g. 0,1,2")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    questions = load_questions(args.questions, load_documents([args.corpus]))
    embedder = SentenceTransformerEmbedder()
    rows: list[list[str]] = []
    threshold = None
    for max_tokens in args.max_tokens:
        for overlap in args.overlaps:
            params = ChunkingParams(max_tokens=max_tokens, overlap_sentences=overlap)
            with tempfile.TemporaryDirectory(prefix="citeqa-sweep-") as tmp:
                stats = index_corpus([args.corpus], Path(tmp) / "index", embedder, params)
                engine = Engine.open(Path(tmp) / "index", embedder)
                threshold = engine.summary.abstain_threshold
                report = evaluate(engine, questions, ["hybrid"], args.top_k)
            rows.append(row(max_tokens, overlap, stats.chunks, report.modes["hybrid"].overall))
            print(
                f"max_tokens={max_tokens} overlap={overlap}: {' '.join(rows[-1][2:])}",
                file=sys.stderr,
                flush=True,
            )

    table = markdown(rows)
    print(table)
    shown = args.questions.resolve()
    shown = shown.relative_to(REPO) if shown.is_relative_to(REPO) else shown
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        "# Chunking sweep (hybrid mode)\n\n"
        f"{len(questions)} questions from `{shown}`, "
        f"corpus `{args.corpus.name}/`, model {embedder.name}, top_k={args.top_k}, "
        f"abstain threshold {threshold} (default, not calibrated per setting); "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}, {time.perf_counter() - started:.0f} s.\n"
        "Recall and MRR judge character-span overlap with the evidence, so different "
        "chunkings compare fairly; accuracy is an acceptable answer inside the extractive "
        "answer.\n\n"
        "Produced by `.venv/bin/python bench/sweep_chunking.py`.\n\n"
        f"{table}\n",
        encoding="utf-8",
    )
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
