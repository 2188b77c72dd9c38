"""The seed as a web page and as a PDF printed by Chromium answers the dev question set
as well as the .txt does (issue 17), with the bundled model."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from _formats import CHROMIUM, print_to_pdf, text_to_html
from citeqa import Engine, index_corpus
from citeqa._documents import detect_title
from citeqa._eval import evaluate, load_questions

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (make browser-deps)"),
]

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = ROOT / "tests" / "questions.jsonl"
#: what Chromium prints at the top and bottom of every page: the date and time, the
#: page's title, its URL and "page/pages"
FURNITURE = re.compile(r"\d{1,2}/\d{1,2}/\d{2,4}, \d{1,2}:\d\d|file://|\b\d{1,2}/\d{1,2}\b")


def _whitespace_collapsed(questions: Path, out: Path) -> Path:
    """The question set with each evidence's runs of spaces collapsed, as HTML and PDF
    text has them ("migrants,  go" in the .txt is "migrants, go" in a browser)."""
    with out.open("w", encoding="utf-8") as fh:
        for line in questions.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if row.get("evidence"):
                row["evidence"] = " ".join(row["evidence"].split())
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return out


@pytest.fixture(scope="module")
def seed_formats(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders holding the seed as .html and as a Chromium-printed .pdf."""
    root = tmp_path_factory.mktemp("seed-formats")
    [seed] = sorted((ROOT / "seeds").glob("*.txt"))
    text = seed.read_text(encoding="utf-8")
    folders = {fmt: root / fmt for fmt in ("html", "pdf")}
    for folder in folders.values():
        folder.mkdir()
    page = folders["html"] / f"{seed.stem}.html"
    page.write_text(text_to_html(text, detect_title(text, seed.stem)), encoding="utf-8")
    print_to_pdf(page, folders["pdf"] / f"{seed.stem}.pdf")
    shutil.copy(QUESTIONS, root / "questions.jsonl")
    return folders


def _report(engine: Engine, questions: Path):  # type: ignore[no-untyped-def]
    loaded = load_questions(questions, engine.index.documents)
    return evaluate(engine, loaded, modes=["hybrid"]).modes["hybrid"]


@pytest.mark.parametrize("fmt", ["html", "pdf"])
def test_seed_as_html_and_pdf_answers_as_well_as_the_text(
    fmt: str, seed_formats: dict[str, Path], real_engine: Engine, real_embedder,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    index_dir = tmp_path / "index"
    index_corpus([seed_formats[fmt]], index_dir, real_embedder)
    engine = Engine.open(index_dir, real_embedder)
    [doc] = engine.documents()
    assert doc.format == fmt and doc.title == real_engine.documents()[0].title
    if fmt == "pdf":
        assert doc.pages is not None and doc.pages >= 2

    baseline = _report(real_engine, QUESTIONS)
    converted = _report(engine, _whitespace_collapsed(QUESTIONS, tmp_path / "q.jsonl"))
    assert converted.overall.accuracy is not None and baseline.overall.accuracy is not None
    assert abs(converted.overall.accuracy - baseline.overall.accuracy) <= 0.02
    assert {r.id for r in converted.results if r.abstained} == {
        r.id for r in baseline.results if r.abstained
    }
    assert converted.overall.verbatim_violations == 0

    # no page header, footer or page number inside an answer sentence
    for question in load_questions(tmp_path / "q.jsonl", engine.index.documents):
        answer = engine.ask(question.question)
        for sentence in answer.sentences:
            assert not FURNITURE.search(sentence.text), sentence.text
            assert doc.text[sentence.start : sentence.end] == sentence.text
            if fmt == "pdf":
                assert sentence.page == doc.page_of(sentence.start)
            else:
                assert sentence.page is None
