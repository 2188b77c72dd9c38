"""A real server under concurrent readers and writers (hashing embedder, loopback)."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psutil
import pytest

from citeqa._types import sha256_text

from .conftest import Served, docs_on_disk

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUESTIONS = [
    "How many times was the kangaroo counted?",
    "Which river was the wombat near?",
    "On which dates did Vice President Kamala Harris visit Guatemala and Mexico?",
    "What did observers write about the platypus?",
]


def _text(tag: str, n: int) -> str:
    animal = ["kangaroo", "wombat", "platypus"][n % 3]
    return (f"# Field note {tag}\n\nThe {animal} was counted {n * 7 + 3} times in note {tag}. "
            f"Observers wrote that the {animal} stayed near river {tag}-{n}.\n")


def _seed_texts(client: httpx.Client) -> dict[str, str]:
    ids = [d["doc_id"] for d in client.get("/documents").json()["documents"]]
    return {i: client.get(f"/documents/{i}").json()["text"] for i in ids}


def test_readers_during_updates_see_one_generation_and_no_5xx(serve: Any) -> None:
    served: Served = serve()
    stop = threading.Event()
    answers: list[dict[str, Any]] = []
    failures: list[str] = []

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=served.url, timeout=30) as client:
            while not stop.is_set():
                q = rng.choice(QUESTIONS)
                r = client.post("/ask", json={"question": q, "top_k": rng.randint(1, 8)})
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text[:200]}")
                else:
                    answers.append(r.json())

    with served.client() as admin:
        version = admin.get("/readyz").json()["index_version"]
        texts_by_version: dict[str, dict[str, str]] = {version: _seed_texts(admin)}
        current = dict(texts_by_version[version])
        readers = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
        for t in readers:
            t.start()
        time.sleep(0.2)
        for n in range(24):
            if n % 4 == 3:  # delete one of ours
                doc_id = f"note-{n - 2}"
                r = admin.delete(f"/documents/{doc_id}")
                current.pop(doc_id)
            else:  # add a new one, or replace note-0 with new text
                doc_id = "note-0" if n % 4 == 2 else f"note-{n}"
                text = _text(str(n), n)
                r = admin.post("/documents", json={"doc_id": doc_id, "text": text})
                current[doc_id] = text
            assert r.status_code in (200, 201), r.text
            texts_by_version[r.json()["index_version"]] = dict(current)
        # A background merge's generation holds what the write before it did: a version
        # is "<generation>-<fingerprint of the documents>".
        texts_by_content = {v.split("-", 1)[1]: t for v, t in texts_by_version.items()}
        time.sleep(0.2)
        # enough answers to judge, however long each takes on this machine (the learned
        # stage reads six candidates per question)
        deadline = time.monotonic() + 60
        while len(answers) <= 50 and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        for t in readers:
            t.join(timeout=30)

    assert not failures, failures[:5]
    assert len(answers) > 50
    seen_versions = {a["index_version"] for a in answers}
    assert len(seen_versions) > 3  # readers really overlapped the writes
    cited_notes = 0
    for answer in answers:
        docs = texts_by_content[answer["index_version"].split("-", 1)[1]]  # one per answer
        for c in answer["citations"]:
            assert docs[c["doc_id"]][c["start"] : c["end"]] == c["text"]
            cited_notes += c["doc_id"].startswith("note-")
        for s in answer["sentences"]:
            assert docs[s["doc_id"]][s["start"] : s["end"]] == s["text"]
    assert cited_notes > 0
    print(f"\n{len(answers)} answers over {len(seen_versions)} generations, zero 5xx")


def test_parallel_writers_are_serialised(serve: Any) -> None:
    served: Served = serve()
    writers, per_writer = 4, 5

    def work(w: int) -> tuple[dict[str, str], list[str]]:
        mine: dict[str, str] = {}
        versions = []
        with served.client() as client:
            for n in range(per_writer):
                doc_id, text = f"w{w}-{n}", _text(f"w{w}", n)
                r = client.post("/documents", json={"doc_id": doc_id, "text": text})
                assert r.status_code == 201, r.text
                versions.append(r.json()["index_version"])
                mine[doc_id] = sha256_text(text)
            for n in (1, 3):  # delete two, replace one
                r = client.delete(f"/documents/w{w}-{n}")
                assert r.status_code == 200, r.text
                versions.append(r.json()["index_version"])
                del mine[f"w{w}-{n}"]
            text = _text(f"w{w}-again", 99)
            r = client.post("/documents", json={"doc_id": f"w{w}-0", "text": text})
            versions.append(r.json()["index_version"])
            mine[f"w{w}-0"] = sha256_text(text)
        return mine, versions

    with served.client() as client:
        start_version, expected = docs_on_disk(served.index_dir)
        with ThreadPoolExecutor(writers) as pool:
            results = list(pool.map(work, range(writers)))
        for mine, _ in results:
            expected.update(mine)
        listed = client.get("/documents").json()["documents"]
        served_version = client.get("/readyz").json()["index_version"]
    assert {d["doc_id"]: d["sha256"] for d in listed} == expected
    versions = [v for _, vs in results for v in vs]
    generations = sorted(int(v.split("-")[0]) for v in versions)
    first = int(start_version.split("-")[0])
    # One new generation per acknowledged write, none shared; background merges take
    # the numbers between them.
    assert len(set(generations)) == len(versions) and generations[0] > first
    on_disk_version, on_disk = docs_on_disk(served.index_dir)
    assert on_disk == expected
    assert int(on_disk_version.split("-")[0]) >= int(served_version.split("-")[0])


def test_overload_is_shed_fast_and_recovers(serve: Any) -> None:
    served: Served = serve(CITEQA_MAX_INFLIGHT_ASKS="2")
    process = psutil.Process(served.process.pid)
    body = {"question": QUESTIONS[2], "top_k": 20}

    def timed(client: httpx.Client) -> tuple[int, float, str | None]:
        started = time.perf_counter()
        r = client.post("/ask", json=body)
        return r.status_code, time.perf_counter() - started, r.headers.get("retry-after")

    with httpx.Client(base_url=served.url, timeout=30) as client:
        for _ in range(10):
            timed(client)  # warm up
        baseline = sorted(timed(client)[1] for _ in range(20))[10]
    rss_before = process.memory_info().rss

    def burst(_: int) -> list[tuple[int, float, str | None]]:
        with httpx.Client(base_url=served.url, timeout=30) as client:
            return [timed(client) for _ in range(15)]

    with ThreadPoolExecutor(32) as pool:
        results = [r for rs in pool.map(burst, range(32)) for r in rs]
    statuses = {s for s, _, _ in results}
    assert statuses <= {200, 503}, statuses
    shed = sorted(t for s, t, _ in results if s == 503)
    assert shed, "the burst was never shed"
    assert all(ra == "1" for s, _, ra in results if s == 503)
    shed_p95 = shed[int(len(shed) * 0.95)]
    assert shed_p95 < 0.5  # refused at once, not after queueing
    rss_growth = process.memory_info().rss - rss_before
    assert rss_growth < 64 << 20

    with httpx.Client(base_url=served.url, timeout=30) as client:
        after = sorted(timed(client)[1] for _ in range(20))[10]
    assert after < max(3 * baseline, baseline + 0.05)
    print(f"\nburst of {len(results)}: {len(shed)} shed (p95 {shed_p95 * 1000:.0f} ms), "
          f"median ask {baseline * 1000:.1f} ms before, {after * 1000:.1f} ms after; "
          f"RSS +{rss_growth >> 20} MiB")
