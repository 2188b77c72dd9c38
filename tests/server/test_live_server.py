"""A real ``citeqa serve`` process: bundled model, real uvicorn, real sockets."""

from __future__ import annotations

import httpx
import pytest

from .conftest import ADMIN_TOKEN, SEED_ANSWER, SEED_QUESTION, LiveServer

pytestmark = pytest.mark.integration


def test_ready_then_ask(live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server.url, timeout=60) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz").json()
        assert ready["status"] == "ready"
        response = client.post("/ask", json={"question": SEED_QUESTION, "top_k": 5})
        assert response.status_code == 200
        body = response.json()
        assert body["index_version"] == ready["index_version"]
        assert not body["abstained"]
        assert SEED_ANSWER in [s["text"] for s in body["sentences"]]
        for sentence in body["sentences"]:
            text = client.get(f"/documents/{sentence['doc_id']}").json()["text"]
            assert text[sentence["start"] : sentence["end"]] == sentence["text"]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "server" not in response.headers  # no version banner


def test_page_and_errors_over_real_http(live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server.url, timeout=60) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-security-policy"].startswith("default-src 'self'")
        bad = client.post("/ask", content=b"{", headers={"Content-Type": "application/json"})
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"
        # Over the 1 MiB default, declared honestly: refused before the body is read.
        big = client.post("/ask", json={"question": "q", "pad": "x" * (2 << 20)})
        assert big.status_code == 413


def test_admin_token_round_trip_is_not_logged(live_server: LiveServer) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    text = "# Lighthouse\n\nThe Skerry lighthouse keeper polishes the brass lens every Tuesday.\n"
    with httpx.Client(base_url=live_server.url, timeout=120) as client:
        assert client.post("/documents", json={"text": text}).status_code == 401
        added = client.post("/documents", json={"text": text, "doc_id": "lighthouse"},
                            headers=auth)
        assert added.status_code == 201, added.text
        answer = client.post(
            "/ask", json={"question": "When does the Skerry lighthouse keeper polish the lens?"}
        ).json()
        assert answer["index_version"] == added.json()["index_version"]
        assert answer["sentences"][0]["doc_id"] == "lighthouse"
        deleted = client.delete("/documents/lighthouse", headers=auth)
        assert deleted.status_code == 200
    log = live_server.log()
    assert '"POST /documents HTTP/1.1" 201' in log  # the access log is on...
    assert ADMIN_TOKEN not in log  # ...and never shows the token
