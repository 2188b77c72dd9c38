"""``citeqa mcp`` spawned as an MCP client would, driven by the SDK's own stdio client."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from citeqa import Engine, HashingEmbedder
from conftest import CITEQA_BIN

QUESTION = "On which dates did Vice President Kamala Harris visit Guatemala and Mexico?"
ANSWER = "Vice President Kamala Harris’ visits to Guatemala and Mexico on June 7 and 8."

pytest.importorskip("mcp")


def _env() -> dict[str, str]:
    env = {"CITEQA_EMBEDDER": "hashing", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if "PYTHONPATH" in os.environ:  # run from a work tree: the server imports the same code
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


async def _session_run(index_dir: Path, calls: list[tuple[str, dict[str, Any]]]) -> Any:
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=str(CITEQA_BIN), args=["mcp", "--index-dir", str(index_dir)], env=_env()
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        tools = await session.list_tools()
        results = [await session.call_tool(name, args) for name, args in calls]
        return tools, results


def test_mcp_client_lists_tools_and_gets_verbatim_spans(hashing_index_dir: Path) -> None:
    tools, (ask, search, bad) = anyio.run(
        _session_run,
        hashing_index_dir,
        [
            ("ask", {"question": QUESTION}),
            ("search", {"query": "Kamala Harris Guatemala", "top_k": 3}),
            ("ask", {"question": "q", "top_k": 0}),
        ],
    )
    by_name = {t.name: t for t in tools.tools}
    assert set(by_name) == {"ask", "search"}
    for tool in by_name.values():
        assert tool.annotations is not None and tool.annotations.read_only_hint is True

    engine = Engine.open(hashing_index_dir, HashingEmbedder())
    texts = {d.doc_id: d.text for d in engine.documents()}

    assert not ask.is_error
    answer = ask.structured_content
    assert answer == engine.ask(QUESTION).to_dict()
    assert ANSWER in [s["text"] for s in answer["sentences"]]
    for s in answer["sentences"]:
        assert texts[s["doc_id"]][s["start"] : s["end"]] == s["text"]

    assert not search.is_error
    passages = search.structured_content["passages"]
    assert [p["rank"] for p in passages] == list(range(1, len(passages) + 1))
    assert 1 <= len(passages) <= 3
    for p in passages:
        assert texts[p["doc_id"]][p["start"] : p["end"]] == p["text"]

    assert bad.is_error  # top_k=0 is refused, with a message
    assert bad.content and "top_k" in bad.content[0].text


def test_mcp_without_an_index_exits_with_a_clean_error(tmp_path: Path) -> None:
    import subprocess

    done = subprocess.run(
        [str(CITEQA_BIN), "mcp", "--index-dir", str(tmp_path / "none")],
        env={**os.environ, **_env()}, capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("citeqa: error:")
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
