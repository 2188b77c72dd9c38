"""Limits, in-process: load shedding, draining, hostile paths and documents (hashing embedder)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import citeqa
from citeqa._store import load_index

from .conftest import SEED_QUESTION, ClientFactory, GatedEmbedder, assert_problem


def test_asks_over_the_limit_are_shed_at_once(
    make_client: ClientFactory, embedder: GatedEmbedder
) -> None:
    client = make_client(max_inflight_asks=2)
    embedder.hold.set()
    held = [threading.Thread(target=client.post, args=("/ask",),
                             kwargs={"json": {"question": f"GATEWORD {i}"}}) for i in range(2)]
    for t in held:
        t.start()
    try:
        assert embedder.entered.wait(10)
        for _ in range(50):  # both slots taken once the second one reaches the model too
            if _inflight(client) == 2:
                break
            threading.Event().wait(0.05)
        shed = client.post("/ask", json={"question": SEED_QUESTION})
        body = assert_problem(shed, 503)
        assert shed.headers["retry-after"] == "1" and "limit" in body["detail"]
        assert client.get("/readyz").status_code == 200  # other routes are not limited
    finally:
        embedder.release.set()
        for t in held:
            t.join(10)
    assert client.post("/ask", json={"question": SEED_QUESTION}).status_code == 200


def _inflight(client: TestClient) -> int:
    app = client.app.middleware_stack  # type: ignore[attr-defined]
    while app is not None and not hasattr(app, "inflight"):
        app = getattr(app, "app", None)
    return int(app.inflight) if app is not None else -1


def test_draining_server_answers_503_but_healthz(client: TestClient) -> None:
    client.app.state.service.draining = True  # type: ignore[attr-defined]
    response = client.post("/ask", json={"question": SEED_QUESTION})
    assert_problem(response, 503)
    assert response.headers["retry-after"] == "1" and response.headers["connection"] == "close"
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    "path",
    ["/documents/..%2F..%2Fetc%2Fpasswd", "/documents/%2e%2e", "/documents/%2E%2E%2Fx",
     "/documents/.hidden", "/documents/%2Fetc%2Fpasswd", "/documents/a%00b",
     "/documents/" + "a" * 300],
)
def test_hostile_document_ids_never_reach_outside(admin_client: TestClient, path: str) -> None:
    for method in ("GET", "DELETE"):
        response = admin_client.request(method, path)
        assert response.status_code in (404, 422), (method, path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")


def test_deeply_nested_json_is_a_clean_4xx(admin_client: TestClient) -> None:
    nested = "[" * 100_000 + "]" * 100_000
    for path, raw in (("/ask", '{"question": ' + nested + "}"),
                      ("/documents", '{"title": "t", "text": ' + nested + "}")):
        response = admin_client.post(path, content=raw.encode(),
                                     headers={"content-type": "application/json"})
        assert 400 <= response.status_code < 500, response.text[:300]
        assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    "text, status",
    [
        ("", 422),
        (" \n\t " * 100, 422),
        ("The long sentence " + "goes on and on " * 3300 + "and ends.", 201),  # ~50,000 chars
        ("ünïcödé tëxt: ☃ 東京 — fine. A second sentence.", 201),
    ],
    ids=["empty", "whitespace", "50k-char-sentence", "non-ascii"],
)
def test_odd_documents_are_refused_or_indexed_consistently(
    admin_client: TestClient, index_dir: Path, text: str, status: int
) -> None:
    response = admin_client.post("/documents", json={"doc_id": "odd", "title": "Odd",
                                                     "text": text})
    assert response.status_code == status, response.text[:300]
    if status >= 400:
        assert response.headers["content-type"].startswith("application/problem+json")
    data = load_index(index_dir)  # verified: checksums, counts, vectors agree
    assert ("odd" in data.documents) == (status == 201)
    if status == 201:
        assert data.documents["odd"].text == citeqa.make_document(text, doc_id="odd").text
        assert admin_client.post("/ask", json={"question": "long sentence"}).status_code == 200
