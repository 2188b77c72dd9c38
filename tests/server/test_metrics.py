"""GET /metrics in the Prometheus text format, and the JSON-lines request log."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

import citeqa
from citeqa._batching import MicroBatcher
from citeqa.server.metrics import Metrics

from .conftest import SEED_QUESTION, ClientFactory, LiveServer

ABSTAINS = "Who won the 1998 football World Cup?"


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value}, parsed by Prometheus' own parser."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_move_with_traffic(client: TestClient, engine: citeqa.Engine) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    before = scrape(response.text)

    assert not client.post("/ask", json={"question": SEED_QUESTION}).json()["abstained"]
    assert client.post("/ask", json={"question": ABSTAINS}).json()["abstained"]
    client.post("/v1/chat/completions", json={
        "model": "citeqa", "messages": [{"role": "user", "content": SEED_QUESTION}]
    })
    doc_id = engine.documents()[0].doc_id
    client.get(f"/documents/{doc_id}")
    client.get("/documents/no-such-doc")
    client.get("/wp-login.php")
    after = scrape(client.get("/metrics").text)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "citeqa_http_requests_total"
    assert moved(requests, method="POST", route="/ask", status="200") == 2
    assert moved(requests, method="POST", route="/v1/chat/completions", status="200") == 1
    # the route template, not each id
    assert moved(requests, method="GET", route="/documents/{doc_id}", status="200") == 1
    assert moved(requests, method="GET", route="/documents/{doc_id}", status="404") == 1
    assert moved(requests, method="GET", route="other", status="404") == 1
    assert not any(doc_id in str(labels) for _, labels in after)
    latency = "citeqa_http_request_duration_seconds_count"
    assert moved(latency, method="POST", route="/ask") == 2
    assert moved("citeqa_answers_total") == 3
    assert moved("citeqa_abstentions_total") == 1

    index = engine.index
    assert value(after, "citeqa_documents") == len(index.documents)
    assert value(after, "citeqa_chunks") == len(index.chunks)
    assert value(after, "citeqa_index_segments") == len(index.segments) >= 1
    assert value(after, "citeqa_index_deleted_documents") == sum(map(len, index.deleted.values()))
    assert value(after, "citeqa_index_generation") == int(index.version.split("-")[0])
    assert value(after, "citeqa_index_info", version=index.version) == 1


def test_each_app_has_its_own_registry(make_client: ClientFactory) -> None:
    one, two = make_client(), make_client()
    for _ in range(3):
        one.post("/ask", json={"question": SEED_QUESTION})
    assert value(scrape(one.get("/metrics").text), "citeqa_answers_total") == 3
    assert value(scrape(two.get("/metrics").text), "citeqa_answers_total") == 0


def test_encoder_batches_are_observed() -> None:
    metrics = Metrics(lambda: None)
    with MicroBatcher(citeqa.HashingEmbedder()) as batcher:
        batcher.on_batch = metrics.observe_batch
        for text in ("one", "two", "three"):
            batcher.encode(text)
    samples = scrape(metrics.render().decode())
    assert value(samples, "citeqa_encoder_batch_size_count") == 3
    assert value(samples, "citeqa_encoder_batch_size_sum") == 3
    assert value(samples, "citeqa_index_generation") == 0  # no engine: no index figures


@pytest.mark.parametrize("log_questions", [False, True])
def test_json_request_log(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture, log_questions: bool
) -> None:
    client = make_client(log_format="json", log_questions=log_questions)
    with caplog.at_level(logging.INFO, logger="citeqa.access"):
        client.post("/ask?x=secret", json={"question": SEED_QUESTION},
                    headers={"Authorization": "Bearer hush"})
        client.get("/healthz")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "citeqa.access"]
    ask, health = lines
    assert ask["route"] == "/ask" and ask["status"] == 200 and ask["method"] == "POST"
    assert ask["abstained"] is False and ask["duration_ms"] > 0
    assert health == {k: health[k] for k in ("ts", "method", "route", "path", "status",
                                              "duration_ms")}
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "secret" not in text and "hush" not in text
    assert (SEED_QUESTION in text) is log_questions
    assert ("question" in ask) is log_questions


def test_no_request_log_lines_by_default(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="citeqa.access"):
        client.post("/ask", json={"question": SEED_QUESTION})
    assert not [r for r in caplog.records if r.name == "citeqa.access"]


@pytest.mark.integration
def test_metrics_of_a_real_server(live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server.url, timeout=60) as client:
        before = scrape(client.get("/metrics").text)
        client.post("/ask", json={"question": SEED_QUESTION})
        after = scrape(client.get("/metrics").text)
    assert value(after, "citeqa_answers_total") == value(before, "citeqa_answers_total") + 1
    # the model encoded the question: one more batch, of one
    count = "citeqa_encoder_batch_size_count"
    assert value(after, count) == value(before, count) + 1
    assert value(after, "citeqa_documents") >= 1
