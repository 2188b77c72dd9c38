"""``citeqa mcp``: the index as Model Context Protocol tools, over stdio.

Two read-only tools, a thin shell over ``Engine`` like the CLI and HTTP ones:

* ``ask``: a question -> the extractive answer, every sentence with its citation and
  character span (the same answer as ``POST /ask``);
* ``search``: a query -> the passages ranked for it, each with its document, section,
  span and score (the citations ``ask`` ranks, whether or not it answers).

No tool changes documents. A ``CiteqaError`` is a tool error with its message; the
model and index load before the server answers, so a missing index is a clean exit.
Imported only by that command: ``mcp`` is not loaded by ``citeqa --help``.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, Field

from ._engine_limits import MAX_QUESTION_CHARS, MAX_TOP_K
from ._exceptions import CiteqaError
from ._types import Mode
from .server.schemas import AnswerResponse

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from ._engine import Engine
    from .settings import Settings

__all__ = ["SearchResult", "build_server", "run"]

INSTRUCTIONS = (
    "citeqa answers questions from a fixed set of documents with sentences copied "
    "verbatim from them, each cited to its exact character span. Use `ask` for an answer "
    "with citations and `search` for the ranked passages. An answer with abstained=true "
    "means the documents do not answer the question: do not invent one."
)


class Passage(BaseModel):
    rank: int = Field(description="1 is the best")
    doc_id: str
    title: str
    section: str | None
    chunk_id: str
    start: int = Field(description="offset of the passage in the document's text")
    end: int
    text: str = Field(description="verbatim: the document's text[start:end]")
    score: float
    page: int | None = Field(default=None, description="the page, for paged documents")


class SearchResult(BaseModel):
    query: str
    index_version: str
    passages: list[Passage]


Question = Annotated[str, Field(min_length=1, max_length=MAX_QUESTION_CHARS)]
TopK = Annotated[int, Field(ge=1, le=MAX_TOP_K)]


def build_server(engine: Engine, *, reload_interval_s: float = 0.0) -> MCPServer[Any]:
    """The MCP server over ``engine``; with ``reload_interval_s`` it serves a generation
    another process wrote (``citeqa index``) at most that many seconds late."""
    import anyio
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp.types import ToolAnnotations

    from .cli import _version

    server: MCPServer[Any] = MCPServer(
        "citeqa", instructions=INSTRUCTIONS, version=_version(), log_level="WARNING"
    )
    read_only = ToolAnnotations(
        read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
    )
    checked = [time.monotonic()]
    lock = threading.Lock()

    def answer(question: str, top_k: int, mode: Mode) -> Any:
        if reload_interval_s > 0 and time.monotonic() - checked[0] >= reload_interval_s:
            with lock:
                checked[0] = time.monotonic()
                with contextlib.suppress(CiteqaError, OSError):  # keep serving what we have
                    engine.refresh()
        try:
            return engine.ask(question, top_k=top_k, mode=mode)
        except CiteqaError as exc:
            raise ToolError(str(exc)) from None

    @server.tool(
        name="ask",
        title="Ask the documents",
        description=(
            "Answer a question with sentences copied verbatim from the documents. `answer` "
            "holds them with [n] markers; `sentences` gives each one's doc_id and "
            "character span (start, end); `citations` the passages they are quoted from. "
            "abstained=true: the documents do not answer it."
        ),
        annotations=read_only,
    )
    async def ask(question: Question, top_k: TopK = 5, mode: Mode = "hybrid") -> AnswerResponse:
        result = await anyio.to_thread.run_sync(answer, question, top_k, mode)
        return AnswerResponse.model_validate(result.to_dict())

    @server.tool(
        name="search",
        title="Search the documents",
        description=(
            "The passages that best match a query, best first, each with its document, "
            "section, character span (start, end) and verbatim text."
        ),
        annotations=read_only,
    )
    async def search(query: Question, top_k: TopK = 5, mode: Mode = "hybrid") -> SearchResult:
        result = await anyio.to_thread.run_sync(answer, query, top_k, mode)
        passages = [
            Passage(
                rank=rank, doc_id=c.doc_id, title=c.title, section=c.section,
                chunk_id=c.chunk_id, start=c.start, end=c.end, text=c.text, score=c.score,
                page=getattr(c, "page", None),
            )
            for rank, c in enumerate(result.citations, start=1)
        ]
        return SearchResult(query=query, index_version=result.index_version, passages=passages)

    return server


def run(settings: Settings) -> None:
    """Load the index, then serve the tools on stdin/stdout until the client leaves."""
    from ._engine import Engine
    from ._store import read_manifest

    read_manifest(settings.index_dir)  # no index: say so before loading the model
    # stdout is the protocol channel: anything a library prints while loading goes to stderr
    with contextlib.redirect_stdout(sys.stderr):
        engine = Engine.open(
            settings.index_dir, settings.make_embedder(), selector=settings.make_selector() or False
        )
    build_server(engine, reload_interval_s=settings.reload_interval_s).run("stdio")
