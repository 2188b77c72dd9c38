"""The server serves what other processes write to its index directory, without a restart."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import citeqa
from citeqa import HashingEmbedder, index_corpus, make_document

from .conftest import SEED_QUESTION, ClientFactory

WOMBATS = "# Marsupials\n\nWombats dig burrows under eucalyptus trees at dusk."


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the server never picked up the change"
        time.sleep(0.02)


def test_a_generation_written_by_another_process_is_served(
    make_client: ClientFactory, index_dir: Path
) -> None:
    client = make_client(reload_interval_s=0.05)
    before = client.get("/readyz").json()["index_version"]
    other = citeqa.Engine.open(index_dir, HashingEmbedder())  # e.g. a `citeqa index` run
    other.add_documents([make_document(WOMBATS, doc_id="marsupials")])
    wait_for(lambda: client.get("/readyz").json()["index_version"] == other.version)
    assert other.version != before
    ids = [d["doc_id"] for d in client.get("/documents").json()["documents"]]
    assert "marsupials" in ids
    answer = client.post("/ask", json={"question": "Where do wombats dig burrows?"}).json()
    assert answer["index_version"] == other.version
    assert answer["citations"][0]["doc_id"] == "marsupials"


def test_a_new_calibration_is_used(make_client: ClientFactory, index_dir: Path) -> None:
    client = make_client(reload_interval_s=0.05)
    question = {"question": "What is the capital of Australia?"}
    assert client.post("/ask", json=question).json()["abstained"]
    (index_dir / "calibration.json").write_text(json.dumps({"abstain_threshold": -50}))
    wait_for(lambda: not client.post("/ask", json=question).json()["abstained"])


def test_an_unloadable_generation_is_logged_and_the_old_one_served(
    make_client: ClientFactory,
    index_dir: Path,
    seeds_copy: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client(reload_interval_s=0.05)
    before = client.get("/readyz").json()["index_version"]
    with caplog.at_level(logging.WARNING, logger="citeqa"):
        index_corpus([seeds_copy], index_dir, HashingEmbedder(name="another-model"))
        wait_for(lambda: "cannot be loaded" in caplog.text)
    assert client.get("/readyz").json()["index_version"] == before
    response = client.post("/ask", json={"question": SEED_QUESTION})
    assert response.status_code == 200
    assert response.json()["index_version"] == before


def test_watching_can_be_turned_off(make_client: ClientFactory, index_dir: Path) -> None:
    client = make_client(reload_interval_s=0)
    before = client.get("/readyz").json()["index_version"]
    other = citeqa.Engine.open(index_dir, HashingEmbedder())
    other.add_documents([make_document(WOMBATS, doc_id="marsupials")])
    time.sleep(0.3)
    assert client.get("/readyz").json()["index_version"] == before
