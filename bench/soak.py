"""Soak: steady /ask load on a real ``citeqa serve`` for a few minutes; memory and open
files must stay flat. Prints figures and writes bench/results/soak.md; never fails a build.

    .venv/bin/python bench/soak.py                     # 3 minutes, hashing embedder
    .venv/bin/python bench/soak.py --minutes 10 --model   # the bundled model (index built)
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
CITEQA = Path(sys.executable).with_name("citeqa")
QUESTIONS = [
    "On which dates did Vice President Kamala Harris visit Guatemala and Mexico?",
    "How many disappeared and missing people does the Mexican government recognize?",
    "Why do migrants leave their home countries?",
    "What is the capital of Australia?",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--model", action="store_true", help="the bundled model, not hashing")
    parser.add_argument("--report", type=Path, default=ROOT / "bench" / "results" / "soak.md")
    args = parser.parse_args()

    env = {k: v for k, v in os.environ.items() if not k.startswith("CITEQA_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    if not args.model:
        env["CITEQA_EMBEDDER"] = "hashing"
    work = Path(tempfile.mkdtemp(prefix="citeqa-soak-"))
    index_dir = work / "index"
    subprocess.run([str(CITEQA), "index", str(ROOT / "seeds"), "--index-dir", str(index_dir)],
                   env=env, check=True, capture_output=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(CITEQA), "serve", "--port", str(port), "--index-dir", str(index_dir)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        proc = psutil.Process(server.pid)
        stop = threading.Event()
        latencies: list[float] = []
        statuses: dict[int, int] = {}

        def client(seed: int) -> None:
            with httpx.Client(base_url=url, timeout=30) as http:
                n = seed
                while not stop.is_set():
                    started = time.perf_counter()
                    r = http.post("/ask", json={"question": QUESTIONS[n % len(QUESTIONS)]})
                    latencies.append(time.perf_counter() - started)
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                    n += 1

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        samples: list[tuple[float, float, int]] = []
        started = time.monotonic()
        end = started + args.minutes * 60
        while time.monotonic() < end:
            time.sleep(min(5.0, max(0.0, end - time.monotonic())))
            samples.append((time.monotonic() - started, proc.memory_info().rss / 2**20,
                            proc.num_fds()))
        stop.set()
        for t in threads:
            t.join()
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)

    warm = samples[len(samples) // 4:] or samples  # after the first quarter
    rss = [s[1] for s in warm]
    fds = [s[2] for s in warm]
    lines = [
        f"# Soak: {args.minutes:g} min, {args.clients} clients, "
        f"{'bundled model' if args.model else 'hashing embedder'}",
        "",
        f"- requests: {sum(statuses.values())}, statuses {dict(sorted(statuses.items()))}",
        f"- latency median {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {sorted(latencies)[int(len(latencies) * 0.99)] * 1000:.1f} ms",
        f"- RSS after warm-up: min {min(rss):.1f} MiB, max {max(rss):.1f} MiB "
        f"(drift {rss[-1] - rss[0]:+.1f} MiB)",
        f"- open files: min {min(fds)}, max {max(fds)}",
        "",
        "| t (s) | RSS (MiB) | open fds |",
        "| ---: | ---: | ---: |",
        *(f"| {t:.0f} | {m:.1f} | {f} |" for t, m, f in samples),
        "",
        f"command: `.venv/bin/python bench/soak.py --minutes {args.minutes:g}"
        f"{' --model' if args.model else ''}`",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
