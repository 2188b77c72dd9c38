"""PDF, HTML and Word uploads, questions scoped to documents, and GET /documents pages."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import citeqa

from .conftest import SEED_QUESTION, assert_problem

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/_formats.py
from _formats import (  # noqa: E402
    encrypt_pdf,
    make_docx,
    make_pdf,
    make_scanned_pdf,
)

SEED_ID = "000_34741492cc8173b1"
FOX_PAGES = [
    ["Red foxes hunt voles in the meadow at night.", "", "Foxes cache the food they find."],
    ["The vixen raises four cubs in a den each spring."],
]


def _upload(client: TestClient, name: str, data: bytes, **fields: str):  # type: ignore[no-untyped-def]
    return client.post("/documents", files={"file": (name, data)}, data=fields)


def test_pdf_upload_is_indexed_with_pages_and_answers_cite_them(
    admin_client: TestClient,
) -> None:
    response = _upload(admin_client, "fox report.pdf", make_pdf(FOX_PAGES, title="Fox report"))
    assert response.status_code == 201, response.text
    added = response.json()
    assert (added["doc_id"], added["format"], added["pages"]) == ("fox_report", "pdf", 2)
    assert added["title"] == "Fox report"
    doc = admin_client.get("/documents/fox_report").json()
    assert doc["format"] == "pdf" and len(doc["page_starts"]) == 2
    assert doc["text"][doc["page_starts"][1] :].startswith("The vixen raises four cubs")

    body = admin_client.post(
        "/ask", json={"question": "How many cubs does the vixen raise?", "doc_ids": ["fox_report"]}
    ).json()
    assert body["citations"] and {c["doc_id"] for c in body["citations"]} == {"fox_report"}
    for item in body["citations"] + body["sentences"]:
        expected = 2 if item["start"] >= doc["page_starts"][1] else 1
        assert item["page"] == expected
    assert any(s["page"] == 2 for s in body["sentences"])


def test_docx_and_html_uploads(admin_client: TestClient, tmp_path: Path) -> None:
    docx = make_docx(tmp_path / "guide.docx").read_bytes()
    added = _upload(admin_client, "guide.docx", docx).json()
    assert (added["format"], added["pages"]) == ("docx", None)
    assert added["title"] == "Field Guide to Foxes"
    page = b"<title>Dens</title><h1>Dens</h1><p>A den has many entrances.</p>"
    added = _upload(admin_client, "dens.html", page, doc_id="dens-page").json()
    assert (added["doc_id"], added["format"], added["title"]) == ("dens-page", "html", "Dens")


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("secret.pdf", encrypt_pdf(make_pdf(FOX_PAGES), "pw"), "encrypted"),
        ("scan.pdf", make_scanned_pdf(), "has no text layer; OCR is not supported"),
        ("broken.pdf", b"%PDF-1.7\nnot really", "not a readable PDF"),
        ("report.docx", make_pdf(FOX_PAGES), "is named as a Word .docx file but is a PDF"),
        ("notes.txt", make_pdf(FOX_PAGES), "is named as a text file but is a PDF"),
    ],
)
def test_bad_uploads_are_422_and_change_nothing(
    admin_client: TestClient, engine: citeqa.Engine, name: str, data: bytes, message: str
) -> None:
    before = engine.version
    body = assert_problem(_upload(admin_client, name, data), 422)
    assert message in body["detail"] and name in body["detail"]
    assert engine.version == before
    assert [d["doc_id"] for d in admin_client.get("/documents").json()["documents"]] == [SEED_ID]


def test_pdf_over_the_page_limit_is_422(make_client) -> None:  # type: ignore[no-untyped-def]
    from .conftest import ADMIN_TOKEN

    client = make_client(admin_token=ADMIN_TOKEN, max_pdf_pages=1)
    client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    body = assert_problem(_upload(client, "long.pdf", make_pdf(FOX_PAGES)), 422)
    assert "has 2 pages, more than the limit of 1 (CITEQA_MAX_PDF_PAGES)" in body["detail"]


def test_ask_with_unknown_doc_ids_is_404(client: TestClient) -> None:
    body = assert_problem(
        client.post("/ask", json={"question": SEED_QUESTION, "doc_ids": [SEED_ID, "nope"]}), 404
    )
    assert "'nope'" in body["detail"]
    assert_problem(client.post("/ask", json={"question": SEED_QUESTION, "doc_ids": []}), 422)
    assert_problem(client.post("/ask", json={"question": SEED_QUESTION, "doc_ids": "x"}), 422)


def test_scoped_ask_never_cites_another_document(admin_client: TestClient) -> None:
    assert admin_client.post(
        "/documents", json={"doc_id": "fox", "text": "Kamala Harris never met a fox in Guatemala."}
    ).status_code == 201
    for scope in ([SEED_ID], ["fox"]):
        body = admin_client.post(
            "/ask", json={"question": SEED_QUESTION, "doc_ids": scope, "top_k": 5}
        ).json()
        assert body["citations"]
        assert {c["doc_id"] for c in body["citations"]} == set(scope)
        assert {s["doc_id"] for s in body["sentences"]} <= set(scope)


def test_documents_come_a_page_at_a_time(admin_client: TestClient) -> None:
    for i in range(4):
        admin_client.post("/documents", json={"doc_id": f"d{i}", "text": f"Fox number {i}."})
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        body = admin_client.get("/documents", params=params).json()
        assert len(body["documents"]) <= 2
        seen += [d["doc_id"] for d in body["documents"]]
        for d in body["documents"]:
            assert d["chunks"] >= 1 and d["format"] == "text" and d["pages"] is None
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted([SEED_ID, "d0", "d1", "d2", "d3"]) and pages == 3
    assert_problem(admin_client.get("/documents", params={"limit": 0}), 422)
    assert_problem(admin_client.get("/documents", params={"cursor": "../x"}), 422)
    # a misspelt parameter is refused, not read as "no limit given"
    typo = admin_client.get("/documents", params={"limt": 2})
    assert_problem(typo, 422)
    assert "limt" in typo.json()["detail"]
