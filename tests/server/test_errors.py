"""Bad input gets a clear 4xx problem+json, never a stack trace or a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

import citeqa

from .conftest import SEED_QUESTION, ClientFactory, assert_problem


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({}, "question"),
        ({"question": ""}, "question"),
        ({"question": "   \n\t"}, "blank"),
        ({"question": "x" * 2001}, "question"),
        ({"question": "a\x00b"}, "NUL"),
        ({"question": 42}, "question"),
        ({"question": SEED_QUESTION, "top_k": 0}, "top_k"),
        ({"question": SEED_QUESTION, "top_k": -3}, "top_k"),
        ({"question": SEED_QUESTION, "top_k": 21}, "top_k"),
        ({"question": SEED_QUESTION, "top_k": 10**30}, "top_k"),
        ({"question": SEED_QUESTION, "top_k": "5"}, "top_k"),
        ({"question": SEED_QUESTION, "top_k": 2.5}, "top_k"),
        ({"question": SEED_QUESTION, "top_k": True}, "top_k"),
        ({"question": SEED_QUESTION, "top_k": None}, "top_k"),
        ({"question": SEED_QUESTION, "mode": "fuzzy"}, "mode"),
        ({"question": SEED_QUESTION, "topk": 3}, "topk"),
        ([SEED_QUESTION], "body"),
        ("just a string", "body"),
    ],
)
def test_ask_validation_is_422(client: TestClient, payload: Any, where: str) -> None:
    response = client.post("/ask", json=payload)
    body = assert_problem(response, 422)
    assert where in body["detail"]
    # loc/msg/type only: the client's input is not echoed back
    assert body["errors"] and all({"loc", "msg", "type"} == set(e) for e in body["errors"])
    assert "x" * 100 not in response.text


def test_ask_question_of_exactly_the_limit_is_accepted(client: TestClient) -> None:
    assert client.post("/ask", json={"question": "é" * 2000}).status_code == 200


@pytest.mark.parametrize(
    "raw",
    [b"{", b'{"question": "x",}', b"nul\x00", b"", b"[1, 2", b'{"question": "' + b"9" * 5000],
)
def test_ask_malformed_json_is_4xx(client: TestClient, raw: bytes) -> None:
    response = client.post("/ask", content=raw, headers={"Content-Type": "application/json"})
    assert_problem(response, 422)


def test_ask_huge_integer_is_a_clear_4xx(client: TestClient) -> None:
    raw = b'{"question": "q", "top_k": ' + b"9" * 5000 + b"}"  # beyond Python's int parsing limit
    response = client.post("/ask", content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code in (400, 422)
    assert_problem(response, response.status_code)


def test_ask_invalid_utf8_is_400(client: TestClient) -> None:
    raw = b'{"question": "caf\xe9"}'  # Latin-1, not UTF-8
    response = client.post("/ask", content=raw, headers={"Content-Type": "application/json"})
    assert "UTF-8" in assert_problem(response, 400)["detail"]


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
def test_ask_wrong_content_type_is_415(client: TestClient, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    body = json.dumps({"question": SEED_QUESTION}).encode()
    response = client.post("/ask", content=body, headers=headers)
    assert "application/json" in assert_problem(response, 415)["detail"]


def test_ask_form_body_is_415(client: TestClient) -> None:
    assert_problem(client.post("/ask", data={"question": SEED_QUESTION}), 415)


def test_engine_input_errors_map_to_422(
    client: TestClient, engine: citeqa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise citeqa.InvalidInputError("the question is too vague; add a name or a date")

    monkeypatch.setattr(engine, "ask", refuse)
    body = assert_problem(client.post("/ask", json={"question": "hm"}), 422)
    assert body["detail"] == "the question is too vague; add a name or a date"


def test_index_store_errors_map_to_503(
    client: TestClient, engine: citeqa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise citeqa.IndexCorruptError("dense.faiss does not match its checksum; rebuild it")

    monkeypatch.setattr(engine, "ask", broken)
    assert "rebuild" in assert_problem(client.post("/ask", json={"question": "q"}), 503)["detail"]


def test_unexpected_errors_are_a_bare_500(
    make_client: ClientFactory, engine: citeqa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals at /srv/private/path")

    monkeypatch.setattr(engine, "ask", crash)
    client = make_client(raise_errors=False)
    response = client.post("/ask", json={"question": "q"})
    body = assert_problem(response, 500)
    assert "secret" not in response.text and "/srv" not in response.text
    assert body["detail"] == "an unexpected error occurred; it has been logged"
    assert response.headers["content-security-policy"].startswith("default-src 'self'")
    assert response.headers["x-content-type-options"] == "nosniff"


def test_unknown_document_is_404(client: TestClient) -> None:
    body = assert_problem(client.get("/documents/no-such-doc"), 404)
    assert "no-such-doc" in body["detail"]


@pytest.mark.parametrize("doc_id", ["-leading-dash", "a..b", "..x", "x" * 129, "sp ace", "é"])
def test_invalid_document_id_in_path_is_422(client: TestClient, doc_id: str) -> None:
    body = assert_problem(client.get(f"/documents/{doc_id}"), 422)
    assert "invalid doc_id" in body["detail"]


def test_unknown_route_and_method(client: TestClient) -> None:
    assert "/nope" in assert_problem(client.get("/nope"), 404)["detail"]
    # a trailing slash is another path: no redirect to a Location taken from Host
    trailing = client.post("/ask/", json={"question": "q"}, follow_redirects=False)
    assert "/ask/" in assert_problem(trailing, 404)["detail"]
    assert "location" not in trailing.headers
    response = client.put("/ask", json={"question": "q"})
    assert_problem(response, 405)
    assert "POST" in response.headers["allow"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [("DELETE", "/documents", "GET, POST"), ("POST", "/documents/notes", "GET, DELETE"),
     ("GET", "/ask", "POST"), ("POST", "/healthz", "GET, HEAD"), ("DELETE", "/", "GET, HEAD")],
)
def test_405_allows_every_method_the_path_takes(
    client: TestClient, method: str, path: str, allow: str
) -> None:
    """RFC 9110 §15.5.6; Starlette named only the first route's methods (GET)."""
    response = client.request(method, path)
    body = assert_problem(response, 405)
    assert response.headers["allow"] == allow
    assert body["detail"] == f"{method} is not allowed on {path}; use {allow.replace(', ', ' or ')}"


