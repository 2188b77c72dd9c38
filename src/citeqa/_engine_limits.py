"""Query limits, in a module light enough for ``citeqa --help`` to import."""

from typing import Literal

MAX_QUESTION_CHARS = 2000
MAX_TOP_K = 20
MODES: tuple[Literal["hybrid", "dense", "lexical"], ...] = ("hybrid", "dense", "lexical")
#: documents one question may be scoped to (``doc_ids``)
MAX_SCOPE_DOCS = 1000
