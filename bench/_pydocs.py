"""The scale corpus: Debian's Python 3.11 manuals (``python3.11-doc``) as Markdown text.

``apt-get install -y python3.11-doc`` puts the HTML under /usr/share/doc/python3.11/html;
this converts each page with html2text (links and images dropped, no line wrapping)
into ``bench/.work/pydocs/text/<section>.<page>.md`` once, and picks a prefix of the
pages (in name order) that holds a wanted number of chunks.
"""

from __future__ import annotations

from pathlib import Path

from _common import WORK

HTML = Path("/usr/share/doc/python3.11/html")
TEXT = WORK / "pydocs" / "text"
SKIP = {"genindex", "search", "py-modindex", "contents", "copyright", "license"}


def convert() -> list[Path]:
    """Convert every manual page once; returns the text files, sorted."""
    if not HTML.is_dir():
        raise SystemExit(
            f"{HTML} is missing: apt-get install -y python3.11-doc (Debian's Python manuals)"
        )
    if not (TEXT / ".done").exists():
        import html2text

        TEXT.mkdir(parents=True, exist_ok=True)
        for page in sorted(HTML.rglob("*.html")):
            rel = page.relative_to(HTML)
            if rel.parts[0].startswith("_") or rel.stem in SKIP or rel.stem.startswith("genindex"):
                continue
            conv = html2text.HTML2Text()
            conv.ignore_links = True
            conv.ignore_images = True
            conv.body_width = 0
            text = conv.handle(page.read_text(encoding="utf-8", errors="replace"))
            # Sphinx pages open with navigation; the content starts at the first heading.
            start = text.find("\n# ")
            text = text[start + 1 :] if start >= 0 else text
            for marker in ("\n### Table of Contents", "\n#### Previous topic", "\n### Navigation"):
                end = text.find(marker)
                text = text[:end] if end >= 0 else text
            if len(text.strip()) < 200:
                continue
            name = ".".join(rel.with_suffix("").parts) + ".md"
            (TEXT / name).write_text(text, encoding="utf-8")
        (TEXT / ".done").write_text("", encoding="utf-8")
    return sorted(TEXT.glob("*.md"))
