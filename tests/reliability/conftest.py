"""Helpers for the reliability tests: real ``citeqa serve`` processes on the hashing embedder.

``CITEQA_EMBEDDER=hashing`` (a test-only setting) makes a server start in about two
seconds, so tests can kill and restart it dozens of times. Every server binds 127.0.0.1
on a free port.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from citeqa._store import load_index
from server.conftest import ADMIN_TOKEN, CITEQA_BIN, free_port, server_env, wait_ready

__all__ = ["ADMIN_TOKEN", "Served", "docs_on_disk", "start_server"]


@dataclass
class Served:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    index_dir: Path
    started: list[float] = field(default_factory=list)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, timeout=kwargs.pop("timeout", 30),
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, **kwargs,
        )

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self, timeout_s: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


def start_server(index_dir: Path, *, ready: bool = True, **env: str) -> Served:
    """``citeqa serve`` on the hashing embedder with the admin token; waits for /readyz."""
    port = free_port()
    log_path = index_dir.parent / f"server-{port}.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [str(CITEQA_BIN), "serve", "--port", str(port), "--index-dir", str(index_dir)],
            env=server_env(CITEQA_ADMIN_TOKEN=ADMIN_TOKEN, CITEQA_EMBEDDER="hashing", **env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    served = Served(f"http://127.0.0.1:{port}", process, log_path, index_dir)
    if ready:
        try:
            wait_ready(served.url, process, timeout_s=60)
        except BaseException:
            served.kill()
            print(served.log())
            raise
    return served


@pytest.fixture
def live_index(hashing_index_copy: Path) -> Path:
    """A private copy of the hashing-embedder index of seeds/, for a real server to change."""
    return hashing_index_copy


@pytest.fixture
def serve(live_index: Path) -> Iterator[Any]:
    """``serve(**env)`` starts a server over ``live_index``; all are killed at the end."""
    started: list[Served] = []

    def make(**env: str) -> Served:
        served = start_server(live_index, **env)
        started.append(served)
        return served

    yield make
    for served in started:
        served.kill()


def docs_on_disk(index_dir: Path) -> tuple[str, dict[str, str]]:
    """The live generation's version and {doc_id: sha256}, verified by ``load_index``."""
    data = load_index(index_dir)
    return data.version, {d.doc_id: d.sha256 for d in data.documents.values()}


def wait_until(predicate: Any, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
