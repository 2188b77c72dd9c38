"""Serve (or only build) an index with a chosen backend, for the benchmarks.

The same app as ``citeqa serve`` (``create_app`` + uvicorn), with the embedder
chosen on the command line instead of the environment.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--no-batching", action="store_true")
    parser.add_argument("--index-only", action="store_true")
    parser.add_argument("--corpus", default=str(REPO / "seeds"))
    args = parser.parse_args()
    onnx_dir = REPO / "bench" / ".work" / "onnx"

    if args.index_only:
        from citeqa import index_corpus
        from citeqa._embedding import make_embedder

        embedder = make_embedder(args.backend, threads=args.threads or None, onnx_dir=onnx_dir)
        print(index_corpus([args.corpus], args.index_dir, embedder))
        return 0

    import uvicorn

    from citeqa._embedding import make_embedder
    from citeqa.server.app import create_app
    from citeqa.settings import Settings

    settings = Settings(index_dir=args.index_dir, port=args.port)

    def factory(_settings: Settings):  # type: ignore[no-untyped-def]
        return make_embedder(
            args.backend, threads=args.threads or None, onnx_dir=onnx_dir, export=False
        )

    app = create_app(settings, embedder_factory=factory)
    if args.no_batching:
        service = app.state.service
        original = service.load

        def load_unbatched() -> None:
            original()
            if service.engine is not None:
                service.engine.close()

        service.load = load_unbatched
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
