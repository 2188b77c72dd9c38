"""PDF, HTML and DOCX to text: real files (Debian's manuals, Chromium's print-outs,
python-docx's output) and the bad ones a service must refuse."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest

from _formats import (
    CHROMIUM,
    DEBIAN_HTML,
    DEBIAN_PDFS,
    encrypt_pdf,
    make_docx,
    make_pdf,
    make_scanned_pdf,
    print_to_pdf,
    text_to_html,
)
from citeqa import DocumentError
from citeqa._converters import ConversionLimits, convert, sniff
from citeqa._documents import document_from_bytes
from citeqa._segment import segment

LIMITS = ConversionLimits()
PAGE_ONE = [
    "Foxes live in dens.", "", "A red fox weighs about six kilograms and hunts at", "night."
]
PAGE_TWO = ["The vixen raises the cubs in spring.", "", "Cubs leave the den in autumn."]


def test_pdf_pages_lose_running_header_and_page_numbers() -> None:
    data = make_pdf([PAGE_ONE, PAGE_TWO, ["A third page."]], header="Fox Report 2024",
                    title="Foxes")
    converted = convert(data, "pdf", "foxes.pdf", LIMITS)
    text = converted.text
    assert converted.title == "Foxes" and converted.format == "pdf"
    assert "Fox Report" not in text
    assert not re.search(r"^\s*\d+\s*$", text, re.M)  # no bare page number line
    assert len(converted.page_starts) == 3 and converted.page_starts[0] == 0
    assert text[converted.page_starts[1] :].startswith("The vixen raises")
    assert text[converted.page_starts[2] :].startswith("A third page.")
    # the lines of a paragraph are one line of text
    assert "A red fox weighs about six kilograms and hunts at night." in text


def test_pdf_page_of_an_offset() -> None:
    data = make_pdf([PAGE_ONE, PAGE_TWO], title="Foxes")
    doc = document_from_bytes(data, "f.pdf", doc_id="f")
    assert doc.format == "pdf" and doc.pages == 2
    assert doc.page_of(0) == 1
    assert doc.page_of(doc.text.index("The vixen")) == 2
    assert doc.page_of(doc.text.index("Cubs leave")) == 2
    assert doc.page_of(doc.page_starts[1] - 1) == 1


def test_pdf_word_hyphenated_at_a_line_end_is_joined() -> None:
    lines = [
        "Careful man-",
        "agement of the den keeps the cubs safe all through the long winter. The anti-",
        "corruption unit of the forest service met the wardens at the northern gate on",
        "Monday. An anti-corruption plan followed.",
    ]
    text = convert(make_pdf([lines]), "pdf", "h.pdf", LIMITS).text
    assert "Careful management of the den" in text
    assert "The anti-corruption unit of the forest" in text  # spelled so elsewhere


def test_pdf_without_text_layer_is_refused() -> None:
    with pytest.raises(DocumentError, match="has no text layer.*OCR is not supported"):
        convert(make_scanned_pdf(), "pdf", "scan.pdf", LIMITS)


def test_encrypted_pdf_is_refused() -> None:
    data = encrypt_pdf(make_pdf([PAGE_ONE]), "secret")
    assert sniff(data) == "pdf"
    with pytest.raises(DocumentError, match="secret.pdf is an encrypted"):
        convert(data, "pdf", "secret.pdf", LIMITS)


@pytest.mark.parametrize(
    "data", [b"%PDF-1.7\n garbage that is no PDF", make_pdf([PAGE_ONE])[:200]]
)
def test_damaged_pdf_is_refused(data: bytes) -> None:
    with pytest.raises(DocumentError, match="bad.pdf is not a readable PDF"):
        convert(data, "pdf", "bad.pdf", LIMITS)


def test_pdf_over_the_page_limit_is_refused() -> None:
    data = make_pdf([PAGE_ONE, PAGE_TWO, PAGE_ONE])
    with pytest.raises(DocumentError, match="has 3 pages, more than the limit of 2"):
        convert(data, "pdf", "long.pdf", ConversionLimits(max_pdf_pages=2))


@pytest.mark.parametrize("fmt, name", [("pdf", "f.pdf"), ("html", "f.html"), ("docx", "f.docx")])
def test_text_over_the_character_limit_is_refused(tmp_path: Path, fmt: str, name: str) -> None:
    data = {
        "pdf": make_pdf([PAGE_ONE, PAGE_TWO]),
        "html": b"<p>" + b"Fox text. " * 100 + b"</p>",
        "docx": make_docx(tmp_path / "f.docx").read_bytes(),
    }[fmt]
    with pytest.raises(DocumentError, match="CITEQA_MAX_TEXT_CHARS"):
        convert(data, fmt, name, ConversionLimits(max_text_chars=50))


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_pdf_pages must be a positive integer, got 0"):
        ConversionLimits(max_pdf_pages=0)


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("report.docx", make_pdf([PAGE_ONE]), "named as a Word .docx file but is a PDF"),
        ("report.pdf", b"PK\x03\x04" + b"\x00" * 40, "named as a PDF but is a ZIP archive"),
        ("report.pdf", b"<html><p>Hello.</p></html>", "named as a PDF but its content is not one"),
        ("report.txt", make_pdf([PAGE_ONE]), "named as a text file but is a PDF"),
        ("report.html", make_pdf([PAGE_ONE]), "named as an HTML file but is a PDF"),
        ("report.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 40,
         "is a legacy Office .* file; save it as .docx"),
    ],
)
def test_content_that_belies_its_suffix_is_refused(name: str, data: bytes, message: str) -> None:
    with pytest.raises(DocumentError, match=message):
        document_from_bytes(data, name, doc_id="report")


def test_docx_headings_lists_tables_and_title(tmp_path: Path) -> None:
    converted = convert(make_docx(tmp_path / "fox.docx").read_bytes(), "docx", "fox.docx", LIMITS)
    text = converted.text
    assert converted.title == "Field Guide to Foxes"
    assert "## Habitat" in text and "## Diet" in text
    assert "• They dig dens in banks of earth." in text
    assert "Winter | Voles" in text
    spans = segment(text)
    diet = next(s for s in spans if text[s.start : s.end].startswith("A fox eats"))
    assert diet.section == "Diet"


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_docx_zip_bomb_is_refused_before_it_is_read() -> None:
    bomb = _zip({"[Content_Types].xml": b"<x/>", "word/document.xml": b" " * (8 << 20)})
    assert len(bomb) < 100_000
    with pytest.raises(DocumentError, match="possible zip bomb"):
        convert(bomb, "docx", "bomb.docx", LIMITS)
    # and the total, however well each part compresses
    with pytest.raises(DocumentError, match="possible zip bomb"):
        convert(bomb, "docx", "bomb.docx", ConversionLimits(max_unzipped_bytes=1 << 20))


def test_a_zip_that_is_no_word_document_is_refused() -> None:
    with pytest.raises(DocumentError, match="not a Word document"):
        convert(_zip({"hello.txt": b"hi"}), "docx", "notes.docx", LIMITS)
    with pytest.raises(DocumentError, match="not a readable .docx"):
        convert(b"PK\x03\x04" + b"\x01" * 64, "docx", "broken.docx", LIMITS)


def test_html_drops_scripts_and_navigation_and_keeps_headings() -> None:
    page = (
        "<html><head><title>Fox facts</title><style>p{color:red}</style></head><body>"
        "<nav><a href='/'>Home</a> | <a href='/x'>Next</a></nav>"
        "<h1>Foxes</h1><p>Foxes are   small\n canids.</p><script>var x = 'no';</script>"
        "<h2>Diet</h2><ul><li>Voles.</li><li>Berries.</li></ul>"
        "<table><tr><td>Winter</td><td>Voles</td></tr></table>"
        "<footer>© 2024 Fox Society</footer></body></html>"
    )
    converted = convert(page.encode(), "html", "fox.html", LIMITS)
    assert converted.title == "Fox facts"
    assert converted.text == (
        "# Foxes\n\nFoxes are small canids.\n\n## Diet\n\n• Voles.\n\n• Berries.\n\n"
        "Winter Voles\n"
    )


def test_html_title_falls_back_to_the_first_heading() -> None:
    converted = convert(b"<h2>Den life</h2><p>Cubs play.</p>", "html", "d.html", LIMITS)
    assert converted.title == "Den life"


def test_html_without_text_is_refused() -> None:
    with pytest.raises(DocumentError, match="has no text"):
        convert(b"<html><body><script>render()</script></body></html>", "html", "app.html",
                LIMITS)


# -- real files -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", DEBIAN_PDFS, ids=lambda p: p.name)
def test_real_pdf_manual(path: Path) -> None:
    if not path.is_file():
        pytest.skip(f"{path} is not installed (.ci/run installs it)")
    import pypdfium2

    converted = convert(path.read_bytes(), "pdf", path.name, LIMITS)
    assert len(converted.page_starts) == len(pypdfium2.PdfDocument(str(path)))
    text = converted.text
    # every page's running header went: no line is a header with its page number
    assert not re.search(r"^(Chapter \d+: .*|Shared MIME-info Database) \d+$", text, re.M)
    assert not re.search(r"^\d+$", text, re.M)
    assert "\x02" not in text and "\ufffe" not in text
    if path.name == "libtasn1.pdf":
        assert "structures management" in text  # "man-" / "agement" in the PDF
        assert "Thread-safety. No global variables" in text


@pytest.mark.parametrize("path", DEBIAN_HTML[:6], ids=lambda p: p.name)
def test_real_html_manual(path: Path) -> None:
    converted = convert(path.read_bytes(), "html", path.name, LIMITS)
    assert converted.title
    assert "<" not in converted.text[:200] or "&lt;" not in converted.text
    assert any(s.is_heading for s in segment(converted.text))


def test_real_html_manuals_exist() -> None:
    if not DEBIAN_HTML:
        pytest.skip("Debian's libffi8 and shared-mime-info HTML manuals are not installed")
    assert DEBIAN_HTML[0].is_file()


@pytest.mark.integration
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (make browser-deps)")
def test_chromium_print_of_a_page_keeps_text_and_drops_header_and_footer(tmp_path: Path) -> None:
    paragraphs = [
        f"Paragraph {i} says that foxes number {i * 7} in district {i} and that their dens "
        "are counted every spring by volunteers who walk the same paths each year."
        for i in range(1, 60)
    ]
    html_path = tmp_path / "census.html"
    html_path.write_text(text_to_html("\n\n".join(paragraphs), "Fox census"), encoding="utf-8")
    converted = convert(print_to_pdf(html_path, tmp_path / "census.pdf").read_bytes(), "pdf",
                        "census.pdf", LIMITS)
    assert len(converted.page_starts) >= 2
    assert converted.title == "Fox census"
    for paragraph in paragraphs:  # each paragraph whole, with none of the page furniture
        assert f"\n\n{paragraph}\n" in "\n\n" + converted.text
    assert "file://" not in converted.text and "Fox census" not in converted.text


def test_a_text_about_pdf_is_not_taken_for_one() -> None:
    text = "Notes on the format.\n\nA PDF file opens with %PDF-1.7 and a binary comment.\n"
    doc = document_from_bytes(text.encode(), "notes.md", doc_id="notes")
    assert doc.text == text and doc.format == "markdown"
