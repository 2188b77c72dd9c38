"""kill -9 at random moments: during POST/DELETE /documents (and the merges they start
in the background), during ``citeqa index`` and during ``citeqa compact``.

After every kill the index must load (checksums and counts verified), serve either the
generation live before the interrupted write or the one it was making, and hold every
change that was acknowledged before the kill. Leftovers of the interrupted write are
ignored, then removed.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from citeqa import Document
from citeqa._store import current_version
from citeqa._types import sha256_text
from server.conftest import CITEQA_BIN, SEEDS, server_env

from .conftest import ADMIN_TOKEN, docs_on_disk, start_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVER_KILLS = 30
REINDEX_KILLS = 6

Docs = dict[str, str]  # doc_id -> sha256 of its text


@dataclass(frozen=True)
class Op:
    kind: str  # "add" or "delete"
    doc_id: str
    text: str = ""

    def apply(self, docs: Docs) -> Docs:
        out = dict(docs)
        if self.kind == "add":
            out[self.doc_id] = sha256_text(self.text)
        else:
            out.pop(self.doc_id, None)
        return out


def _text(rng: random.Random, tag: str) -> str:
    animal = rng.choice(["kangaroo", "wombat", "platypus", "echidna", "quokka", "dingo"])
    return (
        f"# Note {tag}\n\nThe {animal} in note {tag} was counted {rng.randint(1, 10**6)} times. "
        f"Observers wrote about the {animal} near river {rng.randint(1, 999)}.\n"
    )


class Writer(threading.Thread):
    """Sends adds, replacements and deletes back to back until the server dies."""

    def __init__(self, url: str, token: str, acked: Docs, rng: random.Random, tag: str) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.rng, self.tag = url, token, rng, tag
        self.acked = dict(acked)  # updated only on a 2xx
        self.acked_version: str | None = None
        self.pending: Op | None = None
        self.errors: list[str] = []
        self.writes = 0
        self.first_ack = threading.Event()

    def next_op(self, n: int) -> Op:
        ours = [d for d in self.acked if d.startswith("c-")]
        roll = self.rng.random()
        if ours and roll < 0.35:
            return Op("delete", self.rng.choice(ours))
        if ours and roll < 0.55:  # replace an existing document with new text
            doc_id = self.rng.choice(ours)
            return Op("add", doc_id, _text(self.rng, f"{self.tag}-{n}"))
        return Op("add", f"c-{self.tag}-{n}", _text(self.rng, f"{self.tag}-{n}"))

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(base_url=self.url, timeout=30, headers=headers) as client:
            for n in range(10_000):
                op = self.next_op(n)
                self.pending = op
                try:
                    if op.kind == "add":
                        r = client.post("/documents", json={"doc_id": op.doc_id, "text": op.text})
                    else:
                        r = client.delete(f"/documents/{op.doc_id}")
                except httpx.TransportError:
                    return  # killed: ``pending`` may or may not have been applied
                if r.status_code not in (200, 201):
                    self.errors.append(f"{op}: {r.status_code} {r.text}")
                    return
                self.acked = op.apply(self.acked)
                self.acked_version = r.json()["index_version"]
                self.pending = None
                self.writes += 1
                self.first_ack.set()


def _served_docs(client: httpx.Client) -> tuple[str, Docs]:
    ready = client.get("/readyz").json()
    listed = client.get("/documents").json()["documents"]
    return ready["index_version"], {d["doc_id"]: d["sha256"] for d in listed}


def test_kill_9_during_document_writes(live_index: Path, tmp_path: Path) -> None:
    rng = random.Random(20240607)
    acked_version, acked = docs_on_disk(live_index)
    pending: Op | None = None
    stats = {"in_flight_landed": 0, "in_flight_lost": 0, "leftovers_cleaned": 0, "writes": 0,
             "killed_mid_request": 0, "merged_after_ack": 0}
    startups: list[float] = []
    for kill in range(SERVER_KILLS + 1):
        leftovers = list(live_index.glob(".tmp-*"))
        started = time.perf_counter()
        served = start_server(live_index)
        startups.append(time.perf_counter() - started)
        with served.client() as client:
            version, docs = _served_docs(client)
        if docs != acked:
            # Only the write in flight at the kill may have landed, and then wholly.
            assert pending is not None, f"restart {kill}: {docs} != {acked}\n{served.log()}"
            assert docs == pending.apply(acked), f"restart {kill}: a half-applied write"
            stats["in_flight_landed"] += 1
        elif pending is not None:
            stats["in_flight_lost"] += 1
        # A background merge may have committed after the last acknowledged write.
        assert int(version.split("-")[0]) >= int(acked_version.split("-")[0])
        stats["merged_after_ack"] += version != acked_version and docs == acked
        # The disk agrees with what is served, and verifies (checksums, counts).
        assert docs_on_disk(live_index) == (version, docs)
        assert current_version(live_index) == version
        if leftovers:  # the restart's load removed what the killed write left
            assert not list(live_index.glob(".tmp-*"))
            stats["leftovers_cleaned"] += 1
        acked_version, acked = version, docs
        if kill == SERVER_KILLS:
            served.kill()
            break

        writer = Writer(served.url, ADMIN_TOKEN, acked, rng, str(kill))
        writer.start()
        # Kill at a random moment among the writes, however fast this machine is today.
        assert writer.first_ack.wait(30) or writer.errors, served.log()
        time.sleep(rng.uniform(0.0, 0.5))
        served.kill()
        writer.join(timeout=30)
        assert not writer.is_alive() and not writer.errors, writer.errors
        stats["writes"] += writer.writes
        stats["killed_mid_request"] += writer.pending is not None
        pending = writer.pending
        acked = writer.acked
        acked_version = writer.acked_version or acked_version

    print(f"\n{SERVER_KILLS} kills: {stats}; restart to ready median "
          f"{sorted(startups)[len(startups) // 2]:.2f} s")
    assert stats["writes"] >= SERVER_KILLS  # the kills landed among real writes
    assert stats["killed_mid_request"] >= SERVER_KILLS // 2
    assert stats["leftovers_cleaned"] >= 1  # some kills did land mid-write, on disk


def test_kill_9_during_full_reindex(tmp_path: Path) -> None:
    """``citeqa index`` killed mid-way: the index left is the old one or the new one."""
    rng = random.Random(7)
    corpus = tmp_path / "corpus"
    shutil.copytree(SEEDS, corpus)
    index_dir = tmp_path / "index"
    env = server_env(CITEQA_EMBEDDER="hashing")

    def index(max_tokens: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [str(CITEQA_BIN), "index", str(corpus), "--index-dir", str(index_dir),
             "--max-tokens", str(max_tokens)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    assert index(200).wait(timeout=120) == 0
    previous = docs_on_disk(index_dir)
    completed_by_the_killed_run = 0
    for kill in range(REINDEX_KILLS):
        # A different chunk size re-chunks everything; a new file adds text to embed.
        (corpus / f"extra-{kill}.md").write_text(_text(rng, f"r{kill}"), encoding="utf-8")
        max_tokens = 120 if kill % 2 == 0 else 200
        process = index(max_tokens)
        time.sleep(rng.uniform(0.3, 1.4))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        after_kill = docs_on_disk(index_dir)  # loads and verifies, whatever the moment was
        assert index(max_tokens).wait(timeout=120) == 0
        new = docs_on_disk(index_dir)
        assert after_kill in (previous, new), f"kill {kill}: neither old nor new generation"
        completed_by_the_killed_run += after_kill == new
        assert not [p for p in os.listdir(index_dir) if p.startswith(".tmp-")]
        previous = new
    print(f"\n{REINDEX_KILLS} reindex kills; {completed_by_the_killed_run} had already finished")
    assert completed_by_the_killed_run < REINDEX_KILLS  # most kills interrupted the build


COMPACT_KILLS = 6


def test_kill_9_during_a_merge(tmp_path: Path, seed_docs: list[Document]) -> None:
    """``citeqa compact`` killed mid-way: the index left holds the same documents, in
    the old segments or the merged one, and the next run finishes the merge."""
    from citeqa import HashingEmbedder, make_document
    from citeqa._index import build_index
    from citeqa._store import read_manifest, write_index

    rng = random.Random(11)
    index_dir = tmp_path / "index"
    env = server_env(CITEQA_EMBEDDER="hashing")
    interrupted = 0
    took: float | None = None
    for kill in range(COMPACT_KILLS):
        # Many small segments with tombstones, as a day of single-document writes leaves.
        docs, data = list(seed_docs), None
        for n in range(40):
            docs = [d for d in docs if d.doc_id != f"b-{kill}-{n - 3}"] + [
                make_document(_text(rng, f"{kill}-{n}"), doc_id=f"{ab}-{kill}-{n}")
                for ab in "ab"
            ]
            data, _ = build_index(docs, HashingEmbedder(), previous=data, auto_merge=False)
            if n % 13 == 12 or n == 39:
                write_index(index_dir, data)
        before = docs_on_disk(index_dir)
        segments = len(read_manifest(index_dir)["segments"])
        assert segments > 20
        if took is None:  # how long a whole run takes here, on a copy
            shutil.copytree(index_dir, tmp_path / "timing")
            started = time.perf_counter()
            subprocess.run([str(CITEQA_BIN), "compact", "--index-dir", str(tmp_path / "timing")],
                           env=env, check=True, capture_output=True, timeout=120)
            took = time.perf_counter() - started
        process = subprocess.Popen(
            [str(CITEQA_BIN), "compact", "--index-dir", str(index_dir)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.5, 1.0) * took)  # the merge's work is the run's second half
        process.send_signal(signal.SIGKILL)
        finished = process.wait(timeout=10) == 0
        version, held = docs_on_disk(index_dir)  # loads and verifies, whatever the moment was
        assert held == before[1], f"kill {kill}: documents changed"
        merged = len(read_manifest(index_dir)["segments"]) == 1
        assert merged == (version != before[0]), f"kill {kill}: a half-made generation is live"
        interrupted += not finished
        again = subprocess.run(
            [str(CITEQA_BIN), "compact", "--index-dir", str(index_dir)],
            env=env, capture_output=True, text=True, timeout=120, check=True,
        )
        assert docs_on_disk(index_dir)[1] == before[1], again.stdout
        assert len(read_manifest(index_dir)["segments"]) == 1
        # Only the live generation's one segment and the previous generation's remain.
        on_disk = {p.name for p in (index_dir / "segments").iterdir()}
        assert len(on_disk) <= segments + 1
        assert not [p for p in os.listdir(index_dir) if p.startswith(".tmp-")]
        shutil.rmtree(index_dir)
    print(f"\n{COMPACT_KILLS} compact kills; {interrupted} interrupted the merge")
    assert interrupted >= 1  # the kills landed mid-merge, not only before or after
