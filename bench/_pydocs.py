"""The scale corpus: Debian's Python 3.11 and PostgreSQL 15 manuals as Markdown text.

``apt-get install -y python3.11-doc postgresql-doc-15`` puts the HTML under
/usr/share/doc; this converts each page with html2text (links and images dropped,
no line wrapping) into ``bench/.work/pydocs/text/<source>.<page>.md`` once. The
Python manuals alone hold about 19,000 chunks; PostgreSQL's add about as many.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from _common import WORK

TEXT = WORK / "pydocs" / "text"
SKIP = {"genindex", "search", "py-modindex", "contents", "copyright", "license", "bookindex"}


@dataclass(frozen=True)
class Source:
    package: str
    html: Path
    prefix: str  # file-name prefix of its pages
    #: the content ends at the first of these (navigation and footers)
    end_markers: tuple[str, ...]


SOURCES = (
    Source("python3.11-doc", Path("/usr/share/doc/python3.11/html"), "",
           ("\n### Table of Contents", "\n#### Previous topic", "\n### Navigation")),
    Source("postgresql-doc-15", Path("/usr/share/doc/postgresql-doc-15/html"), "pg.",
           ("\n* * *\n\nPrev | Up",)),
)


def _convert_page(page: Path, source: Source) -> str:
    import html2text

    conv = html2text.HTML2Text()
    conv.ignore_links = True
    conv.ignore_images = True
    conv.body_width = 0
    text = conv.handle(page.read_text(encoding="utf-8", errors="replace"))
    # Pages open with navigation (newer Sphinx builds with the sidebar's "Table of
    # Contents" and "Previous topic" headings): the content starts at the title, the
    # first level-one heading, or else at the first heading.
    start = text.find("\n# ")
    start = start if start >= 0 else text.find("\n#")
    text = text[start + 1 :] if start >= 0 else text
    for marker in source.end_markers:
        end = text.find(marker)
        text = text[:end] if end >= 0 else text
    return text


def convert() -> list[Path]:
    """Convert every manual page once; returns the text files, sorted."""
    missing = [s.package for s in SOURCES if not s.html.is_dir()]
    if missing:
        raise SystemExit(f"apt-get install -y {' '.join(missing)} (Debian's manuals)")
    if not (TEXT / ".done-3").exists():
        TEXT.mkdir(parents=True, exist_ok=True)
        for source in SOURCES:
            for page in sorted(source.html.rglob("*.html")):
                rel = page.relative_to(source.html)
                stem = rel.stem
                if rel.parts[0].startswith("_") or stem in SKIP or stem.startswith("genindex"):
                    continue
                text = _convert_page(page, source)
                if len(text.strip()) < 200:
                    continue
                name = source.prefix + ".".join(rel.with_suffix("").parts) + ".md"
                (TEXT / name).write_text(text, encoding="utf-8")
        (TEXT / ".done-3").write_text("", encoding="utf-8")
    return sorted(TEXT.glob("*.md"))
