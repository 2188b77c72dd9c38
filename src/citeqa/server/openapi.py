"""Print the OpenAPI schema: ``python -m citeqa.server.openapi > api/openapi.json``."""

from __future__ import annotations

import json
import sys
from typing import Any

from ..settings import Settings
from .app import create_app


def openapi_schema() -> dict[str, Any]:
    # model_construct: defaults only, so the schema never depends on this machine's env.
    return create_app(Settings.model_construct()).openapi()


def render() -> str:
    return json.dumps(openapi_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
