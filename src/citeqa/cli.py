"""The ``citeqa`` command line: a thin shell over the library.

Heavy modules (torch, sentence-transformers, FAISS) are imported inside the
commands that need them, so ``citeqa --help`` starts instantly.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_USAGE = 2
EXIT_ERROR = 1
#: ``--ray`` without an address: ``ray.init()`` chooses (see the option's help)
LOCAL_RAY = ""


def _positive(name: str, low: int, high: int) -> Any:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {value!r}") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"{name} must be {low}..{high}, got {number}")
        return number

    return parse


def _path(value: str) -> Path:
    # Path("") is ".": an unset shell variable would index or write the current folder
    if not value.strip():
        raise argparse.ArgumentTypeError("an empty path (an unset variable?)")
    return Path(value)


def _modes(value: str) -> str:
    """``--modes``, checked while parsing, so a bad one gets the usage line and exit 2."""
    from ._eval import parse_modes
    from ._exceptions import InvalidInputError

    try:
        parse_modes(value)
    except InvalidInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _settings() -> Any:
    from .settings import load_settings

    return load_settings()


def _embedder(settings: Any) -> Any:
    return settings.make_embedder()


def _model_name(settings: Any) -> str:
    """The name an index records for the configured model, known without loading it."""
    from ._embedding import BUNDLED_MODEL_NAME, HashingEmbedder

    if settings.embedder == "hashing":
        return HashingEmbedder().name
    return BUNDLED_MODEL_NAME if settings.model_path is None else Path(settings.model_path).name


def _progress_factory() -> Any:
    from tqdm import tqdm

    def start(total: int) -> Any:
        bar = tqdm(total=total, desc="embedding", unit="text", file=sys.stderr, leave=False)
        return bar.update

    return start


def cmd_compact(args: argparse.Namespace) -> int:
    from ._engine import compact

    index_dir = args.index_dir or _settings().index_dir
    stats = compact(index_dir, everything=not args.policy)
    if stats.segments_after == stats.segments_before and not stats.expunged_chunks:
        print(f"index at {index_dir} has {stats.segments_before} segments and nothing to "
              "merge: nothing written")
        return 0
    print(
        f"merged {stats.segments_before} segments into {stats.segments_after} "
        f"({stats.chunks} chunks, {stats.expunged_chunks} deleted chunks dropped) in "
        f"{stats.seconds:.2f} s: generation {stats.version}"
    )
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from ._chunking import ChunkingParams
    from ._documents import SUFFIXES, load_documents, skipped_files
    from ._engine import index_corpus, index_is_current
    from ._store import check_index_dir

    settings = _settings()
    paths = args.paths or settings.corpus_paths()
    index_dir = args.index_dir or settings.index_dir
    started = time.perf_counter()
    limits = settings.conversion_limits()
    if args.ray_workers is not None and args.ray is None:
        from ._exceptions import InvalidInputError

        raise InvalidInputError("--ray-workers needs --ray")
    if args.ray is not None:
        from ._documents import list_document_files
        from ._ray import import_ray

        import_ray()  # not installed: say so before anything else
        # Ray's tasks read the files; here only their list is checked
        documents = []
        n_files = len(list_document_files(paths))
    else:
        # reject bad input before the model loads
        documents = load_documents(paths, limits=limits)
        n_files = len(documents)
    check_index_dir(index_dir)  # writer_lock checks too, but only after the model loads
    if skipped := skipped_files(paths):
        shown = ", ".join(_visible(str(p)) for p in skipped[:5]) + (
            ", …" if len(skipped) > 5 else ""
        )
        print(
            f"citeqa: note: skipped {len(skipped)} files that are not "
            f"{'/'.join(SUFFIXES)} or are hidden: {shown}",
            file=sys.stderr,
        )
    params = ChunkingParams(max_tokens=args.max_tokens, overlap_sentences=args.overlap_sentences)
    # The bundled model is known by its name; a model folder of one's own only by
    # loading it (another folder of the same name may hold another model), which
    # index_corpus does before it decides that nothing changed.
    known_by_name = settings.model_path is None
    if args.ray is None and known_by_name and index_is_current(
        paths, index_dir, _model_name(settings), params, documents=documents
    ):
        print(
            f"index at {index_dir} is up to date with {n_files} documents "
            f"({time.perf_counter() - started:.2f} s): nothing embedded, nothing written"
        )
        return 0
    if args.ray is not None:
        stats = _index_on_ray(args, settings, paths, index_dir, params)
    else:
        stats = index_corpus(
            paths, index_dir, _embedder(settings), params, progress=_progress_factory(),
            documents=documents,
        )
    state = "unchanged, nothing written" if stats.unchanged else f"written to {index_dir}"
    if args.ray is not None:
        print(
            f"indexed {stats.documents} documents, {stats.chunks} chunks, {stats.sentences} "
            f"sentences on Ray in {time.perf_counter() - started:.2f} s: {stats.embedded} texts "
            f"embedded, {stats.reused} reused; {state}"
        )
    else:
        print(
            f"indexed {stats.documents} documents, {stats.chunks} chunks, {stats.sentences} "
            f"sentences in {time.perf_counter() - started:.2f} s (building {stats.seconds:.2f} s "
            f"of it, the rest loading the model): {stats.embedded} texts embedded, "
            f"{stats.reused} reused; {state}"
        )
    if stats.removed:
        shown = ", ".join(stats.removed[:10]) + (", …" if len(stats.removed) > 10 else "")
        print(
            f"citeqa: note: removed {len(stats.removed)} documents not under "
            f"{', '.join(map(str, paths))}: {shown} (the index holds what its paths hold; "
            "the previous generation keeps them until the next write)",
            file=sys.stderr,
        )
    return 0


def _index_on_ray(
    args: argparse.Namespace, settings: Any, paths: Any, index_dir: Path, params: Any
) -> Any:
    """``citeqa index --ray``: read, chunk and embed on Ray; this process commits."""
    from ._ray import index_corpus_ray

    def report(line: str) -> None:
        print(f"citeqa: {line}", file=sys.stderr, flush=True)

    address = None if args.ray == LOCAL_RAY else args.ray
    try:
        return index_corpus_ray(
            paths, index_dir, settings, params, address=address, workers=args.ray_workers,
            embedder=_embedder(settings), report=report,
        )
    finally:
        import ray

        ray.shutdown()


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # C0, DEL and C1
_DEL_AND_C1 = re.compile(r"[\x7f-\x9f]")


def _visible(text: str, keep: str = "") -> str:
    """``text`` with control characters shown as escapes (``\\x1b``), except those in
    ``keep``: documents are untrusted, and raw ones reach the terminal (colours, cursor
    moves, a retitled window, a title split over two lines)."""

    def escape(match: re.Match[str]) -> str:
        char = match.group()
        if char in keep:
            return char
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, f"\\x{ord(char):02x}")

    return _CONTROL.sub(escape, text)


def _print_answer(answer: Any) -> None:
    # An answer's sentences may span lines (kept); CRLF prints as a newline.
    print(_visible(answer.answer.replace("\r\n", "\n"), keep="\n\t"))
    if answer.short_answer is not None:
        print(f"Short answer: {_visible(answer.short_answer.text)}")
    print()
    for c in answer.citations:
        where = _visible(c.title) + (f" › {_visible(c.section)}" if c.section else "")
        found_by = ", ".join(f"{k} #{v}" for k, v in c.retrievers.items())
        page = f" p. {c.page}" if c.page is not None else ""
        print(f"[{c.id}] {where}  ({c.doc_id}{page} {c.start}-{c.end}; {found_by})")
        passage = _visible(" ".join(c.text.split()))
        print(f"    {passage[:300]}{'…' if len(passage) > 300 else ''}")


def cmd_ask(args: argparse.Namespace) -> int:
    from ._engine import Engine, validate_query

    settings = _settings()
    from ._store import read_manifest

    validate_query(args.question, args.top_k, args.mode)  # before the model loads
    index_dir = args.index_dir or settings.index_dir
    read_manifest(index_dir)  # a missing index fails fast, too
    engine = Engine.open(
        index_dir, _embedder(settings), selector=settings.make_selector() or False
    )
    answer = engine.ask(args.question, top_k=args.top_k, mode=args.mode, doc_ids=args.doc)
    if args.json:
        # json escapes C0 but not DEL or C1, which a terminal may act on: the same JSON
        text = json.dumps(answer.to_dict(), ensure_ascii=False, indent=2)
        print(_DEL_AND_C1.sub(lambda m: f"\\u{ord(m.group()):04x}", text))
    else:
        _print_answer(answer)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import run

    settings = _settings()
    overrides = {
        k: v
        for k, v in (("host", args.host), ("port", args.port), ("index_dir", args.index_dir))
        if v is not None
    }
    run(settings.model_copy(update=overrides))
    return 0


def cmd_mcp(args: argparse.Namespace) -> int:
    from .mcp_server import run

    settings = _settings()
    if args.index_dir is not None:
        settings = settings.model_copy(update={"index_dir": args.index_dir})
    run(settings)
    return 0


def _check_eval_outputs(args: argparse.Namespace) -> None:
    """The question set, ``--json`` and ``--report`` must be three files: one written
    over another loses it (the metrics were silently replaced by the HTML)."""
    questions = args.questions.resolve()
    if args.json and args.report and args.json.resolve() == args.report.resolve():
        args.usage_error(f"--json and --report name the same file ({args.json}); give each its own")
    for flag, out in (("--json", args.json), ("--report", args.report)):
        if out and out.resolve() == questions:
            args.usage_error(f"{flag} {out} is the question set; writing it would overwrite it")


def cmd_eval(args: argparse.Namespace) -> int:
    from ._eval import cli_main

    _check_eval_outputs(args)
    return int(cli_main(args, _settings()))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("citeqa")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    from ._engine_limits import MAX_TOP_K, MODES

    parser = argparse.ArgumentParser(
        prog="citeqa",
        description="Answer questions from documents with verbatim, cited sentences.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "index", help="build or update the index from .txt, .md, .pdf, .html and .docx files"
    )
    p.add_argument(
        "paths", nargs="*", type=_path, metavar="PATH", help="files or folders (default: seeds/)"
    )
    p.add_argument("--index-dir", type=_path, help="index location (default: index/)")
    p.add_argument(
        "--max-tokens",
        type=_positive("--max-tokens", 16, 8192),
        default=200,
        help="chunk budget in tiktoken tokens, 16..8192 (default: 200); a sentence "
        "longer than it is cut into pieces",
    )
    p.add_argument(
        "--overlap-sentences",
        type=_positive("--overlap-sentences", 0, 16),
        default=1,
        help="sentences shared by consecutive chunks (default: 1)",
    )
    p.add_argument(
        "--ray",
        nargs="?",
        const=LOCAL_RAY,
        metavar="ADDRESS",
        help="read, chunk and embed on a Ray cluster (pip install 'citeqa[ray]'): ADDRESS "
        "is a head node's host:port, or 'auto' for the cluster `ray start` runs on this "
        "machine; without ADDRESS, ray.init() decides: the cluster in RAY_ADDRESS, else the "
        "one `ray start` last started here, else a new local Ray for this run. Every node "
        "must see the files and the index folder at the same paths. Put PATH before --ray "
        "(`citeqa index docs --ray`): a word after --ray is its ADDRESS",
    )
    p.add_argument(
        "--ray-workers",
        type=_positive("--ray-workers", 1, 4096),
        metavar="N",
        help="with --ray: encoder actors, each loading the model once and holding one CPU "
        "(default: the cluster's CPUs)",
    )
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("ask", help="answer one question from the index")
    p.add_argument("question")
    p.add_argument("--top-k", type=_positive("--top-k", 1, MAX_TOP_K), default=5)
    p.add_argument("--mode", choices=MODES, default="hybrid")
    p.add_argument("--json", action="store_true", help="print the Answer as JSON")
    p.add_argument(
        "--doc",
        action="append",
        metavar="ID",
        help="answer from this document only (repeat for several); default: all",
    )
    p.add_argument("--index-dir", type=_path)
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("serve", help="serve the HTTP API and chat page")
    p.add_argument("--host", help="bind address (default: 127.0.0.1)")
    p.add_argument("--port", type=_positive("--port", 0, 65535), help="port (default: 8000)")
    p.add_argument("--index-dir", type=_path)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "mcp", help="serve the tools ask and search to an MCP client over stdio (read-only)"
    )
    p.add_argument("--index-dir", type=_path)
    p.set_defaults(func=cmd_mcp)

    p = sub.add_parser(
        "compact",
        help="merge the index's segments into one (answers stay the same; nothing is embedded)",
    )
    p.add_argument("--index-dir", type=_path)
    p.add_argument(
        "--policy",
        action="store_true",
        help="merge only what the automatic merge policy would (tiers of 10 segments of "
        "similar size, segments mostly deleted)",
    )
    p.set_defaults(func=cmd_compact)

    p = sub.add_parser("eval", help="measure answer quality on a question set")
    p.add_argument("questions", type=_path, help="question set, JSON lines")
    p.add_argument("--index-dir", type=_path)
    p.add_argument("--top-k", type=_positive("--top-k", 1, MAX_TOP_K), default=5)
    p.add_argument(
        "--modes",
        type=_modes,
        default="hybrid,dense,lexical",
        help="comma-separated modes to compare (default: hybrid,dense,lexical); the naive "
        "baseline always runs too",
    )
    p.add_argument("--json", type=_path, metavar="OUT", help="write the metrics as JSON")
    p.add_argument("--report", type=_path, metavar="OUT.html", help="write an HTML report")
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="choose the abstention threshold on this set and store it with the index",
    )
    p.set_defaults(func=cmd_eval, usage_error=p.error)  # for flags that clash
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from ._exceptions import CiteqaError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CiteqaError as exc:
        print(f"citeqa: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("citeqa: interrupted", file=sys.stderr)
        return 130
    except ImportError as exc:
        # Ctrl-C while onnxruntime loads surfaces as "ImportError: initialization failed"
        if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
            print("citeqa: interrupted", file=sys.stderr)
            return 130
        raise
    except BrokenPipeError:  # the reader went away (citeqa ask ... | head)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a read-only or full disk: the index on disk is left as it was
        where = f": {exc.filename}" if exc.filename else ""
        print(f"citeqa: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
