"""PDF, HTML and DOCX: pages extracted per second on real files, the time to index a
100-page PDF, and the seed as .txt, .html and a Chromium-printed .pdf on the dev set.

Real files: Debian's manuals (libtasn1-doc's and shared-mime-info's PDFs, Node.js's
HTML API reference from the nodejs package), printed to PDF by Chromium where a
page count is needed. An HTML or DOCX file has no pages: its pages are those of the
same text printed by Chromium (US Letter), so pages per second compare across formats.

Needs Chromium (make browser-deps). Prints its figures and writes its section of
bench/RESULTS.md; docs/formats.md quotes them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import PY, QUESTIONS, REPO, WORK, write_section

sys.path.insert(0, str(REPO / "tests"))
from _formats import CHROMIUM, DEBIAN_PDFS, print_to_pdf, text_to_html  # noqa: E402
from citeqa._converters import ConversionLimits, convert  # noqa: E402
from citeqa._documents import detect_title  # noqa: E402

NODE_API = Path("/usr/share/doc/nodejs/api")
NODE_PAGES = ["fs.html", "crypto.html", "buffer.html"]
LIMITS = ConversionLimits()
CITEQA = [PY, "-m", "citeqa.cli"]


def best_of(n: int, fn) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def pdf_pages(path: Path) -> int:
    import pypdfium2

    return len(pypdfium2.PdfDocument(str(path)))


def first_pages(sources: list[Path], n: int, out: Path) -> Path:
    """The first ``n`` pages of ``sources`` one after the other, as one PDF."""
    import pypdfium2

    new = pypdfium2.PdfDocument.new()
    for source in sources:
        src = pypdfium2.PdfDocument(str(source))
        new.import_pages(src, list(range(min(n - len(new), len(src)))))
        if len(new) >= n:
            break
    assert len(new) == n, f"{sources} hold {len(new)} pages, not {n}"
    new.save(str(out))
    return out


def docx_of(text: str, out: Path) -> Path:
    """The converted text as a Word file: "#" lines as headings, the rest as paragraphs."""
    import docx

    document = docx.Document()
    for block in text.split("\n\n"):
        heading = re.match(r"(#{1,6}) (.*)", block)
        if heading:
            document.add_heading(heading.group(2), level=min(len(heading.group(1)), 9))
        elif block.startswith("• "):
            document.add_paragraph(block[2:], style="List Bullet")
        else:
            document.add_paragraph(block)
    document.save(str(out))
    return out


def extraction(work: Path) -> tuple[list[list[str]], Path]:
    rows: list[list[str]] = []

    def measure(fmt: str, name: str, data: bytes, pages: int) -> None:
        seconds = best_of(3, lambda: convert(data, fmt, name, LIMITS))
        chars = len(convert(data, fmt, name, LIMITS).text)
        rows.append([fmt, name, str(pages), f"{len(data) / 1e6:.2f}", f"{chars:,}",
                     f"{seconds * 1000:.0f}", f"{pages / seconds:,.0f}"])
        print(rows[-1])

    for path in DEBIAN_PDFS:
        if path.is_file():
            measure("pdf", path.name, path.read_bytes(), pdf_pages(path))
    printed_pages = []
    for name in NODE_PAGES:
        page = NODE_API / name
        if not page.is_file():
            continue
        printed = print_to_pdf(page, work / f"{page.stem}.pdf")
        printed_pages.append(printed)
        pages = pdf_pages(printed)
        measure("pdf", f"{name} printed by Chromium", printed.read_bytes(), pages)
        measure("html", name, page.read_bytes(), pages)
        text = convert(page.read_bytes(), "html", name, LIMITS).text
        word = docx_of(text, work / f"{page.stem}.docx")
        measure("docx", f"{page.stem}.docx (its text)", word.read_bytes(), pages)
    hundred = first_pages(printed_pages, 100, work / "hundred" / "node-api-100-pages.pdf")
    return rows, hundred


def index_time(hundred: Path, work: Path) -> str:
    index_dir = work / "index-100"
    shutil.rmtree(index_dir, ignore_errors=True)
    started = time.perf_counter()
    out = subprocess.run([*CITEQA, "index", str(hundred.parent), "--index-dir", str(index_dir)],
                         check=True, capture_output=True, text=True)
    wall = time.perf_counter() - started
    line = out.stdout.strip().splitlines()[-1]
    print(line)
    return f"{wall:.1f} s wall-clock (`citeqa index`, model load included): {line}"


def seed_eval(work: Path) -> list[list[str]]:
    [seed] = sorted((REPO / "seeds").glob("*.txt"))
    text = seed.read_text(encoding="utf-8")
    folders = {fmt: work / f"seed-{fmt}" for fmt in ("txt", "html", "pdf")}
    for folder in folders.values():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    shutil.copy(seed, folders["txt"])
    page = folders["html"] / f"{seed.stem}.html"
    page.write_text(text_to_html(text, detect_title(text, seed.stem)), encoding="utf-8")
    print_to_pdf(page, folders["pdf"] / f"{seed.stem}.pdf")
    # HTML and PDF text has runs of spaces collapsed, as a browser shows them
    collapsed = work / "questions-collapsed.jsonl"
    with collapsed.open("w", encoding="utf-8") as fh:
        for line in QUESTIONS.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if row.get("evidence"):
                row["evidence"] = " ".join(row["evidence"].split())
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    rows = []
    for fmt, folder in folders.items():
        index_dir = work / f"index-seed-{fmt}"
        shutil.rmtree(index_dir, ignore_errors=True)
        subprocess.run([*CITEQA, "index", str(folder), "--index-dir", str(index_dir)],
                       check=True, capture_output=True)
        report = work / f"eval-seed-{fmt}.json"
        questions = QUESTIONS if fmt == "txt" else collapsed
        subprocess.run([*CITEQA, "eval", str(questions), "--index-dir", str(index_dir),
                        "--modes", "hybrid", "--json", str(report)],
                       check=True, capture_output=True)
        data = json.loads(report.read_text())
        overall = data["modes"]["hybrid"]["overall"]
        abstained = sorted(r["id"] for r in data["results"]["hybrid"] if r["abstained"])
        rows.append([fmt, f"{overall['accuracy']:.3f}", f"{overall['recall_at_5']:.3f}",
                     f"{overall['abstention_recall']:.3f}",
                     f"{overall['false_abstention_rate']:.3f}",
                     str(overall["verbatim_violations"]), str(len(abstained)),
                     " ".join(abstained)])
        print(rows[-1])
    return rows


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main() -> int:
    if CHROMIUM is None:
        print("formats: Chromium is not installed (make browser-deps)", file=sys.stderr)
        return 1
    work = WORK / "formats"
    (work / "hundred").mkdir(parents=True, exist_ok=True)
    rows, hundred = extraction(work)
    indexed = index_time(hundred, work)
    evals = seed_eval(work)
    body = (
        "### Extraction (best of 3, one process, no indexing)\n\n"
        + table(["format", "file", "pages", "MB", "characters", "ms", "pages/s"], rows)
        + "\n\nAn HTML or DOCX file's pages are those Chromium prints of the same page.\n\n"
        "### A 100-page PDF (Node.js's fs.html and crypto.html printed by Chromium, the "
        "first 100 pages)\n\n"
        + indexed
        + "\n\n### The seed as .txt, .html and a Chromium-printed .pdf (tests/questions.jsonl, "
        "hybrid, top_k 5)\n\n"
        + table(["format", "answer accuracy", "recall@5", "abstention recall",
                 "false abstention", "verbatim violations", "abstained", "which"], evals)
    )
    print(body)
    write_section("formats", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
