"""HTTP schemas: one pydantic model per role. Core types stay dataclasses (see STYLE.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .._documents import validate_doc_id
from .._engine_limits import MAX_QUESTION_CHARS, MAX_SCOPE_DOCS, MAX_TOP_K
from .._types import Mode

MAX_TITLE_CHARS = 300

DocId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        description="1-128 letters, digits, '.', '_' or '-', starting with a letter or digit",
        examples=["handbook"],
    ),
]


def _no_nul(value: str, what: str) -> str:
    if "\x00" in value:
        raise ValueError(f"{what} contains a NUL character")
    return value


# -- requests ---------------------------------------------------------------------------------


class AskRequest(BaseModel):
    """A question. Unknown fields are rejected so a typo (``topk``) is not silently ignored."""

    model_config = ConfigDict(extra="forbid")

    question: Annotated[
        str,
        Field(min_length=1, max_length=MAX_QUESTION_CHARS, examples=["Who led the trip?"]),
    ]
    # strict: "5", 5.0 and true are rejected rather than coerced
    top_k: Annotated[int, Field(ge=1, le=MAX_TOP_K, strict=True)] = 5
    mode: Mode = "hybrid"
    doc_ids: Annotated[
        list[DocId] | None,
        Field(
            min_length=1,
            max_length=MAX_SCOPE_DOCS,
            description="answer from these documents only: retrieval takes its top_k among "
            "their passages; an unknown id is a 404. Omit it to ask every document",
        ),
    ] = None

    @field_validator("question")
    @classmethod
    def _question_has_text(cls, value: str) -> str:
        _no_nul(value, "the question")
        if not value.strip():
            raise ValueError("the question is blank; ask something")
        return value


class NewDocument(BaseModel):
    """A document to add. Without ``doc_id`` one is derived from the title and a text hash."""

    model_config = ConfigDict(extra="forbid")

    text: Annotated[str, Field(min_length=1, description="UTF-8 text; offsets index this string")]
    title: Annotated[str | None, Field(max_length=MAX_TITLE_CHARS)] = None
    doc_id: DocId | None = None

    @field_validator("text")
    @classmethod
    def _text_has_content(cls, value: str) -> str:
        _no_nul(value, "the text")
        if not value.strip():
            raise ValueError("the text is blank; a document needs some text")
        return value

    @field_validator("title")
    @classmethod
    def _title_is_text(cls, value: str | None) -> str | None:
        return None if value is None else _no_nul(value, "the title")

    @field_validator("doc_id")
    @classmethod
    def _doc_id_is_safe(cls, value: str | None) -> str | None:
        # InvalidInputError is a ValueError, so pydantic reports it as a 422 with its message.
        return None if value is None else validate_doc_id(value)


# -- responses --------------------------------------------------------------------------------


class AnswerSentenceItem(BaseModel):
    text: str = Field(description="verbatim: equals document.text[start:end]")
    citation: int = Field(description="id of the citation it is quoted from")
    doc_id: str
    start: int
    end: int
    score: float
    page: int | None = Field(
        default=None, description="1-based page where it starts (PDF); null without pages"
    )


class CitationItem(BaseModel):
    id: int
    chunk_id: str
    doc_id: str
    title: str
    section: str | None
    text: str = Field(description="the chunk: document.text[start:end]")
    start: int
    end: int
    score: float = Field(
        description="score of the best sentence in the passage; citations are ordered by it"
    )
    retrievers: dict[str, int] = Field(
        description="rank of the chunk in each retriever (dense, lexical), before that "
        "reordering; {\"numbered_item\": 1}, {\"front_matter\": 1} or {\"definition\": 1} "
        "marks a passage added because it holds the numbered item (\"the second "
        "recommendation\"), the front matter (\"when was it published?\") or the acronym's "
        "definition (\"what is FECI?\") the question asks for"
    )
    page: int | None = Field(
        default=None, description="1-based page where the passage starts (PDF); null without pages"
    )


class ShortAnswerItem(BaseModel):
    text: str = Field(description="verbatim: equals document.text[start:end]")
    doc_id: str
    start: int
    end: int


class AnswerResponse(BaseModel):
    question: str
    answer: str
    abstained: bool = Field(description="true when the documents do not answer the question")
    index_version: str
    sentences: list[AnswerSentenceItem]
    citations: list[CitationItem]
    short_answer: ShortAnswerItem | None = Field(
        default=None,
        description="the words inside the first answer sentence that answer the question, "
        "as the learned stage marks them; null when it is off, finds none, or the answer "
        "abstains",
    )


class DocumentSummary(BaseModel):
    doc_id: str
    title: str
    chars: int = Field(description="length of the text in Unicode code points")
    chunks: int
    sha256: str = Field(description="SHA-256 of the UTF-8 text")
    format: str = Field(description="text, markdown, pdf, html or docx")
    pages: int | None = Field(description="pages of a PDF; null for formats without pages")


class DocumentsResponse(BaseModel):
    documents: list[DocumentSummary] = Field(description="in doc_id order")
    next_cursor: str | None = Field(
        description="pass as cursor for the next page; null on the last page"
    )


class DocumentResponse(BaseModel):
    doc_id: str
    title: str
    text: str = Field(description="exactly the text that answer and citation offsets index")
    sha256: str
    format: str = Field(description="text, markdown, pdf, html or docx")
    page_starts: list[int] = Field(
        description="offset in text where each page starts (PDF); empty without pages"
    )


class DocumentAdded(DocumentSummary):
    index_version: str = Field(description="the index generation that includes the document")
    replaced: bool = Field(
        description="true when a document with this doc_id existed and this one replaced it"
    )


class DocumentDeleted(BaseModel):
    doc_id: str
    index_version: str = Field(description="the index generation without the document")


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready"]
    index_version: str
    documents: int


class ValidationIssue(BaseModel):
    loc: list[str | int] = Field(description="where: e.g. [\"body\", \"top_k\"]")
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details, sent as ``application/problem+json``."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[ValidationIssue] | None = Field(
        default=None, description="for 422: each invalid field"
    )
