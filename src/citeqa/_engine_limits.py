"""Query limits, in a module light enough for ``citeqa --help`` to import."""

MAX_QUESTION_CHARS = 2000
MAX_TOP_K = 20
MODES = ("hybrid", "dense", "lexical")
