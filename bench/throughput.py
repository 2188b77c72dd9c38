"""Throughput under concurrency: 1, 4, 16, 64 keep-alive HTTP clients against one server.

Each client is one keep-alive connection (asyncio, raw HTTP/1.1, so the load
generator takes little of the two cores it shares with the server) asking the
dev-set questions in a loop for ``--duration-s``. Measured with the query micro-batcher on (the
server default) and off, per encoder backend. Ratios are against one client
(sequential) throughput of the same server configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urlsplit

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


async def _client(
    host: str, port: int, bodies: list[bytes], offset: int, stop_at: float, out: list[float]
) -> None:
    """One keep-alive HTTP/1.1 connection asking in a loop; raw sockets cost the
    client far less CPU than an HTTP library, and the client shares the cores."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        i = offset
        while time.perf_counter() < stop_at:
            body = bodies[i % len(bodies)]
            t = time.perf_counter()
            writer.write(
                b"POST /ask HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status = head.split(b" ", 2)[1]
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            answer = await reader.readexactly(length)
            if status != b"200":
                raise RuntimeError(f"HTTP {status.decode()}: {answer[:200]!r}")
            out.append(time.perf_counter() - t)
            i += 7
    finally:
        writer.close()


def drive(url: str, clients: int, duration_s: float, qs: list[str]) -> tuple[float, list[float]]:
    parsed = urlsplit(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    bodies = [json.dumps({"question": q}).encode() for q in qs]
    latencies: list[float] = []

    async def run() -> None:
        stop_at = time.perf_counter() + duration_s
        await asyncio.gather(
            *(_client(host, port, bodies, k, stop_at, latencies) for k in range(clients))
        )

    started = time.perf_counter()
    asyncio.run(run())
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
