"""Fuzz the HTTP API from its own OpenAPI schema (schemathesis), in-process.

Bounded for ``make test`` (``FUZZ_EXAMPLES`` per operation, a few hundred cases in all).
For thousands: ``CITEQA_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest
tests/reliability/test_fuzz.py`` or, against a running server, ``schemathesis run http://127.0.0.1:8000/openapi.json
-H "Authorization: Bearer $CITEQA_ADMIN_TOKEN" --max-examples 2000``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psutil
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from citeqa import Engine, HashingEmbedder
from citeqa._store import load_index
from citeqa.server import create_app
from citeqa.settings import Settings
from server.conftest import ADMIN_TOKEN

READER_KEY = "fuzz-reader-key"  # CITEQA_API_KEYS on: reads need it, changes the admin token
FUZZ_EXAMPLES = int(os.environ.get("CITEQA_FUZZ_EXAMPLES", "60"))
PROBLEM_JSON = "application/problem+json"


# The schema is read at import; the engine is attached by the fixture below.
_APP = create_app(Settings.model_construct(index_dir=Path("/nonexistent"),
                                           admin_token=ADMIN_TOKEN, api_keys=READER_KEY))
schema = schemathesis.openapi.from_asgi("/openapi.json", _APP)


@pytest.fixture(scope="module", autouse=True)
def _engine(hashing_index_dir: Path) -> None:
    # Changes stay in memory (no index_dir): the fuzzer may add and delete freely.
    _APP.state.service.engine = Engine(load_index(hashing_index_dir), HashingEmbedder())


_rss: list[int] = []
_STATUSES: dict[tuple[str, str, int], int] = {}


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_api_never_fails_and_errors_are_problems(case: Any) -> None:
    if not _rss:
        _rss.append(psutil.Process().memory_info().rss)
    reads = case.method == "GET" or case.path == "/ask"
    headers = {"Authorization": f"Bearer {READER_KEY if reads else ADMIN_TOKEN}"}
    response = case.call(headers=headers)
    _STATUSES[(case.method, case.path, response.status_code)] = (
        _STATUSES.get((case.method, case.path, response.status_code), 0) + 1
    )
    assert response.status_code < 500 or (
        response.status_code == 503 and "Retry-After" in response.headers
    ), response.text
    if response.status_code >= 400:
        content_type = response.headers.get("content-type", [""])
        content_type = content_type[0] if isinstance(content_type, list) else content_type
        assert content_type.startswith(PROBLEM_JSON), (response.status_code, response.text)
    else:
        case.validate_response(response)
    # Memory does not jump while fuzzing (bodies are bounded before parsing).
    assert psutil.Process().memory_info().rss - _rss[0] < 300 << 20


def test_the_fuzzer_reached_the_engine() -> None:
    """Runs after the fuzz test: some generated requests were answered, not all refused."""
    if not _STATUSES:
        pytest.skip("run together with the fuzz test")
    print(f"\n{sum(_STATUSES.values())} fuzz cases: {sorted(_STATUSES.items())}")
    assert any(s == 200 for (m, p, s) in _STATUSES if p == "/ask")
    assert any(s == 201 for (m, p, s) in _STATUSES if p == "/documents")
