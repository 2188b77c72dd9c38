"""Candidate sentences for the answer selector, mined with citeqa's own retrieval.

For each question of a citeqa corpus with gold answer offsets (``answer_spans.jsonl``),
the candidates are the sentences of the passages citeqa retrieves (top 5, hybrid), the
ones the serving path would show the selector. A candidate is positive when it holds
the start of a gold answer; an unanswerable question has none. The gold sentence is
added when retrieval missed it, so every answerable question teaches a positive.

    python train/mine.py CORPUS_DIR INDEX_DIR OUT.jsonl [--per-question N]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np

from citeqa import Engine
from citeqa._embedding import make_embedder


def load(corpus: Path) -> tuple[list[dict], dict[str, dict]]:
    questions = [json.loads(line) for line in open(corpus / "questions.jsonl", encoding="utf-8")]
    spans = {}
    for line in open(corpus / "answer_spans.jsonl", encoding="utf-8"):
        row = json.loads(line)
        spans[row["id"]] = row
    return questions, spans


def mine(corpus: Path, index_dir: Path, per_question: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    engine = Engine.open(index_dir, make_embedder("onnx"))
    answerer = engine._answerer
    index = answerer.index
    table = index.sentences
    rows_of_doc: dict[str, np.ndarray] = {}
    for doc_id in index.documents:
        rows_of_doc[doc_id] = np.flatnonzero(np.asarray(table.doc_ids) == doc_id)
    questions, spans = load(corpus)
    out = []
    for n, q in enumerate(questions):
        vector = engine.encode_query(q["question"])
        _, rows, scores, *_ = answerer._evaluate(q["question"], vector, 5, "hybrid")
        order = [int(rows[i]) for i in np.argsort(-scores, kind="stable")]
        gold = spans[q["id"]]["answer_spans"]
        doc = q["doc_id"]

        def label(
            row: int, doc: str = doc, gold: list[list[int]] = gold
        ) -> tuple[int, list[int] | None]:
            if table.doc_ids[row] != doc:
                return 0, None
            s, e = int(table.starts[row]), int(table.ends[row])
            for a, b in gold:
                if s <= a < e:
                    return 1, [a - s, min(b, e) - s]
            return 0, None

        picked = order[:per_question]
        if gold:  # the gold sentence, and a hard negative from its paragraph
            para_s, para_e = spans[q["id"]]["paragraph"]
            para = [int(r) for r in rows_of_doc[doc]
                    if para_s <= table.starts[r] < para_e]
            golds = [r for r in para if label(r)[0]]
            for r in golds[:1]:
                if r not in picked:
                    picked.append(r)
            others = [r for r in para if r not in picked and not label(r)[0]]
            if others:
                picked.append(rng.choice(others))
        for rank, row in enumerate(picked):
            y, span = label(row)
            out.append({"qid": q["id"], "question": q["question"], "doc_id": doc,
                        "title": index.documents[table.doc_ids[row]].title,
                        "sentence": answerer.sentence_text(row), "row": row,
                        "rank": rank, "label": y, "answer": span,
                        "answerable": bool(gold)})
        if n % 500 == 0:
            print(f"{n}/{len(questions)}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("corpus", type=Path)
    parser.add_argument("index_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-question", type=int, default=10)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    pairs = mine(args.corpus, args.index_dir, args.per_question, args.seed)
    with open(args.out, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs)
    print(f"{len(pairs)} pairs, {sum(p['label'] for p in pairs)} positive")


if __name__ == "__main__":
    main()
