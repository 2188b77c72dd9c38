// citeqa chat page. Every piece of server text goes in through textContent or
// text nodes: documents are untrusted and may contain markup.
"use strict";

const $ = (sel) => document.querySelector(sel);
const chat = $("#chat");
const form = $("#ask-form");
const question = $("#question");
const modeSelect = $("#mode");
const sendButton = $("#send");
const panel = $("#source-panel");
const layout = $("#layout");
const sourceTitle = $("#source-title");
const sourceSection = $("#source-section");
const sourceText = $("#source-text");
const closeButton = $("#source-close");
const keyBar = $("#key-bar");
const keyInput = $("#api-key");
const keySave = $("#key-save");
const clearButton = $("#clear-chat");

const CONVERSATION_KEY = "citeqa.conversation"; // sessionStorage: survives a reload of the tab
const API_KEY_KEY = "citeqa.apiKey"; // localStorage: CITEQA_API_KEYS servers only
const MAX_KEPT_TURNS = 30;
const docPicker = $("#doc-picker");
const docList = $("#doc-list");
const docSummary = $("#doc-summary");

// index_version + doc_id -> Promise<document>: a document replaced since has new offsets
const docCache = new Map();
let busy = false;
let panelToken = 0; // lets a later click win over a slower earlier fetch
let panelOpener = null; // element to give focus back to on close

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

// The server counts offsets in Unicode code points (Python str indices);
// JS strings count UTF-16 code units, which differ once astral characters occur.
function codePointToUnit(text, cp) {
  let units = 0;
  let seen = 0;
  for (const ch of text) {
    if (seen >= cp) break;
    units += ch.length;
    seen += 1;
  }
  return units;
}

function preview(text, limit = 180) {
  const chars = Array.from(String(text).replace(/\s+/g, " ").trim());
  return chars.length > limit ? chars.slice(0, limit).join("").trimEnd() + "…" : chars.join("");
}

function scrollChatToEnd() {
  chat.scrollTop = chat.scrollHeight;
}

// A new answer is read from its start: bring its question to the top of the view.
function showFromStart(node) {
  node.scrollIntoView({ block: "start" });
}

// -- storage: the conversation (per tab) and the API key (per browser) ----------------------

function stored(storage, key, fallback) {
  try {
    const value = storage.getItem(key);
    return value === null ? fallback : value;
  } catch {
    return fallback; // storage disabled (private mode, a sandbox)
  }
}

function store(storage, key, value) {
  try {
    if (value === null) storage.removeItem(key);
    else storage.setItem(key, value);
  } catch {
    // full or disabled: the page works, it just forgets
  }
}

function apiKey() {
  return stored(localStorage, API_KEY_KEY, "");
}

function withKey(headers) {
  const key = apiKey();
  return key ? { ...headers, Authorization: `Bearer ${key}` } : headers;
}

function loadConversation() {
  try {
    const turns = JSON.parse(stored(sessionStorage, CONVERSATION_KEY, "[]"));
    return Array.isArray(turns) ? turns.filter((t) => t && typeof t.question === "string") : [];
  } catch {
    return [];
  }
}

// [{question, answer}]: only answered turns are kept, not errors
let conversation = loadConversation();

function saveConversation() {
  conversation = conversation.slice(-MAX_KEPT_TURNS);
  store(sessionStorage, CONVERSATION_KEY, conversation.length ? JSON.stringify(conversation) : null);
  clearButton.hidden = conversation.length === 0;
}

async function problemMessage(res) {
  let problem = null;
  try {
    problem = await res.json();
  } catch {
    // Not JSON (e.g. a proxy error page): fall back to the status line.
  }
  if (problem && typeof problem.detail === "string" && problem.detail) return problem.detail;
  if (problem && typeof problem.title === "string" && problem.title) return problem.title;
  return `${res.status} ${res.statusText || "Request failed"}`.trim();
}

function fetchDocument(docId, version) {
  const key = `${version || ""}\u0000${docId}`;
  if (!docCache.has(key)) {
    const pending = fetch(`/documents/${encodeURIComponent(docId)}`, {
      headers: withKey({ Accept: "application/json" }),
    }).then(async (res) => {
      if (!res.ok) throw new Error(await problemMessage(res));
      return res.json();
    });
    // Forget failures so a later click can retry.
    pending.catch(() => docCache.delete(key));
    docCache.set(key, pending);
  }
  return docCache.get(key);
}

function setSection(section) {
  sourceSection.textContent = section || "";
  sourceSection.hidden = !section;
}

