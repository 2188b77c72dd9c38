"""citeqa: answers from documents, every sentence quoted and cited to its exact span."""

from ._answer import ABSTAIN_TEXT, SummaryParams
from ._chunking import Chunker, ChunkingParams
from ._documents import load_documents, make_document
from ._embedding import Embedder, HashingEmbedder, SentenceTransformerEmbedder
from ._engine import CompactStats, Engine, compact, index_corpus
from ._exceptions import (
    CiteqaError,
    DocumentConflictError,
    DocumentError,
    DocumentNotFoundError,
    IndexBusyError,
    IndexCorruptError,
    IndexMismatchError,
    IndexNotFoundError,
    IndexStoreError,
    InvalidInputError,
)
from ._index import BuildStats, build_index
from ._types import Answer, AnswerSentence, Chunk, Citation, Document

__all__ = [
    "ABSTAIN_TEXT",
    "Answer",
    "AnswerSentence",
    "BuildStats",
    "Chunk",
    "Chunker",
    "ChunkingParams",
    "Citation",
    "CompactStats",
    "CiteqaError",
    "Document",
    "DocumentConflictError",
    "DocumentError",
    "DocumentNotFoundError",
    "Embedder",
    "Engine",
    "HashingEmbedder",
    "IndexBusyError",
    "IndexCorruptError",
    "IndexMismatchError",
    "IndexNotFoundError",
    "IndexStoreError",
    "InvalidInputError",
    "SentenceTransformerEmbedder",
    "SummaryParams",
    "build_index",
    "compact",
    "index_corpus",
    "load_documents",
    "make_document",
]
