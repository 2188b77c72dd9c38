"""Loading documents from files: exact UTF-8 text (or the text a PDF, HTML or Word file
converts to, ``_converters.py``), stable ids, titles.

A file that cannot be read (not UTF-8, an encrypted PDF, a scan without text, a type
its suffix belies, a zip bomb, over a limit) fails the whole load with a message
naming it, before anything is written: in a folder, every such file is named at
once, so one pass fixes them all."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from ._converters import FORMATS, PAGED_FORMATS, ConversionLimits, check_type, convert, format_of
from ._exceptions import DocumentError, InvalidInputError
from ._segment import segment
from ._types import Document

SUFFIXES = tuple(FORMATS)
SIDECAR_SUFFIX = ".meta.json"
DOC_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def validate_doc_id(doc_id: str) -> str:
    if not isinstance(doc_id, str) or not DOC_ID_PATTERN.fullmatch(doc_id) or ".." in doc_id:
        shown = repr(doc_id) if len(repr(doc_id)) <= 80 else repr(doc_id)[:77] + "…"
        raise InvalidInputError(
            f"invalid doc_id {shown}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return doc_id


def validate_text(text: str, where: str) -> str:
    if "\x00" in text:
        raise DocumentError(f"{where} contains NUL bytes; only text documents are accepted")
    if not text.strip():
        raise DocumentError(f"{where} is empty; a document needs some text")
    return text


def detect_title(text: str, fallback: str) -> str:
    """A Markdown ``# `` heading, else the first heading-like line, else ``fallback``."""
    for line in text.lstrip("\ufeff").splitlines():
        if line.startswith("# "):
            return line[2:].strip() or fallback
    for span in segment(text):
        if span.is_heading:
            return text[span.start : span.end].lstrip("#").strip()
    return fallback


def make_document(
    text: str,
    *,
    doc_id: str,
    title: str | None = None,
    source: str = "",
    format: str = "text",
    page_starts: tuple[int, ...] = (),
) -> Document:
    validate_doc_id(doc_id)
    validate_text(text, f"document {doc_id!r}")
    if format not in FORMATS.values():
        raise InvalidInputError(f"unknown document format {format!r}")
    if page_starts and (
        format not in PAGED_FORMATS
        or page_starts[0] != 0
        or any(b < a for a, b in zip(page_starts, page_starts[1:], strict=False))
        or page_starts[-1] > len(text)
    ):
        raise InvalidInputError(
            f"page_starts of {doc_id!r} must start at 0 and rise within the text"
        )
    title = (title or "").strip() or detect_title(text, doc_id)
    return Document(
        doc_id=doc_id, title=title, text=text, source=source, format=format,
        page_starts=tuple(page_starts),
    )


def document_from_bytes(
    data: bytes,
    filename: str,
    *,
    doc_id: str,
    title: str | None = None,
    source: str = "",
    limits: ConversionLimits | None = None,
    where: str | None = None,
) -> Document:
    """A document from a file's bytes, read as its name's suffix says (``FORMATS``)."""
    where = where or filename
    fmt = format_of(filename)
    if fmt is None:
        raise DocumentError(
            f"{where} is not a file type citeqa reads ({', '.join(SUFFIXES)})"
        )
    if fmt in ("text", "markdown"):
        check_type(data, fmt, where)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DocumentError(
                f"{where} is not UTF-8 text (invalid byte at offset {exc.start}); convert it "
                "to UTF-8"
            ) from None
        validate_text(text, where)
        if len(text) > (limits or ConversionLimits()).max_text_chars:
            raise DocumentError(
                f"{where} holds {len(text):,} characters, more than the limit of "
                f"{(limits or ConversionLimits()).max_text_chars:,} (CITEQA_MAX_TEXT_CHARS)"
            )
        return make_document(text, doc_id=doc_id, title=title, source=source, format=fmt)
    converted = convert(data, fmt, where, limits or ConversionLimits())
    return make_document(
        converted.text,
        doc_id=doc_id,
        title=title or converted.title,
        source=source,
        format=converted.format,
        page_starts=converted.page_starts,
    )


def _doc_id_for(path: Path, root: Path) -> str:
    rel = path.relative_to(root) if path != root else Path(path.name)
    raw = rel.with_suffix("").as_posix().replace("/", ".")
    doc_id = re.sub(r"\.{2,}", ".", _UNSAFE.sub("_", raw)).strip("._-")[:128]
    return doc_id or "document"


