"""``run`` and ``citeqa serve``: refusing unsafe binds, failing fast without an index."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

import citeqa
from citeqa.server import check_bind, is_loopback, run
from citeqa.settings import Settings

from .conftest import CITEQA_BIN, free_port, server_env


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.9.1", True), ("localhost", True), ("::1", True),
     ("[::1]", True), ("0.0.0.0", False), ("::", False), ("192.168.1.5", False),
     ("example.com", False)],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_short_token_on_a_public_host_is_refused() -> None:
    settings = Settings.model_construct(host="0.0.0.0", admin_token="short")
    with pytest.raises(citeqa.InvalidInputError, match="at least 32"):
        check_bind(settings)
    with pytest.raises(citeqa.InvalidInputError):
        run(settings)  # refuses before binding anything


@pytest.mark.parametrize(
    ("host", "token"),
    [("127.0.0.1", "short"), ("0.0.0.0", ""), ("0.0.0.0", "x" * 32), ("localhost", "s")],
)
def test_safe_binds_are_allowed(host: str, token: str) -> None:
    check_bind(Settings.model_construct(host=host, admin_token=token))


def test_cli_refuses_a_public_host_with_a_short_token(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(CITEQA_BIN), "serve", "--host", "0.0.0.0", "--port", str(free_port()),
         "--index-dir", str(tmp_path)],
        env=server_env(CITEQA_ADMIN_TOKEN="hunter2"),
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "refusing to listen on 0.0.0.0" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_cli_exits_with_a_clear_error_when_there_is_no_index(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(CITEQA_BIN), "serve", "--port", str(free_port()), "--index-dir",
         str(tmp_path / "none")],
        env=server_env(), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "citeqa: error: no index at" in result.stderr
    assert "citeqa index --index-dir" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_exits_with_a_clear_error_when_the_port_is_in_use(hashing_index_dir: Path) -> None:
    """One line and status 1, before the model loads: once uvicorn's ERROR line and
    status 3, and now and then an abort (134) as the model was loading in a thread."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [str(CITEQA_BIN), "serve", "--port", str(port), "--index-dir",
             str(hashing_index_dir)],
            env=server_env(CITEQA_EMBEDDER="hashing"), capture_output=True, text=True,
            timeout=60,
        )
    assert result.returncode == 1, result.stderr
    assert result.stderr == (
        f"citeqa: error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    )


def test_a_host_that_does_not_resolve_is_a_clean_error(tmp_path: Path) -> None:
    settings = Settings.model_construct(host="999.1.1.1", port=free_port(), index_dir=tmp_path)
    with pytest.raises(citeqa.CiteqaError, match=r"cannot listen on 999\.1\.1\.1:\d+: "):
        run(settings)
