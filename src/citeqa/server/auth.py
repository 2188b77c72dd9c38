"""Reader access: optional bearer keys (``CITEQA_API_KEYS``) for the read endpoints.

Separate from the admin token, which alone allows document changes. With no keys
configured every read is open, as before. Errors follow RFC 6750: 401 with
``WWW-Authenticate: Bearer``, plus ``error="invalid_token"`` for a wrong key.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="one of CITEQA_API_KEYS, required for reads when the server sets them",
)


def _keys(request: Request) -> list[str]:
    keys: list[str] = request.app.state.service.settings.api_key_list()
    return keys


def key_is_valid(presented: str, keys: list[str]) -> bool:
    # Constant time per key, on bytes (compare_digest refuses non-ASCII str); every key
    # is compared so the time does not tell which one nearly matched.
    matches = [hmac.compare_digest(presented.encode(), key.encode()) for key in keys]
    return any(matches)


async def require_reader(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    keys = _keys(request)
    if not keys:
        return
    if credentials is None:
        raise HTTPException(
            401,
            "this server needs an API key: send Authorization: Bearer <key> with one of "
            "its CITEQA_API_KEYS",
            headers={"WWW-Authenticate": 'Bearer realm="citeqa"'},
        )
    if not key_is_valid(credentials.credentials, keys):
        raise HTTPException(
            401,
            "the bearer token is not one of the server's API keys",
            headers={"WWW-Authenticate": 'Bearer realm="citeqa", error="invalid_token"'},
        )


ReaderDep = Depends(require_reader)
