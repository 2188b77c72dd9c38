"""``GET /metrics`` (Prometheus text format) and the optional JSON-lines request log.

Each app has its own ``CollectorRegistry``, so several apps in one process (tests)
never share or clash over counters. Requests are counted by route template
(``/documents/{doc_id}``, not each id), so the series stay few whatever clients send.

Metrics::

    citeqa_http_requests_total{method, route, status}
    citeqa_http_request_duration_seconds{method, route}     histogram
    citeqa_answers_total, citeqa_abstentions_total          questions answered / declined
    citeqa_encoder_batch_size                               histogram: questions per forward pass
    citeqa_index_generation, citeqa_index_info{version}     the generation served
    citeqa_documents, citeqa_chunks                         in that generation
    citeqa_index_segments, citeqa_index_deleted_documents   its segments and tombstones

With ``CITEQA_LOG_FORMAT=json`` each request is one JSON line on the ``citeqa.access``
logger: time, method, route, path, status, duration, and for questions whether the
answer abstained. The question itself only with ``CITEQA_LOG_QUESTIONS=1``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from .._engine import Engine
    from .._types import Answer

access_log = logging.getLogger("citeqa.access")

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
#: paths with no parameters, named as they are when a request is refused before routing
#: (413 over the body limit, 503 when shedding load)
FIXED_ROUTES = frozenset({"/ask", "/documents", "/v1/chat/completions", "/v1/models"})


class _IndexCollector(Collector):
    """The index generation, documents and chunks, read from the engine at scrape time."""

    def __init__(self, engine: Callable[[], Engine | None]) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        engine = self.engine()
        if engine is None:  # still loading: no index figures yet
            return
        index = engine.index  # one generation for all four figures
        version = index.version
        head = version.split("-", 1)[0]
        if head.isdigit():
            yield GaugeMetricFamily(
                "citeqa_index_generation", "the index generation served", value=int(head)
            )
        info = GaugeMetricFamily(
            "citeqa_index_info", "the index version served", labels=["version"]
        )
        info.add_metric([version], 1)
        yield info
        yield GaugeMetricFamily(
            "citeqa_documents", "documents in the index served", value=len(index.documents)
        )
        yield GaugeMetricFamily(
            "citeqa_chunks", "chunks (passages) in the index served", value=len(index.chunks)
        )
        yield GaugeMetricFamily(
            "citeqa_index_segments", "segments of the index served", value=len(index.segments)
        )
        yield GaugeMetricFamily(
            "citeqa_index_deleted_documents",
            "documents of the index's segments that tombstones hide (until a merge drops them)",
            value=sum(len(ids) for ids in index.deleted.values()),
        )


class Metrics:
    """One app's metrics, in a registry of its own."""

    def __init__(self, engine: Callable[[], Engine | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "citeqa_http_requests", "HTTP requests by route template and status",
            ["method", "route", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "citeqa_http_request_duration_seconds", "time to the end of the response",
            ["method", "route"], buckets=LATENCY_BUCKETS_S, registry=self.registry,
        )
        self.answers = Counter(
            "citeqa_answers", "questions answered (abstentions included)",
            registry=self.registry,
        )
        self.abstentions = Counter(
            "citeqa_abstentions", "questions the documents do not answer",
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "citeqa_encoder_batch_size", "questions encoded per forward pass of the model",
            buckets=BATCH_BUCKETS, registry=self.registry,
        )
        self.registry.register(_IndexCollector(engine))

    def observe_answer(self, answer: Answer) -> None:
        self.answers.inc()
        if answer.abstained:
            self.abstentions.inc()

    def observe_batch(self, size: int) -> None:
        self.batch_size.observe(size)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def route_of(scope: Scope) -> str:
    """The route template the router matched, else the path if it is a fixed route,
    else ``other`` (unknown paths are not labels: a scanner would make thousands)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    return scope["path"] if scope["path"] in FIXED_ROUTES else "other"


class MetricsMiddleware:
    """Counts and times every request; writes the JSON request log when asked to."""

    def __init__(
        self, app: ASGIApp, metrics: Metrics, *, json_log: bool, log_questions: bool
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.json_log = json_log
        self.log_questions = log_questions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts
        state: dict[str, Any] = scope.setdefault("state", {})  # routes leave the answer here

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - started
            route, method = route_of(scope), scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(seconds)
            answer = state.get("answer")
            if answer is not None:
                self.metrics.observe_answer(answer)
            if self.json_log:
                self._log(scope, route, status, seconds, answer)

    def _log(self, scope: Scope, route: str, status: int, seconds: float, answer: Any) -> None:
        line: dict[str, Any] = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "method": scope["method"],
            "route": route,
            "path": scope["path"],  # never the query string or headers
            "status": status,
            "duration_ms": round(seconds * 1000, 3),
        }
        if answer is not None:
            line["abstained"] = answer.abstained
            line["index_version"] = answer.index_version
            if self.log_questions:
                line["question"] = answer.question
        access_log.info(json.dumps(line, ensure_ascii=False))
