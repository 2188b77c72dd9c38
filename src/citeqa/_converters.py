"""PDF, HTML and Word files to text: what a ``Document`` stores and every offset indexes.

Each converter returns a :class:`Converted`: the extracted text, a title (from the
file's metadata, else its first heading), and for PDF the offset where each page
starts. Headings the file marks as such (HTML ``<h1>``-``<h6>``, Word's "Heading N"
styles) become Markdown ``#`` lines, which the segmenter (``_segment.py``) takes as
section headings; list items open with "• ". PDF text has no marked headings: a
short line standing alone becomes one by the segmenter's rule for plain text.

PDF text is cleaned the way a reader skims past layout: lines repeated at the top
or bottom of many pages (running headers and footers, with their page numbers) and
bare page numbers are dropped, a word hyphenated across a line end is joined, and
the lines of a paragraph are joined with spaces.

Nothing here is trusted: the type is checked against the file's first bytes, a
DOCX's uncompressed size is checked before it is read (zip bombs), and the pages
and characters extracted are bounded by :class:`ConversionLimits`. Every failure
is a ``DocumentError`` that names the file and says what to do.

The parsers are imported when a file of their type is read, so ``citeqa --help``
and a server over text documents never load them.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ._exceptions import DocumentError, InvalidInputError

#: file name suffix → format; ``Document.format`` holds the format
FORMATS = {
    ".txt": "text",
    ".md": "markdown",
    ".pdf": "pdf",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".docx": "docx",
}
#: formats whose ``Document.page_starts`` says where each page starts
PAGED_FORMATS = frozenset({"pdf"})


@dataclass(frozen=True)
class ConversionLimits:
    """Bounds on what one file may make us do (``CITEQA_MAX_PDF_PAGES`` etc.)."""

    max_pdf_pages: int = 2_000
    #: characters of extracted text, any format
    max_text_chars: int = 20_000_000
    #: the sum of a DOCX's uncompressed member sizes
    max_unzipped_bytes: int = 200 << 20

    def __post_init__(self) -> None:
        for name in ("max_pdf_pages", "max_text_chars", "max_unzipped_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class Converted:
    text: str
    title: str | None
    format: str
    #: offset in ``text`` where each page starts (PDF), else empty
    page_starts: tuple[int, ...] = ()


def format_of(name: str) -> str | None:
    """The format a file name's suffix names, or None for a type citeqa does not read."""
    dot = name.rfind(".")
    return FORMATS.get(name[dot:].lower()) if dot >= 0 else None


def sniff(data: bytes) -> str | None:
    """What the first bytes say a file is: "pdf", "zip", "ole" (legacy Office), or None."""
    head = data[:1024]
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"%PDF-"):
        return "pdf"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "ole"
    return None


_SNIFFED_NAMES = {"pdf": "a PDF", "zip": "a ZIP archive", "ole": "a legacy Office (.doc/.xls) file"}


def check_type(data: bytes, fmt: str, where: str) -> None:
    """Refuse a file whose first bytes contradict its suffix (a PDF named .docx)."""
    found = sniff(data)
    if fmt == "pdf" and b"%PDF-" in data[:1024]:
        found = "pdf"  # the header may follow a few bytes of junk (PDF 1.7, 7.5.2)
    expected = {"pdf": "pdf", "docx": "zip"}.get(fmt)
    if found == expected:
        return
    if expected is None and found is None:
        return  # text, Markdown or HTML: checked as text by their readers
    suffix_says = {
        "pdf": "a PDF", "docx": "a Word .docx file", "html": "an HTML file",
        "markdown": "a Markdown file",
    }.get(fmt, "a text file")
    if found is None:
        raise DocumentError(
            f"{where} is named as {suffix_says} but its content is not one; "
            "rename it to the type it is or re-export it"
        )
    advice = (
        "save it as .docx" if found == "ole" else "rename it to the type it is"
    )
    raise DocumentError(f"{where} is named as {suffix_says} but is {_SNIFFED_NAMES[found]}; "
                        f"{advice}")