def read_document(
    path: Path, *, doc_id: str | None = None, limits: ConversionLimits | None = None
) -> Document:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DocumentError(f"cannot read {path}: {exc.strerror or exc}") from None
    meta: dict[str, str] = {}
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    if sidecar.is_file():
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise DocumentError(f"{sidecar} is not valid JSON: {exc}") from None
        if not isinstance(meta, dict) or not all(
            isinstance(meta.get(key, ""), str) for key in ("title", "doc_id")
        ):
            raise DocumentError(
                f'{sidecar} must be a JSON object like {{"title": "...", "doc_id": "..."}}'
            )
        if meta.get("doc_id"):
            try:
                validate_doc_id(meta["doc_id"])
            except InvalidInputError as exc:  # in a folder of many, say which sidecar
                raise DocumentError(f"{sidecar}: {exc}") from None
    return document_from_bytes(
        data,
        path.name,
        doc_id=meta.get("doc_id") or doc_id or _doc_id_for(path, path.parent),
        title=meta.get("title"),
        source=str(path),
        limits=limits,
        where=str(path),
    )


def _scan_folder(root: Path) -> tuple[list[Path], list[Path]]:
    """A folder's documents (searched recursively) and the files it skips: those of
    other types, and hidden ones (a name starting with ".", or in such a folder).
    The sidecar of a document read is neither."""
    read: list[Path] = []
    skipped: list[Path] = []
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        hidden = any(part.startswith(".") for part in p.relative_to(root).parts)
        (skipped if hidden or p.suffix.lower() not in SUFFIXES else read).append(p)
    documents = set(read)
    skipped = [
        p
        for p in skipped
        if not (
            p.name.endswith(SIDECAR_SUFFIX)
            and p.with_name(p.name.removesuffix(SIDECAR_SUFFIX)) in documents
        )
    ]
    return read, skipped


def skipped_files(paths: Iterable[str | Path]) -> list[Path]:
    """The files ``load_documents`` passes over in the folders among ``paths``."""
    skipped: dict[Path, Path] = {}
    for raw in paths:
        if Path(raw).is_dir():
            for p in _scan_folder(Path(raw))[1]:
                skipped.setdefault(p.resolve(), p)  # overlapping folders: once
    return list(skipped.values())


def list_document_files(paths: Iterable[str | Path]) -> list[tuple[Path, str]]:
    """The files ``load_documents`` reads for ``paths``, each with the id derived from
    its path (a sidecar may override it), in reading order: each real file once.
    Raises ``DocumentError`` for an empty or missing path or a folder with no documents.
    """
    pairs_out: list[tuple[Path, str]] = []
    read: set[Path] = set()
    for raw in paths:
        if not str(raw).strip():  # Path("") is "." and would index the current folder
            raise DocumentError("a document path is empty (an unset variable?)")
        root = Path(raw)
        if root.is_dir():
            files = _scan_folder(root)[0]
            if not files:
                raise DocumentError(f"{root} holds no documents ({', '.join(SUFFIXES)})")
            pairs = [(p, _doc_id_for(p, root)) for p in files]
        elif root.is_file():
            if root.suffix.lower() not in SUFFIXES:
                raise DocumentError(f"{root} is not a file type citeqa reads "
                                    f"({', '.join(SUFFIXES)})")
            pairs = [(root, _doc_id_for(root, root.parent))]
        else:
            raise DocumentError(f"{root} does not exist")
        for path, doc_id in pairs:
            if (real := path.resolve()) in read:
                continue
            read.add(real)
            pairs_out.append((path, doc_id))
    return pairs_out


def duplicate_id_error(path: Path | str, other: Path | str, doc_id: str) -> DocumentError:
    return DocumentError(
        f"{path} and {other} would both get the id {doc_id!r}; "
        "rename one or give it a doc_id in a .meta.json sidecar"
    )


def unreadable_files_error(failures: Sequence[str]) -> DocumentError:
    """One error naming the files that could not be read (up to five)."""
    if len(failures) == 1:
        return DocumentError(failures[0])
    shown = "; ".join(failures[:5]) + ("; …" if len(failures) > 5 else "")
    return DocumentError(f"{len(failures)} files cannot be read, nothing was indexed: {shown}")


def load_documents(
    paths: Iterable[str | Path], *, limits: ConversionLimits | None = None
) -> list[Document]:
    """Documents from files and folders (``SUFFIXES``: text, Markdown, PDF, HTML, DOCX;
    folders searched recursively, hidden files and folders skipped).

    A file reached twice (overlapping paths, a symbolic link to a file also given) is
    one document, with the id from the first path that reached it. Files that cannot
    be read raise one ``DocumentError`` naming each of them (up to five) after all
    were tried.
    """
    docs: list[Document] = []
    failures: list[str] = []
    seen: dict[str, Path] = {}
    for path, doc_id in list_document_files(paths):
        try:
            doc = read_document(path, doc_id=doc_id, limits=limits)
        except DocumentError as exc:
            failures.append(str(exc))
            continue
        if doc.doc_id in seen:
            raise duplicate_id_error(path, seen[doc.doc_id], doc.doc_id)
        seen[doc.doc_id] = path
        docs.append(doc)
    if failures:
        raise unreadable_files_error(failures)
    if not docs:
        raise DocumentError("no documents given")
    return docs
