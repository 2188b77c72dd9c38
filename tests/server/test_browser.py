"""The chat page in Debian's Chromium (Playwright), against the real ``citeqa serve``.

Waits use locators: the page's CSP has no 'unsafe-eval', so string predicates for
``wait_for_function`` would be blocked.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, Locator, Page, expect, sync_playwright

from .conftest import (
    ADMIN_TOKEN,
    CITEQA_BIN,
    ROOT,
    SEED_ANSWER,
    SEED_QUESTION,
    LiveServer,
    free_port,
    server_env,
    stop,
    wait_ready,
)

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "artifacts"
HOSTILE_TITLE = "<img src=x onerror=alert(4)> Hostile notes"
HOSTILE_TEXT = (
    f"# {HOSTILE_TITLE}\n\n"
    "The marmalade zebra protocol starts at <script>alert(1)</script> noon on Fridays.\n"
    "Zebras guard the marmalade <img src=x onerror=alert(2)> in the pantry.\n"
    'Read the zebra manual <a href="javascript:alert(3)">x</a> before lunch.\n'
)
HOSTILE_QUESTION = "When does the marmalade zebra protocol start?"


@dataclass
class Watch:
    """What the page did that it must not: dialogs, script errors, CSP reports."""

    page: Page
    dialogs: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium: make browser-deps")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def watch(browser: Browser, live_server: LiveServer) -> Iterator[Watch]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)  # the first answer waits for the model on a busy CI box
    watch = Watch(page)

    def on_dialog(dialog: Dialog) -> None:
        watch.dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("request", lambda request: watch.requests.append(request.url))
    page.on("pageerror", lambda error: watch.problems.append(f"pageerror: {error}"))
    page.on(
        "console",
        lambda msg: watch.problems.append(f"console: {msg.text}") if msg.type == "error" else None,
    )
    page.goto(live_server.url + "/")
    yield watch
    context.close()


def ask(page: Page, question: str) -> Locator:
    """Ask through the form; returns the newest answer turn."""
    answers = page.locator(".turn.answer")
    before = answers.count()
    page.locator("#question").fill(question)
    page.locator("#send").click()
    expect(answers).to_have_count(before + 1)
    expect(page.locator(".pending")).to_have_count(0)
    return answers.last


def test_ask_see_citations_and_the_highlighted_source(
    watch: Watch, live_server: LiveServer
) -> None:
    page = watch.page
    expected = httpx.post(f"{live_server.url}/ask", json={"question": SEED_QUESTION},
                          timeout=60).json()
    answer = ask(page, SEED_QUESTION)
    expect(answer).not_to_have_class("abstained")
    expect(answer.locator(".answer-text")).to_contain_text(SEED_ANSWER)
    expect(answer.locator("li.citation")).to_have_count(len(expected["citations"]))

    first = expected["sentences"][0]
    answer.locator(f'button.cite-marker[data-citation="{first["citation"]}"]').first.click()
    expect(page.locator("#source-panel")).to_be_visible()
    mark = page.locator("#source-text mark")
    expect(mark).to_have_count(1)
    assert mark.text_content() == first["text"]
    cited = next(c for c in expected["citations"] if c["id"] == first["citation"])
    expect(page.locator("#source-title")).to_have_text(cited["title"])

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chat-answer.png"), full_page=True)
    page.locator("#source-close").click()
    expect(page.locator("#source-panel")).to_be_hidden()
    # a source in the list opens with its whole passage highlighted (the passages no
    # sentence cites are folded under "more passages")
    last = expected["citations"][-1]
    if last["id"] not in {s["citation"] for s in expected["sentences"]}:
        answer.locator("details.more-passages > summary").click()
    answer.locator(f'li.citation[data-citation="{last["id"]}"] button').click()
    expect(page.locator("#source-text mark")).to_have_text(last["text"])
    page.locator("#source-close").click()
    assert watch.dialogs == [] and watch.problems == []


def test_hostile_document_is_shown_as_text(watch: Watch, live_server: LiveServer) -> None:
    page = watch.page
    added = httpx.post(
        f"{live_server.url}/documents",
        json={"doc_id": "hostile", "title": HOSTILE_TITLE, "text": HOSTILE_TEXT},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=120,
    )
    assert added.status_code == 201, added.text
    expected = httpx.post(f"{live_server.url}/ask", json={"question": HOSTILE_QUESTION},
                          timeout=60).json()
    hostile = [s for s in expected["sentences"] if s["doc_id"] == "hostile"]
    assert hostile, expected

    answer = ask(page, HOSTILE_QUESTION)
    expect(answer.locator(".answer-text")).to_contain_text(hostile[0]["text"])
    expect(answer.locator("li.citation").first).to_be_visible()
    answer.locator(f'button.cite-marker[data-citation="{hostile[0]["citation"]}"]').first.click()
    mark = page.locator("#source-text mark")
    expect(mark).to_have_count(1)
    assert mark.text_content() == hostile[0]["text"]
    source = page.locator("#source-text")
    expect(source).to_contain_text("<img src=x onerror=alert(2)>")  # literally, as text
    expect(source).to_contain_text('<a href="javascript:alert(3)">x</a>')
    expect(page.locator("#source-title")).to_have_text(HOSTILE_TITLE)

    # Nothing became markup: no injected elements anywhere, one script (app.js) on the page.
    for selector in ("#chat script", "#chat img", "#chat a", "#source-panel script",
                     "#source-panel img", "#source-panel a"):
        expect(page.locator(selector)).to_have_count(0)
    expect(page.locator("script")).to_have_count(1)
    page.wait_for_timeout(500)  # give any stray handler time to fire
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "chat-hostile.png"), full_page=True)
    assert watch.dialogs == []
    # Not even a blocked attempt: a CSP violation would show as a console error.
    assert watch.problems == []
    # No request left the server's origin, and the hostile <img src=x> fetched nothing.
    stray = [u for u in watch.requests if not u.startswith(live_server.url + "/")]
    assert stray == []
    assert not [u for u in watch.requests if u.rstrip("/").endswith("/x")]



def test_a_replaced_document_is_highlighted_in_its_new_text(
    watch: Watch, live_server: LiveServer
) -> None:
    """The page keeps documents it fetched; after a replacement, an answer from the new
    index generation must not be highlighted in the old text at the new offsets."""
    page = watch.page
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    question = "When do the herons of Lake Orin nest?"
    texts = [
        "# Herons of Lake Orin\n\nThe herons of Lake Orin nest in early April.\n",
        "# Herons of Lake Orin\n\nA survey of the lake was made this year by volunteers. "
        "The herons of Lake Orin now nest in late March.\n",
    ]
    for text in texts:
        added = httpx.post(f"{live_server.url}/documents", headers=headers, timeout=120,
                           json={"doc_id": "herons", "text": text})
        assert added.status_code == 201, added.text
        expected = httpx.post(f"{live_server.url}/ask", json={"question": question},
                              timeout=60).json()
        herons = [s for s in expected["sentences"] if s["doc_id"] == "herons"]
        assert herons and herons[0]["text"] in text, expected
        answer = ask(page, question)
        answer.locator(f'button.cite-marker[data-citation="{herons[0]["citation"]}"]').first.click()
        mark = page.locator("#source-text mark")
        expect(mark).to_have_count(1)
        assert mark.text_content() == herons[0]["text"]
        page.locator("#source-close").click()
    assert watch.dialogs == [] and watch.problems == []


def test_an_answer_older_than_its_document_says_so(
    watch: Watch, live_server: LiveServer
) -> None:
    """An answer's offsets belong to its index generation. Opened after the document
    was replaced (and never fetched before), it says the document changed and quotes
    the sentence it cited, instead of highlighting whatever the new text has there."""
    page = watch.page
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    question = "When do the egrets of Lake Varn nest?"
    old = "# Egrets of Lake Varn\n\nThe egrets of Lake Varn nest in early May.\n"
    new = ("# Egrets of Lake Varn\n\nA count of the lake was made this spring by a school. "
           "The egrets of Lake Varn now nest in late April.\n")
    for text in (old, new):
        added = httpx.post(f"{live_server.url}/documents", headers=headers, timeout=120,
                           json={"doc_id": "egrets", "text": text})
        assert added.status_code == 201, added.text
        if text == old:
            answer = ask(page, question)
            cited = httpx.post(f"{live_server.url}/ask", json={"question": question},
                               timeout=60).json()
    quoted = next(s for s in cited["sentences"] if s["doc_id"] == "egrets")
    assert quoted["text"] in old and quoted["text"] not in new
    answer.locator(f'button.cite-marker[data-citation="{quoted["citation"]}"]').first.click()
    expect(page.locator("#source-text .stale-quote")).to_have_text(quoted["text"])
    expect(page.locator("#source-text mark")).to_have_count(0)
    assert "changed since this answer" in (page.locator("#source-text").text_content() or "")
    assert watch.dialogs == [] and watch.problems == []


# -- the page as people know chat pages -----------------------------------------------------

DOCS_IMG = ROOT / "docs" / "img"
SCREENSHOTS = {"chat-desktop.png": (1280, 800), "chat-phone.png": (390, 844)}
SECOND_QUESTION = "Who is the USAID chief who traveled to Central America?"


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def in_view(page: Page, node: Locator) -> bool:
    """The top of ``node`` is inside the chat's visible area."""
    chat, box = page.locator("#chat").bounding_box(), node.bounding_box()
    assert chat is not None and box is not None
    return chat["y"] - 1 <= box["y"] < chat["y"] + chat["height"]


