"""CITEQA_API_KEYS: optional bearer keys for the read endpoints (RFC 6750 challenges)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from .conftest import ADMIN_TOKEN, SEED_QUESTION, ClientFactory, assert_problem

SEED_DOC_ID = "000_34741492cc8173b1"

KEYS = "reader-key-one,reader-key-two"
READS = [
    ("POST", "/ask", {"question": SEED_QUESTION}),
    ("POST", "/v1/chat/completions",
     {"model": "citeqa", "messages": [{"role": "user", "content": SEED_QUESTION}]}),
    ("GET", "/v1/models", None),
    ("GET", "/documents", None),
    ("GET", f"/documents/{SEED_DOC_ID}", None),
]


def call(client: TestClient, method: str, path: str, body: object,
         token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "body"), READS)
def test_reads_are_open_without_keys(
    client: TestClient, method: str, path: str, body: object
) -> None:
    assert call(client, method, path, body).status_code == 200


@pytest.mark.parametrize(("method", "path", "body"), READS)
def test_reads_need_a_key_when_keys_are_set(
    make_client: ClientFactory, method: str, path: str, body: object
) -> None:
    client = make_client(api_keys=KEYS)
    missing = call(client, method, path, body)
    assert missing.headers["www-authenticate"] == 'Bearer realm="citeqa"'
    wrong = call(client, method, path, body, token="reader-key-three")
    if path.startswith("/v1/"):  # OpenAI's error shape, which its clients read
        assert missing.status_code == wrong.status_code == 401
        assert "API key" in missing.json()["error"]["message"]
        assert wrong.json()["error"]["code"] == "invalid_api_key"
    else:
        assert "API key" in assert_problem(missing, 401)["detail"]
        assert_problem(wrong, 401)
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
    # the admin token is not a reader key: the two stay separate
    assert call(client, method, path, body, token=ADMIN_TOKEN).status_code == 401
    for key in KEYS.split(","):
        assert call(client, method, path, body, token=key).status_code == 200


def test_probes_and_page_stay_open_with_keys(make_client: ClientFactory) -> None:
    client = make_client(api_keys=KEYS)
    for path in ("/healthz", "/readyz", "/", "/static/app.js"):
        assert client.get(path).status_code == 200, path


def test_admin_routes_still_take_the_admin_token(make_client: ClientFactory) -> None:
    client = make_client(api_keys=KEYS, admin_token=ADMIN_TOKEN)
    text = {"text": "The owl sleeps at noon.", "doc_id": "owl"}
    denied = client.post("/documents", json=text,
                         headers={"Authorization": "Bearer reader-key-one"})
    assert_problem(denied, 401)
    added = client.post("/documents", json=text,
                        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert added.status_code == 201, added.text
