"""Turn SQuAD 2.0 JSON (train-v2.0.json, dev-v2.0.json or a part of one) into a citeqa
corpus, in the layout of ``shared/data/squad2-train10``:

- ``docs/NAME.txt``: one article per file, its title on the first line, then its
  paragraphs separated by blank lines (``citeqa index docs`` gives each the id NAME);
- ``questions.jsonl``: ``citeqa eval``'s format; an answerable question's evidence is
  the sentence (citeqa's own segmentation) around its first gold answer;
- ``answer_spans.jsonl``: each question's gold answer offsets in the article's text.

    python train/squad_corpus.py dev-v2.0.json OUT_DIR [--articles A,B,...]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from citeqa._segment import segment


def doc_name(title: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", title)


def convert(squad: dict, out: Path, articles: set[str] | None = None) -> dict[str, int]:
    (out / "docs").mkdir(parents=True, exist_ok=True)
    questions, spans = [], []
    for article in squad["data"]:
        name = doc_name(article["title"])
        if articles and name not in articles and article["title"] not in articles:
            continue
        title = article["title"].replace("_", " ")
        text = title + "\n\n"
        for paragraph in article["paragraphs"]:
            context = " ".join(paragraph["context"].split(" \n"))  # one block per paragraph
            context = context.replace("\n", " ")
            start = len(text)
            text += context + "\n\n"
            sentences = [s for s in segment(context) if not s.is_heading]
            for qa in paragraph["qas"]:
                answers = [] if qa.get("is_impossible") else qa["answers"]
                gold = [(start + a["answer_start"], start + a["answer_start"] + len(a["text"]))
                        for a in answers]
                row = {"id": qa["id"], "question": " ".join(qa["question"].split()),
                       "answers": sorted({a["text"] for a in answers if a["text"].strip()}),
                       "kind": "squad" if answers else "squad_unanswerable", "doc_id": name}
                if answers:
                    first = answers[0]["answer_start"]
                    around = [s for s in sentences if s.start <= first < s.end] or sentences[:1]
                    s = around[0]
                    end = max(s.end, min(len(context), first + len(answers[0]["text"])))
                    # an answer across a sentence boundary: evidence spans both
                    nxt = [t for t in sentences if t.start < end <= t.end]
                    end = nxt[0].end if nxt else end
                    row["evidence"] = context[s.start:end]
                questions.append(row)
                spans.append({"id": qa["id"], "doc_id": name, "answer_spans": gold,
                              "paragraph": [start, start + len(context)]})
        (out / "docs" / f"{name}.txt").write_text(text.rstrip("\n") + "\n", encoding="utf-8")
    with open(out / "questions.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(q, ensure_ascii=False) + "\n" for q in questions)
    with open(out / "answer_spans.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(s) + "\n" for s in spans)
    return {"articles": len(list((out / "docs").glob("*.txt"))), "questions": len(questions),
            "unanswerable": sum(1 for q in questions if not q["answers"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("squad_json", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--articles", default="", help="comma-separated titles to keep")
    args = parser.parse_args()
    squad = json.loads(args.squad_json.read_text(encoding="utf-8"))
    keep = {a.strip() for a in args.articles.split(",") if a.strip()} or None
    print(convert(squad, args.out, keep))


if __name__ == "__main__":
    main()
