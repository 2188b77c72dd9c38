"""The OpenAI-compatible routes: in-process, then with the ``openai`` package against a
real ``citeqa serve``."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

import citeqa
from citeqa.server.openai_compat import answer_content

from .conftest import SEED_ANSWER, SEED_QUESTION, LiveServer


def chat(question: str, **extra: Any) -> dict[str, Any]:
    return {"model": "citeqa", "messages": [{"role": "user", "content": question}], **extra}


def sse_events(text: str) -> list[str]:
    """The data lines of a server-sent event stream, in order."""
    events = []
    for block in text.split("\n\n"):
        if block.strip():
            assert block.startswith("data: "), block
            events.append(block[len("data: "):])
    return events


def test_models_lists_citeqa(client: TestClient) -> None:
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["citeqa"]
    assert client.get("/v1/models/citeqa").json()["id"] == "citeqa"
    missing = client.get("/v1/models/gpt-4o")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"


def test_completion_is_the_ask_answer_with_its_sources(
    client: TestClient, engine: citeqa.Engine
) -> None:
    response = client.post("/v1/chat/completions", json=chat(
        SEED_QUESTION, temperature=0.2, max_tokens=50, stop=["\n"], user="u1",  # ignored
    ))
    assert response.status_code == 200, response.text
    body = response.json()
    asked = client.post("/ask", json={"question": SEED_QUESTION}).json()
    assert body["citeqa"] == asked
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    content = choice["message"]["content"]
    assert content.startswith(asked["answer"])
    assert SEED_ANSWER in content
    # the sources it cites, one a line: "[n] title"
    cited = sorted({s["citation"] for s in asked["sentences"]})
    sources = content.split("\n\nSources:\n", 1)[1].splitlines()
    by_id = {c["id"]: c for c in asked["citations"]}
    assert [line.split("]", 1)[0] + "]" for line in sources] == [f"[{n}]" for n in cited]
    for line, n in zip(sources, cited, strict=True):
        assert by_id[n]["title"] in line
    assert body["usage"]["total_tokens"] == (
        body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    ) > 0
    assert content == answer_content(engine.ask(SEED_QUESTION))


def test_the_last_user_message_is_the_question(client: TestClient) -> None:
    messages = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "What is the capital of Australia?"},
        {"role": "assistant", "content": "The documents do not answer this question."},
        {"role": "user", "content": [{"type": "text", "text": SEED_QUESTION}]},
    ]
    body = client.post("/v1/chat/completions", json={"model": "citeqa", "messages": messages})
    assert body.json()["citeqa"]["question"] == SEED_QUESTION


def test_abstention_is_said_without_sources(client: TestClient) -> None:
    body = client.post("/v1/chat/completions", json=chat("Who won the 1998 football World Cup?"))
    answer = body.json()["citeqa"]
    assert answer["abstained"]
    assert body.json()["choices"][0]["message"]["content"] == answer["answer"]


def test_stream_sends_openai_chunks_then_done(client: TestClient) -> None:
    response = client.post(
        "/v1/chat/completions",
        json=chat(SEED_QUESTION, stream=True, stream_options={"include_usage": True}),
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    with_choices = [c for c in chunks if c["choices"]]
    assert [c["choices"][0]["finish_reason"] for c in with_choices][-1] == "stop"
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in with_choices)
    whole = client.post("/v1/chat/completions", json=chat(SEED_QUESTION)).json()
    assert streamed == whole["choices"][0]["message"]["content"]
    assert with_choices[-1]["citeqa"] == whole["citeqa"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0


@pytest.mark.parametrize(
    ("payload", "status", "param"),
    [
        (chat("q", n=2), 400, "n"),
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": "q"}]}, 404, "model"),
        ({"model": "citeqa", "messages": []}, 400, "messages"),
        ({"model": "citeqa", "messages": [{"role": "system", "content": "x"}]}, 400, "messages"),
        ({"model": "citeqa", "messages": [{"role": "user", "content": " "}]}, 400, "messages"),
        (chat("q", top_k=0), 400, "top_k"),
        ({"messages": [{"role": "user", "content": "q"}]}, 400, "model"),
    ],
)
def test_refusals_have_openai_error_shape(
    client: TestClient, payload: dict[str, Any], status: int, param: str
) -> None:
    response = client.post("/v1/chat/completions", json=payload)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert error["message"]


def test_bad_json_is_an_openai_error(client: TestClient) -> None:
    response = client.post(
        "/v1/chat/completions", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]["message"]


def test_other_v1_errors_have_openai_shape_too(client: TestClient) -> None:
    missing = client.post("/v1/completions", json={"model": "citeqa", "prompt": "q"})
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "no route /v1/completions"
    wrong_method = client.get("/v1/chat/completions")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"
    assert wrong_method.json()["error"]["type"] == "invalid_request_error"


# -- the official client against a real server ------------------------------------------------


@pytest.mark.integration
def test_openai_client_gets_the_ask_answer(live_server: LiveServer) -> None:
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key="unused", max_retries=0)
    asked = httpx.post(f"{live_server.url}/ask", json={"question": SEED_QUESTION},
                       timeout=60).json()
    assert [m.id for m in client.models.list()] == ["citeqa"]

    completion = client.chat.completions.create(
        model="citeqa", messages=[{"role": "user", "content": SEED_QUESTION}]
    )
    content = completion.choices[0].message.content
    assert content is not None and content.startswith(asked["answer"])
    assert SEED_ANSWER in content
    extra = completion.model_extra or {}
    assert extra["citeqa"]["answer"] == asked["answer"]
    assert extra["citeqa"]["citations"] == asked["citations"]
    assert extra["citeqa"]["sentences"] == asked["sentences"]

    stream = client.chat.completions.create(
        model="citeqa", messages=[{"role": "user", "content": SEED_QUESTION}], stream=True
    )
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == content
    last = chunks[-1].model_extra or {}
    assert last["citeqa"]["citations"] == asked["citations"]

    with pytest.raises(openai.BadRequestError, match="n=2"):
        client.chat.completions.create(
            model="citeqa", messages=[{"role": "user", "content": SEED_QUESTION}], n=2
        )