def convert(data: bytes, fmt: str, where: str, limits: ConversionLimits) -> Converted:
    """Text, title and page starts of a PDF, HTML or DOCX file's bytes."""
    check_type(data, fmt, where)
    if fmt == "pdf":
        return convert_pdf(data, where, limits)
    if fmt == "html":
        return convert_html(decode_text(data, where), where, limits)
    if fmt == "docx":
        return convert_docx(data, where, limits)
    raise DocumentError(f"{where}: no converter for format {fmt!r}")


def decode_text(data: bytes, where: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if fmt_charset := _html_charset(data):
            try:
                return data.decode(fmt_charset)
            except (LookupError, UnicodeDecodeError):
                pass
        raise DocumentError(
            f"{where} is not UTF-8 text (invalid byte at offset {exc.start}); convert it to UTF-8"
        ) from None
    return text


def _html_charset(data: bytes) -> str | None:
    match = re.search(rb"<meta[^>]+charset=[\"']?([A-Za-z0-9_-]+)", data[:4096], re.I)
    return match.group(1).decode("ascii") if match else None


def _check_chars(n_chars: int, where: str, limits: ConversionLimits) -> None:
    if n_chars > limits.max_text_chars:
        raise DocumentError(
            f"{where} holds more than {limits.max_text_chars:,} characters of text, the limit "
            "(CITEQA_MAX_TEXT_CHARS); split it or raise the limit"
        )


# -- PDF ------------------------------------------------------------------------------------

#: a line that is only a page number: "7", "- 7 -", "Page 7", "7 of 12", "7/12", "vii"
_PAGE_NUMBER = re.compile(
    r"\s*(?:page\s+)?[-–—(\[]?\s*(?:\d{1,5}|[ivx]{1,6})\s*[-–—)\]]?"
    r"(?:\s*(?:/|of)\s*\d{1,5})?\s*",
    re.I,
)
_BULLET_START = re.compile(r"\s*[•·▪◦‣*\-–—]\s")
_NUMBERED_START = re.compile(r"\s*(?:\d{1,3}[.)]|[a-z][.)]|\(\d{1,3}\))\s", re.I)
_SENTENCE_END = re.compile(r"[.!?:;…][\"'”’)\]]*$")
#: control characters but pdfium's \x02 (a hyphen it put at a line end)
_CONTROL = re.compile(r"[\x00\x01\x03-\x08\x0b-\x1f\x7f]")
#: how many lines at each end of a page are looked at for running headers and footers
_EDGE_LINES = 3


@dataclass
class _Line:
    text: str
    left: float
    right: float
    top: float
    bottom: float


def _page_lines(page: Any) -> list[_Line]:
    """The page's text lines in PDFium's reading order, each with its bounding box."""
    textpage = page.get_textpage()
    try:
        full = textpage.get_text_range()
        n_chars = textpage.count_chars()
        lines: list[_Line] = []
        pos = 0
        for raw in full.split("\n"):
            stripped = raw.rstrip()
            first, last = pos, pos + len(stripped) - 1  # the last visible character
            pos += len(raw) + 1
            text = " ".join(_CONTROL.sub("", raw.replace("\r", "")).split(" ")).strip(" ")
            if not text.strip():
                continue
            boxes = []
            for index in (first, first + len(stripped) // 2, last):
                if 0 <= index < n_chars and not raw[index - first].isspace():
                    # loose: the font's ascent and descent, the same for every glyph
                    boxes.append(textpage.get_charbox(index, loose=True))
            if not boxes:
                continue
            lines.append(
                _Line(
                    text,
                    left=min(b[0] for b in boxes),  # a char box: left, bottom, right, top
                    right=max(b[2] for b in boxes),
                    bottom=min(b[1] for b in boxes),
                    top=max(b[3] for b in boxes),
                )
            )
    finally:
        textpage.close()
    return lines


def _edge_key(text: str) -> str:
    return " ".join(text.split()).lower()


def _drop_running_lines(pages: list[list[_Line]]) -> list[list[_Line]]:
    """Pages without running headers, footers and bare page numbers.

    A line near the top or bottom of a page is a running one when the same line
    stands there on other pages (three, or two of a short document), or when it
    differs only in numbers and one of its numbers goes up with the page (a page
    number: "Chapter 2: Syntax 7", "file:///report.html 3/12"), and it is set apart
    from the text by more than a line's spacing. A table whose rows differ only in
    their numbers is not one, nor is a line of the text that happens to repeat.
    Bare page numbers at either end go too."""
    same: Counter[str] = Counter()
    # masked line -> [(page index, its numbers)]
    numbered: dict[str, list[tuple[int, set[int]]]] = {}
    for index, lines in enumerate(pages):
        keys = {_edge_key(ln.text) for ln in lines[:_EDGE_LINES] + lines[-_EDGE_LINES:]}
        same.update(keys)
        for key in keys:
            numbers = {int(n) for n in re.findall(r"\d{1,6}", key)}
            if numbers:
                numbered.setdefault(re.sub(r"\d+", "#", key), []).append((index, numbers))
    least = 2 if len(pages) <= 4 else 3
    running = {key for key, n in same.items() if n >= least}
    paged = set()
    for masked, seen in numbered.items():
        if len(seen) < 2:
            continue
        offsets = set.intersection(*({n - i for n in numbers} for i, numbers in seen))
        if offsets:
            paged.add(masked)

    def is_running(text: str) -> bool:
        key = _edge_key(text)
        return key in running or re.sub(r"\d+", "#", key) in paged

    cleaned = []
    for lines in pages:
        n = len(lines)
        drop: set[int] = set()
        # from each end inwards, while the lines are page furniture
        for order, top in ((range(min(_EDGE_LINES, n)), True),
                           (range(n - 1, max(n - 1 - _EDGE_LINES, -1), -1), False)):
            for i in order:
                line = lines[i]
                if not (
                    _PAGE_NUMBER.fullmatch(line.text)
                    or (_set_apart(lines, i, top=top) and is_running(line.text))
                ):
                    break
                drop.add(i)
        cleaned.append([line for i, line in enumerate(lines) if i not in drop])
    return cleaned


def _set_apart(lines: list[_Line], i: int, *, top: bool) -> bool:
    """Whether a line near the top (bottom) of the page has more than a line's spacing
    below (above) it, or no text there at all."""
    line = lines[i]
    heights = sorted(ln.top - ln.bottom for ln in lines)
    height = max(heights[len(heights) // 2], 1.0)
    if top:
        below = [ln.top for ln in lines[i + 1 :] if ln.top < line.bottom]
        return not below or line.bottom - max(below) > 0.5 * height
    above = [ln.bottom for ln in lines[:i] if ln.bottom > line.top]
    return not above or min(above) - line.top > 0.5 * height


def _paragraphs(lines: list[_Line]) -> tuple[list[str], bool]:
    """The page's lines joined into paragraphs, and whether its last line is full
    (then a sentence may go on at the top of the next page).

    A paragraph ends where the gap to the next line is wider than the usual line
    spacing, before a bullet, and where the next line's first word would have fit at
    the end of the line (so the line was not full: a typesetter wraps greedily)."""
    if not lines:
        return [], False
    heights = sorted(ln.top - ln.bottom for ln in lines)
    height = max(heights[len(heights) // 2], 1.0)
    gaps = sorted(
        a.bottom - b.top for a, b in zip(lines, lines[1:], strict=False) if a.bottom > b.top
    )
    # the gap between lines of a paragraph: the lower quartile (most of a page's lines
    # may be one-line paragraphs), and never more than a third of a line
    usual_gap = min(gaps[len(gaps) // 4] if gaps else 0.0, 0.3 * height)
    right_margin = max(ln.right for ln in lines)
    paragraphs: list[list[str]] = [[lines[0].text]]
    for prev, line in zip(lines, lines[1:], strict=False):
        gap = prev.bottom - line.top
        char_width = (prev.right - prev.left) / max(len(prev.text), 1)
        first_word = len(line.text.split(" ", 1)[0]) + 1
        room = right_margin - prev.right
        ends = bool(_SENTENCE_END.search(prev.text))
        new = (
            gap > usual_gap + 0.5 * height
            or bool(_BULLET_START.match(line.text))
            or (ends and bool(_NUMBERED_START.match(line.text)))  # not "June 7 and / 8. The"
            or room > first_word * char_width * (1.0 if ends else 1.6)
        )
        if new:
            paragraphs.append([line.text])
        else:
            paragraphs[-1].append(line.text)
    last = lines[-1]
    full = right_margin - last.right < 0.1 * (right_margin - min(ln.left for ln in lines))
    return [_join_lines(p) for p in paragraphs], full


#: PDFium's marks of a hyphen at a line end (\x02, U+FFFE), and ours (U+FFFE)
_HYPHEN_MARK = "\ufffe"
_BROKEN_WORD = re.compile(r"(\w+)[\x02\ufffe](\w+)")


def _join_lines(lines: list[str]) -> str:
    """A paragraph's lines, joined by spaces; a word hyphenated at a line end is joined
    with a mark that :func:`_resolve_hyphens` decides on."""
    out = ""
    for line in lines:
        if not out:
            out = line
        elif out.endswith(("\x02", _HYPHEN_MARK)):
            out = out[:-1] + _HYPHEN_MARK + line
        elif out.endswith("-") and len(out) > 1 and out[-2].isalpha() and line[:1].isalpha():
            out = out[:-1] + _HYPHEN_MARK + line  # "manage-" / "ment", or "anti-" / "graft"
        else:
            out = out + " " + line
    return out


def _resolve_hyphens(text: str, lowered: str) -> str:
    """Each word hyphenated at a line end, joined: "man-agement" becomes "management",
    unless the document spells it with the hyphen elsewhere ("anti-corruption") and
    never without, or, spelled neither way elsewhere, the second part opens with a
    capital or a digit ("Mexico-Guatemala"). A mark between other characters becomes
    a hyphen. ``lowered``: the whole document, lower-cased."""
    if "\x02" not in text and _HYPHEN_MARK not in text:
        return text

    def join(match: re.Match[str]) -> str:
        a, b = match.group(1), match.group(2)
        hyphenated = f"{a}-{b}".lower()
        joined = f"{a}{b}".lower()
        if hyphenated in lowered and joined not in lowered:
            return f"{a}-{b}"
        if joined in lowered and hyphenated not in lowered:
            return a + b
        if b[:1].isupper() or b[:1].isdigit() or a[-1:].isdigit():
            return f"{a}-{b}"
        return a + b

    text = _BROKEN_WORD.sub(join, text)
    return text.replace("\x02", "-").replace(_HYPHEN_MARK, "-")


def convert_pdf(data: bytes, where: str, limits: ConversionLimits) -> Converted:
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        message = str(exc).lower()
        if "password" in message:
            raise DocumentError(
                f"{where} is an encrypted (password-protected) PDF; save a copy without a "
                "password and index that"
            ) from None
        raise DocumentError(
            f"{where} is not a readable PDF (damaged or truncated: {exc}); re-export it"
        ) from None
    try:
        n_pages = len(pdf)
        if n_pages > limits.max_pdf_pages:
            raise DocumentError(
                f"{where} has {n_pages:,} pages, more than the limit of "
                f"{limits.max_pdf_pages:,} (CITEQA_MAX_PDF_PAGES); split it or raise the limit"
            )
        pages: list[list[_Line]] = []
        n_chars = 0
        for i in range(n_pages):
            page = pdf[i]
            try:
                lines = _page_lines(page)
            finally:
                page.close()
            n_chars += sum(len(ln.text) for ln in lines)
            _check_chars(n_chars, where, limits)
            pages.append(lines)
        metadata = pdf.get_metadata_dict(skip_empty=True)
    except pdfium.PdfiumError as exc:
        raise DocumentError(f"{where} is a damaged PDF ({exc}); re-export it") from None
    finally:
        pdf.close()
    if not any(pages):
        raise DocumentError(
            f"{where} has no text layer; OCR is not supported (a scan? run it through OCR "
            "software first)"
        )
    laid_out = [_paragraphs(p) for p in _drop_running_lines(pages)]
    everything = "\n".join(par for paragraphs, _ in laid_out for par in paragraphs).lower()
    text, page_starts = _assemble_pages(
        [([_resolve_hyphens(p, everything) for p in paras], full) for paras, full in laid_out]
    )
    if not text.strip():
        raise DocumentError(f"{where} has no text besides page headers and footers")
    title = " ".join(str(metadata.get("Title", "")).split()) or None
    return Converted(text=text, title=title, format="pdf", page_starts=page_starts)


def _assemble_pages(pages: list[tuple[list[str], bool]]) -> tuple[str, tuple[int, ...]]:
    """One text from the pages' paragraphs; a paragraph a page break cuts (its page's
    last line is full and ends no sentence, or the next page opens in lower case) is
    rejoined."""
    parts: list[str] = []
    length = 0
    starts: list[int] = []
    full = False
    for paragraphs, next_full in pages:
        if parts and paragraphs:
            prev = parts[-1]
            continues = (full and not _SENTENCE_END.search(prev)) or paragraphs[0][:1].islower()
            sep = " " if continues else "\n\n"
            parts.append(sep)
            length += len(sep)
        starts.append(length)
        for j, paragraph in enumerate(paragraphs):
            if j:
                parts.append("\n\n")
                length += 2
            parts.append(paragraph)
            length += len(paragraph)
        if paragraphs:
            full = next_full
    return "".join(parts) + "\n", tuple(starts)


# -- HTML -----------------------------------------------------------------------------------

_SKIP_TAGS = frozenset(
    "script style noscript template svg nav header footer aside form button select "
    "iframe object canvas head".split()
)
_BLOCK_TAGS = frozenset(
    "p div section article main li ul ol dl dt dd table thead tbody tfoot tr pre "
    "blockquote h1 h2 h3 h4 h5 h6 figure figcaption address hr br body html center "
    "details summary caption fieldset legend".split()
)
_HEADINGS = {f"h{n}": n for n in range(1, 7)}


def convert_html(html: str, where: str, limits: ConversionLimits) -> Converted:
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(html)
    title_node = tree.css_first("title")
    title = " ".join(title_node.text().split()) if title_node is not None else ""
    root = tree.body or tree.root
    blocks: list[str] = []
    inline: list[str] = []
    n_chars = 0

    def flush() -> None:
        nonlocal n_chars
        text = " ".join("".join(inline).split())
        inline.clear()
        if text:
            blocks.append(text)
            n_chars += len(text)
            _check_chars(n_chars, where, limits)

    def walk(node: Any) -> None:
        for child in node.iter(include_text=True):
            tag = child.tag
            if tag == "-text":
                inline.append(child.text_content or "")
                continue
            if tag in _SKIP_TAGS or tag.startswith("-"):
                continue
            if tag in _HEADINGS:
                flush()
                heading = " ".join(child.text().split())
                if heading:
                    blocks.append("#" * _HEADINGS[tag] + " " + heading)
                continue
            if tag == "pre":
                flush()
                blocks.extend(b for b in (child.text() or "").strip("\n").split("\n\n") if b)
                continue
            if tag in ("br", "hr"):
                flush()
                continue
            if tag in ("td", "th"):  # cells of a row: one line, apart
                inline.append(" ")
                walk(child)
                inline.append(" ")
                continue
            if tag in _BLOCK_TAGS:
                flush()
                if tag in ("li", "dd"):
                    inline.append("• ")
                walk(child)
                flush()
            else:
                walk(child)

    if root is not None:
        walk(root)
    flush()
    blocks = [b for b in blocks if b.strip() not in ("•", "")]
    text = "\n\n".join(blocks)
    if not text.strip():
        raise DocumentError(f"{where} has no text (an empty page, or one built by scripts)")
    if not title:
        title = next((b.lstrip("#").strip() for b in blocks if b.startswith("#")), "")
    return Converted(text=text + "\n", title=title or None, format="html")


# -- DOCX -----------------------------------------------------------------------------------

#: at most this many members, and each expands at most this many times (zip bombs)
_MAX_ZIP_MEMBERS = 10_000
_MAX_ZIP_RATIO = 200


def _check_zip(data: bytes, where: str, limits: ConversionLimits) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            names = {m.filename for m in members}
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DocumentError(f"{where} is not a readable .docx (a damaged ZIP: {exc})") from None
    if "word/document.xml" not in names:
        raise DocumentError(
            f"{where} is a ZIP archive but not a Word document (no word/document.xml)"
        )
    total = sum(m.file_size for m in members)
    if len(members) > _MAX_ZIP_MEMBERS or total > limits.max_unzipped_bytes or any(
        m.file_size > _MAX_ZIP_RATIO * max(m.compress_size, 1024) for m in members
    ):
        raise DocumentError(
            f"{where} expands to {total:,} bytes in {len(members):,} parts, past the limits "
            f"({limits.max_unzipped_bytes:,} bytes, CITEQA_MAX_UNZIPPED_BYTES; "
            f"{_MAX_ZIP_RATIO}x per part): refused as a possible zip bomb"
        )


def convert_docx(data: bytes, where: str, limits: ConversionLimits) -> Converted:
    _check_zip(data, where, limits)
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises KeyError, ValueError, lxml errors...
        raise DocumentError(f"{where} is not a readable .docx ({exc!r}); re-save it") from None
    blocks: list[str] = []
    first_heading = ""
    n_chars = 0
    # python-docx looks a paragraph's style up among all styles each time (seconds for
    # a long file): read the style id from the XML and name it from one table
    style_names = {style.style_id: style.name or "" for style in document.styles}
    for item in document.iter_inner_content():
        if isinstance(item, Paragraph):
            found = [_docx_paragraph(item, style_names.get(item._p.style or "", ""))]
        elif isinstance(item, Table):
            found = [
                " | ".join(dict.fromkeys(" ".join(c.text.split()) for c in row.cells))
                for row in item.rows
            ]
        else:
            continue
        for block in found:
            if not block.strip() or block.strip() == "•":
                continue
            if block.startswith("#") and not first_heading:
                first_heading = block.lstrip("#").strip()
            blocks.append(block)
            n_chars += len(block)
            _check_chars(n_chars, where, limits)
    text = "\n\n".join(blocks)
    if not text.strip():
        raise DocumentError(f"{where} has no text")
    title = " ".join((document.core_properties.title or "").split()) or first_heading
    return Converted(text=text + "\n", title=title or None, format="docx")


def _docx_paragraph(paragraph: Any, style: str) -> str:
    text = " ".join(paragraph.text.split())
    if style == "Title":
        return "# " + text if text else ""
    match = re.fullmatch(r"Heading (\d)", style)
    if match and text:
        return "#" * min(int(match.group(1)) + 1, 6) + " " + text
    if style.startswith("List") and text:
        return "• " + text
    return text