@pytest.mark.parametrize("name", list(SCREENSHOTS))
def test_answers_stay_in_view_sources_are_compact_and_the_chat_survives_a_reload(
    browser: Browser, live_server: LiveServer, name: str
) -> None:
    width, height = SCREENSHOTS[name]
    context = browser.new_context(viewport={"width": width, "height": height})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    page.set_default_timeout(60_000)
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(live_server.url + "/")
    try:
        expected = httpx.post(f"{live_server.url}/ask", json={"question": SEED_QUESTION},
                              timeout=60).json()
        for question in (SECOND_QUESTION, SEED_QUESTION):
            answer = ask(page, question)
            # the new answer is shown from its start, not scrolled past to its last card
            assert in_view(page, answer), question
            assert in_view(page, page.locator(".turn.question").last)

        cited = sorted({s["citation"] for s in expected["sentences"]})
        uncited = [c["id"] for c in expected["citations"] if c["id"] not in cited]
        shown = answer.locator(".citations-block > ol.citations > li.citation")
        assert sorted(int(i.get_attribute("data-citation") or 0) for i in shown.all()) == cited
        titles = {c["title"] for c in expected["citations"] if c["id"] in cited}
        expect(shown.locator(".citation-title")).to_have_count(len(titles))  # once each
        more = answer.locator("details.more-passages")
        if uncited:
            expect(more.locator("li.citation").first).to_be_hidden()
            more.locator("summary").click()
            expect(more.locator("li.citation")).to_have_count(len(uncited))
            expect(more.locator("li.citation").first).to_be_visible()
            more.locator("summary").click()
        else:
            expect(more).to_have_count(0)

        # copy: the answer and its sources, as the clipboard holds them
        answer.locator(".copy-answer").click()
        expect(answer.locator(".copy-answer")).to_have_text("Copied")
        page.locator("#question").focus()
        page.keyboard.press("ControlOrMeta+V")
        pasted = page.locator("#question").input_value()
        assert pasted.startswith(expected["answer"] + "\n\nSources:\n[")
        page.locator("#question").fill("")

        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / name))
        if os.environ.get("UPDATE_SCREENSHOTS") == "1":  # refreshes the README's pictures
            DOCS_IMG.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(DOCS_IMG / name))
        assert png_size(DOCS_IMG / name) == (width, height)  # the README shows it

        # a reload of the tab keeps the conversation, sources still open
        page.reload()
        answers = page.locator(".turn.answer")
        expect(answers).to_have_count(2)
        expect(page.locator(".turn.question")).to_have_text([SECOND_QUESTION, SEED_QUESTION])
        expect(answers.last.locator(".answer-text")).to_contain_text(SEED_ANSWER)
        assert in_view(page, page.locator(".turn.question").last)
        first = expected["sentences"][0]
        answers.last.locator(f'button.cite-marker[data-citation="{first["citation"]}"]').click()
        expect(page.locator("#source-text mark")).to_have_text(first["text"])
        page.locator("#source-close").click()
        # "New chat" forgets it
        page.locator("#clear-chat").click()
        expect(answers).to_have_count(0)
        page.reload()
        expect(page.locator(".turn")).to_have_count(0)
        assert problems == []
    finally:
        context.close()