function openPanel() {
  panel.hidden = false;
  layout.classList.add("with-source");
  document.body.classList.add("source-open");
}

function closePanel() {
  panelToken += 1;
  panel.hidden = true;
  layout.classList.remove("with-source");
  document.body.classList.remove("source-open");
  if (panelOpener && document.contains(panelOpener)) panelOpener.focus();
  panelOpener = null;
}

// target: {version, docId, start, end, title, section, quoted (the text the answer cites)}
async function showSource(target, opener) {
  const token = ++panelToken;
  panelOpener = opener;
  sourceTitle.textContent = target.title || target.docId;
  setSection(target.section);
  sourceText.replaceChildren(el("p", "source-loading", "Loading document…"));
  sourceText.setAttribute("aria-busy", "true");
  openPanel();
  panel.focus({ preventScroll: true });

  let doc;
  try {
    doc = await fetchDocument(target.docId, target.version);
  } catch (err) {
    if (token !== panelToken) return;
    sourceText.removeAttribute("aria-busy");
    sourceText.replaceChildren(el("p", "error", `Could not load the document: ${err.message}`));
    return;
  }
  if (token !== panelToken) return;

  const text = String(doc.text ?? "");
  const start = codePointToUnit(text, target.start);
  const end = Math.max(start, codePointToUnit(text, target.end));
  if (doc.title) sourceTitle.textContent = doc.title;
  sourceText.removeAttribute("aria-busy");
  if (typeof target.quoted === "string" && text.slice(start, end) !== target.quoted) {
    // The document was replaced after this answer: its offsets point into the old text.
    const quote = el("blockquote", "stale-quote", target.quoted);
    sourceText.replaceChildren(
      el("p", "error", "This document has changed since this answer. Ask again to see the passage in it. The answer quoted:"),
      quote,
    );
    return;
  }
  // A PDF's pages: a marker where each one starts, in the text and in the mark.
  const pages = (Array.isArray(doc.page_starts) ? doc.page_starts : []).map((cp, i) => ({
    at: codePointToUnit(text, cp),
    page: i + 1,
  }));
  const mark = el("mark", "");
  sourceText.replaceChildren();
  appendWithPages(sourceText, text, 0, start, pages);
  appendWithPages(mark, text, start, end, pages);
  sourceText.append(mark);
  appendWithPages(sourceText, text, end, text.length, pages);
  mark.scrollIntoView({ block: "center" });
}

// text[from:to] into parent, with a "Page N" marker where each page in it starts
function appendWithPages(parent, text, from, to, pages) {
  let pos = from;
  for (const { at, page } of pages) {
    if (at < from || at >= to || (at === 0 && from > 0)) continue;
    if (at > pos) parent.append(document.createTextNode(text.slice(pos, at)));
    // the label is CSS content: the view's text stays the document's text
    const marker = el("span", "page-break");
    marker.dataset.page = String(page);
    marker.setAttribute("role", "separator");
    marker.setAttribute("aria-label", `Page ${page}`);
    parent.append(marker);
    pos = at;
  }
  if (to > pos) parent.append(document.createTextNode(text.slice(pos, to)));
}

function citationTarget(citation, version) {
  return {
    version,
    docId: citation.doc_id,
    start: citation.start,
    end: citation.end,
    title: citation.title,
    section: citation.section,
    quoted: citation.text,
  };
}

function titleOf(citation) {
  return citation.title || citation.doc_id;
}

// Passages of one document together (in the order the documents first appear), so a
// document's title is shown once however many of its passages are listed.
function byDocument(citations) {
  const groups = new Map();
  for (const c of citations) {
    const title = titleOf(c);
    if (!groups.has(title)) groups.set(title, []);
    groups.get(title).push(c);
  }
  return [...groups.values()].flat();
}

function renderPassageList(citations, version) {
  const list = el("ol", "citations");
  let previousTitle = null;
  for (const c of byDocument(citations)) {
    const title = titleOf(c);
    const item = el("li", "citation");
    item.dataset.citation = String(c.id);
    const button = el("button", "citation-link");
    button.type = "button";
    button.setAttribute("aria-label", `Show source ${c.id}: ${title}`);
    const head = el("span", "citation-head");
    head.append(el("span", "citation-num", `[${c.id}]`));
    if (title !== previousTitle) head.append(el("span", "citation-title", title));
    else item.classList.add("same-document");
    if (c.section) head.append(el("span", "citation-section", c.section));
    if (c.page !== undefined && c.page !== null) head.append(el("span", "citation-page", `p. ${c.page}`));
    button.append(head, el("span", "citation-preview", preview(c.text, 140)));
    button.addEventListener("click", () => showSource(citationTarget(c, version), button));
    item.append(button);
    list.append(item);
    previousTitle = title;
  }
  return list;
}

