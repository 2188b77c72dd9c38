"""Throughput under concurrency: 1, 4, 16, 64 keep-alive HTTP clients against one server.

Each client is one keep-alive connection (asyncio, raw HTTP/1.1, so the load
generator takes little of the two cores it shares with the server) asking the
dev-set questions in a loop for ``--duration-s``. Measured with the query micro-batcher on (the
server default) and off, per encoder backend. Ratios are against one client
(sequential) throughput of the same server configuration.

Two figures explain the ratios. ``server CPU ms/req`` and ``cores busy`` (the
server process's CPU time from psutil, over the requests and the wall time of
each point): once the cores are busy, requests/s is the cores divided by the
CPU each request costs, and batching can only raise it by cutting that cost.
The encoder table shows how much a batch cuts it, per backend, with the bare
``embed_batch`` in this process; it also measures the int8-quantised ONNX model
the issue allows, against the cosine ≥ 0.999 bar for keeping it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import time
from pathlib import Path
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
ENCODER_BATCH = 16


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


def _cpu_ms_per_text(embed: object, texts: list[str], batch: int, rounds: int = 3) -> float:
    """CPU time (all threads of this process) per text, in batches of ``batch``."""
    fn = embed.embed_batch  # type: ignore[attr-defined]
    fn(texts[:batch])  # warm-up
    best = float("inf")
    for _ in range(rounds):
        t = time.process_time()
        for i in range(0, len(texts), batch):
            fn(texts[i : i + batch])
        best = min(best, (time.process_time() - t) / len(texts) * 1000)
    return best


def _int8_export(folder: Path) -> Path:
    """The ONNX export with its weights dynamically quantised to int8 (cached)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = WORK / "onnx-int8"
    if not (target / "model.onnx").is_file():
        tmp = WORK / "onnx-int8.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(folder, tmp)
        quantize_dynamic(
            str(folder / "model.onnx"), str(tmp / "model.onnx"),
            weight_type=QuantType.QInt8, per_channel=True,
        )
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    return target


def encoder_table(backends: list[str], threads: int, qs: list[str]) -> list[str]:
    """CPU per question of the bare encoder, one at a time and batched."""
    from citeqa._embedding import OnnxEmbedder, make_embedder

    texts = qs[: ENCODER_BATCH * 4]
    lines = [
        f"Encoder alone (bare `embed_batch` in this process, {len(texts)} dev questions, "
        f"best of 3 rounds): CPU per question, all threads counted.",
        "",
        f"| encoder | batch of 1 ms | batch of {ENCODER_BATCH} ms | saved by batching | "
        "min cosine to torch |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    reference = make_embedder("torch", threads=threads or None)
    ref = reference.embed_batch(texts)
    encoders: list[tuple[str, object]] = [("torch", reference)] if "torch" in backends else []
    onnx = make_embedder("onnx", threads=threads or None, onnx_dir=WORK / "onnx")
    assert isinstance(onnx, OnnxEmbedder)
    encoders.append(("onnx", onnx))
    int8 = OnnxEmbedder(threads=threads or None, cache_dir=WORK / "onnx", export=False)
    import onnxruntime as ort

    int8._session = ort.InferenceSession(  # same tokenizer and pooling, int8 weights
        str(_int8_export(onnx.folder) / "model.onnx"),
        int8._session.get_session_options(),
        providers=["CPUExecutionProvider"],
    )
    encoders.append(("onnx int8 (not used: cosine < 0.999)", int8))
    for name, enc in encoders:
        one = _cpu_ms_per_text(enc, texts, 1)
        many = _cpu_ms_per_text(enc, texts, ENCODER_BATCH)
        cosine = float((enc.embed_batch(texts) * ref).sum(axis=1).min())  # type: ignore[attr-defined]
        row = f"| {name} | {one:.2f} | {many:.2f} | {1 - many / one:.0%} | {cosine:.4f} |"
        print(row, flush=True)
        lines.append(row)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration-s", type=float, default=8.0)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--backends", default="onnx,torch")
    args = parser.parse_args()
    load = wait_for_quiet()
    qs = questions()
    index_dir = seed_index()
    import psutil

    from citeqa._embedding import export_onnx

    export_onnx(None, WORK / "onnx")
    backends = args.backends.split(",")
    lines = [
        f"{args.duration_s:g} s per point; threads: {args.threads or 'library default'}; "
        f"load average when measuring: {load}.",
        "",
        "| backend | batching | clients | requests/s | × 1 client | p50 ms | p95 ms | max ms "
        "| server CPU ms/req | cores busy |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    ceilings = []
    for backend in backends:
        for batching in (True, False):
            proc, url, _ = start_server(
                index_dir, backend=backend, threads=args.threads, batching=batching
            )
            try:
                server = psutil.Process(proc.pid)
                drive(url, 4, 1.0, qs)  # warm-up
                base = None
                for clients in CONCURRENCY:
                    before = server.cpu_times()
                    started = time.perf_counter()
                    rps, lat = drive(url, clients, args.duration_s, qs)
                    wall = time.perf_counter() - started
                    after = server.cpu_times()
                    cpu_s = after.user + after.system - before.user - before.system
                    base = base or rps
                    s = stats_ms(lat)
                    row = (
                        f"| {backend} | {'on' if batching else 'off'} | {clients} | {rps:.1f} | "
                        f"{rps / base:.2f}× | {s['p50']:.1f} | {s['p95']:.1f} | {s['max']:.1f} "
                        f"| {cpu_s / len(lat) * 1000:.1f} | {cpu_s / wall:.2f} |"
                    )
                    print(row, flush=True)
                    lines.append(row)
                    if batching and clients == 16:
                        # CPU-bound: requests/s cannot pass the cores over the CPU per request.
                        bound = (os.cpu_count() or 1) / (cpu_s / len(lat))
                        ceilings.append(
                            f"- {backend}, batching on: at 16 clients each request costs "
                            f"{cpu_s / len(lat) * 1000:.1f} ms of server CPU, so {os.cpu_count()} "
                            f"cores allow at most {bound:.0f} requests/s = "
                            f"{bound / base:.2f}× one client (measured {rps / base:.2f}×)."
                        )
            finally:
                stop(proc)
    lines += ["", *ceilings, "", *encoder_table(backends, args.threads, qs)]
    write_section(f"throughput (threads={args.threads or 'default'})", "\n".join(lines))


if __name__ == "__main__":
    main()