# -- body limits ------------------------------------------------------------------------------


def test_ask_body_over_the_limit_is_413(make_client: ClientFactory) -> None:
    client = make_client(max_ask_body_bytes=2048)
    payload = {"question": "q" * 1000, "pad": "x" * 2000}
    body = assert_problem(client.post("/ask", json=payload), 413)
    assert "2048" in body["detail"]


def test_ask_body_limit_is_enforced_on_bytes_not_the_header(make_client: ClientFactory) -> None:
    """A chunked body (no Content-Length) is counted as it streams."""
    client = make_client(max_ask_body_bytes=2048)

    def chunks() -> Any:
        yield b'{"question": "'
        for _ in range(10):
            yield b"q" * 500
        yield b'"}'

    response = client.post("/ask", content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in response.request.headers
    assert_problem(response, 413)


def call_asgi(app: Any, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> list[Any]:
    """One POST /ask straight through the ASGI interface, with exactly these headers."""
    import anyio

    async def call() -> list[Any]:
        sent: list[Any] = []
        messages = [
            {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
            for i, chunk in enumerate(chunks)
        ]

        async def receive() -> Any:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: Any) -> None:
            sent.append(message)

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": "/ask", "raw_path": b"/ask", "query_string": b"",
            "root_path": "", "client": ("127.0.0.1", 1), "server": ("testserver", 80),
            "headers": [(b"content-type", b"application/json"), *headers], "app": app,
        }
        await app(scope, receive, send)
        return sent

    return anyio.run(call)


def test_ask_lying_content_length_is_413(make_client: ClientFactory) -> None:
    """The header claims a small body; the bytes received are over the limit."""
    app = make_client(max_ask_body_bytes=2048).app
    raw = json.dumps({"question": "q" * 5000}).encode()
    sent = call_asgi(app, [(b"content-length", b"100")], [raw[:1000], raw[1000:]])
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["status"] == 413


def test_garbage_content_length_is_400(make_client: ClientFactory) -> None:
    app = make_client().app
    sent = call_asgi(app, [(b"content-length", b"lots")], [b"{}"])
    assert sent[0]["status"] == 400
    assert "Content-Length" in json.loads(sent[1]["body"])["detail"]


def test_declared_content_length_over_the_limit_is_413_before_reading(
    make_client: ClientFactory,
) -> None:
    client = make_client(max_ask_body_bytes=2048)
    response = client.post(
        "/ask", content=b"{}", headers={"Content-Type": "application/json",
                                        "Content-Length": str(10**12)},
    )
    assert_problem(response, 413)


def test_default_ask_limit_is_one_mebibyte(client: TestClient) -> None:
    payload = {"question": "q", "pad": "x" * (1 << 20)}
    assert_problem(client.post("/ask", json=payload), 413)


# -- loading state ----------------------------------------------------------------------------


def test_503_with_retry_after_while_loading(make_client: ClientFactory, index_dir: Any) -> None:
    import threading

    from citeqa.server import create_app
    from citeqa.settings import Settings

    gate = threading.Event()

    def slow_embedder(settings: Settings) -> citeqa.Embedder:
        assert gate.wait(10)
        return citeqa.HashingEmbedder()

    app = create_app(
        Settings.model_construct(index_dir=index_dir, admin_token="t" * 40),
        embedder_factory=slow_embedder,
    )
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        for method, path in [
            ("GET", "/readyz"), ("GET", "/documents"), ("GET", "/documents/x"),
        ]:
            response = client.request(method, path)
            assert_problem(response, 503)
            assert response.headers["retry-after"] == "5"
        response = client.post("/ask", json={"question": SEED_QUESTION})
        assert "loading" in assert_problem(response, 503)["detail"]
        assert response.headers["retry-after"] == "5"
        gate.set()
        app.state.service.loader.join(10)
        assert client.get("/readyz").status_code == 200
        assert client.post("/ask", json={"question": SEED_QUESTION}).status_code == 200


def test_load_failure_is_reported(tmp_path: Any) -> None:
    from citeqa.server import create_app
    from citeqa.settings import Settings

    failures: list[Exception] = []
    app = create_app(
        Settings.model_construct(index_dir=tmp_path / "missing"),
        embedder_factory=lambda s: citeqa.HashingEmbedder(),
        on_load_failure=failures.append,
    )
    with TestClient(app) as client:
        app.state.service.loader.join(10)
        response = client.get("/readyz")
        body = assert_problem(response, 503)
        assert "citeqa index" in body["detail"]  # says how to fix it
        assert "retry-after" not in response.headers  # retrying will not help
        assert client.head("/readyz").status_code == 503
        assert_problem(client.post("/ask", json={"question": "q"}), 503)
        assert client.get("/healthz").status_code == 200
    assert isinstance(failures[0], citeqa.IndexNotFoundError)


def test_model_mismatch_is_reported(index_dir: Any) -> None:
    from citeqa.server import create_app
    from citeqa.settings import Settings

    app = create_app(
        Settings.model_construct(index_dir=index_dir),
        embedder_factory=lambda s: citeqa.HashingEmbedder(dimension=64),
    )
    with TestClient(app) as client:
        app.state.service.loader.join(10)
        assert "model" in assert_problem(client.get("/readyz"), 503)["detail"]

