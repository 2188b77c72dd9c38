"""SIGTERM with requests in flight: they finish, new ones get 503, the exit is prompt."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import httpx
import pytest

from .conftest import ADMIN_TOKEN, Served, docs_on_disk, start_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Long enough for the in-flight write to finish on a loaded 2-core CI machine (about 2 s
# when quiet); the test still checks that the exit comes right after it.
GRACE_S = 15.0


def test_sigterm_lets_requests_in_flight_finish(serve: Any) -> None:
    served: Served = serve(CITEQA_SHUTDOWN_GRACE_S=str(GRACE_S))
    # A document big enough that its write is still running when SIGTERM arrives.
    sentence = "The kangaroo number {} jumped over the fence near the river. "
    big = "# Big\n\n" + "".join(sentence.format(i) for i in range(6000))
    write: dict[str, Any] = {}

    def post() -> None:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        try:
            r = httpx.post(f"{served.url}/documents", headers=headers, timeout=30,
                           json={"doc_id": "big", "text": big})
            write["status"], write["body"] = r.status_code, r.json()
        except httpx.TransportError as exc:
            write["error"] = repr(exc)

    outcomes: list[tuple[float, int | str]] = []
    stop = threading.Event()

    def reader() -> None:
        with httpx.Client(base_url=served.url, timeout=30) as client:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    r = client.post("/ask", json={"question": "Where did the kangaroo jump?"})
                    outcomes.append((sent, r.status_code))
                    if r.status_code == 503:
                        assert r.headers["content-type"].startswith("application/problem+json")
                except httpx.TransportError as exc:
                    outcomes.append((sent, type(exc).__name__))
                    return

    writer = threading.Thread(target=post)
    readers = [threading.Thread(target=reader) for _ in range(3)]
    writer.start()
    for t in readers:
        t.start()
    time.sleep(0.4)  # the write is embedding by now
    signalled = time.monotonic()
    served.process.send_signal(signal.SIGTERM)
    code = served.process.wait(timeout=GRACE_S + 10)
    exit_s = time.monotonic() - signalled
    stop.set()
    writer.join(timeout=30)
    for t in readers:
        t.join(timeout=30)

    assert code in (0, -signal.SIGTERM), served.log()
    assert exit_s < GRACE_S + 2, f"exit took {exit_s:.1f} s"
    assert write.get("status") == 201, (write, served.log())
    # Every request sent before the signal got an answer, 200 or 503.
    before = [o for sent, o in outcomes if sent < signalled]
    assert before and set(before) <= {200, 503}, before
    after = {o for sent, o in outcomes if sent >= signalled}
    assert after <= {200, 503, "ConnectError", "RemoteProtocolError", "ReadError"}, after

    # The next start loads the generation the acknowledged write made.
    version = write["body"]["index_version"]
    assert docs_on_disk(served.index_dir)[0] == version
    again = start_server(served.index_dir)
    try:
        assert httpx.get(f"{again.url}/readyz").json()["index_version"] == version
    finally:
        again.kill()
    print(f"\nexit {exit_s:.2f} s after SIGTERM; {len(before)} requests in flight or before, "
          f"after: {sorted(map(str, after))}")
