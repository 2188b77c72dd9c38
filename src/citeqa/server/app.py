"""The FastAPI app: a thin HTTP shell over ``Engine`` that translates errors to RFC 9457.

Request path, outermost first::

    Metrics -> SecurityHeaders -> CORS (only with an allow-list) -> LoadShedding -> BodyLimit
    -> routes

The engine loads in a background thread started by the lifespan, so ``/healthz``
answers at once while ``/readyz`` (and every route that needs the index) says
503 until the model and index are in memory.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hmac
import importlib.metadata
import logging
import re
import threading
import time
import unicodedata
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources
from pathlib import PurePosixPath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._converters import ConversionLimits, check_type, convert, format_of
from .._documents import detect_title, make_document, validate_doc_id
from .._embedding import Embedder
from .._engine import Engine
from .._exceptions import (
    CiteqaError,
    DocumentConflictError,
    DocumentError,
    DocumentNotFoundError,
    IndexBusyError,
    IndexStoreError,
    InvalidInputError,
)
from .._store import current_version
from .._types import Document, sha256_text
from ..settings import Settings
from .auth import require_reader
from .schemas import (
    MAX_TITLE_CHARS,
    AnswerResponse,
    AskRequest,
    DocumentAdded,
    DocumentDeleted,
    DocumentResponse,
    DocumentsResponse,
    Health,
    NewDocument,
    Problem,
    Readiness,
)

log = logging.getLogger("citeqa.server")

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_S = 5
SHED_RETRY_AFTER_S = 1  # overload and shutdown: a short wait is enough
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
#: the routes that answer questions: load shedding counts them together
ANSWER_PATHS = frozenset({"/ask", "/v1/chat/completions"})
WEB_FILES = {  # the only files served: an allow-list, not a directory mount
    "index.html": "text/html; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
}

# RFC 9110 wording, fixed here: Python's HTTPStatus phrases change between versions
# (413 and 422 did in 3.13), which would change titles and the exported schema.
STATUS_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    405: "Method Not Allowed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def status_title(status: int) -> str:
    return STATUS_TITLES.get(status) or HTTPStatus(status).phrase


EmbedderFactory = Callable[[Settings], Embedder]
LoadFailureHook = Callable[[Exception], None]


# -- problems ---------------------------------------------------------------------------------


def problem_response(
    status: int,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    body = Problem.model_validate(
        {"title": status_title(status), "status": status, "detail": detail, "errors": errors}
    )
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        headers=headers,
        media_type=PROBLEM_JSON,
    )


def _problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer."""
    ref = {"schema": {"$ref": "#/components/schemas/Problem"}}
    return {code: {"description": status_title(code), "content": {PROBLEM_JSON: ref}}
            for code in codes}


class ServiceUnavailable(HTTPException):
    """The index is not loaded (yet)."""


# -- middleware -------------------------------------------------------------------------------