// The passages no sentence cites, folded: they are context, not the answer's sources.
function renderMorePassages(citations, version, label) {
  const more = el("details", "more-passages");
  more.append(el("summary", "", label), renderPassageList(citations, version));
  return more;
}

function renderCitations(cited, uncited, version) {
  const wrap = el("div", "citations-block");
  if (cited.length) {
    wrap.append(el("h3", "citations-heading", "Sources"), renderPassageList(cited, version));
  }
  if (uncited.length) {
    const n = uncited.length;
    wrap.append(renderMorePassages(uncited, version, `${n} more passage${n === 1 ? "" : "s"}`));
  }
  return wrap;
}

// A sentence, with the short answer the learned stage marked inside it highlighted.
function sentenceNode(s, short) {
  const node = el("span", "sentence");
  const inside = short && short.doc_id === s.doc_id && short.start >= s.start && short.end <= s.end;
  const a = inside ? codePointToUnit(s.text, short.start - s.start) : 0;
  const b = inside ? codePointToUnit(s.text, short.end - s.start) : 0;
  if (!inside || s.text.slice(a, b) !== short.text) {
    node.textContent = s.text;
    return node;
  }
  const mark = el("mark", "short-answer", s.text.slice(a, b));
  mark.title = "The answer, as the learned stage marks it";
  node.append(document.createTextNode(s.text.slice(0, a)), mark, document.createTextNode(s.text.slice(b)));
  return node;
}

// What "Copy" puts on the clipboard: the answer, then the sources it cites.
function answerAsText(data, cited) {
  if (data.abstained || !cited.length) return String(data.answer || "");
  const lines = cited.map((c) => {
    let where = titleOf(c) + (c.section ? ` › ${c.section}` : "");
    if (c.page !== undefined && c.page !== null) where += `, p. ${c.page}`;
    return `[${c.id}] ${where}`;
  });
  return `${data.answer}\n\nSources:\n${lines.join("\n")}`;
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // no clipboard API (an http:// origin other than localhost): the old way
    const area = el("textarea", "visually-hidden", text);
    document.body.append(area);
    area.select();
    const done = document.execCommand("copy");
    area.remove();
    return done;
  }
}

function renderCopyButton(text) {
  const button = el("button", "copy-answer", "Copy");
  button.type = "button";
  button.setAttribute("aria-label", "Copy the answer and its sources");
  button.addEventListener("click", async () => {
    const done = await copyText(text);
    button.textContent = done ? "Copied" : "Copy failed";
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  });
  const bar = el("div", "answer-actions");
  bar.append(button);
  return bar;
}

function renderAnswer(data) {
  const citations = Array.isArray(data.citations) ? data.citations : [];
  const sentences = Array.isArray(data.sentences) ? data.sentences : [];
  const byId = new Map(citations.map((c) => [c.id, c]));
  const citedIds = new Set(sentences.map((s) => s.citation));
  const cited = citations.filter((c) => citedIds.has(c.id));
  const uncited = citations.filter((c) => !citedIds.has(c.id));
  const turn = el("article", "turn answer");
  turn.setAttribute("aria-label", "Answer");

  if (data.abstained) {
    turn.classList.add("abstained");
    const note = el("div", "abstain-note");
    note.append(el("strong", "abstain-title", "Not in the documents"), el("p", "", "The documents do not answer this question."));
    turn.append(note);
    if (citations.length) {
      const n = citations.length;
      turn.append(renderMorePassages(citations, data.index_version, `${n} nearest passage${n === 1 ? "" : "s"}`));
    }
    turn.append(renderCopyButton(answerAsText(data, [])));
    return turn;
  }

  const body = el("p", "answer-text");
  if (sentences.length === 0) body.textContent = data.answer || "";
  for (const s of sentences) {
    body.append(sentenceNode(s, data.short_answer), document.createTextNode("\u00a0"));
    const marker = el("button", "cite-marker", `[${s.citation}]`);
    marker.type = "button";
    marker.dataset.citation = String(s.citation);
    marker.setAttribute("aria-label", `Show source ${s.citation}`);
    const cited = byId.get(s.citation) || {};
    marker.addEventListener("click", () =>
      showSource(
        {
          version: data.index_version,
          docId: s.doc_id,
          start: s.start,
          end: s.end,
          title: cited.title,
          section: cited.section,
          quoted: s.text,
        },
        marker,
      ),
    );
    body.append(marker, document.createTextNode(" "));
  }
  turn.append(body);
  if (citations.length) turn.append(renderCitations(cited, uncited, data.index_version));
  turn.append(renderCopyButton(answerAsText(data, cited)));
  return turn;
}

