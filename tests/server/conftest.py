"""Shared fixtures for the HTTP tests.

Unit tests run the real app in-process (TestClient) over an index of seeds/ built with
the deterministic ``HashingEmbedder``. Integration tests share one real ``citeqa serve``
process (bundled model, real uvicorn) started once per session.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

import citeqa
from citeqa.server import create_app
from citeqa.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "seeds"
CITEQA_BIN = ROOT / ".venv" / "bin" / "citeqa"
ADMIN_TOKEN = "test-admin-token-0123456789abcdefghijklmnop"  # >= 32 chars
SEED_QUESTION = "On which dates did Vice President Kamala Harris visit Guatemala and Mexico?"
SEED_ANSWER = "Vice President Kamala Harris’ visits to Guatemala and Mexico on June 7 and 8."


class GatedEmbedder(citeqa.HashingEmbedder):
    """A HashingEmbedder that can hold a write mid-embedding (same name: same index).

    While ``hold`` is set, any batch containing ``trigger`` waits for ``release``;
    ``entered`` tells the test the write has reached the model.
    """

    def __init__(self, trigger: str = "GATEWORD") -> None:
        super().__init__()
        self.trigger = trigger
        self.hold = threading.Event()
        self.entered = threading.Event()
        self.release = threading.Event()

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        if self.hold.is_set() and any(self.trigger in t for t in texts):
            self.entered.set()
            assert self.release.wait(10), "test never released the gated embedder"
        return super().embed_batch(texts)


@pytest.fixture
def index_dir(hashing_index_copy: Path) -> Path:
    """A private copy of the hashing-embedder index of seeds/: tests may write to it."""
    return hashing_index_copy


@pytest.fixture
def embedder() -> GatedEmbedder:
    return GatedEmbedder()


@pytest.fixture
def engine(index_dir: Path, embedder: GatedEmbedder) -> citeqa.Engine:
    return citeqa.Engine.open(index_dir, embedder)


ClientFactory = Callable[..., TestClient]


@pytest.fixture
def make_client(
    index_dir: Path, engine: citeqa.Engine
) -> Iterator[ClientFactory]:
    """``make_client(**settings)``: a started TestClient over the test engine."""
    clients: list[TestClient] = []

    def make(*, engine_: citeqa.Engine | None = engine, raise_errors: bool = True,
             **overrides: Any) -> TestClient:
        settings = Settings.model_construct(index_dir=index_dir, **overrides)
        app = create_app(settings, engine=engine_)
        client = TestClient(app, raise_server_exceptions=raise_errors)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    """Document changes disabled (no admin token), like a default install."""
    return make_client()


@pytest.fixture
def admin_client(make_client: ClientFactory) -> TestClient:
    client = make_client(admin_token=ADMIN_TOKEN)
    client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
    return client


class ResponseLike(Protocol):
    """An httpx response, or httpx2's (which TestClient returns)."""

    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def text(self) -> str: ...
    def json(self) -> Any: ...


def assert_problem(response: ResponseLike, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with ``status``; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["title"] and body["detail"]
    assert "Traceback" not in response.text
    return body


# -- a real `citeqa serve` process, shared by the integration tests ----------------------------


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    index_dir: Path
    seconds_to_ready: float

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEQA_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **extra)
    return env


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"citeqa serve exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not ready after {timeout_s} s")


def stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


@pytest.fixture(scope="session")
def real_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """seeds/ indexed with the bundled model, by the CLI, as a user would."""
    index_dir = tmp_path_factory.mktemp("real-index") / "index"
    subprocess.run(
        [str(CITEQA_BIN), "index", str(SEEDS), "--index-dir", str(index_dir)],
        check=True, env=server_env(), capture_output=True, timeout=300,
    )
    return index_dir


@pytest.fixture(scope="session")
def live_server(
    real_index: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    index_dir = tmp_path_factory.mktemp("live") / "index"
    shutil.copytree(real_index, index_dir)  # the browser test adds documents
    port = free_port()
    log_path = index_dir.parent / "server.log"
    with open(log_path, "wb") as log_file:
        started = time.perf_counter()
        process = subprocess.Popen(
            [str(CITEQA_BIN), "serve", "--port", str(port), "--index-dir", str(index_dir)],
            env=server_env(CITEQA_ADMIN_TOKEN=ADMIN_TOKEN),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, process)
            server = LiveServer(url, process, log_path, index_dir, time.perf_counter() - started)
            yield server
        finally:
            code = stop(process)
            # uvicorn shuts down gracefully, then re-raises SIGTERM so the status reports it.
            if code not in (0, -signal.SIGTERM):
                print(log_path.read_text(errors="replace"), file=sys.stderr)
                raise AssertionError(f"citeqa serve exited with {code} on SIGTERM")
