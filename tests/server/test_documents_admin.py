"""POST/DELETE /documents: auth, both body formats, incremental and atomic updates."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import citeqa

from .conftest import ADMIN_TOKEN, SEED_QUESTION, ClientFactory, GatedEmbedder, assert_problem

FOX = (
    "# Foxes\n\nThe quick brown fox jumps over the lazy dog near the quarry.\n"
    "Foxes in the quarry hunt voles at dawn.\n"
)
FOX_QUESTION = "What does the quick brown fox jump over near the quarry?"
FOX_SENTENCE = "The quick brown fox jumps over the lazy dog near the quarry."


def test_admin_endpoints_are_403_without_a_configured_token(client: TestClient) -> None:
    for response in (
        client.post("/documents", json={"title": "t", "text": FOX}),
        client.delete("/documents/whatever"),
        # even with a token the server does not know about
        client.post("/documents", json={"text": FOX}, headers={"Authorization": "Bearer x"}),
    ):
        assert "CITEQA_ADMIN_TOKEN" in assert_problem(response, 403)["detail"]


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", f"Token {ADMIN_TOKEN}",
     "Bearer wrong-token", f"Bearer {ADMIN_TOKEN}x", f"Bearer {ADMIN_TOKEN[:-1]}",
     "Bearer tökén".encode()],  # raw UTF-8 on the wire: compared as bytes, no crash
)
def test_missing_or_wrong_token_is_401(
    make_client: ClientFactory, authorization: str | bytes | None
) -> None:
    client = make_client(admin_token=ADMIN_TOKEN)
    value = authorization.encode() if isinstance(authorization, str) else authorization
    headers = {b"Authorization": value} if value is not None else {}
    for response in (
        client.post("/documents", json={"text": FOX}, headers=headers),
        client.delete("/documents/000_34741492cc8173b1", headers=headers),
    ):
        assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/documents").json()["documents"][0]["doc_id"] == "000_34741492cc8173b1"


def test_bearer_scheme_is_case_insensitive(make_client: ClientFactory) -> None:
    client = make_client(admin_token=ADMIN_TOKEN)
    response = client.post("/documents", json={"text": FOX, "doc_id": "fox"},
                           headers={"Authorization": f"bearer {ADMIN_TOKEN}"})
    assert response.status_code == 201


def test_auth_is_checked_before_the_body(make_client: ClientFactory) -> None:
    client = make_client(admin_token=ADMIN_TOKEN)
    response = client.post("/documents", content=b"{", headers={"Content-Type": "application/json"})
    assert_problem(response, 401)


def test_add_json_document_then_ask_about_it(
    admin_client: TestClient, engine: citeqa.Engine, embedder: GatedEmbedder, index_dir: Path
) -> None:
    before = engine.version
    seed_texts = embedder.texts_embedded
    response = admin_client.post("/documents", json={"title": "Foxes", "text": FOX,
                                                     "doc_id": "fox"})
    assert response.status_code == 201, response.text
    added = response.json()
    assert set(added) == {
        "doc_id", "title", "chars", "chunks", "sha256", "index_version", "replaced", "format",
        "pages",
    }
    assert (added["format"], added["pages"]) == ("text", None)
    assert added["replaced"] is False
    assert added["doc_id"] == "fox" and added["title"] == "Foxes"
    assert added["chars"] == len(FOX) and added["chunks"] >= 1
    assert added["sha256"] == citeqa.Document("fox", "Foxes", FOX).sha256
    assert added["index_version"] == engine.version != before
    assert response.headers["location"] == "/documents/fox"
    # Incremental: only the new document's texts went to the model, not the seed corpus.
    assert 0 < embedder.texts_embedded - seed_texts < 10

    assert admin_client.get("/documents/fox").json()["text"] == FOX
    listed = {d["doc_id"]: d for d in admin_client.get("/documents").json()["documents"]}
    assert listed["fox"]["chunks"] == added["chunks"]
    answer = admin_client.post("/ask", json={"question": FOX_QUESTION}).json()
    assert answer["index_version"] == added["index_version"]
    assert answer["sentences"][0]["text"] == FOX_SENTENCE
    assert answer["sentences"][0]["doc_id"] == "fox"

    # Durable: a fresh engine over the same folder has it.
    reopened = citeqa.Engine.open(index_dir, citeqa.HashingEmbedder())
    assert reopened.version == added["index_version"]
    assert reopened.document("fox").text == FOX


def test_add_without_doc_id_derives_a_safe_id(admin_client: TestClient) -> None:
    added = admin_client.post(
        "/documents", json={"title": "Café <script>alert(1)</script> ../../etc", "text": FOX}
    ).json()
    doc_id = added["doc_id"]
    assert doc_id.startswith("cafe-script-alert-1-script-etc-")
    assert len(doc_id.rsplit("-", 1)[1]) == 8
    assert admin_client.get(f"/documents/{doc_id}").status_code == 200
    # Same title and text: same id (re-posting replaces rather than duplicates).
    again = admin_client.post("/documents", json={"title": added["title"], "text": FOX}).json()
    assert again["doc_id"] == doc_id
    assert len(admin_client.get("/documents").json()["documents"]) == 2


def test_add_without_title_uses_the_heading(admin_client: TestClient) -> None:
    added = admin_client.post("/documents", json={"text": FOX}).json()
    assert added["title"] == "Foxes"
    assert added["doc_id"].startswith("foxes-")


def test_add_replaces_an_existing_document(admin_client: TestClient) -> None:
    first = admin_client.post("/documents", json={"doc_id": "fox", "text": FOX})
    assert first.json()["replaced"] is False
    new_text = "# Foxes\n\nFoxes are now known to nap at noon.\n"
    response = admin_client.post("/documents", json={"doc_id": "fox", "text": new_text})
    assert response.status_code == 201
    assert response.json()["replaced"] is True
    assert admin_client.get("/documents/fox").json()["text"] == new_text


def test_upload_a_text_file(admin_client: TestClient) -> None:
    response = admin_client.post(
        "/documents", files={"file": ("fox notes.md", FOX.encode(), "text/markdown")}
    )
    assert response.status_code == 201, response.text
    added = response.json()
    assert added["doc_id"] == "fox_notes"
    assert added["title"] == "Foxes"
    assert admin_client.get("/documents/fox_notes").json()["text"] == FOX


def test_upload_with_title_and_doc_id_fields(admin_client: TestClient) -> None:
    response = admin_client.post(
        "/documents",
        files={"file": ("x.txt", FOX.encode(), "application/octet-stream")},
        data={"title": "Quarry foxes", "doc_id": "quarry"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["doc_id"] == "quarry"
    assert response.json()["title"] == "Quarry foxes"


@pytest.mark.parametrize(
    ("filename", "expected_prefix"),
    [("../../etc/passwd", "passwd"), ("C:\\Users\\me\\report.txt", "report"),
     ("...", "foxes-"), ("ünï cödé.txt", "n_c_d"), (".hidden.md", "hidden")],
)
def test_upload_filenames_become_safe_ids(
    admin_client: TestClient, filename: str, expected_prefix: str
) -> None:
    upload = {"file": (filename, FOX.encode(), "text/plain")}
    response = admin_client.post("/documents", files=upload)
    assert response.status_code == 201, response.text
    assert response.json()["doc_id"].startswith(expected_prefix)


REPORT_2022 = "# Report 2022\n\nRevenue fell to 2 million euros in 2022.\n"


def _upload(client: TestClient, filename: str, content: str, **data: str) -> Any:
    return client.post(
        "/documents", files={"file": (filename, content.encode(), "text/plain")}, data=data
    )


@pytest.mark.parametrize(
    ("first", "second", "doc_id"),
    [("Report 2021.txt", "Report_2021.txt", "Report_2021"),
     ("отчет_2021.txt", "итоги_2021.txt", "2021"),
     ("forêt.md", "for_t.txt", "for_t")],
)
def test_an_id_from_a_filename_never_replaces_another_files_document(
    admin_client: TestClient, engine: citeqa.Engine, index_dir: Path,
    first: str, second: str, doc_id: str,
) -> None:
    assert _upload(admin_client, first, FOX).json()["doc_id"] == doc_id
    before = engine.version
    body = assert_problem(_upload(admin_client, second, REPORT_2022), 409)
    assert f"gives the id {doc_id!r}" in body["detail"] and "doc_id" in body["detail"]
    assert engine.version == before
    assert admin_client.get(f"/documents/{doc_id}").json()["text"] == FOX
    # The filename is kept with the document, so another server (or a restart) agrees.
    stored = citeqa.Engine.open(index_dir, citeqa.HashingEmbedder()).document(doc_id)
    assert stored.source == f"upload:{first}"


def test_the_same_filename_or_an_explicit_doc_id_still_replaces(
    admin_client: TestClient,
) -> None:
    assert _upload(admin_client, "Report 2021.txt", FOX).json()["replaced"] is False
    again = _upload(admin_client, "Report 2021.txt", REPORT_2022)
    assert again.status_code == 201 and again.json()["replaced"] is True
    explicit = _upload(admin_client, "Report_2021.txt", FOX, doc_id="Report_2021")
    assert explicit.status_code == 201 and explicit.json()["replaced"] is True
    assert admin_client.get("/documents/Report_2021").json()["text"] == FOX
    # and the explicit id was the client's choice: that file may now be re-uploaded
    assert _upload(admin_client, "Report_2021.txt", REPORT_2022).status_code == 201


def test_an_id_from_a_filename_never_replaces_a_json_or_indexed_document(
    admin_client: TestClient,
) -> None:
    admin_client.post("/documents", json={"doc_id": "notes", "text": FOX})
    assert_problem(_upload(admin_client, "notes.txt", REPORT_2022), 409)
    # the seed document came from `citeqa index` (its source is a path)
    assert_problem(_upload(admin_client, "000_34741492cc8173b1.txt", REPORT_2022), 409)
    assert admin_client.get("/documents/notes").json()["text"] == FOX


@pytest.mark.parametrize(
    ("files", "data", "status", "needle"),
    [
        ({"file": ("a.txt", b"caf\xe9 au lait", "text/plain")}, None, 422, "UTF-8"),
        ({"file": ("a.txt", b"text\x00with nul", "text/plain")}, None, 422, "NUL"),
        ({"file": ("a.txt", b"", "text/plain")}, None, 422, "text"),
        ({"file": ("a.txt", b"  \n\n ", "text/plain")}, None, 422, "blank"),
        ({"other": ("a.txt", FOX.encode(), "text/plain")}, None, 422, "'file'"),
        ({"other": ("a.txt", b"x", "text/plain")}, {"file": "not a file"}, 422, "'file'"),
        ({"file": ("a.txt", FOX.encode(), "text/plain")}, {"doc_id": "../x"}, 422, "doc_id"),
        ({"file": ("a.txt", FOX.encode(), "text/plain")}, {"title": "t" * 301}, 422, "title"),
    ],
)
def test_bad_uploads_are_4xx(
    admin_client: TestClient, files: Any, data: Any, status: int, needle: str
) -> None:
    response = admin_client.post("/documents", files=files, data=data)
    assert needle in assert_problem(response, status)["detail"]


def test_unknown_upload_fields_are_refused_like_unknown_json_fields(
    admin_client: TestClient, engine: citeqa.Engine
) -> None:
    before = engine.version
    upload = _upload(admin_client, "typo.txt", FOX, titel="MyTitle", doc_id="typo")
    as_json = admin_client.post(
        "/documents", json={"text": FOX, "titel": "MyTitle", "doc_id": "typo"}
    )
    detail = assert_problem(upload, 422)["detail"]
    assert detail == assert_problem(as_json, 422)["detail"] == (
        "body.titel: Extra inputs are not permitted"
    )
    assert upload.json()["errors"] == as_json.json()["errors"]
    # text comes from the file in a multipart upload: a 'text' field is refused too
    assert "body.text" in assert_problem(_upload(admin_client, "a.txt", FOX, text="x"), 422)[
        "detail"
    ]
    assert engine.version == before


def test_two_files_in_one_upload_are_refused(admin_client: TestClient) -> None:
    response = admin_client.post(
        "/documents",
        files=[("file", ("a.txt", b"one", "text/plain")),
               ("file", ("b.txt", b"two", "text/plain"))],
    )
    assert_problem(response, 400)


def test_broken_multipart_is_400(admin_client: TestClient) -> None:
    response = admin_client.post(
        "/documents", content=b"--x\r\nnot a part",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    assert response.status_code in (400, 422)
    assert_problem(response, response.status_code)


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ({"title": "t"}, "text"),
        ({"text": ""}, "text"),
        ({"text": " \n "}, "blank"),
        ({"text": "a\x00b"}, "NUL"),
        ({"text": FOX, "doc_id": "has space"}, "doc_id"),
        ({"text": FOX, "doc_id": "..hidden"}, "doc_id"),
        ({"text": FOX, "doc_id": ""}, "doc_id"),
        ({"text": FOX, "title": "t\x00"}, "NUL"),
        ({"text": FOX, "title": 5}, "title"),
        ({"text": FOX, "extra": 1}, "extra"),
        ({"text": ["not", "a", "string"]}, "text"),
        ([FOX], "body"),
    ],
)
def test_bad_json_documents_are_422(admin_client: TestClient, payload: Any, needle: str) -> None:
    response = admin_client.post("/documents", json=payload)
    assert needle in assert_problem(response, 422)["detail"]


@pytest.mark.parametrize(
    ("raw", "content_type", "status"),
    [
        (b"{", "application/json", 422),
        (b'{"text": "caf\xe9"}', "application/json", 400),
        (FOX.encode(), "text/plain", 415),
        (b"text=x", "application/x-www-form-urlencoded", 415),
        (FOX.encode(), None, 415),
    ],
)
def test_bad_document_bodies_are_4xx(
    admin_client: TestClient, raw: bytes, content_type: str | None, status: int
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    assert_problem(admin_client.post("/documents", content=raw, headers=headers), status)


def test_document_over_the_limit_is_413(make_client: ClientFactory) -> None:
    client = make_client(admin_token=ADMIN_TOKEN, max_document_bytes=4096)
    client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    big = "word " * 2000
    assert "4096" in assert_problem(client.post("/documents", json={"text": big}), 413)["detail"]
    response = client.post("/documents", files={"file": ("big.txt", big.encode(), "text/plain")})
    assert_problem(response, 413)
    # The document limit applies to POST /documents only; /ask keeps its own.
    small = client.post("/documents", json={"text": FOX, "doc_id": "fox"})
    assert small.status_code == 201


def test_document_limit_is_larger_than_the_ask_limit(make_client: ClientFactory) -> None:
    client = make_client(admin_token=ADMIN_TOKEN, max_ask_body_bytes=2048)
    client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    text = FOX + "More about foxes and their quarry habits. " * 100  # ~4 KiB
    assert client.post("/documents", json={"text": text, "doc_id": "fox"}).status_code == 201


def test_delete_document(admin_client: TestClient, engine: citeqa.Engine, index_dir: Path) -> None:
    admin_client.post("/documents", json={"doc_id": "fox", "text": FOX})
    response = admin_client.delete("/documents/fox")
    assert response.status_code == 200
    assert response.json() == {"doc_id": "fox", "index_version": engine.version}
    assert_problem(admin_client.get("/documents/fox"), 404)
    assert "fox" not in citeqa.Engine.open(index_dir, citeqa.HashingEmbedder()).index.documents
    assert_problem(admin_client.delete("/documents/fox"), 404)


def test_a_write_while_another_process_writes_is_503_at_once(
    admin_client: TestClient, engine: citeqa.Engine, index_dir: Path
) -> None:
    from citeqa._store import writer_lock

    assert admin_client.post("/documents", json={"doc_id": "fox", "text": FOX}).status_code == 201
    before = engine.version
    with writer_lock(index_dir):  # as a citeqa index run holds it, for minutes maybe
        for response in (
            admin_client.post("/documents", json={"doc_id": "fox2", "text": FOX}),
            admin_client.delete("/documents/fox"),
        ):
            body = assert_problem(response, 503)
            assert "another process is writing the index" in body["detail"]
            assert response.headers["retry-after"]
    assert engine.version == before
    assert admin_client.delete("/documents/fox").status_code == 200


def test_delete_invalid_id_is_422(admin_client: TestClient) -> None:
    assert_problem(admin_client.delete("/documents/bad id"), 422)


def test_delete_the_last_document_is_409(admin_client: TestClient, engine: citeqa.Engine) -> None:
    before = engine.version
    response = admin_client.delete("/documents/000_34741492cc8173b1")
    assert "last document" in assert_problem(response, 409)["detail"]
    assert engine.version == before


def test_delete_the_last_document_is_409_when_another_server_deleted_the_rest(
    make_client: ClientFactory, index_dir: Path
) -> None:
    """Two servers share the index: the second's copy still holds two documents, but the
    generation on disk (which the write builds on) holds one. Once 422, as the engine's
    check raised a plain DocumentError."""
    first = make_client(admin_token=ADMIN_TOKEN, reload_interval_s=0)
    first.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    assert first.post("/documents", json={"doc_id": "fox", "text": FOX}).status_code == 201
    second = make_client(
        engine_=citeqa.Engine.open(index_dir, citeqa.HashingEmbedder()),
        admin_token=ADMIN_TOKEN, reload_interval_s=0,
    )
    second.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    assert first.delete("/documents/fox").status_code == 200
    assert len(second.get("/documents").json()["documents"]) == 2  # not reloaded yet
    response = second.delete("/documents/000_34741492cc8173b1")
    assert "last document" in assert_problem(response, 409)["detail"]


def test_readers_use_the_previous_generation_until_the_write_is_durable(
    admin_client: TestClient, engine: citeqa.Engine, embedder: GatedEmbedder
) -> None:
    before = engine.version
    embedder.hold.set()
    result: dict[str, Any] = {}

    def add() -> None:
        text = FOX + "GATEWORD marks this document.\n"
        result["response"] = admin_client.post("/documents", json={"doc_id": "fox", "text": text})

    writer = threading.Thread(target=add)
    writer.start()
    try:
        assert embedder.entered.wait(10), "the write never reached the embedder"
        # Mid-write: reads and questions are served, from the old generation.
        answer = admin_client.post("/ask", json={"question": SEED_QUESTION})
        assert answer.status_code == 200
        assert answer.json()["index_version"] == before
        assert_problem(admin_client.get("/documents/fox"), 404)
        assert admin_client.get("/readyz").json()["index_version"] == before
        assert "response" not in result  # no answer before the new generation is on disk
    finally:
        embedder.release.set()
        writer.join(10)
    added = result["response"]
    assert added.status_code == 201, added.text
    assert added.json()["index_version"] == engine.version != before
    assert admin_client.get("/documents/fox").status_code == 200


def test_failed_write_leaves_the_index_unchanged(
    admin_client: TestClient, engine: citeqa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import citeqa._engine

    before = engine.version

    def disk_full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(citeqa._engine, "write_index", disk_full)
    response = admin_client.post("/documents", json={"doc_id": "fox", "text": FOX})
    assert "No space left" in assert_problem(response, 503)["detail"]
    assert engine.version == before
    assert_problem(admin_client.get("/documents/fox"), 404)


def test_tokens_are_never_logged(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(admin_token=ADMIN_TOKEN)
    with caplog.at_level(logging.DEBUG):
        client.post("/documents", json={"text": FOX}, headers={"Authorization": "Bearer wrong-1"})
        client.post("/documents", json={"text": FOX, "doc_id": "fox"},
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        client.delete("/documents/fox", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert "added document fox" in caplog.text
    assert ADMIN_TOKEN not in caplog.text and "wrong-1" not in caplog.text