class SecurityHeadersMiddleware:
    """Adds the CSP and friends to every response, errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.raw if k not in present]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimitMiddleware:
    """Rejects bodies over the route's limit with 413, before the app parses anything.

    Content-Length is checked first (cheap), then the bytes actually received are
    counted, since a client can send more than it declared or use chunked encoding.
    The body is buffered (it is bounded) and replayed to the app.
    """

    def __init__(self, app: ASGIApp, limit_for: Callable[[Scope], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            try:
                declared_bytes = int(declared)
            except ValueError:
                response = problem_response(400, "the Content-Length header is not a number")
                await response(scope, receive, send)
                return
            if declared_bytes > limit:
                await self._too_large(scope, receive, send, limit)
                return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left; nobody to answer
            body += message.get("body", b"")
            if len(body) > limit:
                await self._too_large(scope, receive, send, limit)
                return
            if not message.get("more_body", False):
                break

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # later calls wait for the disconnect, as usual

        await self.app(scope, replay, send)

    @staticmethod
    async def _too_large(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = problem_response(
            413, f"the request body is larger than the limit of {limit} bytes for this endpoint"
        )
        await response(scope, receive, send)


class LoadSheddingMiddleware:
    """Refuses work the service cannot take now, at once and before reading the body.

    * Over ``max_inflight`` concurrent /ask requests: 503 with ``Retry-After``, instead
      of queueing without bound for the thread pool (memory and latency stay bounded).
    * Once a graceful shutdown began (``draining()``): 503 with ``Retry-After`` and
      ``Connection: close`` for any new request except /healthz, while the requests
      already in flight finish.
    """

    def __init__(
        self, app: ASGIApp, max_inflight: int, draining: Callable[[], bool]
    ) -> None:
        self.app = app
        self.max_inflight = max_inflight
        self.draining = draining
        self.inflight = 0  # only touched on the event loop: no lock needed
        self.shed = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.draining() and scope["path"] != "/healthz":
            self.shed += 1
            response = problem_response(
                503, "the server is shutting down; retry shortly",
                headers={"Retry-After": str(SHED_RETRY_AFTER_S), "Connection": "close"},
            )
            await response(scope, receive, send)
            return
        if scope["path"] not in ANSWER_PATHS:
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.max_inflight:
            self.shed += 1
            response = problem_response(
                503,
                f"the server is answering {self.inflight} questions, its limit; retry shortly",
                headers={"Retry-After": str(SHED_RETRY_AFTER_S)},
            )
            await response(scope, receive, send)
            return
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1


# -- the service: engine state shared by the routes -------------------------------------------


def default_embedder(settings: Settings) -> Embedder:
    return settings.make_embedder()


class Service:
    """Holds the engine once loaded, or why it is not."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None,
        embedder_factory: EmbedderFactory,
        on_load_failure: LoadFailureHook | None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.load_error: Exception | None = None
        self.embedder_factory = embedder_factory
        self.on_load_failure = on_load_failure
        # Serialises add/delete with reading back the version and chunk count they made.
        self.write_lock = threading.Lock()
        #: set when a graceful shutdown begins: new requests get 503 while old ones finish
        self.draining = False
        self.loader: threading.Thread | None = None
        #: hears the size of each batch of questions the model encodes (metrics)
        self.on_batch: Callable[[int], None] | None = None

    def start_loading(self) -> None:
        if self.engine is not None or self.loader is not None:
            return
        self.loader = threading.Thread(target=self.load, name="citeqa-load", daemon=True)
        self.loader.start()

    def load(self) -> None:
        started = time.perf_counter()
        index_dir = self.settings.index_dir
        try:
            current_version(index_dir)  # no index: say so before spending seconds on the model
            engine = Engine.open(
                index_dir,
                self.embedder_factory(self.settings),
                selector=self.settings.make_selector() or False,
            )
            # Concurrent questions share one forward pass.
            batcher = engine.enable_batching(self.settings.batch_max, self.settings.batch_wait_ms)
            batcher.on_batch = self.on_batch
        except Exception as exc:  # reported through /readyz, the log and the hook
            self.load_error = exc
            log.error("cannot load the index at %s: %s", index_dir, exc)
            if self.on_load_failure is not None:
                self.on_load_failure(exc)
            return
        self.engine = engine
        log.info(
            "ready in %.1f s: index %s, %d documents",
            time.perf_counter() - started,
            engine.version,
            len(engine.documents()),
        )

    async def watch_index(self) -> None:
        """Every ``reload_interval_s``, serve what another process wrote to the index
        directory (a ``citeqa index`` run, a calibration) without a restart."""
        while True:
            await asyncio.sleep(self.settings.reload_interval_s)
            if self.engine is not None and not self.draining:
                await asyncio.to_thread(self.refresh, self.engine)

    def refresh(self, engine: Engine) -> None:
        if not self.write_lock.acquire(blocking=False):
            return  # a document change is running; it builds on the disk's generation
        try:
            if engine.refresh():
                log.info("now serving index %s (changed on disk)", engine.version)
        except Exception as exc:  # noqa: BLE001 - a bad generation must not stop the watch
            log.warning(
                "the index at %s changed but cannot be loaded (%s); still serving %s",
                self.settings.index_dir, exc, engine.version,
            )
        finally:
            self.write_lock.release()

    def unavailable(self) -> ServiceUnavailable:
        if self.load_error is not None:
            detail = f"the index could not be loaded: {self.load_error}"
            if not isinstance(self.load_error, CiteqaError):
                detail = "the index could not be loaded; see the server log"
            return ServiceUnavailable(503, detail)
        return ServiceUnavailable(
            503,
            "the model and index are still loading; retry shortly",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )


# The dependencies of /ask are async: FastAPI runs a plain ``def`` dependency in the
# thread pool, and three hand-overs there and back cost more than the work they do.
async def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


async def get_engine(service: ServiceDep) -> Engine:
    if service.engine is None:
        raise service.unavailable()
    return service.engine


EngineDep = Annotated[Engine, Depends(get_engine)]

_bearer = HTTPBearer(
    auto_error=False,
    description="the CITEQA_ADMIN_TOKEN, required for POST and DELETE /documents",
)


def require_admin(
    service: ServiceDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    expected = service.settings.admin_token
    if not expected:
        raise HTTPException(
            403,
            "document changes are disabled: set CITEQA_ADMIN_TOKEN on the server to enable "
            "them, then send Authorization: Bearer <token>",
        )
    if credentials is None:
        raise HTTPException(
            401,
            "send Authorization: Bearer <token> with the server's admin token",
            headers={"WWW-Authenticate": 'Bearer realm="citeqa"'},
        )
    # Constant time, on bytes: compare_digest refuses non-ASCII str.
    if not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise HTTPException(
            401,
            "the bearer token is not the admin token",
            headers={"WWW-Authenticate": 'Bearer realm="citeqa", error="invalid_token"'},
        )


async def require_json(request: Request) -> None:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise HTTPException(
            415, f"send the body as application/json (got {media_type or 'no Content-Type'})"
        )


# -- error handlers ---------------------------------------------------------------------------


def _issue(error: dict[str, Any]) -> dict[str, Any]:
    # Never echo "input": it can be large, and it is the client's own data anyway.
    loc = list(error.get("loc", ()))
    msg = str(error.get("msg", "invalid"))
    if error.get("type") == "json_invalid":  # FastAPI puts the character position in loc
        reason = (error.get("ctx") or {}).get("error") or "syntax error"
        where = f" at character {loc[1]}" if len(loc) > 1 else ""
        loc, msg = ["body"], f"the body is not valid JSON: {reason}{where}"
    return {"loc": loc, "msg": msg, "type": str(error.get("type", ""))}


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    issues = [_issue(dict(e)) for e in exc.errors()]
    detail = "; ".join(
        i["msg"] if not i["loc"] or i["msg"].startswith("the body")
        else f"{'.'.join(str(p) for p in i['loc'])}: {i['msg']}"
        for i in issues[:5]
    )
    return problem_response(422, detail or "the request is invalid", errors=issues)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else status_title(exc.status_code)
    if exc.status_code == 400 and detail == "There was an error parsing the body":
        # FastAPI's words when JSON decoding fails outside json.loads' own errors.
        detail = (
            "the request body is not valid UTF-8"
            if isinstance(exc.__cause__, UnicodeDecodeError)
            else "the request body could not be parsed"
        )
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route {request.url.path}"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette's Allow names only the first route on the path (GET for /documents,
        # which takes POST too); RFC 9110 wants every method the resource supports.
        allowed = _allowed_methods(request)
        headers["Allow"] = ", ".join(allowed)
        detail = f"{request.method} is not allowed on {request.url.path}; use " + " or ".join(
            allowed
        )
    if request.url.path.startswith("/v1/"):  # OpenAI's clients read OpenAI's error shape
        from .openai_compat import OpenAIError

        code = "invalid_api_key" if exc.status_code == 401 else None
        kind = "server_error" if exc.status_code >= 500 else "invalid_request_error"
        response = OpenAIError(exc.status_code, detail, type_=kind, code=code).response()
        response.headers.update(headers)
        return response
    return problem_response(exc.status_code, detail, headers=headers)


_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    # The app's routes hold the included router as one opaque entry: look at both lists.
    from .openai_compat import router as openai_router

    for route in (*router.routes, *openai_router.routes, *request.app.router.routes):
        if isinstance(route, Route) and route.matches(request.scope)[0] != Match.NONE:
            methods |= route.methods or set()  # PARTIAL: the path matches, the method not
    rank = {method: i for i, method in enumerate(_METHOD_ORDER)}
    return sorted(methods, key=lambda m: (rank.get(m, len(rank)), m))


def _citeqa_handler(
    status: int, retry_after_s: int | None = None
) -> Callable[[Request, Exception], Any]:
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None

    async def handle(request: Request, exc: Exception) -> Response:
        if status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        return problem_response(status, str(exc), headers=headers)

    return handle


async def _internal_error(request: Request, exc: Exception) -> Response:
    # Runs in ServerErrorMiddleware, outside the header middleware: add the headers here.
    log.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc)
    response = problem_response(500, "an unexpected error occurred; it has been logged")
    response.headers.update(SECURITY_HEADERS)
    return response


