"""Real files for the converter tests, made at test time: the seed as a web page,
printed to PDF by Chromium, written as DOCX by python-docx, and small PDFs by hand
(several pages with running headers, a scan without text, an encrypted one)."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import zlib
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: real PDFs and HTML manuals Debian ships (.ci/run installs their packages)
DEBIAN_PDFS = [
    Path("/usr/share/doc/libtasn1-doc/libtasn1.pdf"),
    Path("/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf"),
]
DEBIAN_HTML = sorted(Path("/usr/share/doc/libffi8/html").glob("*.html")) + sorted(
    Path("/usr/share/doc/shared-mime-info/shared-mime-info-spec.html").glob("*.html")
)
_BULLET = re.compile(r"\s*[•·▪◦‣]\s+")


def text_to_html(text: str, title: str) -> str:
    """A plain-text document as a simple web page: a paragraph per block of lines,
    bullet lines as a list."""
    body = []
    for block in re.split(r"\n[ \t]*\n", text.strip()):
        lines = [ln.strip() for ln in block.splitlines() if ln.strip()]
        if lines and all(_BULLET.match(ln) for ln in lines):
            items = "".join(f"<li>{html.escape(_BULLET.sub('', ln, count=1))}</li>" for ln in lines)
            body.append(f"<ul>{items}</ul>")
        elif lines:
            body.append("<p>" + "<br>\n".join(html.escape(ln) for ln in lines) + "</p>")
    return (
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}"
        "</title><style>body{font-family:serif;font-size:12pt;margin:0 1in}</style></head>"
        "<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def print_to_pdf(html_path: Path, pdf_path: Path, *, header_footer: bool = True) -> Path:
    """Chromium prints the page; by default with its header (date, title) and footer
    (URL, "page/pages") on every page."""
    assert CHROMIUM is not None
    args = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        f"--user-data-dir={pdf_path.parent / '.chromium-profile'}",
        f"--print-to-pdf={pdf_path}",
    ]
    if not header_footer:
        args.append("--no-pdf-header-footer")
    subprocess.run(
        [*args, html_path.resolve().as_uri()], check=True, capture_output=True, timeout=120
    )
    assert pdf_path.stat().st_size > 0
    return pdf_path


def _pdf(objects: list[bytes]) -> bytes:
    """A PDF file from its objects (1-based; object 1 is the catalog)."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref,
    )
    return bytes(out)


def _stream(content: bytes) -> bytes:
    packed = zlib.compress(content)
    return b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(packed) + packed + (
        b"\nendstream"
    )


def make_pdf(pages: list[list[str]], *, header: str | None = None, title: str = "") -> bytes:
    """A PDF whose pages hold these lines (Helvetica 11 pt, 14 pt apart), each page
    with ``header`` at the top and its page number at the bottom when ``header`` is
    given. A line "" leaves a blank line (a paragraph break)."""
    n = len(pages)
    # 1 catalog, 2 pages, 3 font, 4 info, then page/content pairs
    kids = b" ".join(b"%d 0 R" % (5 + 2 * i) for i in range(n))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, n),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Title (%s) >>" % title.encode("latin-1"),
    ]
    for i, lines in enumerate(pages):
        ops = [b"BT /F1 11 Tf 72 760 Td 14 TL"]
        if header is not None:
            ops.append(b"(%s) Tj T* T*" % _escape(header))
        for line in lines:
            ops.append(b"(%s) Tj T*" % _escape(line) if line else b"T*")
        ops.append(b"ET")
        if header is not None:
            ops.append(b"BT /F1 9 Tf 300 40 Td (%d) Tj ET" % (i + 1))
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (6 + 2 * i)
        )
        objects.append(_stream(b"\n".join(ops)))
    pdf = _pdf(objects)
    # the trailer names the info dictionary too
    return pdf.replace(b"/Root 1 0 R >>", b"/Root 1 0 R /Info 4 0 R >>")


def make_scanned_pdf(n_pages: int = 2) -> bytes:
    """Pages with only drawings on them: what a scan without OCR looks like to a reader."""
    kids = b" ".join(b"%d 0 R" % (3 + 2 * i) for i in range(n_pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, n_pages),
    ]
    for i in range(n_pages):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R >>"
            % (4 + 2 * i)
        )
        objects.append(_stream(b"0.2 g 72 72 468 648 re f 1 g 100 100 50 50 re f"))
    return _pdf(objects)


def _escape(text: str) -> bytes:
    return text.encode("latin-1").replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(
        b")", b"\\)"
    )


def encrypt_pdf(data: bytes, password: str) -> bytes:
    import io

    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=password, owner_password=password + "-owner",
                   algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_docx(path: Path) -> Path:
    """A Word file with a title, headings, a list, a table and body paragraphs."""
    import docx

    document = docx.Document()
    document.core_properties.title = "Field Guide to Foxes"
    document.add_heading("Field Guide to Foxes", level=0)
    document.add_heading("Habitat", level=1)
    document.add_paragraph("Red foxes live in forests, grasslands and cities across the north.")
    document.add_paragraph("They dig dens in banks of earth.", style="List Bullet")
    document.add_paragraph("They also use old badger setts.", style="List Bullet")
    document.add_heading("Diet", level=1)
    document.add_paragraph("A fox eats voles, rabbits, berries and insects. It caches food.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Season", "Main food"
    table.cell(1, 0).text, table.cell(1, 1).text = "Winter", "Voles"
    document.save(str(path))
    return path