function renderError(message) {
  const turn = el("div", "turn error");
  turn.append(el("strong", "", "Something went wrong. "), document.createTextNode(message));
  return turn;
}

async function ask(text) {
  busy = true;
  sendButton.disabled = true;
  chat.querySelector(".intro")?.remove();
  const asked = el("div", "turn question", text);
  chat.append(asked);

  const pending = el("div", "turn pending", "Searching…");
  pending.setAttribute("aria-busy", "true");
  chat.append(pending);
  scrollChatToEnd();

  let result;
  try {
    const res = await fetch("/ask", {
      method: "POST",
      headers: withKey({ "Content-Type": "application/json", Accept: "application/json" }),
      body: JSON.stringify({ question: text, top_k: 5, mode: modeSelect.value, ...scope() }),
    });
    if (res.ok) {
      const data = await res.json();
      result = renderAnswer(data);
      conversation.push({ question: text, answer: data });
      saveConversation();
    } else {
      if (res.status === 401) askForKey(text);
      result = renderError(await problemMessage(res));
    }
  } catch (err) {
    result = renderError("Could not reach the server. Check the connection and try again.");
  }
  pending.replaceWith(result);
  showFromStart(asked);
  busy = false;
  sendButton.disabled = false;
}

// -- API key (only when the server sets CITEQA_API_KEYS) ------------------------------------

let retryAfterKey = null;

function askForKey(question) {
  retryAfterKey = question;
  keyInput.value = "";
  keyBar.hidden = false;
  keyInput.focus();
}

function saveKey() {
  const key = keyInput.value.trim();
  if (!key) return;
  store(localStorage, API_KEY_KEY, key);
  docCache.clear(); // fetches refused without the key
  keyBar.hidden = true;
  const question = retryAfterKey;
  retryAfterKey = null;
  if (question && !busy) ask(question);
}

keySave.addEventListener("click", saveKey);
keyInput.addEventListener("keydown", (event) => {
  if (event.key === "Enter") {
    event.preventDefault();
    saveKey();
  }
});

// -- the conversation kept across a reload ---------------------------------------------------

function restoreConversation() {
  if (!conversation.length) return;
  chat.querySelector(".intro")?.remove();
  let last = null;
  for (const turn of conversation) {
    last = el("div", "turn question", turn.question);
    chat.append(last, renderAnswer(turn.answer || {}));
  }
  clearButton.hidden = false;
  showFromStart(last);
}

clearButton.addEventListener("click", () => {
  conversation = [];
  saveConversation();
  closePanel();
  chat.replaceChildren(el("p", "intro", "Ask a question. Every answer sentence is copied word for word from a document."));
  question.focus();
});

restoreConversation();

// The documents a question may be scoped to (the first 1000; none ticked: all of them).
function scope() {
  const ids = [...docList.querySelectorAll("input:checked")].map((box) => box.value);
  return ids.length ? { doc_ids: ids } : {};
}

function updateDocSummary() {
  const n = docList.querySelectorAll("input:checked").length;
  docSummary.textContent = n ? `Documents: ${n} chosen` : "Documents: all";
}

async function loadDocuments() {
  try {
    const res = await fetch("/documents?limit=1000", { headers: withKey({ Accept: "application/json" }) });
    if (!res.ok) return;
    const body = await res.json();
    docList.replaceChildren();
    for (const d of body.documents || []) {
      const label = el("label", "doc-choice");
      const box = el("input");
      box.type = "checkbox";
      box.value = d.doc_id;
      box.addEventListener("change", updateDocSummary);
      const pages = d.pages ? `, ${d.pages} pages` : "";
      label.append(box, el("span", "", d.title || d.doc_id),
                   el("span", "doc-meta", ` (${d.format}${pages})`));
      docList.append(label);
    }
    docPicker.hidden = !docList.childElementCount;
    updateDocSummary();
  } catch (err) {
    docPicker.hidden = true; // the page still asks all documents
  }
}

loadDocuments();

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = question.value.trim();
  if (busy || !text) return;
  question.value = "";
  ask(text);
});

question.addEventListener("keydown", (event) => {
  // isComposing: Enter also confirms IME input, which must not send.
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    form.requestSubmit();
  }
});

closeButton.addEventListener("click", closePanel);
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && !panel.hidden) closePanel();
});
