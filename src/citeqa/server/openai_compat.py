"""An OpenAI-compatible face: ``GET /v1/models`` and ``POST /v1/chat/completions``.

Chat front ends and scripts that speak the OpenAI API can use citeqa as a model. The
last user message is the question; the assistant message is the extractive answer
with its ``[n]`` markers, then its sources. Clients that know citeqa find the whole
``POST /ask`` answer (sentences with spans, citations) in the extra field ``citeqa``.

Parameters a language model takes but an extractive answer has no use for
(``temperature``, ``max_tokens``, ``stop``, ``tools`` ...) are ignored; ``n`` above 1
is refused, as there is one answer. Errors these routes raise have OpenAI's shape,
``{"error": {"message", "type", "param", "code"}}``, which its clients read.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response, StreamingResponse

from .._engine_limits import MAX_QUESTION_CHARS, MAX_TOP_K
from .._exceptions import InvalidInputError
from .._types import Answer, Citation, Mode
from .app import EngineDep
from .auth import require_reader

MODEL_ID = "citeqa"
CREATED = 1_767_225_600  # 2026-01-01: a fixed "created" for the one model


class OpenAIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None,
        type_: str = "invalid_request_error", code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.type = type_
        self.code = code

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}
        return JSONResponse(body, status_code=self.status)


async def openai_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OpenAIError)
    return exc.response()


# -- the request ------------------------------------------------------------------------------


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_calls ...: not needed here

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    # a string, or content parts ([{"type": "text", "text": ...}, {"type": "image_url"...}])
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # temperature, max_tokens ...: ignored

    model: str
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: int | None = None
    # citeqa's own, sent by OpenAI clients as extra_body
    top_k: Annotated[int, Field(ge=1, le=MAX_TOP_K, strict=True)] = 5
    mode: Mode = "hybrid"


def _parse(payload: Any) -> ChatCompletionRequest:
    try:
        body = ChatCompletionRequest.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise OpenAIError(400, f"{param or 'body'}: {first['msg']}", param=param) from None
    if body.n is not None and body.n != 1:
        raise OpenAIError(
            400, f"n={body.n} is not supported: citeqa gives one answer per question (n=1)",
            param="n",
        )
    if body.model != MODEL_ID:
        raise OpenAIError(
            404, f"The model {body.model!r} does not exist; this server has {MODEL_ID!r}",
            param="model", code="model_not_found",
        )
    return body


def _text(content: str | list[dict[str, Any]] | None) -> str:
    if isinstance(content, str):
        return content
    parts = [p.get("text") for p in content or () if p.get("type") == "text"]
    return "\n".join(p for p in parts if isinstance(p, str))


def question_of(messages: Sequence[ChatMessage]) -> str:
    """The last user message's text: each question stands alone (the answer quotes
    documents, not the conversation)."""
    for message in reversed(messages):
        if message.role == "user":
            text = _text(message.content)
            if not text.strip():
                raise OpenAIError(400, "the last user message has no text", param="messages")
            if len(text) > MAX_QUESTION_CHARS:
                raise OpenAIError(
                    400, f"the question is {len(text)} characters; the limit is "
                    f"{MAX_QUESTION_CHARS}", param="messages",
                )
            return text
    raise OpenAIError(400, "no user message: the last user message is the question",
                      param="messages")


# -- the answer as a chat message -------------------------------------------------------------


def source_line(citation: Citation) -> str:
    """``[n] Title › Section, p. 3`` (page where the citation knows it)."""
    where = citation.title + (f" › {citation.section}" if citation.section else "")
    page = getattr(citation, "page", None)
    if page is not None:
        where += f", p. {page}"
    return f"[{citation.id}] {where}"


def answer_content(answer: Answer) -> str:
    """The answer with its markers, then the sources it cites, one a line."""
    if answer.abstained:
        return answer.answer
    cited = {s.citation for s in answer.sentences}
    lines = [source_line(c) for c in answer.citations if c.id in cited]
    return answer.answer + "\n\nSources:\n" + "\n".join(lines)


def _pieces(answer: Answer, content: str) -> list[str]:
    """The content cut where a streaming client can show progress: per sentence."""
    if answer.abstained or not answer.sentences:
        return [content]
    pieces = []
    for i, s in enumerate(answer.sentences):
        pieces.append(("" if i == 0 else " ") + f"{s.text} [{s.citation}]")
    head = "".join(pieces)
    if not content.startswith(head):  # the answer text is built otherwise: send it whole
        return [content]
    return [*pieces, content[len(head):]]


def _usage(question: str, content: str) -> dict[str, int]:
    from .._tokens import count_tokens

    prompt, completion = count_tokens(question), count_tokens(content)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


# -- routes -----------------------------------------------------------------------------------

router = APIRouter(prefix="/v1", dependencies=[Depends(require_reader)], include_in_schema=False)


@router.get("/models")
async def list_models() -> dict[str, Any]:
    return {"object": "list", "data": [
        {"id": MODEL_ID, "object": "model", "created": CREATED, "owned_by": "citeqa"}
    ]}


@router.get("/models/{model}")
async def get_model(model: str) -> dict[str, Any]:
    if model != MODEL_ID:
        raise OpenAIError(404, f"The model {model!r} does not exist", param="model",
                          code="model_not_found")
    return {"id": MODEL_ID, "object": "model", "created": CREATED, "owned_by": "citeqa"}


@router.post("/chat/completions")
async def chat_completions(request: Request, engine: EngineDep) -> Response:
    try:
        payload = json.loads(await request.body())
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise OpenAIError(400, "the body is not valid JSON") from None
    body = _parse(payload)
    question = question_of(body.messages)
    try:
        answer = await run_in_threadpool(engine.ask, question, body.top_k, body.mode)
    except InvalidInputError as exc:
        raise OpenAIError(400, str(exc), param="messages") from None
    request.state.answer = answer  # for the metrics and the request log
    content = answer_content(answer)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    extra = {"citeqa": answer.to_dict()}
    if not body.stream:
        return JSONResponse({
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": MODEL_ID,
            "system_fingerprint": answer.index_version,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }],
            "usage": _usage(question, content),
            **extra,
        })

    include_usage = bool((body.stream_options or {}).get("include_usage"))

    def chunk(delta: dict[str, Any], finish: str | None = None, **more: Any) -> str:
        data = {
            "id": completion_id, "object": "chat.completion.chunk", "created": created,
            "model": MODEL_ID, "system_fingerprint": answer.index_version,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            **more,
        }
        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

    async def events() -> AsyncIterator[str]:
        yield chunk({"role": "assistant", "content": "", "refusal": None})
        for piece in _pieces(answer, content):
            if piece:
                yield chunk({"content": piece})
        # The structured answer rides on the last chunk, as OpenAI's usage does.
        yield chunk({}, "stop", **extra)
        if include_usage:
            usage = {
                "id": completion_id, "object": "chat.completion.chunk", "created": created,
                "model": MODEL_ID, "system_fingerprint": answer.index_version,
                "choices": [], "usage": _usage(question, content),
            }
            yield f"data: {json.dumps(usage, ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(
        events(), media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