# -- helpers for /documents -------------------------------------------------------------------

MULTIPART_FIELDS = ("file", "title", "doc_id")
DEFAULT_DOCUMENTS_PAGE = 100
MAX_DOCUMENTS_PAGE = 1000
_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_SLUG_GAPS = re.compile(r"[^a-z0-9]+")


def _upload_name(filename: str) -> str:
    return PurePosixPath(filename.replace("\\", "/")).name  # never a path


def _id_from_filename(filename: str | None) -> str | None:
    if not filename:
        return None
    name = _upload_name(filename)
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    candidate = _UNSAFE_ID_CHARS.sub("_", stem).strip("._-")[:128].strip("._-")
    try:
        return validate_doc_id(candidate)
    except InvalidInputError:
        return None


def derive_doc_id(title: str | None, text: str) -> str:
    """``<slug of the title>-<8 hex of the text hash>``: readable, stable, and safe."""
    ascii_title = unicodedata.normalize("NFKD", title or "").encode("ascii", "ignore").decode()
    slug = _SLUG_GAPS.sub("-", ascii_title.lower()).strip("-")[:48].strip("-") or "doc"
    return f"{slug}-{sha256_text(text)[:8]}"


def _validated(payload: Any) -> NewDocument:
    try:
        return NewDocument.model_validate(payload)
    except ValidationError as exc:
        # Same 422 shape as the bodies FastAPI validates itself.
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        ) from None


@dataclass(frozen=True)
class _Incoming:
    new: NewDocument
    filename: str | None  # None for JSON
    format: str = "text"
    page_starts: tuple[int, ...] = ()


