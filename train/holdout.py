"""The held-out articles of a citeqa corpus as a corpus of their own (to index together).

    python train/holdout.py CORPUS_DIR A,B OUT_DIR
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path


def main() -> None:
    corpus, names, out = Path(sys.argv[1]), sys.argv[2].split(","), Path(sys.argv[3])
    (out / "docs").mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(corpus / "docs" / f"{name}.txt", out / "docs" / f"{name}.txt")
    for file in ("questions.jsonl", "answer_spans.jsonl"):
        with open(corpus / file, encoding="utf-8") as src, open(out / file, "w") as dst:
            dst.writelines(line for line in src if json.loads(line)["doc_id"] in names)


if __name__ == "__main__":
    main()
