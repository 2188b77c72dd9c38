"""Settings from ``CITEQA_*`` environment variables, read once and validated."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from ._converters import ConversionLimits
    from ._embedding import Embedder
    from ._selector import AnswerSelector


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CITEQA_", extra="ignore")

    #: where the index lives
    index_dir: Path = Path("index")
    #: what ``make serve``/``citeqa index`` index when no path is given (comma-separated)
    corpus: str = "seeds"
    #: a local sentence-transformers directory; empty means the bundled all-MiniLM-L6-v2
    model_path: Path | None = None
    #: torch CPU threads; 0 means one per core
    threads: int = Field(default=0, ge=0, le=256)
    #: admin token for POST/DELETE /documents; empty disables those endpoints
    admin_token: str = ""
    #: comma-separated bearer keys for readers: when set, /ask, /v1/* and the document
    #: reads need ``Authorization: Bearer <key>``; empty (the default) leaves them open
    api_keys: str = ""
    #: request log lines: "text" (uvicorn's access log) or "json" (one JSON object a line)
    log_format: Literal["text", "json"] = "text"
    #: JSON request logs include the question text (off: questions may be private)
    log_questions: bool = False
    #: comma-separated origins allowed by CORS; empty means same-origin only
    cors_origins: str = ""
    #: request body limit for /ask, bytes
    max_ask_body_bytes: int = Field(default=1 << 20, ge=1024)
    #: request body limit for POST /documents, bytes
    max_document_bytes: int = Field(default=10 << 20, ge=1024)
    #: a PDF with more pages is refused
    max_pdf_pages: int = Field(default=2_000, ge=1)
    #: a file whose text (extracted, for PDF, HTML and DOCX) is longer is refused, characters
    max_text_chars: int = Field(default=20_000_000, ge=1)
    #: a DOCX whose parts add up to more uncompressed bytes is refused (zip bombs)
    max_unzipped_bytes: int = Field(default=200 << 20, ge=1024)
    #: /ask requests served at once; more are refused at once with 503 and Retry-After
    max_inflight_asks: int = Field(default=64, ge=1, le=10_000)
    #: seconds SIGTERM waits for requests in flight before the process exits
    shutdown_grace_s: float = Field(default=10.0, ge=0, le=600)
    #: test-only: "hashing" serves and indexes with the deterministic HashingEmbedder
    embedder: Literal["sentence-transformers", "hashing"] = "sentence-transformers"
    #: how the model runs: "onnx" (ONNX Runtime, exported once from the model) or "torch".
    #: Both give the same vectors (cosine >= 0.999); onnx is about twice as fast here and
    #: starts without importing torch (bench/RESULTS.md)
    backend: Literal["onnx", "torch"] = "onnx"
    #: where the ONNX export is kept; empty means ~/.cache/citeqa/onnx
    onnx_dir: Path | None = None
    #: micro-batching of concurrent questions: at most this many per forward pass...
    batch_max: int = Field(default=32, ge=1, le=1024)
    #: ...gathered for at most this long once a second question is waiting
    batch_wait_ms: float = Field(default=2.0, ge=0, le=1000)
    #: seconds between checks of the index directory for a generation or calibration
    #: written by another process (``citeqa index``, ``citeqa eval --calibrate``); 0: never
    reload_interval_s: float = Field(default=2.0, ge=0, le=86_400)
    #: the learned answer stage (a cross-encoder over the best candidate sentences, which
    #: chooses the answer and decides abstention): "on", or "off" for the first stage
    #: alone (faster; tuned on one document, it holds less well on others)
    selector: Literal["on", "off"] = "on"
    #: a folder with another trained selector (model.onnx, tokenizer.json,
    #: selector.json); empty means the bundled one
    selector_path: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)

    @field_validator("index_dir", mode="before")
    @classmethod
    def _not_empty(cls, value: object) -> object:
        # Path("") is ".": the index would be written into the current folder
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("model_path", "onnx_dir", "selector_path", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value in ("", None) else value

    def make_embedder(self) -> Embedder:
        """The embedder these settings describe (loads the model)."""
        from ._embedding import HashingEmbedder, make_embedder

        if self.embedder == "hashing":  # test-only, never documented for users
            return HashingEmbedder()
        return make_embedder(
            self.backend, self.model_path, threads=self.threads or None, onnx_dir=self.onnx_dir
        )

    def make_selector(self) -> AnswerSelector | None:
        """The learned answer stage these settings describe, or None when it is off."""
        if self.selector == "off":
            return None
        from ._selector import AnswerSelector, bundled_selector

        if self.selector_path is None and not self.threads:
            return bundled_selector()
        return AnswerSelector(self.selector_path, threads=self.threads or None)

    def conversion_limits(self) -> ConversionLimits:
        from ._converters import ConversionLimits

        return ConversionLimits(
            max_pdf_pages=self.max_pdf_pages,
            max_text_chars=self.max_text_chars,
            max_unzipped_bytes=self.max_unzipped_bytes,
        )

    def corpus_paths(self) -> list[str]:
        return [p.strip() for p in self.corpus.split(",") if p.strip()]

    def api_key_list(self) -> list[str]:
        return [k.strip() for k in self.api_keys.split(",") if k.strip()]

    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]


def load_settings() -> Settings:
    """Settings from the environment; a bad value is an ``InvalidInputError`` naming it."""
    from pydantic import ValidationError

    from ._exceptions import InvalidInputError

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"CITEQA_{str(err['loc'][0]).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise InvalidInputError(f"invalid setting: {problems}") from None