async def _read_new_document(request: Request, limits: ConversionLimits) -> _Incoming:
    """The document from a JSON body or a multipart upload. A PDF, HTML or DOCX upload
    (by its filename) comes converted."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type == "application/json":
        try:
            payload = await request.json()
        except UnicodeDecodeError:
            raise HTTPException(400, "the request body is not valid UTF-8") from None
        except ValueError as exc:
            raise HTTPException(422, f"the body is not valid JSON: {exc}") from None
        except RecursionError:
            raise HTTPException(422, "the body is not valid JSON: nested too deeply") from None
        return _Incoming(_validated(payload), None)
    if media_type == "multipart/form-data":
        # max_part_size bounds the small text fields; the file is bounded by the body limit.
        form = await request.form(max_files=1, max_fields=4, max_part_size=16 * 1024)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise HTTPException(422, "send the document as a multipart file field named 'file'")
        data = await upload.read()
        # Rejected like JSON's unknown fields, so a typo ("titel") is not silently dropped.
        unknown = sorted(set(form.keys()) - set(MULTIPART_FIELDS))
        if unknown:
            raise RequestValidationError([
                {"type": "extra_forbidden", "loc": ("body", name),
                 "msg": "Extra inputs are not permitted"}
                for name in unknown
            ])
        fields = {k: v for k in ("title", "doc_id") if isinstance(v := form.get(k), str) and v}
        name = _upload_name(upload.filename or "")
        fmt = format_of(name)
        if fmt in ("pdf", "html", "docx"):
            where = f"the uploaded file {name!r}"
            converted = await run_in_threadpool(convert, data, fmt, where, limits)
            if converted.title and "title" not in fields:
                fields["title"] = converted.title[:MAX_TITLE_CHARS]
            return _Incoming(
                _validated({"text": converted.text, **fields}),
                upload.filename or "",
                converted.format,
                converted.page_starts,
            )
        check_type(data, fmt or "text", f"the uploaded file {name!r}")  # a PDF named .txt
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise HTTPException(
                422,
                f"the uploaded file is not UTF-8 text (invalid byte at offset {exc.start}); "
                "convert it to UTF-8",
            ) from None
        return _Incoming(
            _validated({"text": text, **fields}), upload.filename or "",
            "markdown" if fmt == "markdown" else "text",
        )
    raise HTTPException(
        415,
        "send application/json {title, text, doc_id?} or multipart/form-data with a 'file' "
        f"field (got {media_type or 'no Content-Type'})",
    )


def _summary(doc: Document, chunks: int) -> dict[str, Any]:
    return {
        "doc_id": doc.doc_id,
        "title": doc.title,
        "chars": len(doc.text),
        "chunks": chunks,
        "sha256": doc.sha256,
        "format": doc.format,
        "pages": doc.pages,
    }


def _persist_error(exc: OSError) -> ServiceUnavailable:
    log.error("writing the index failed: %s", exc)
    return ServiceUnavailable(
        503,
        f"the index could not be written ({exc.strerror or 'I/O error'}); nothing changed",
    )


# -- routes -----------------------------------------------------------------------------------

router = APIRouter()


@router.post(
    "/ask",
    response_model=AnswerResponse,
    summary="Answer a question with verbatim, cited sentences",
    dependencies=[Depends(require_reader), Depends(require_json)],
    responses=_problems(400, 401, 404, 413, 415, 422, 503),
)
async def ask(body: AskRequest, engine: EngineDep, request: Request) -> JSONResponse:
    answer = await run_in_threadpool(
        engine.ask, body.question, body.top_k, body.mode, body.doc_ids
    )
    request.state.answer = answer  # for the metrics and the request log
    # Answer.to_dict() has the AnswerResponse shape (the OpenAPI test and the fuzz run
    # check it); skipping re-validation saves a third of a millisecond per question.
    return JSONResponse(answer.to_dict())


@router.get(
    "/documents",
    response_model=DocumentsResponse,
    dependencies=[Depends(require_reader)],
    summary="List the documents, a page at a time",
    description="In doc_id order, at most `limit`; pass `next_cursor` back as `cursor` for "
    "the next page.",
    responses=_problems(401, 422, 503),
)
async def list_documents(
    engine: EngineDep,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=MAX_DOCUMENTS_PAGE)] = DEFAULT_DOCUMENTS_PAGE,
    cursor: Annotated[
        str | None, Query(max_length=128, description="next_cursor of the page before")
    ] = None,
) -> dict[str, Any]:
    unknown = sorted(set(request.query_params) - {"limit", "cursor"})
    if unknown:  # refused, as unknown JSON and multipart fields are: a typo is no default
        raise InvalidInputError(
            f"unknown query parameter(s) {unknown[:5]}; GET /documents takes limit and cursor"
        )
    if cursor is not None:
        validate_doc_id(cursor)

    def snapshot() -> dict[str, Any]:
        # Documents and chunk counts from one generation.
        index = engine.index
        ids = sorted(index.documents)
        first = bisect.bisect_right(ids, cursor) if cursor is not None else 0
        page = ids[first : first + limit]
        counts = {d: len(index.chunk_rows([d])) for d in page}
        more = first + limit < len(ids)
        return {
            "documents": [_summary(index.documents[d], counts[d]) for d in page],
            "next_cursor": page[-1] if more and page else None,
        }

    return await run_in_threadpool(snapshot)


@router.get(
    "/documents/{doc_id}",
    response_model=DocumentResponse,
    dependencies=[Depends(require_reader)],
    responses=_problems(401, 404, 422, 503),
)
async def get_document(doc_id: str, engine: EngineDep) -> dict[str, Any]:
    doc = engine.document(validate_doc_id(doc_id))
    sha256 = await run_in_threadpool(lambda: doc.sha256)  # megabytes of text hash slowly
    return {
        "doc_id": doc.doc_id,
        "title": doc.title,
        "text": doc.text,
        "sha256": sha256,
        "format": doc.format,
        "page_starts": list(doc.page_starts),
    }


@router.post(
    "/documents",
    status_code=201,
    response_model=DocumentAdded,
    summary="Add or replace a document (admin)",
    description=(
        "JSON `{title, text, doc_id?}` or a multipart/form-data upload (`file`, optional "
        "`title` and `doc_id`; other fields are refused). Without `doc_id`, the upload's "
        "filename or a slug of the title plus a text hash names it. An existing `doc_id` is "
        "replaced (`replaced` says so), except that an id taken from a filename replaces "
        "only an upload of the same filename: another document with that id is a 409. Only "
        "the new text is embedded; the response is sent once the new index generation is "
        "on disk, and until then questions are answered from the previous one."
    ),
    dependencies=[Depends(require_admin)],
    responses=_problems(400, 401, 403, 409, 413, 415, 422, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/NewDocument"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "additionalProperties": False,
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "title": {"type": "string"},
                            "doc_id": {"type": "string"},
                        },
                    }
                },
            },
        }
    },
)
async def add_document(
    request: Request, response: Response, service: ServiceDep, engine: EngineDep
) -> dict[str, Any]:
    incoming = await _read_new_document(request, service.settings.conversion_limits())
    new, filename = incoming.new, incoming.filename
    from_filename = None if new.doc_id else _id_from_filename(filename)
    doc_id = new.doc_id or from_filename or derive_doc_id(
        new.title or detect_title(new.text, ""), new.text
    )
    # The source records the filename, so an id derived from it replaces only an upload
    # of the same name: lossy ids ("Report 2021.txt", "Report_2021.txt") must not collide.
    source = "api" if filename is None else f"upload:{_upload_name(filename)}"
    doc = make_document(
        new.text, doc_id=doc_id, title=new.title, source=source, format=incoming.format,
        page_starts=incoming.page_starts,
    )

    def write() -> dict[str, Any]:
        with service.write_lock:
            replaced = doc.doc_id in engine.index.documents
            try:
                engine.add_documents([doc], same_source=from_filename is not None)
            except OSError as exc:
                raise _persist_error(exc) from None
            except DocumentConflictError:
                raise HTTPException(
                    409,
                    f"the filename {_upload_name(filename or '')!r} gives the id {doc_id!r}, "
                    "which a document from another source (another filename, a JSON body "
                    "or `citeqa index`) already has; send a doc_id field: a new id keeps "
                    f"both, {doc_id!r} replaces that document",
                ) from None
            return {
                **_summary(doc, engine.chunk_counts().get(doc.doc_id, 0)),
                "index_version": engine.version,
                "replaced": replaced,
            }

    added = await run_in_threadpool(write)
    log.info("added document %s (%d chars) -> index %s", doc_id, len(doc.text),
             added["index_version"])
    response.headers["Location"] = f"/documents/{doc_id}"
    return added


@router.delete(
    "/documents/{doc_id}",
    response_model=DocumentDeleted,
    summary="Delete a document (admin)",
    dependencies=[Depends(require_admin)],
    responses=_problems(401, 403, 404, 409, 422, 503),
)
async def delete_document(doc_id: str, service: ServiceDep, engine: EngineDep) -> dict[str, Any]:
    validate_doc_id(doc_id)

    def write() -> dict[str, Any]:
        with service.write_lock:
            # Deleting the last document is a DocumentConflictError (409): the engine checks
            # it against the generation on disk, which another server may have changed.
            try:
                engine.delete_document(doc_id)
            except OSError as exc:
                raise _persist_error(exc) from None
            return {"doc_id": doc_id, "index_version": engine.version}

    deleted = await run_in_threadpool(write)
    log.info("deleted document %s -> index %s", doc_id, deleted["index_version"])
    return deleted


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> dict[str, Any]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="The model and index are loaded",
    responses=_problems(503),
)
async def readyz(service: ServiceDep) -> dict[str, Any]:
    engine = service.engine
    if engine is None:
        raise service.unavailable()
    documents = len(engine.index.documents)
    return {"status": "ready", "index_version": engine.version, "documents": documents}


# HEAD as well, for load balancers and uptime checks that probe with it. A route of its
# own, out of the schema: one route with both methods gives two operations one id.
for _path, _probe in (("/healthz", healthz), ("/readyz", readyz)):
    router.add_api_route(_path, _probe, methods=["HEAD"], include_in_schema=False)


def _web_routes(app: FastAPI) -> None:
    web = resources.files("citeqa") / "web"
    files = {name: (web / name).read_bytes() for name in WEB_FILES}

    def serve(name: str) -> Callable[[], Any]:
        async def endpoint() -> Response:
            # no-cache: revalidate, so a new release's page is never mixed with old JS.
            return Response(files[name], media_type=WEB_FILES[name],
                            headers={"Cache-Control": "no-cache"})

        return endpoint

    app.add_api_route("/", serve("index.html"), methods=["GET", "HEAD"], include_in_schema=False)
    for name in ("app.css", "app.js"):
        app.add_api_route(f"/static/{name}", serve(name), methods=["GET", "HEAD"],
                          include_in_schema=False)

    async def favicon() -> Response:
        return Response(status_code=204)

    app.add_api_route("/favicon.ico", favicon, methods=["GET"], include_in_schema=False)


# -- the app ----------------------------------------------------------------------------------


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=app.routes,
            )
            # Models that routes reference by hand (problem bodies, the manual request body).
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (Problem, NewDocument):
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
            schema["components"]["schemas"] = dict(sorted(components.items()))
            app.openapi_schema = schema
        return app.openapi_schema

    return build


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    embedder_factory: EmbedderFactory | None = None,
    on_load_failure: LoadFailureHook | None = None,
) -> FastAPI:
    """The ASGI app. Pass ``engine`` to skip loading (tests), or ``embedder_factory`` to
    load the index with another embedder; ``on_load_failure`` hears why loading failed."""
    settings = settings or Settings()
    service = Service(
        settings,
        engine=engine,
        embedder_factory=embedder_factory or default_embedder,
        on_load_failure=on_load_failure,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start_loading()
        watcher = None
        if settings.reload_interval_s > 0:
            watcher = asyncio.create_task(service.watch_index(), name="citeqa-watch-index")
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    try:
        version = importlib.metadata.version("citeqa")
    except importlib.metadata.PackageNotFoundError:
        version = "0"
    app = FastAPI(
        title="citeqa",
        version=version,
        description=(
            "Answers copied verbatim from your documents, every sentence cited to an exact "
            "character span. Errors are application/problem+json (RFC 9457)."
        ),
        lifespan=lifespan,
        # The bundled docs pages load scripts from a CDN, which the CSP forbids.
        docs_url=None,
        redoc_url=None,
        # "/ask/" is a 404 problem, not a 307 to a Location built from the Host header
        redirect_slashes=False,
    )
    app.state.service = service
    from .metrics import Metrics, MetricsMiddleware

    metrics = Metrics(lambda: service.engine)
    service.on_batch = metrics.observe_batch
    app.state.metrics = metrics
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    app.include_router(router)
    from .openai_compat import OpenAIError, openai_error_handler
    from .openai_compat import router as openai_router

    app.include_router(openai_router)
    app.add_exception_handler(OpenAIError, openai_error_handler)
    _web_routes(app)

    async def prometheus_metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        body = await run_in_threadpool(metrics.render)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    # Out of the schema, like /v1/*: its format is Prometheus', not JSON.
    app.add_api_route("/metrics", prometheus_metrics, methods=["GET"], include_in_schema=False)

    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(InvalidInputError, _citeqa_handler(422))
    app.add_exception_handler(DocumentError, _citeqa_handler(422))
    app.add_exception_handler(DocumentNotFoundError, _citeqa_handler(404))
    app.add_exception_handler(DocumentConflictError, _citeqa_handler(409))
    app.add_exception_handler(IndexStoreError, _citeqa_handler(503))
    app.add_exception_handler(IndexBusyError, _citeqa_handler(503, retry_after_s=RETRY_AFTER_S))
    app.add_exception_handler(Exception, _internal_error)

    document_limit = settings.max_document_bytes
    ask_limit = settings.max_ask_body_bytes

    def limit_for(scope: Scope) -> int:
        if scope["path"] == "/documents" and scope["method"] == "POST":
            return document_limit
        return ask_limit  # /ask, and the few bytes any other route might get

    app.add_middleware(BodyLimitMiddleware, limit_for=limit_for)
    app.add_middleware(
        LoadSheddingMiddleware,
        max_inflight=getattr(settings, "max_inflight_asks", 64),
        draining=lambda: service.draining,
    )
    origins = settings.cors_origin_list()
    if origins:  # closed by default: no CORS headers at all
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    app.add_middleware(SecurityHeadersMiddleware)
    # added last = outermost: counts every request, those refused early included
    app.add_middleware(
        MetricsMiddleware,
        metrics=metrics,
        json_log=settings.log_format == "json",
        log_questions=settings.log_questions,
    )
    return app