@pytest.fixture
def keyed_server(hashing_index_dir: Path, tmp_path: Path) -> Iterator[str]:
    """``citeqa serve`` with CITEQA_API_KEYS, on the small index (the fake embedder)."""
    index_dir = tmp_path / "index"
    shutil.copytree(hashing_index_dir, index_dir)
    port = free_port()
    with open(tmp_path / "server.log", "wb") as log:
        process = subprocess.Popen(
            [str(CITEQA_BIN), "serve", "--port", str(port), "--index-dir", str(index_dir)],
            env=server_env(CITEQA_EMBEDDER="hashing", CITEQA_API_KEYS=READER_KEY),
            stdout=log, stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, process)
            yield url
        finally:
            stop(process)


READER_KEY = "browser-reader-key"


def test_the_page_asks_for_an_api_key_and_keeps_it(browser: Browser, keyed_server: str) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(keyed_server + "/")
    try:
        page.locator("#question").fill(SEED_QUESTION)
        page.locator("#send").click()
        expect(page.locator(".turn.error")).to_contain_text("API key")
        expect(page.locator("#key-bar")).to_be_visible()
        page.locator("#api-key").fill(READER_KEY)
        page.locator("#key-save").click()  # saves it and asks again
        expect(page.locator(".turn.answer")).to_have_count(1)
        expect(page.locator("#key-bar")).to_be_hidden()
        marker = page.locator(".turn.answer button.cite-marker").first
        marker.click()  # the document is fetched with the key too
        expect(page.locator("#source-text mark")).to_have_count(1)
        page.reload()
        ask(page, SEED_QUESTION)  # the key is still there
        expect(page.locator("#key-bar")).to_be_hidden()
    finally:
        context.close()

