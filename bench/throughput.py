"""Throughput under concurrency: 1, 4, 16, 64 keep-alive HTTP clients against one server.

Each client is a thread with its own ``httpx.Client`` asking the dev-set questions
in a loop for ``--duration-s``. Measured with the query micro-batcher on (the
server default) and off, per encoder backend. Ratios are against one client
(sequential) throughput of the same server configuration.
"""

from __future__ import annotations

import argparse
import threading
import time

import httpx
from _common import (
    WORK,
    questions,
    seed_index,
    start_server,
    stats_ms,
    stop,
    wait_for_quiet,
    write_section,
)

CONCURRENCY = (1, 4, 16, 64)


def drive(url: str, clients: int, duration_s: float, qs: list[str]) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + duration_s
    errors: list[BaseException] = []

    def client(offset: int) -> None:
        mine: list[float] = []
        try:
            with httpx.Client(base_url=url, timeout=60) as http:
                i = offset
                while time.perf_counter() < stop_at:
                    t = time.perf_counter()
                    http.post("/ask", json={"question": qs[i % len(qs)]}).raise_for_status()
                    mine.append(time.perf_counter() - t)
                    i += 7
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} clients failed: {errors[0]!r}")
    return len(latencies) / (time.perf_counter() - started), latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration-s", type=float, default=8.0)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--backends", default="onnx,torch")
    args = parser.parse_args()
    load = wait_for_quiet()
    qs = questions()
    index_dir = seed_index()
    from citeqa._embedding import export_onnx

    export_onnx(None, WORK / "onnx")
    lines = [
        f"{args.duration_s:g} s per point; threads: {args.threads or 'library default'}; "
        f"load average when measuring: {load}.",
        "",
        "| backend | batching | clients | requests/s | × 1 client | p50 ms | p95 ms | max ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for backend in args.backends.split(","):
        for batching in (True, False):
            proc, url, _ = start_server(
                index_dir, backend=backend, threads=args.threads, batching=batching
            )
            try:
                drive(url, 4, 1.0, qs)  # warm-up
                base = None
                for clients in CONCURRENCY:
                    rps, lat = drive(url, clients, args.duration_s, qs)
                    base = base or rps
                    s = stats_ms(lat)
                    row = (
                        f"| {backend} | {'on' if batching else 'off'} | {clients} | {rps:.1f} | "
                        f"{rps / base:.2f}× | {s['p50']:.1f} | {s['p95']:.1f} | {s['max']:.1f} |"
                    )
                    print(row, flush=True)
                    lines.append(row)
            finally:
                stop(proc)
    write_section(f"throughput (threads={args.threads or 'default'})", "\n".join(lines))


if __name__ == "__main__":
    main()
