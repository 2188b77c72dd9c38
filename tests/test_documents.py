"""Loading documents from files (citeqa._documents)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from citeqa import DocumentError, InvalidInputError, load_documents, make_document
from citeqa._documents import detect_title, read_document, skipped_files, validate_doc_id

SEED_TITLE = "Central America Trips Shed Light on Biden Administration’s Migration Agenda"
SEED_ID = "000_34741492cc8173b1"


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_bytes(data.encode("utf-8"))
    else:
        path.write_bytes(data)
    return path


# -- loading -----------------------------------------------------------------------------


def test_seed_document(seeds_copy: Path) -> None:
    [doc] = load_documents([seeds_copy])
    raw = (seeds_copy / f"{SEED_ID}.txt").read_bytes()
    assert doc.doc_id == SEED_ID
    assert doc.title == SEED_TITLE
    assert doc.text == raw.decode("utf-8")
    assert doc.sha256 == hashlib.sha256(raw).hexdigest()
    assert doc.source == str(seeds_copy / f"{SEED_ID}.txt")


def test_single_file_and_folder_give_the_same_document(seeds_copy: Path) -> None:
    [from_folder] = load_documents([seeds_copy])
    [from_file] = load_documents([str(seeds_copy / f"{SEED_ID}.txt")])
    assert from_file == from_folder


def test_folder_is_searched_recursively_and_hidden_files_skipped(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "Alpha text.")
    write(tmp_path / "sub" / "b.md", "# Bee\n\nBee text.")
    write(tmp_path / "sub" / "deeper" / "C.TXT", "Sea text.")
    write(tmp_path / ".hidden.txt", "Hidden text.")
    write(tmp_path / ".git" / "notes.txt", "Hidden folder text.")
    write(tmp_path / "sub" / ".cache" / "x.md", "Hidden nested text.")
    write(tmp_path / "image.png", b"\x89PNG\r\n\x1a\n\x00\x00")
    write(tmp_path / "data.json", "{}")
    write(tmp_path / "a.txt.meta.json", "{}")  # a sidecar is read, not skipped
    write(tmp_path / "orphan.txt.meta.json", "{}")  # no document: skipped
    docs = load_documents([tmp_path])
    assert [d.doc_id for d in docs] == ["a", "sub.b", "sub.deeper.C"]
    assert [d.title for d in docs] == ["a", "Bee", "sub.deeper.C"]
    skipped = [".git/notes.txt", ".hidden.txt", "data.json", "image.png", "orphan.txt.meta.json",
               "sub/.cache/x.md"]
    assert skipped_files([tmp_path]) == [tmp_path / name for name in skipped]
    # a file given by name is not a folder's to skip; overlapping folders count once
    assert skipped_files([tmp_path / "a.txt", tmp_path / "sub", tmp_path]) == [
        tmp_path / "sub" / ".cache" / "x.md",
        *(tmp_path / name for name in skipped[:-1]),
    ]


@pytest.mark.parametrize("raw", ["", "  "])
def test_an_empty_path_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    write(tmp_path / "notes.txt", "Text in the current folder.")
    monkeypatch.chdir(tmp_path)  # Path("") is ".", which holds a document here
    with pytest.raises(DocumentError, match="a document path is empty"):
        load_documents([raw])


def test_several_paths_in_order(tmp_path: Path) -> None:
    write(tmp_path / "one" / "x.txt", "Ex text.")
    write(tmp_path / "two.md", "Two text.")
    docs = load_documents([tmp_path / "two.md", tmp_path / "one"])
    assert [d.doc_id for d in docs] == ["two", "x"]


@pytest.mark.parametrize(
    "raw",
    [
        b"line one\r\nline two\r\n",
        b"\xef\xbb\xbfWith a BOM.\n",
        "non\xa0breaking\u2009thin space. Tab\there.\n".encode(),
        "“Curly” quotes, accents éàü, emoji 🙂 and CJK 東京.".encode(),
        b"no trailing newline",
        b"\n\n  leading blank lines.\n\n\n",
    ],
)
def test_exact_text_is_kept(tmp_path: Path, raw: bytes) -> None:
    path = write(tmp_path / "doc.txt", raw)
    [doc] = load_documents([path])
    assert doc.text == raw.decode("utf-8")
    assert doc.text.encode("utf-8") == raw
    assert doc.sha256 == hashlib.sha256(raw).hexdigest()


# -- titles ------------------------------------------------------------------------------


def test_markdown_title(tmp_path: Path) -> None:
    path = write(tmp_path / "guide.md", "Intro line without heading.\n\n# The Real Title \n\nText.")
    assert read_document(path).title == "The Real Title"


def test_first_heading_like_line_is_title() -> None:
    assert detect_title("A Plain Heading\n\nBody sentence here.", "fb") == "A Plain Heading"


def test_title_falls_back_to_doc_id() -> None:
    doc = make_document("only lower case prose. nothing like a heading.", doc_id="notes-1")
    assert doc.title == "notes-1"


def test_explicit_title_wins_and_is_stripped() -> None:
    doc = make_document("# Markdown Title\n\nText.", doc_id="d", title="  Given  ")
    assert doc.title == "Given"
    assert make_document("# Markdown Title\n\nText.", doc_id="d", title="  ").title == (
        "Markdown Title"
    )


def test_sidecar_overrides_title_and_id(tmp_path: Path) -> None:
    path = write(tmp_path / "report.md", "# Heading Title\n\nText.")
    write(tmp_path / "report.md.meta.json", json.dumps({"title": "Sidecar Title", "doc_id": "r-1"}))
    [doc] = load_documents([tmp_path])
    assert (doc.doc_id, doc.title) == ("r-1", "Sidecar Title")
    assert doc.text == path.read_text(encoding="utf-8")


def test_sidecar_with_bad_json_is_a_document_error(tmp_path: Path) -> None:
    write(tmp_path / "report.md", "Text.")
    sidecar = write(tmp_path / "report.md.meta.json", "{not json")
    with pytest.raises(DocumentError, match=re.escape(f"{sidecar} is not valid JSON")):
        load_documents([tmp_path])


@pytest.mark.parametrize("sidecar", ["[]", '"title"', '{"title": 5}'])
def test_sidecar_of_the_wrong_shape_is_a_document_error(tmp_path: Path, sidecar: str) -> None:
    write(tmp_path / "report.md", "Text.")
    write(tmp_path / "report.md.meta.json", sidecar)
    with pytest.raises(DocumentError, match="meta.json"):
        load_documents([tmp_path])


def test_an_invalid_doc_id_in_a_sidecar_names_the_sidecar(tmp_path: Path) -> None:
    write(tmp_path / "report.md", "Text.")
    sidecar = write(tmp_path / "report.md.meta.json", json.dumps({"doc_id": "../bad"}))
    with pytest.raises(DocumentError) as caught:
        load_documents([tmp_path])
    assert str(caught.value).startswith(f"{sidecar}: invalid doc_id '../bad': use 1-128")


def test_title_of_a_file_with_byte_order_mark(tmp_path: Path) -> None:
    path = write(tmp_path / "bom.md", b"\xef\xbb\xbf# Title After BOM\n\nBody text.\n")
    assert read_document(path).title == "Title After BOM"
    path = write(tmp_path / "bom.txt", b"\xef\xbb\xbfPlain Title\n\nBody text.\n")
    assert read_document(path).title == "Plain Title"


# -- errors ------------------------------------------------------------------------------


def test_non_utf8_file(tmp_path: Path) -> None:
    path = write(tmp_path / "latin1.txt", "café au lait".encode("latin-1"))
    message = f"{path} is not UTF-8 text (invalid byte at offset 3); convert it to UTF-8"
    with pytest.raises(DocumentError, match=re.escape(message)):
        load_documents([tmp_path])


@pytest.mark.parametrize("raw", [b"", b"   \n\t\r\n", "\xa0\n".encode()])
def test_empty_or_whitespace_only(tmp_path: Path, raw: bytes) -> None:
    path = write(tmp_path / "empty.txt", raw)
    with pytest.raises(DocumentError, match=re.escape(f"{path} is empty")):
        load_documents([path])


def test_nul_bytes(tmp_path: Path) -> None:
    path = write(tmp_path / "binary.txt", b"text\x00more text")
    with pytest.raises(DocumentError, match="contains NUL bytes"):
        load_documents([path])


def test_folder_without_documents(tmp_path: Path) -> None:
    write(tmp_path / "notes.odt", b"PK\x03\x04")
    write(tmp_path / ".hidden.txt", "Hidden.")
    message = f"{tmp_path} holds no documents (.txt, .md, .pdf, .html, .htm, .xhtml, .docx)"
    with pytest.raises(DocumentError, match=re.escape(message)):
        load_documents([tmp_path])


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="does not exist"):
        load_documents([tmp_path / "nope"])


def test_wrong_suffix_file(tmp_path: Path) -> None:
    path = write(tmp_path / "doc.odt", "Text.")
    with pytest.raises(DocumentError, match=r"is not a file type citeqa reads \(\.txt, \.md, "):
        load_documents([path])


def test_no_paths() -> None:
    with pytest.raises(DocumentError, match="no documents given"):
        load_documents([])


def test_duplicate_ids(tmp_path: Path) -> None:
    write(tmp_path / "same.txt", "One.")
    write(tmp_path / "same.md", "Two.")
    with pytest.raises(DocumentError, match="would both get the id 'same'"):
        load_documents([tmp_path])


def test_duplicate_ids_across_paths(tmp_path: Path) -> None:
    a = write(tmp_path / "a" / "doc.txt", "One.")
    b = write(tmp_path / "b" / "doc.txt", "Two.")
    with pytest.raises(DocumentError, match="rename one or give it a doc_id"):
        load_documents([a, b])


def test_a_file_reached_twice_is_one_document(tmp_path: Path) -> None:
    inner = write(tmp_path / "dup" / "x" / "same.txt", "Cats are great.")
    write(tmp_path / "dup" / "y" / "same.txt", "Cats are terrible.")
    (tmp_path / "link.txt").symlink_to(inner)
    docs = load_documents([tmp_path / "dup", tmp_path / "dup" / "x", inner, tmp_path / "link.txt"])
    assert [(d.doc_id, d.text) for d in docs] == [
        ("x.same", "Cats are great."), ("y.same", "Cats are terrible.")
    ]


def test_bad_file_inside_folder_is_named(tmp_path: Path) -> None:
    write(tmp_path / "good.txt", "Good.")
    bad = write(tmp_path / "sub" / "bad.txt", b"\xff\xfe")
    with pytest.raises(DocumentError, match=re.escape(str(bad))):
        load_documents([tmp_path])


def test_file_name_with_double_dot_gets_a_valid_id(tmp_path: Path) -> None:
    write(tmp_path / "report..final.txt", "Text.")
    [doc] = load_documents([tmp_path])
    validate_doc_id(doc.doc_id)


def test_unsafe_file_names_get_safe_ids(tmp_path: Path) -> None:
    write(tmp_path / "My Report (v2).txt", "Text.")
    write(tmp_path / "-dash-start.md", "Text.")
    ids = sorted(d.doc_id for d in load_documents([tmp_path]))
    assert ids == ["My_Report_v2", "dash-start"]
    for doc_id in ids:
        assert validate_doc_id(doc_id) == doc_id


# -- doc_id validation --------------------------------------------------------------------


@pytest.mark.parametrize("doc_id", ["a", "doc-1", "A.b_c", "0" * 128, "x.y.z"])
def test_valid_doc_ids(doc_id: str) -> None:
    assert validate_doc_id(doc_id) == doc_id


@pytest.mark.parametrize(
    "doc_id",
    [
        "",
        "../etc/passwd",
        "..",
        "a/../b",
        "/abs/path",
        "a/b",
        "a\\b",
        "a..b",
        ".hidden",
        "-x",
        "x" * 129,
        "with space",
        "ümlaut",
        "nul\x00",
        "line\n",
    ],
)
def test_invalid_doc_ids(doc_id: str) -> None:
    shown = repr(doc_id)[:60]  # a long one is shortened
    with pytest.raises(InvalidInputError, match=re.escape(f"invalid doc_id {shown}")):
        validate_doc_id(doc_id)


def test_a_long_invalid_doc_id_is_not_echoed_whole() -> None:
    with pytest.raises(InvalidInputError) as caught:
        validate_doc_id("a" * 50_000)
    message = str(caught.value)
    assert message.startswith("invalid doc_id 'aaaa") and "…: use 1-128" in message
    assert len(message) < 200


@pytest.mark.parametrize("doc_id", [None, 5])
def test_doc_id_must_be_a_string(doc_id: object) -> None:
    with pytest.raises(InvalidInputError, match="invalid doc_id"):
        validate_doc_id(doc_id)  # type: ignore[arg-type]


def test_make_document_validates() -> None:
    with pytest.raises(InvalidInputError, match="invalid doc_id"):
        make_document("Text.", doc_id="../x")
    with pytest.raises(DocumentError, match="document 'x' is empty"):
        make_document(" \n", doc_id="x")
    with pytest.raises(DocumentError, match="document 'x' contains NUL bytes"):
        make_document("a\x00b", doc_id="x")


# -- PDF, HTML and Word files -------------------------------------------------------------------


def test_folder_of_mixed_formats(tmp_path: Path) -> None:
    from _formats import make_docx, make_pdf

    write(tmp_path / "notes.txt", "Plain notes about foxes.")
    write(tmp_path / "guide.md", "# Guide\n\nFoxes hunt at night.")
    write(tmp_path / "report.pdf", make_pdf([["Page one text."], ["Page two text."]]))
    write(tmp_path / "page.html", "<title>Web page</title><h1>Dens</h1><p>Dens are dug.</p>")
    make_docx(tmp_path / "field.docx")
    docs = {d.doc_id: d for d in load_documents([tmp_path])}
    assert {d: docs[d].format for d in docs} == {
        "notes": "text", "guide": "markdown", "report": "pdf", "page": "html", "field": "docx",
    }
    assert docs["report"].page_starts == (0, docs["report"].text.index("Page two"))
    assert docs["report"].pages == 2 and docs["page"].pages is None
    assert docs["page"].title == "Web page" and docs["field"].title == "Field Guide to Foxes"
    assert docs["report"].source == str(tmp_path / "report.pdf")


def test_bad_files_in_a_folder_are_all_named_and_nothing_loads(tmp_path: Path) -> None:
    from _formats import make_scanned_pdf

    write(tmp_path / "good.txt", "Foxes.")
    write(tmp_path / "scan.pdf", make_scanned_pdf())
    write(tmp_path / "fake.docx", "not a zip")
    with pytest.raises(DocumentError) as caught:
        load_documents([tmp_path])
    message = str(caught.value)
    assert message.startswith("2 files cannot be read, nothing was indexed: ")
    assert f"{tmp_path / 'fake.docx'} is named as a Word .docx file" in message
    assert f"{tmp_path / 'scan.pdf'} has no text layer" in message
    assert "\n" not in message  # one line for the CLI


def test_limits_reach_the_files_of_a_folder(tmp_path: Path) -> None:
    from _formats import make_pdf
    from citeqa._converters import ConversionLimits

    write(tmp_path / "long.pdf", make_pdf([["One."], ["Two."], ["Three."]]))
    with pytest.raises(DocumentError, match="has 3 pages, more than the limit of 2"):
        load_documents([tmp_path], limits=ConversionLimits(max_pdf_pages=2))
    write(tmp_path / "big.txt", "Foxes. " * 20)
    with pytest.raises(DocumentError, match="big.txt holds 140 characters, more than"):
        load_documents([tmp_path / "big.txt"], limits=ConversionLimits(max_text_chars=100))


def test_page_starts_are_checked() -> None:
    with pytest.raises(InvalidInputError, match="page_starts"):
        make_document("Page one. Page two.", doc_id="d", format="pdf", page_starts=(0, 99))
    with pytest.raises(InvalidInputError, match="page_starts"):
        make_document("Page one.", doc_id="d", format="html", page_starts=(0,))
