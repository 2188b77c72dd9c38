"""The README stays short, documents every setting that exists, links files that exist,
and its commands work as written: the CLI lines parse, and the HTTP and OpenAI
examples run against a real ``citeqa serve``."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from citeqa.cli import build_parser
from citeqa.settings import Settings

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
MAX_WORDS = 2500
TEST_ONLY_SETTINGS = {"embedder"}  # the deterministic fake embedder, never for users


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_readme_is_at_most_2500_words() -> None:
    assert len(README.split()) <= MAX_WORDS  # what `wc -w README.md` counts


def test_every_documented_variable_is_a_setting_and_every_setting_is_documented() -> None:
    documented = {name.lower() for name in re.findall(r"CITEQA_([A-Z0-9_]+)", README)}
    fields = set(Settings.model_fields) - TEST_ONLY_SETTINGS
    assert documented - fields == set(), "the README names settings that do not exist"
    assert fields - documented == set(), "settings the README does not document"


def test_local_links_and_images_exist() -> None:
    targets = re.findall(r"\]\(([^)#\s]+)\)", README) + re.findall(r'src="([^"]+)"', README)
    local = [t for t in targets if not re.match(r"[a-z]+:", t)]
    assert "docs/img/chat-desktop.png" in local and "docs/img/chat-phone.png" in local
    missing = [t for t in local if not (REPO / t).exists()]
    assert missing == []


def test_cli_lines_name_real_commands_and_options() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.choices and "ask" in a.choices)
    lines = [line for block in blocks("sh") for line in block.splitlines()
             if line.startswith(".venv/bin/citeqa ")]
    assert {line.split()[1] for line in lines} >= {"index", "ask", "serve", "mcp", "eval"}
    for line in lines:
        command = line.split()[1]
        assert command in subparsers.choices, line
        options = set(subparsers.choices[command]._option_string_actions)
        for flag in re.findall(r"(?<![\w-])(--[a-z-]+)", line.split("#")[0]):
            assert flag in options, f"{flag} in {line!r}"


# -- the examples against a real server ---------------------------------------------------------


@pytest.fixture
def readme_server(hashing_index_dir: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """``citeqa serve`` as the README's HTTP block expects it: its admin token set.
    The small index and the fake embedder keep it quick; the routes are the real ones."""
    from server.conftest import CITEQA_BIN, free_port, server_env, stop, wait_ready

    token = re.search(r"export CITEQA_ADMIN_TOKEN=(\S+)", README)
    assert token is not None
    index_dir = tmp_path / "index"
    shutil.copytree(hashing_index_dir, index_dir)
    port = free_port()
    with open(tmp_path / "server.log", "wb") as log:
        process = subprocess.Popen(
            [str(CITEQA_BIN), "serve", "--port", str(port), "--index-dir", str(index_dir)],
            env=server_env(CITEQA_EMBEDDER="hashing", CITEQA_ADMIN_TOKEN=token.group(1)),
            stdout=log, stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, process)
            yield url
        finally:
            stop(process)


def _with_url(text: str, url: str) -> str:
    return text.replace("localhost:8000", url).replace("http://127.0.0.1:8000", url)


@pytest.mark.integration
def test_readme_http_examples_run(readme_server: str) -> None:
    if shutil.which("curl") is None:
        pytest.skip("needs curl")
    script = "\n".join(_with_url(b, readme_server) for b in blocks("sh") if "curl " in b)
    assert script.count("curl ") >= 10
    # -f: an HTTP error status fails the command, and set -e the script
    script = script.replace("curl -s ", "curl -sSf ")
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert '"status":"ok"' in done.stdout  # /healthz
    assert "citeqa_answers_total" in done.stdout  # /metrics
    assert '"object":"chat.completion"' in done.stdout
    assert '"replaced":false' in done.stdout  # the admin calls


@pytest.mark.integration
def test_readme_python_example_runs(readme_server: str) -> None:
    pytest.importorskip("openai")
    (code,) = [b for b in blocks("python") if "OpenAI(" in b]
    done = subprocess.run([sys.executable, "-c", _with_url(code, readme_server)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Sources:" in done.stdout or "do not answer" in done.stdout
