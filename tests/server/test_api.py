"""Every endpoint's success path, through the real app in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import citeqa
from citeqa.server.openapi import render
from citeqa.server.schemas import AnswerResponse, AnswerSentenceItem, CitationItem

from .conftest import SEED_ANSWER, SEED_QUESTION, ClientFactory

ROOT = Path(__file__).resolve().parents[2]
CSP = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"


def test_ask_returns_the_engine_answer_verbatim(
    client: TestClient, engine: citeqa.Engine
) -> None:
    response = client.post("/ask", json={"question": SEED_QUESTION})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body == engine.ask(SEED_QUESTION, top_k=5, mode="hybrid").to_dict()
    assert set(body) == {
        "question", "answer", "abstained", "index_version", "sentences", "citations",
        "short_answer",
    }
    assert not body["abstained"]
    assert body["sentences"][0]["text"] == SEED_ANSWER
    # The route returns the dict as is: it must have exactly the documented shape.
    strict = {"extra": "forbid", "strict": True}
    for model, items in (
        (AnswerResponse, [body]),
        (AnswerSentenceItem, body["sentences"]),
        (CitationItem, body["citations"]),
    ):
        for item in items:
            type(f"Strict{model.__name__}", (model,), {"model_config": strict}).model_validate(
                item if model is not AnswerResponse else {**item, "sentences": [], "citations": []}
            )


def test_ask_sentences_are_exact_spans_of_the_served_document(client: TestClient) -> None:
    body = client.post("/ask", json={"question": SEED_QUESTION, "top_k": 3}).json()
    for sentence in body["sentences"]:
        doc = client.get(f"/documents/{sentence['doc_id']}").json()
        assert doc["text"][sentence["start"] : sentence["end"]] == sentence["text"]
    for citation in body["citations"]:
        doc = client.get(f"/documents/{citation['doc_id']}").json()
        assert doc["text"][citation["start"] : citation["end"]] == citation["text"]
        assert set(citation) == {
            "id", "chunk_id", "doc_id", "title", "section", "text", "start", "end", "score",
            "retrievers", "page",
        }
        assert citation["page"] is None  # a text document has no pages


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
def test_ask_modes_and_top_k(client: TestClient, mode: str) -> None:
    body = client.post("/ask", json={"question": SEED_QUESTION, "top_k": 2, "mode": mode}).json()
    assert len(body["citations"]) <= 2


def test_ask_accepts_json_with_charset(client: TestClient) -> None:
    response = client.post(
        "/ask",
        content=json.dumps({"question": SEED_QUESTION}).encode(),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200


def test_list_documents(client: TestClient, engine: citeqa.Engine) -> None:
    response = client.get("/documents")
    assert response.status_code == 200
    (doc,) = engine.documents()
    assert response.json() == {
        "documents": [
            {
                "doc_id": doc.doc_id,
                "title": doc.title,
                "chars": len(doc.text),
                "chunks": engine.chunk_counts()[doc.doc_id],
                "sha256": doc.sha256,
                "format": "text",
                "pages": None,
            }
        ],
        "next_cursor": None,
    }


def test_get_document_returns_the_exact_source_text(
    client: TestClient, engine: citeqa.Engine
) -> None:
    (doc,) = engine.documents()
    body = client.get(f"/documents/{doc.doc_id}").json()
    assert body == {"doc_id": doc.doc_id, "title": doc.title, "text": doc.text,
                    "sha256": doc.sha256, "format": "text", "page_starts": []}
    assert body["text"] == (ROOT / "seeds" / f"{doc.doc_id}.txt").read_text(encoding="utf-8")


def test_health_and_ready(client: TestClient, engine: citeqa.Engine) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "index_version": engine.version, "documents": 1}
    for path in ("/healthz", "/readyz"):  # probes that send HEAD get the status, no body
        head = client.head(path)
        assert (head.status_code, head.content) == (200, b"")


@pytest.mark.parametrize(
    ("path", "media_type", "needle"),
    [
        ("/", "text/html", b'id="question"'),
        ("/static/app.css", "text/css", b"{"),
        ("/static/app.js", "text/javascript", b"use strict"),
    ],
)
def test_chat_page_and_static_files(
    client: TestClient, path: str, media_type: str, needle: bytes
) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == media_type
    assert needle in response.content
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    head = client.head(path)  # link checkers and monitors ask HEAD
    assert head.status_code == 200
    assert head.headers["content-type"] == response.headers["content-type"]


def test_only_the_known_static_files_are_served(client: TestClient) -> None:
    for path in ("/static/index.html", "/static/../__init__.py", "/static/", "/web/app.js"):
        assert client.get(path).status_code == 404


def test_favicon_is_no_content(client: TestClient) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 204
    assert response.content == b""


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/healthz"), ("GET", "/documents"), ("POST", "/ask"), ("GET", "/nope"),
     ("DELETE", "/documents/x"), ("GET", "/openapi.json")],
)
def test_security_headers_on_every_response(client: TestClient, method: str, path: str) -> None:
    response = client.request(method, path)
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_cors_is_closed_by_default(client: TestClient) -> None:
    origin = {"Origin": "https://elsewhere.example"}
    response = client.get("/documents", headers=origin)
    assert "access-control-allow-origin" not in response.headers
    preflight = client.options(
        "/ask", headers={**origin, "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_allow_list(make_client: ClientFactory) -> None:
    client = make_client(cors_origins="https://app.example, https://other.example")
    allowed = client.options(
        "/ask",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert allowed.headers["content-security-policy"] == CSP
    simple = client.get("/documents", headers={"Origin": "https://other.example"})
    assert simple.headers["access-control-allow-origin"] == "https://other.example"
    denied = client.get("/documents", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in denied.headers


def test_swagger_pages_are_off(client: TestClient) -> None:
    # They load scripts from a CDN, which the CSP blocks; the schema itself is served.
    assert client.get("/docs").status_code == 404
    assert client.get("/redoc").status_code == 404


def test_served_openapi_schema_matches_the_exported_file(client: TestClient) -> None:
    exported = json.loads((ROOT / "api" / "openapi.json").read_text(encoding="utf-8"))
    served = client.get("/openapi.json").json()
    assert served == exported, (
        "api/openapi.json is stale: run `make openapi` "
        "(python -m citeqa.server.openapi > api/openapi.json) and commit it"
    )
    # And the exporter writes exactly that file, byte for byte.
    assert render() == (ROOT / "api" / "openapi.json").read_text(encoding="utf-8")


def test_openapi_documents_problems_and_admin_auth(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    ask = schema["paths"]["/ask"]["post"]
    assert ask["responses"]["422"]["content"]["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/Problem"
    }
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    add = schema["paths"]["/documents"]["post"]
    assert set(add["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert add["security"] == [{"HTTPBearer": []}]
    assert schema["paths"]["/documents/{doc_id}"]["delete"]["security"] == [{"HTTPBearer": []}]