def test_ask_one_pdf_and_see_its_pages(watch: Watch, live_server: LiveServer) -> None:
    """The picker scopes the question to one document; a PDF's citation shows its page
    and the document view marks where each page starts."""
    import sys

    sys.path.insert(0, str(ROOT / "tests"))
    from _formats import make_pdf

    pdf = make_pdf(
        [["The herons of Lake Varn were counted in March.", "", "Ninety pairs nested."],
         ["The heron count of Lake Varn in June found forty-two chicks."]],
        title="Heron census",
    )
    added = httpx.post(f"{live_server.url}/documents", timeout=120,
                       headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                       files={"file": ("heron-census.pdf", pdf)},
                       data={"doc_id": "heron-census-pdf"})
    assert added.status_code == 201, added.text
    page = watch.page
    page.reload()
    page.locator("#doc-summary").click()
    page.locator('#doc-list input[value="heron-census-pdf"]').check()
    expect(page.locator("#doc-summary")).to_have_text("Documents: 1 chosen")
    answer = ask(page, "How many chicks did the June heron count find?")
    citations = answer.locator("li.citation")
    expect(citations.first.locator(".citation-title")).to_have_text("Heron census")
    for i in range(citations.count()):  # scoped: every citation is the PDF's
        expect(citations.nth(i).locator(".citation-title")).to_have_text("Heron census")
    expect(answer.locator(".citation-page").first).to_have_text(re.compile(r"p\. [12]"))
    answer.locator("button.cite-marker").first.click()
    expect(page.locator('#source-text .page-break[data-page="2"]')).to_have_count(1)
    doc = httpx.get(f"{live_server.url}/documents/heron-census-pdf", timeout=30).json()
    assert page.locator("#source-text").text_content() == doc["text"]  # markers add no text
    assert watch.dialogs == [] and watch.problems == []
